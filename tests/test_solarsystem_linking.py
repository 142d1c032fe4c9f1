"""Tracklets, HelioLinC linking and orbit determination on synthetic detections (no images).

The detections come from :mod:`hpcpipe.solarsystem.synthetic`: objects of
:func:`~hpcpipe.solarsystem.population.population_in_field` observed with the LSST pattern
(pairs of visits of a field 15-90 minutes apart, revisited every few nights) with Gaussian
astrometric noise; ``objectId`` is the truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from hpcpipe.solarsystem import heliolinc, kepler, orbit_fit, population, synthetic, tracklets

T0 = 61000.2          # MJD TAI of the first night (2025-11-21; the field is 59 deg from the Sun)
FIELD = (180.0, 0.0)


def _linkable(det: np.ndarray, trk: np.ndarray, min_nights: int = 3) -> set[int]:
    """Objects with pure tracklets on at least ``min_nights`` nights."""
    truth = det["objectId"]
    out = set()
    for oid in np.unique(truth[truth >= 0]):
        own = trk[(truth[trk["i0"]] == oid) & (truth[trk["i1"]] == oid)]
        if len(np.unique(own["night"])) >= min_nights:
            out.add(int(oid))
    return out


@pytest.fixture(scope="module")
def noisy_scene() -> dict:
    """60 main-belt objects, 4 nights in 7-9 days, 0.1 arcsec noise, 20 false detections a
    visit, linked with the default configuration."""
    rng = np.random.default_rng(3)
    orbits = population.population_in_field(60, *FIELD, 1.5, T0 + 5, rng)
    times = synthetic.lsst_cadence(T0, 4, rng)
    det = synthetic.synthetic_detections(orbits, times, *FIELD, 1.75, rng, sigma_arcsec=0.1,
                                         n_false_per_visit=20)
    trk = tracklets.make_tracklets(det["mjd"], det["ra"], det["dec"])
    data = heliolinc.LinkingInput.build(det, trk)
    return {"orbits": orbits, "det": det, "trk": trk, "data": data,
            "links": heliolinc.link(data)}


def test_make_tracklets_pairs_movers_only() -> None:
    night = T0
    t = np.array([night, night + 0.02, night, night + 0.02, night, night + 0.02,
                  night + 3.0, night + 3.03])
    # object A at 0.25 deg/day, B at 1 deg/day, a static source, A again 3 nights later
    ra = np.array([10.0, 10.0 + 0.25 * 0.02, 11.0, 11.0, 12.0, 12.0 + 0.02,
                   10.75, 10.75 + 0.25 * 0.03])
    dec = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    trk = tracklets.make_tracklets(t, ra, dec)
    pairs = {(int(a), int(b)) for a, b in zip(trk["i0"], trk["i1"])}
    assert pairs == {(0, 1), (4, 5), (6, 7)}
    rates = dict(zip(zip(trk["i0"].tolist(), trk["i1"].tolist()), trk["rate"]))
    assert rates[(0, 1)] == pytest.approx(0.25 * np.cos(np.radians(1.0)), rel=1e-4)
    assert rates[(4, 5)] == pytest.approx(1.0 * np.cos(np.radians(1.0)), rel=1e-4)
    assert len(np.unique(trk["night"])) == 2
    # nothing faster than max_rate, nothing closer in time than min_dt
    assert len(tracklets.make_tracklets(t, ra, dec, max_rate=0.5)) == 2
    assert len(tracklets.make_tracklets(t, ra, dec, min_dt=0.05)) == 0
    with pytest.raises(ValueError, match="min_rate"):
        tracklets.make_tracklets(t, ra, dec, min_rate=3.0, max_rate=2.0)


def test_night_of_splits_at_local_noon() -> None:
    # Cerro Pachon: local noon is about 16:43 UTC; a night's visits share a night number
    evening, morning = 61000.0 + 23.5 / 24, 61001.0 + 9.0 / 24
    assert tracklets.night_of(evening) == tracklets.night_of(morning)
    assert tracklets.night_of(61001.0 + 18.0 / 24) == tracklets.night_of(morning) + 1


def test_synthetic_tracklets_recover_every_object(noisy_scene: dict) -> None:
    det, trk = noisy_scene["det"], noisy_scene["trk"]
    truth = det["objectId"]
    pure = truth[trk["i0"]] == truth[trk["i1"]]
    pure &= truth[trk["i0"]] >= 0
    # every object detected twice in a night gives its tracklet
    for night in np.unique(trk["night"]):
        rows = det[tracklets.night_of(det["mjd"]) == night]
        ids, counts = np.unique(rows["objectId"][rows["objectId"] >= 0], return_counts=True)
        got = set(truth[trk["i0"][pure & (trk["night"] == night)]].tolist())
        assert set(ids[counts >= 2].tolist()) <= got


def test_heliolinc_completeness_and_purity(noisy_scene: dict) -> None:
    det, links = noisy_scene["det"], noisy_scene["links"]
    linkable = _linkable(det, noisy_scene["trk"])
    assert len(linkable) >= 40
    truth = det["objectId"]
    found, impure = set(), 0
    for link in links:
        ids = np.unique(truth[link.detections])
        if len(ids) == 1 and ids[0] >= 0:
            found.add(int(ids[0]))
        else:
            impure += 1
        nights = tracklets.night_of(det["mjd"][link.detections])
        assert len(np.unique(nights)) >= 3
        assert link.fit.accepted
    assert len(found & linkable) >= 0.9 * len(linkable)
    assert impure < 0.01 * len(links) or impure == 0
    # detections are in at most one linkage
    all_det = np.concatenate([link.detections for link in links])
    assert len(all_det) == len(np.unique(all_det))


@pytest.mark.slow
def test_heliolinc_in_a_dense_field() -> None:
    """200 main-belt objects in 2 deg^2 at opposition (about 70 detections per deg^2 a visit
    with the false ones: LSST's density near the ecliptic): the clusters gather other
    objects' tracklets, the candidates keep one a night."""
    rng = np.random.default_rng(4)
    field, t0 = (120.0, 20.0), 61060.2
    orbits = population.population_in_field(200, *field, 0.8, t0 + 4, rng)
    times = synthetic.lsst_cadence(t0, 4, rng)
    det = synthetic.synthetic_detections(orbits, times, *field, 0.8, rng, sigma_arcsec=0.1,
                                         n_false_per_visit=20)
    trk = tracklets.make_tracklets(det["mjd"], det["ra"], det["dec"])
    links = heliolinc.link(heliolinc.LinkingInput.build(det, trk))
    linkable = _linkable(det, trk)
    assert len(linkable) >= 50
    truth = det["objectId"]
    found, impure = set(), 0
    for link in links:
        ids = np.unique(truth[link.detections])
        if len(ids) == 1 and ids[0] >= 0:
            found.add(int(ids[0]))
        else:
            impure += 1
    assert len(found & linkable) >= 0.9 * len(linkable)
    assert impure < 0.01 * len(links) or impure == 0


def test_hypotheses_are_independent_units(noisy_scene: dict) -> None:
    """Splitting the hypothesis grid (as the parallel linking does) changes nothing."""
    data = noisy_scene["data"]
    config = heliolinc.LinkingConfig()
    grid = config.hypotheses()
    whole = heliolinc.merge_candidates([heliolinc.candidates_for_hypotheses(data, grid, config)])
    parts = [heliolinc.candidates_for_hypotheses(data, grid[k::3], config) for k in range(3)]
    # hypothesis numbers differ between the split and the whole grid; the clusters do not
    assert {c.tracklets for c in heliolinc.merge_candidates(parts)} == \
        {c.tracklets for c in whole}


@pytest.fixture(scope="module")
def fifteen_day_scene() -> dict:
    """40 main-belt objects on 4 nights 5 days apart (a 15-day arc), 10 mas astrometry (the
    single-visit floor of bright sources)."""
    rng = np.random.default_rng(5)
    orbits = population.population_in_field(40, *FIELD, 1.5, T0 + 7.5, rng)
    times = synthetic.lsst_cadence(T0, 4, rng, night_step=(5, 5))
    det = synthetic.synthetic_detections(orbits, times, *FIELD, 5.0, rng, sigma_arcsec=0.01)
    trk = tracklets.make_tracklets(det["mjd"], det["ra"], det["dec"])
    data = heliolinc.LinkingInput.build(det, trk)
    return {"orbits": orbits, "det": det, "times": times, "links": heliolinc.link(data)}


def test_orbit_accuracy_fifteen_day_arcs(fifteen_day_scene: dict) -> None:
    orbits, det = fifteen_day_scene["orbits"], fifteen_day_scene["det"]
    links = fifteen_day_scene["links"]
    later = np.array([fifteen_day_scene["times"][-1] + 10.0])
    eph = synthetic.ephemerides(orbits, later)
    obs = kepler.observer_position(later)
    a_err, sep = [], []
    for link in links:
        ids = np.unique(det["objectId"][link.detections])
        assert len(ids) == 1
        if np.ptp(det["mjd"][link.detections]) < 14.0:
            continue  # left the detection area on the first or last night
        k = int(np.flatnonzero(orbits["ssObjectId"] == ids[0])[0])
        a_err.append(abs(link.fit.elements["a"] / orbits["a"][k] - 1.0))
        ra, dec = orbit_fit.predict_radec(link.fit.r, link.fit.v, link.fit.epoch, later, obs)
        sep.append(kepler.angular_separation_arcsec(ra, dec, eph["ra"][k], eph["dec"][k])[0])
        assert link.fit.rms_arcsec < 0.03
    assert len(a_err) >= 20
    assert np.mean(np.asarray(a_err) < 0.01) >= 0.9
    assert np.mean(np.asarray(sep) < 2.0) >= 0.9


def _one_object(seed: int = 11, sigma: float = 0.1):
    rng = np.random.default_rng(seed)
    orbit = population.population_in_field(1, *FIELD, 0.5, T0 + 5, rng)
    times = synthetic.lsst_cadence(T0, 4, rng)
    det = synthetic.synthetic_detections(orbit, times, *FIELD, 10.0, rng, sigma_arcsec=sigma)
    obs = kepler.observer_position(det["mjd"])
    return orbit, det, obs


def test_fit_rejects_an_outlier_and_a_mixed_track() -> None:
    orbit, det, obs = _one_object()
    assert len(det) == 8
    epoch = float(kepler.tai_to_tdb(det["mjd"].mean()))
    r0, v0 = population.states_of(orbit)
    r0, v0 = kepler.propagate(r0, v0, epoch - orbit["epoch"][0])
    # a start 2% off in distance and velocity
    start = (r0[0] * 1.02, v0[0] * 0.98)
    nights = tracklets.night_of(det["mjd"])
    bad = det.copy()
    bad["dec"][3] += 3.0 / 3600.0
    fit = orbit_fit.fit_orbit(bad["mjd"], bad["ra"], bad["dec"], bad["raErr"], bad["decErr"],
                              obs, *start, epoch, nights=nights)
    assert fit.accepted
    assert not fit.used[3] and fit.used.sum() == 7
    assert fit.rms_arcsec < 0.2
    assert fit.covariance.shape == (6, 6) and np.all(np.diag(fit.covariance) > 0)
    # another object's detections on the last night: no orbit fits them all
    other, det2, _ = _one_object(seed=12)
    mixed = det.copy()
    mixed[6:] = det2[6:]
    fit = orbit_fit.fit_orbit(mixed["mjd"], mixed["ra"], mixed["dec"], mixed["raErr"],
                              mixed["decErr"], kepler.observer_position(mixed["mjd"]), *start,
                              epoch, nights=nights)
    assert not fit.accepted


def test_gauss_initial_orbit_then_differential_correction() -> None:
    orbit, det, obs = _one_object(sigma=1e-4)
    pick = [0, 3, 7]
    cands = orbit_fit.gauss_initial_orbit(det["mjd"][pick], det["ra"][pick], det["dec"][pick],
                                          obs[pick])
    assert cands
    r_true, v_true = population.states_of(orbit)
    errors = []
    for r, _v, epoch in cands:
        rt, _ = kepler.propagate(r_true, v_true, epoch - orbit["epoch"][0])
        errors.append(np.linalg.norm(r - rt[0]) / np.linalg.norm(rt[0]))
    best = int(np.argmin(errors))
    assert errors[best] < 0.02
    r, v, epoch = cands[best]
    fit = orbit_fit.fit_orbit(det["mjd"], det["ra"], det["dec"], det["raErr"], det["decErr"],
                              obs, r, v, epoch, nights=tracklets.night_of(det["mjd"]))
    assert fit.accepted
    assert fit.elements["a"] == pytest.approx(orbit["a"][0], rel=1e-3)
