"""Attribution of later detections to fitted orbits (hpcpipe.solarsystem.attribution)."""

from __future__ import annotations

import numpy as np
import pytest

from hpcpipe.solarsystem import attribution, heliolinc, kepler, population, synthetic, tracklets

T0 = 61000.2
FIELD = (180.0, 0.0)


@pytest.fixture(scope="module")
def catalogue() -> dict:
    """Orbits linked and fitted from 4 nights (0.1 arcsec astrometry), then two later
    nights of detections of the same objects among static transients."""
    rng = np.random.default_rng(7)
    orbits = population.population_in_field(50, *FIELD, 1.5, T0 + 5, rng)
    times = synthetic.lsst_cadence(T0, 4, rng)
    det = synthetic.synthetic_detections(orbits, times, *FIELD, 2.0, rng, sigma_arcsec=0.1,
                                         n_false_per_visit=10)
    trk = tracklets.make_tracklets(det["mjd"], det["ra"], det["dec"])
    links = heliolinc.link(heliolinc.LinkingInput.build(det, trk))
    ids = [int(np.unique(det["objectId"][lk.detections])[0]) for lk in links]
    known = attribution.KnownOrbits.from_fits(ids, [lk.fit for lk in links])
    later_times = synthetic.lsst_cadence(times[-1] + 3.0, 2, rng, night_step=(3, 3))
    later = synthetic.synthetic_detections(orbits, later_times, *FIELD, 6.0, rng,
                                           sigma_arcsec=0.1, n_false_per_visit=200)
    return {"orbits": orbits, "known": known, "later": later, "ids": ids}


def test_predicted_ellipses_are_calibrated(catalogue: dict) -> None:
    known, orbits, later = catalogue["known"], catalogue["orbits"], catalogue["later"]
    t = float(later["mjd"][-1])
    obs = kepler.observer_position(t)[0]
    pred = attribution.predict(known, t, obs)
    k = np.searchsorted(orbits["ssObjectId"], known.ssObjectId)
    eph = synthetic.ephemerides(orbits[k], np.array([t]))
    d = attribution._tangent(eph["ra"][:, 0], eph["dec"][:, 0], pred["ra"], pred["dec"])
    m2 = np.einsum("ni,nij,nj->n", d, np.linalg.inv(pred["cov"]), d)
    # squared Mahalanobis distances of the truth: chi-square with 2 degrees of freedom
    # (median 1.39) if the linearised covariance is right; the ellipses are not empty
    assert 0.5 < np.median(m2) < 4.0
    assert np.mean(m2 < 25.0) >= 0.95
    assert np.all(np.sqrt(np.linalg.eigvalsh(pred["cov"])[:, -1]) > 0.05)


def test_attribution_of_later_detections(catalogue: dict) -> None:
    known, later = catalogue["known"], catalogue["later"]
    assert len(known) >= 30
    ids, dist = attribution.attribute(known, later)
    truth = later["objectId"]
    of_known = np.isin(truth, known.ssObjectId)
    assert of_known.sum() >= 100
    # >= 95% of the later detections of known objects attributed, to the right object
    assert np.mean(ids[of_known] == truth[of_known]) >= 0.95
    assert np.all((ids[of_known] == truth[of_known]) | (ids[of_known] == -1))
    # no static transient attributed, nor an unknown object's detection to a known orbit
    assert np.all(ids[~of_known] == -1)
    assert np.all(dist[ids >= 0] <= 5.0)
    # each orbit takes at most one detection per visit
    for t in np.unique(later["mjd"]):
        got = ids[(later["mjd"] == t) & (ids >= 0)]
        assert len(got) == len(np.unique(got))


def test_static_transient_on_the_track_is_not_attributed(catalogue: dict) -> None:
    """A transient 20 arcsec off an object's predicted position, the object undetected."""
    known = catalogue["known"]
    t = float(catalogue["later"]["mjd"][0])
    pred = attribution.predict(known, t, kepler.observer_position(t)[0])
    small = np.flatnonzero(np.sqrt(np.linalg.eigvalsh(pred["cov"])[:, -1]) < 2.0)[:5]
    assert len(small)
    ra = pred["ra"][small] + 20.0 / 3600.0 / np.cos(np.radians(pred["dec"][small]))
    err = np.full(len(small), 0.1 / 3600.0)
    ids, _ = attribution.attribute_visit(known, t, kepler.observer_position(t)[0], ra,
                                         pred["dec"][small], err, err)
    assert np.all(ids == -1)
    # and at the predicted position it is attributed
    ids, dist = attribution.attribute_visit(known, t, kepler.observer_position(t)[0],
                                            pred["ra"][small], pred["dec"][small], err, err)
    np.testing.assert_array_equal(ids, known.ssObjectId[small])
    np.testing.assert_allclose(dist, 0.0, atol=1e-3)


def test_no_orbits_or_no_detections() -> None:
    empty = attribution.KnownOrbits.from_fits([], [])
    ids, dist = attribution.attribute_visit(empty, 61000.0, np.zeros(3), [1.0], [2.0],
                                            [1e-5], [1e-5])
    assert ids.tolist() == [-1] and np.isnan(dist[0])
    with pytest.raises(ValueError, match="2 ids for 0 fits"):
        attribution.KnownOrbits.from_fits([1, 2], [])
