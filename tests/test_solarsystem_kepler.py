"""Two-body propagation, elements, the observer and H,G magnitudes (hpcpipe.solarsystem.kepler)."""

from __future__ import annotations

import numpy as np
import pytest

from hpcpipe.solarsystem import kepler

MU = kepler.GM_SUN


def _energy(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    return 0.5 * np.sum(v * v, axis=-1) - MU / np.linalg.norm(r, axis=-1)


def test_circular_orbit_period() -> None:
    a = 2.0
    r0 = np.array([a, 0.0, 0.0])
    v0 = np.array([0.0, np.sqrt(MU / a), 0.0])
    period = 2 * np.pi * np.sqrt(a ** 3 / MU)
    assert kepler.period_days(a) == pytest.approx(period, rel=1e-14)
    r, v = kepler.propagate(r0, v0, [period / 4, period / 2, period, 3.5 * period])
    np.testing.assert_allclose(r[0], [0.0, a, 0.0], atol=1e-10)
    np.testing.assert_allclose(r[1], [-a, 0.0, 0.0], atol=1e-10)
    np.testing.assert_allclose(r[2], r0, atol=1e-10)
    np.testing.assert_allclose(v[2], v0, atol=1e-12)
    np.testing.assert_allclose(r[3], [-a, 0.0, 0.0], atol=1e-9)
    # the radius and the speed stay constant on a circle
    rr, vv = kepler.propagate(r0, v0, np.linspace(-400, 400, 33))
    np.testing.assert_allclose(np.linalg.norm(rr, axis=1), a, rtol=1e-11)
    np.testing.assert_allclose(np.linalg.norm(vv, axis=1), np.sqrt(MU / a), rtol=1e-11)


def test_keplers_third_law_and_mean_motion() -> None:
    rng = np.random.default_rng(1)
    n = 20
    a = rng.uniform(0.7, 40.0, n)
    e = rng.uniform(0.0, 0.9, n)
    inc, node, argp, m0 = (rng.uniform(0, np.pi, n), rng.uniform(0, 2 * np.pi, n),
                           rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n))
    r0, v0 = kepler.elements_to_state(a, e, inc, node, argp, m0)
    # one period (Kepler's third law: P^2 = 4 pi^2 a^3 / GM) brings every orbit back
    r, v = kepler.propagate(r0, v0, kepler.period_days(a))
    np.testing.assert_allclose(r, r0, atol=1e-9 * a.max())
    # any step advances the mean anomaly by n dt, n = sqrt(GM / a^3)
    dt = rng.uniform(-300, 300, n)
    r, v = kepler.propagate(r0, v0, dt)
    r_ref, v_ref = kepler.elements_to_state(a, e, inc, node, argp, m0 + np.sqrt(MU / a ** 3) * dt)
    np.testing.assert_allclose(r, r_ref, atol=1e-9)
    np.testing.assert_allclose(v, v_ref, atol=1e-11)


def test_elements_round_trip() -> None:
    rng = np.random.default_rng(2)
    n = 30
    el = {"a": rng.uniform(0.8, 45, n), "e": rng.uniform(0.01, 0.9, n),
          "inc": rng.uniform(0.01, 3.1, n), "node": rng.uniform(0, 2 * np.pi, n),
          "argperi": rng.uniform(0, 2 * np.pi, n), "mean_anomaly": rng.uniform(0, 2 * np.pi, n)}
    r, v = kepler.elements_to_state(**el)
    back = kepler.state_to_elements(r, v)
    for key in ("a", "e", "inc"):
        np.testing.assert_allclose(back[key], el[key], rtol=1e-9)
    for key in ("node", "argperi", "mean_anomaly"):
        diff = np.angle(np.exp(1j * (back[key] - el[key])))
        np.testing.assert_allclose(diff, 0.0, atol=1e-8)
    np.testing.assert_allclose(back["q"], el["a"] * (1 - el["e"]), rtol=1e-9)


@pytest.mark.parametrize("kind", ["elliptic", "hyperbolic", "near-parabolic"])
def test_energy_and_angular_momentum_conserved(kind: str) -> None:
    r0 = np.array([1.1, 0.2, -0.1])
    vcirc = np.sqrt(MU / np.linalg.norm(r0))
    factor = {"elliptic": 1.25, "hyperbolic": 1.6, "near-parabolic": np.sqrt(2) * 1.0000001}
    v0 = np.array([-0.05, 1.0, 0.3])
    v0 = v0 / np.linalg.norm(v0) * vcirc * factor[kind]
    dt = np.linspace(-500, 500, 41)
    r, v = kepler.propagate(r0, v0, dt)
    assert np.all(np.isfinite(r))
    e0 = _energy(r0, v0)
    np.testing.assert_allclose(_energy(r, v), e0, atol=1e-9 * MU)  # 1e-9 of |v|^2 ~ GM/r: rounding
    np.testing.assert_allclose(np.cross(r, v), np.broadcast_to(np.cross(r0, v0), r.shape),
                               atol=1e-13)
    # forward then back returns the start
    r1, v1 = kepler.propagate(r[-1], v[-1], -dt[-1])
    np.testing.assert_allclose(r1[0], r0, atol=1e-9)


