"""Two-body heliocentric orbits: propagation, elements, the observer, apparent positions, H,G.

Everything here is vectorised over objects (and over times where it says so) with NumPy.

Frames and units
    Positions in au, velocities in au/day, times MJD. States are *heliocentric* and
    *equatorial* (ICRF axes, the frame of RA/Dec); orbital elements are referred to the
    ecliptic and equinox J2000 (as the Minor Planet Center and JPL give them), related to the
    equatorial frame by a rotation about x by the obliquity :data:`OBLIQUITY_J2000`.
Time scales
    The dynamics uses TDB. Visits are stamped in TAI; :func:`tai_to_tdb` adds 32.184 s
    (TT) and neglects TDB - TT (under 2 ms: 0.1 km of an asteroid's motion).
Dynamics
    The Sun's point mass only (two-body problem). Planetary perturbations are neglected:
    over the arcs of weeks that linking and orbit determination use here, they shift a
    main-belt asteroid by of order an arcsecond at most (larger for close approaches to a
    planet, which this model does not follow). The heliocentric two-body problem is solved
    with universal variables (Stumpff functions), valid for elliptic, parabolic and
    hyperbolic orbits alike (:func:`propagate`).
Observer
    Earth's heliocentric position and velocity from ERFA's ``epv00`` (the analytic model
    astropy's ``builtin`` ephemeris uses; no download), plus the observatory's geocentric
    position (WGS84 geodetic to ITRS, rotated to GCRS with ERFA's IAU 2006/2000A
    celestial-to-terrestrial matrix; UT1 taken as UTC, under 0.4 km of the site's motion,
    and polar motion, about 10 m, neglected: nothing at asteroid distances).
Apparent positions
    *Astrometric* RA/Dec (what is measured against catalogue stars): the object's position
    at the emission time ``t - rho / c`` (light-time iterated) seen from the observer at
    ``t``. Stellar aberration and light deflection affect stars and asteroids alike and are
    not applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import erfa
import numpy as np
import numpy.typing as npt

__all__ = ["GM_SUN", "C_AU_PER_DAY", "OBLIQUITY_J2000", "AU_KM", "RUBIN_SITE", "Site",
           "ecliptic_to_equatorial", "equatorial_to_ecliptic", "elements_to_state",
           "state_to_elements", "solve_kepler", "propagate", "tai_to_tdb", "earth_state",
           "observer_position", "radec_from_vectors", "vectors_from_radec", "observe",
           "hg_magnitude", "phase_angle", "period_days", "angular_separation_arcsec"]

#: Gauss's gravitational constant squared: the Sun's GM in au^3/day^2.
GM_SUN = 0.01720209895 ** 2
#: Speed of light, au per day.
C_AU_PER_DAY = 173.1446326846693
#: The astronomical unit in km.
AU_KM = 149_597_870.7
#: Obliquity of the ecliptic at J2000 (IAU 1976, the value of JPL's ecliptic frame), radians.
OBLIQUITY_J2000 = np.radians(84381.448 / 3600.0)
#: TT - TAI, days.
TT_MINUS_TAI = 32.184 / 86400.0


@dataclass(frozen=True)
class Site:
    """An observatory: geodetic longitude and latitude (degrees, east positive) and height
    above the WGS84 ellipsoid (metres)."""

    lon_deg: float
    lat_deg: float
    height_m: float


#: The Vera C. Rubin Observatory on Cerro Pachon.
RUBIN_SITE = Site(-70.749417, -30.244639, 2663.0)

_COS_EPS, _SIN_EPS = np.cos(OBLIQUITY_J2000), np.sin(OBLIQUITY_J2000)
#: Rotation from ecliptic J2000 to equatorial (ICRF) axes.
_ECL_TO_EQ = np.array([[1.0, 0.0, 0.0], [0.0, _COS_EPS, -_SIN_EPS], [0.0, _SIN_EPS, _COS_EPS]])


def ecliptic_to_equatorial(vec: np.ndarray) -> np.ndarray:
    """Rotate vectors (``(..., 3)``) from ecliptic J2000 to equatorial (ICRF) axes."""
    return np.asarray(vec, dtype=float) @ _ECL_TO_EQ.T


def equatorial_to_ecliptic(vec: np.ndarray) -> np.ndarray:
    """Rotate vectors (``(..., 3)``) from equatorial (ICRF) to ecliptic J2000 axes."""
    return np.asarray(vec, dtype=float) @ _ECL_TO_EQ


def period_days(a: np.ndarray | float) -> np.ndarray:
    """Orbital period (days) of a semi-major axis ``a`` (au)."""
    return 2.0 * np.pi * np.sqrt(np.asarray(a, dtype=float) ** 3 / GM_SUN)


def solve_kepler(mean_anomaly: np.ndarray, e: np.ndarray, tol: float = 1e-14,
                 max_iter: int = 50) -> np.ndarray:
    """Eccentric anomaly ``E`` of elliptic orbits: ``E - e sin E = M`` (radians; Newton's
    method started at ``M + e sin M``, or at pi for high eccentricities)."""
    m = np.remainder(np.asarray(mean_anomaly, dtype=float) + np.pi, 2 * np.pi) - np.pi
    e = np.broadcast_to(np.asarray(e, dtype=float), m.shape)
    if np.any((e < 0) | (e >= 1)):
        raise ValueError("solve_kepler: eccentricities must be in [0, 1)")
    ecc = np.where(e > 0.8, np.pi * np.sign(m + (m == 0)), m + e * np.sin(m))
    for _ in range(max_iter):
        step = (ecc - e * np.sin(ecc) - m) / (1.0 - e * np.cos(ecc))
        ecc = ecc - step
        if np.all(np.abs(step) < tol):
            break
    return ecc


def _rotation_pqw(inc: np.ndarray, node: np.ndarray, argperi: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The perifocal unit vectors P (to perihelion) and Q (90 deg ahead), ecliptic axes."""
    co, so = np.cos(node), np.sin(node)
    cw, sw = np.cos(argperi), np.sin(argperi)
    ci, si = np.cos(inc), np.sin(inc)
    p = np.stack([co * cw - so * sw * ci, so * cw + co * sw * ci, sw * si], axis=-1)
    q = np.stack([-co * sw - so * cw * ci, -so * sw + co * cw * ci, cw * si], axis=-1)
    return p, q