def test_earth_agrees_with_astropy_builtin_ephemeris() -> None:
    from astropy.coordinates import get_body_barycentric, solar_system_ephemeris
    from astropy.time import Time

    mjd = np.array([51544.5, 58000.25, 61000.7, 62500.1])
    earth, vel = kepler.earth_state(mjd)
    with solar_system_ephemeris.set("builtin"):
        t = Time(mjd, format="mjd", scale="tdb")
        helio = (get_body_barycentric("earth", t) - get_body_barycentric("sun", t))
    ref = helio.get_xyz().to_value("au").T
    # the same ERFA model: agreement far within its ~1e-7 au accuracy
    np.testing.assert_allclose(earth, ref, atol=1e-9)
    assert np.all(np.abs(np.linalg.norm(earth, axis=1) - 1.0) < 0.0175)
    # the velocity is the derivative of the position (to the series' truncation)
    e_next, _ = kepler.earth_state(mjd + 1e-3)
    np.testing.assert_allclose((e_next - earth) / 1e-3, vel, atol=3e-7)


def test_observer_offset_is_the_site_in_gcrs() -> None:
    from astropy import units as u
    from astropy.coordinates import EarthLocation
    from astropy.time import Time
    from astropy.utils import iers

    mjd_tai = np.array([61000.1, 61000.3])
    offset = kepler.observer_position(mjd_tai) - kepler.observer_position(mjd_tai, None)
    site = kepler.RUBIN_SITE
    loc = EarthLocation.from_geodetic(site.lon_deg * u.deg, site.lat_deg * u.deg,
                                      site.height_m * u.m)
    with iers.conf.set_temp("auto_download", False), \
            iers.conf.set_temp("iers_degraded_accuracy", "warn"):
        pos, _ = loc.get_gcrs_posvel(Time(mjd_tai, format="mjd", scale="tai"))
    ref = pos.get_xyz().to_value("km").T
    # UT1 - UTC and polar motion neglected here: under a kilometre
    np.testing.assert_allclose(offset * kepler.AU_KM, ref, atol=1.0)
    np.testing.assert_allclose(np.linalg.norm(offset, axis=1) * kepler.AU_KM, 6374.0, atol=10)


def test_light_time_iteration() -> None:
    r0, v0 = kepler.elements_to_state(2.7, 0.1, 0.2, 1.0, 2.0, 3.0)
    epoch = 61000.0
    t_tai = np.array([61005.2, 61020.4])
    obs = kepler.observer_position(t_tai)
    eph = kepler.observe(r0, v0, epoch, t_tai, obs)
    dt = kepler.tai_to_tdb(t_tai) - epoch
    # the position seen is where the object was delta / c earlier
    r_emit, _ = kepler.propagate(r0, v0, dt - eph["delta"] / kepler.C_AU_PER_DAY)
    np.testing.assert_allclose(eph["helio"], r_emit, atol=1e-11)
    np.testing.assert_allclose(np.linalg.norm(r_emit - obs, axis=1), eph["delta"], rtol=1e-12)
    geo = kepler.observe(r0, v0, epoch, t_tai, obs, light_time=False)
    shift = kepler.angular_separation_arcsec(eph["ra"], eph["dec"], geo["ra"], geo["dec"])
    # light time of ~10 minutes at ~0.25 deg/day: several arcseconds
    assert np.all((shift > 1.0) & (shift < 60.0))


def test_hg_magnitude_by_hand() -> None:
    # H = 15, G = 0.15, r = 2.5 au, delta = 1.6 au, phase 20 deg, by hand:
    # tan(10 deg) = 0.176327; Phi1 = exp(-3.33 * 0.176327**0.63) = exp(-3.33 * 0.335105)
    # = 0.327620; Phi2 = exp(-1.87 * 0.176327**1.22) = exp(-1.87 * 0.120367) = 0.798447;
    # 0.85 * 0.327620 + 0.15 * 0.798447 = 0.398244; -2.5 log10(0.398244) = 0.999630;
    # 5 log10(2.5 * 1.6) = 3.010300; V = 15 + 3.010300 + 0.999630 = 19.009930
    assert kepler.hg_magnitude(15.0, 0.15, 2.5, 1.6, 20.0) == pytest.approx(19.0099, abs=2e-4)
    # at zero phase the phase function is one whatever G
    assert kepler.hg_magnitude(12.0, 0.4, 2.0, 1.0, 0.0) == pytest.approx(
        12.0 + 5 * np.log10(2.0), abs=1e-12)
    # brighter for larger G at a given phase (a shallower phase curve)
    assert kepler.hg_magnitude(15.0, 0.5, 2.5, 1.6, 20.0) < \
        kepler.hg_magnitude(15.0, 0.0, 2.5, 1.6, 20.0)


def test_phase_angle() -> None:
    helio = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    obs = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(kepler.phase_angle(helio, obs),
                               [0.0, np.degrees(np.arctan2(1.0, 2.0))], atol=1e-12)


def test_solve_kepler_rejects_unbound() -> None:
    with pytest.raises(ValueError, match="eccentricities"):
        kepler.solve_kepler(1.0, 1.2)