def elements_to_state(a: np.ndarray, e: np.ndarray, inc: np.ndarray, node: np.ndarray,
                      argperi: np.ndarray, mean_anomaly: np.ndarray,
                      equatorial: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Heliocentric state of elliptic orbits from their elements.

    Parameters
    ----------
    a, e : array_like
        Semi-major axis (au) and eccentricity (``0 <= e < 1``).
    inc, node, argperi, mean_anomaly : array_like
        Inclination, longitude of the ascending node, argument of perihelion and mean
        anomaly at the epoch (radians), ecliptic J2000.
    equatorial : bool
        Return equatorial (ICRF) vectors (default), else ecliptic ones.

    Returns
    -------
    r, v : numpy.ndarray
        ``(n, 3)`` positions (au) and velocities (au/day).
    """
    a, e, inc, node, argperi, mean_anomaly = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(x, dtype=float)) for x in
          (a, e, inc, node, argperi, mean_anomaly)))
    if np.any(a <= 0):
        raise ValueError("elements_to_state: semi-major axes must be positive")
    ecc = solve_kepler(mean_anomaly, e)
    cos_e, sin_e = np.cos(ecc), np.sin(ecc)
    sq = np.sqrt(1.0 - e * e)
    p, q = _rotation_pqw(inc, node, argperi)
    x, y = a * (cos_e - e), a * sq * sin_e
    radius = a * (1.0 - e * cos_e)
    n = np.sqrt(GM_SUN / a ** 3)
    vx, vy = -a * n * sin_e * a / radius, a * n * sq * cos_e * a / radius
    r = x[:, None] * p + y[:, None] * q
    v = vx[:, None] * p + vy[:, None] * q
    if equatorial:
        r, v = ecliptic_to_equatorial(r), ecliptic_to_equatorial(v)
    return r, v


def state_to_elements(r: np.ndarray, v: np.ndarray, equatorial: bool = True
                      ) -> dict[str, np.ndarray]:
    """Osculating elements of heliocentric states.

    Returns a dict of arrays: ``a`` (au; negative for hyperbolic orbits), ``e``, ``inc``,
    ``node``, ``argperi`` (radians, ecliptic J2000), ``mean_anomaly`` (radians; elliptic
    orbits only, NaN otherwise), ``q`` (perihelion distance, au).
    """
    r = np.atleast_2d(np.asarray(r, dtype=float))
    v = np.atleast_2d(np.asarray(v, dtype=float))
    if equatorial:
        r, v = equatorial_to_ecliptic(r), equatorial_to_ecliptic(v)
    rn = np.linalg.norm(r, axis=-1)
    h = np.cross(r, v)
    hn = np.linalg.norm(h, axis=-1)
    evec = np.cross(v, h) / GM_SUN - r / rn[:, None]
    e = np.linalg.norm(evec, axis=-1)
    energy = 0.5 * np.sum(v * v, axis=-1) - GM_SUN / rn
    with np.errstate(divide="ignore"):
        a = -GM_SUN / (2.0 * energy)
    inc = np.arccos(np.clip(h[:, 2] / hn, -1, 1))
    node = np.remainder(np.arctan2(h[:, 0], -h[:, 1]), 2 * np.pi)
    nvec = np.stack([np.cos(node), np.sin(node), np.zeros_like(node)], axis=-1)
    # argument of perihelion: angle from the node to the eccentricity vector in the plane
    hhat = h / hn[:, None]
    argperi = np.arctan2(np.sum(np.cross(nvec, evec) * hhat, axis=-1), np.sum(nvec * evec, -1))
    argperi = np.remainder(argperi, 2 * np.pi)
    true_anom = np.arctan2(np.sum(np.cross(evec, r) * hhat, axis=-1), np.sum(evec * r, -1))
    with np.errstate(invalid="ignore"):
        ecc_anom = 2.0 * np.arctan2(np.sqrt(np.clip(1 - e, 0, None)) * np.sin(true_anom / 2),
                                    np.sqrt(1 + e) * np.cos(true_anom / 2))
        mean = np.where(e < 1, np.remainder(ecc_anom - e * np.sin(ecc_anom), 2 * np.pi),
                        np.nan)
    return {"a": a, "e": e, "inc": inc, "node": node, "argperi": argperi,
            "mean_anomaly": mean, "q": hn ** 2 / GM_SUN / (1 + e)}


def _stumpff(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stumpff functions C(z) and S(z), with their series near zero."""
    c = np.empty_like(z)
    s = np.empty_like(z)
    pos, neg = z > 1e-6, z < -1e-6
    small = ~(pos | neg)
    sz = np.sqrt(z[pos])
    c[pos] = (1 - np.cos(sz)) / z[pos]
    s[pos] = (sz - np.sin(sz)) / sz ** 3
    sz = np.sqrt(-z[neg])
    c[neg] = (np.cosh(sz) - 1) / -z[neg]
    s[neg] = (np.sinh(sz) - sz) / sz ** 3
    zs = z[small]
    c[small] = 0.5 - zs / 24 + zs * zs / 720
    s[small] = 1 / 6 - zs / 120 + zs * zs / 5040
    return c, s


def propagate(r0: np.ndarray, v0: np.ndarray, dt: np.ndarray | float,
              tol: float = 1e-12, max_iter: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Propagate heliocentric states by ``dt`` days on two-body orbits (universal variables).

    Parameters
    ----------
    r0, v0 : array_like
        ``(n, 3)`` (or ``(3,)``) positions (au) and velocities (au/day); any axes, as long
        as both share them.
    dt : array_like
        Time steps (days), broadcast against the ``n`` states.

    Returns
    -------
    r, v : numpy.ndarray
        ``(n, 3)`` states at ``t0 + dt``.

    Notes
    -----
    Laguerre-Conway iterations on the universal anomaly chi (Curtis, *Orbital Mechanics for
    Engineering Students*, algorithm 3.4, with Conway's step). For elliptic orbits whole
    revolutions are removed from ``dt`` first, so that the iteration starts close and
    converges in a few steps whatever the span.
    """
    r0 = np.atleast_2d(np.asarray(r0, dtype=float))
    v0 = np.atleast_2d(np.asarray(v0, dtype=float))
    dt = np.asarray(dt, dtype=float)
    shape = np.broadcast_shapes(r0.shape[:-1], v0.shape[:-1], dt.shape)
    r0 = np.broadcast_to(r0, shape + (3,))
    v0 = np.broadcast_to(v0, shape + (3,))
    dt = np.broadcast_to(dt, shape).copy()
    mu = GM_SUN
    smu = np.sqrt(mu)
    rn0 = np.linalg.norm(r0, axis=-1)
    vr0 = np.sum(r0 * v0, axis=-1) / rn0
    alpha = 2.0 / rn0 - np.sum(v0 * v0, axis=-1) / mu  # 1/a
    ell = alpha > 1e-12
    period = np.where(ell, 2 * np.pi / (smu * np.abs(alpha) ** 1.5 + ~ell), 1.0)
    dt = np.where(ell, dt - period * np.round(dt / period), dt)
    chi = smu * np.abs(alpha) * dt
    # hyperbolic/parabolic start (Vallado): a rough but safe guess
    hyp = ~ell
    if np.any(hyp):
        chi_h = np.sign(dt) * np.sqrt(np.abs(rn0 * dt)) * 0.5 + smu * dt / np.maximum(rn0, 1e-9)
        chi = np.where(hyp, chi_h, chi)
    a1 = rn0 * vr0 / smu
    b1 = 1.0 - alpha * rn0
    target = smu * dt
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(max_iter):
            z = alpha * chi * chi
            c, s = _stumpff(z)
            f = a1 * chi * chi * c + b1 * chi ** 3 * s + rn0 * chi - target
            fp = a1 * chi * (1 - z * s) + b1 * chi * chi * c + rn0
            fpp = a1 * (1 - z * c) + b1 * chi * (1 - z * s)
            # Laguerre-Conway step (n = 5): converges from poor starts where Newton's
            # method can run away on hyperbolic orbits
            root = np.sqrt(np.abs(16.0 * fp * fp - 20.0 * f * fpp))
            step = 5.0 * f / (fp + np.sign(fp) * root)
            chi = chi - step
            if np.all(~np.isfinite(step) | (np.abs(step) <= tol * np.maximum(1.0, np.abs(chi)))):
                break
    z = alpha * chi * chi
    with np.errstate(over="ignore", invalid="ignore"):
        c, s = _stumpff(z)
    f = 1 - chi * chi / rn0 * c
    g = dt - chi ** 3 / smu * s
    r = f[..., None] * r0 + g[..., None] * v0
    rn = np.linalg.norm(r, axis=-1)
    fdot = smu / (rn * rn0) * (z * chi * s - chi)
    gdot = 1 - chi * chi / rn * c
    v = fdot[..., None] * r0 + gdot[..., None] * v0
    return r, v


def tai_to_tdb(mjd_tai: np.ndarray | float) -> np.ndarray:
    """MJD TAI to MJD TDB (TT = TAI + 32.184 s; TDB - TT, under 2 ms, neglected)."""
    return np.asarray(mjd_tai, dtype=float) + TT_MINUS_TAI


def earth_state(mjd_tdb: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Earth's heliocentric position (au) and velocity (au/day), equatorial ICRF axes, from
    ERFA's ``epv00`` (the analytic model of astropy's ``builtin`` ephemeris)."""
    pvh, _ = erfa.epv00(2400000.5, np.atleast_1d(np.asarray(mjd_tdb, dtype=float)))
    return np.asarray(pvh["p"]), np.asarray(pvh["v"])


def observer_position(mjd_tai: np.ndarray | float, site: Site | None = RUBIN_SITE
                      ) -> np.ndarray:
    """Heliocentric position (au, ICRF axes) of an observatory (``None``: the geocentre) at
    times MJD TAI; ``(n, 3)``."""
    mjd_tai = np.atleast_1d(np.asarray(mjd_tai, dtype=float))
    mjd_tdb = tai_to_tdb(mjd_tai)
    earth, _ = earth_state(mjd_tdb)
    if site is None:
        return earth
    itrs = erfa.gd2gc(1, np.radians(site.lon_deg), np.radians(site.lat_deg), site.height_m)
    # UTC from TAI with ERFA's leap-second table; UT1 ~ UTC (|UT1 - UTC| < 0.9 s: < 0.4 km)
    utc1, utc2 = erfa.taiutc(2400000.5, mjd_tai)
    c2t = erfa.c2t06a(2400000.5, mjd_tdb, utc1, utc2, 0.0, 0.0)
    gcrs = np.einsum("nji,j->ni", c2t, itrs) / (AU_KM * 1000.0)
    return earth + gcrs


def vectors_from_radec(ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike) -> np.ndarray:
    """Unit vectors ``(n, 3)`` of RA/Dec (degrees)."""
    ra = np.radians(np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


def radec_from_vectors(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA in [0, 360) and Dec (degrees) of vectors ``(..., 3)``."""
    vec = np.asarray(vec, dtype=float)
    ra = np.degrees(np.arctan2(vec[..., 1], vec[..., 0])) % 360.0
    dec = np.degrees(np.arctan2(vec[..., 2], np.hypot(vec[..., 0], vec[..., 1])))
    return ra, dec


def observe(r_epoch: np.ndarray, v_epoch: np.ndarray, epoch_tdb: np.ndarray | float,
            obs_mjd_tai: np.ndarray | float, obs_pos: np.ndarray,
            light_time: bool = True, iterations: int = 3
            ) -> dict[str, np.ndarray]:
    """Astrometric RA/Dec of objects seen by an observer, with light-time correction.

    Parameters
    ----------
    r_epoch, v_epoch : array_like
        Heliocentric equatorial states at ``epoch_tdb`` (``(n, 3)``).
    epoch_tdb : array_like
        Epoch of the states (MJD TDB), broadcast against ``n``.
    obs_mjd_tai : array_like
        Observation times (MJD TAI), broadcast against ``n``.
    obs_pos : array_like
        Heliocentric equatorial observer positions at those times (``(n, 3)`` or ``(3,)``),
        e.g. from :func:`observer_position`.
    light_time : bool
        Iterate the emission time ``t - rho / c`` (default); else the geometric position.

    Returns
    -------
    dict
        ``ra``, ``dec`` (degrees), ``delta`` (observer distance, au), ``r`` (heliocentric
        distance at emission, au), ``helio`` (heliocentric position at emission, ``(n, 3)``),
        ``velocity`` (heliocentric velocity at emission), ``phase`` (phase angle, degrees).
    """
    obs_pos = np.asarray(obs_pos, dtype=float)
    dt = tai_to_tdb(obs_mjd_tai) - np.asarray(epoch_tdb, dtype=float)
    tau = np.zeros(np.broadcast_shapes(np.shape(dt), np.shape(r_epoch)[:-1]))
    for _ in range(iterations if light_time else 1):
        r, v = propagate(r_epoch, v_epoch, dt - tau)
        topo = r - obs_pos
        delta = np.linalg.norm(topo, axis=-1)
        if not light_time:
            break
        tau = delta / C_AU_PER_DAY
    ra, dec = radec_from_vectors(topo)
    rn = np.linalg.norm(r, axis=-1)
    return {"ra": ra, "dec": dec, "delta": delta, "r": rn, "helio": r, "velocity": v,
            "phase": phase_angle(r, obs_pos)}


def phase_angle(helio: np.ndarray, obs_pos: np.ndarray) -> np.ndarray:
    """Sun-object-observer angle (degrees) of heliocentric object and observer positions."""
    helio = np.asarray(helio, dtype=float)
    to_obs = np.asarray(obs_pos, dtype=float) - helio
    cosang = np.sum(-helio * to_obs, axis=-1) / (
        np.linalg.norm(helio, axis=-1) * np.linalg.norm(to_obs, axis=-1))
    return np.degrees(np.arccos(np.clip(cosang, -1, 1)))


def hg_magnitude(h: np.ndarray | float, g: np.ndarray | float, r: np.ndarray | float,
                 delta: np.ndarray | float, phase_deg: np.ndarray | float) -> np.ndarray:
    """Apparent V magnitude in the IAU H,G system (Bowell et al. 1989).

    ``V = H + 5 log10(r delta) - 2.5 log10((1 - G) Phi1 + G Phi2)`` with
    ``Phi_i = exp(-A_i tan(alpha / 2) ** B_i)``, ``A = (3.33, 1.87)``, ``B = (0.63, 1.22)``;
    ``r`` and ``delta`` in au, the phase angle ``alpha`` in degrees.
    """
    t = np.tan(np.radians(np.asarray(phase_deg, dtype=float)) / 2.0)
    phi1 = np.exp(-3.33 * t ** 0.63)
    phi2 = np.exp(-1.87 * t ** 1.22)
    g = np.asarray(g, dtype=float)
    return (np.asarray(h, dtype=float) + 5.0 * np.log10(np.asarray(r) * np.asarray(delta))
            - 2.5 * np.log10((1.0 - g) * phi1 + g * phi2))


def angular_separation_arcsec(ra1: Sequence[float] | np.ndarray, dec1: Sequence[float] | np.ndarray,
                              ra2: Sequence[float] | np.ndarray,
                              dec2: Sequence[float] | np.ndarray) -> np.ndarray:
    """Great-circle separation (arcsec) of positions in degrees (Vincenty's formula)."""
    u1, u2 = vectors_from_radec(ra1, dec1), vectors_from_radec(ra2, dec2)
    cross = np.linalg.norm(np.cross(u1, u2), axis=-1)
    return np.degrees(np.arctan2(cross, np.sum(u1 * u2, axis=-1))) * 3600.0
