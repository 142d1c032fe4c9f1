"""Alert production: the APDB, association of diaSources into diaObjects, alert packets."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hpcpipe.ap import DIA_SOURCE_DTYPE, Apdb, ApdbError, associate, associate_visit
from hpcpipe.ap.association import light_curve_stats

RA0, DEC0 = 150.0, 2.0


def sources_of_visit(visit, ra, dec, flux, err, band="r", mjd=None, ccd=0, first_id=None):
    n = len(ra)
    rows = np.zeros(n, DIA_SOURCE_DTYPE)
    rows["diaSourceId"] = (first_id if first_id is not None else visit * 1000) + np.arange(n)
    rows["visit"], rows["detector"], rows["band"] = visit, ccd, band
    rows["midpointMjdTai"] = mjd if mjd is not None else 60000.0 + visit
    rows["timeProcessedMjdTai"] = rows["midpointMjdTai"] + 0.01
    rows["ra"], rows["dec"] = ra, dec
    rows["raErr"], rows["decErr"], rows["ra_dec_Cov"] = 1e-5, 1e-5, 0.0
    rows["x"], rows["y"] = 100.0 + np.arange(n), 200.0
    rows["psfFlux"], rows["psfFluxErr"] = flux, err
    rows["scienceFlux"], rows["scienceFluxErr"] = np.asarray(flux) + 1000.0, err
    rows["snr"] = np.asarray(flux) / np.asarray(err)
    rows["psfNdata"], rows["bboxSize"] = 441, 9
    rows["apFlux"] = np.nan  # not measured: null in the packets
    return rows


def test_associate_pairs_nearest_first_one_to_one():
    arcsec = 1 / 3600
    obj_ra, obj_dec = np.array([RA0, RA0 + 10 * arcsec]), np.array([DEC0, DEC0])
    # two sources near object 0 (the nearer wins), one near object 1, one far away
    src_ra = np.array([RA0 + 0.5 * arcsec, RA0 + 0.2 * arcsec, RA0 + 10.3 * arcsec, RA0 + 1.0])
    src_dec = np.full(4, DEC0)
    match = associate(src_ra, src_dec, obj_ra, obj_dec, radius_arcsec=1.0)
    assert match.tolist() == [-1, 0, 1, -1]
    assert associate(src_ra, src_dec, obj_ra[:0], obj_dec[:0], 1.0).tolist() == [-1] * 4
    with pytest.raises(ValueError, match="radius"):
        associate(src_ra, src_dec, obj_ra, obj_dec, 0.0)


def test_associate_at_ra_wrap_and_pole():
    match = associate(np.array([359.99999, 0.3]), np.array([0.0, 89.99995]),
                      np.array([0.000005, 180.0]), np.array([0.0, 89.99995]), 1.0)
    assert match.tolist() == [0, 1]


def test_light_curve_stats_against_numpy():
    rng = np.random.default_rng(3)
    flux, err = rng.normal(500, 30, 12), rng.uniform(10, 40, 12)
    mjd = np.arange(12.0)
    stats = light_curve_stats(np.append(flux, np.nan), np.append(err, 5.0),
                              np.append(mjd, 12.0))
    w = 1 / err**2
    mean = np.sum(w * flux) / np.sum(w)
    assert stats["psfFluxNdata"] == 12
    assert stats["psfFluxMean"] == pytest.approx(mean)
    assert stats["psfFluxMeanErr"] == pytest.approx(1 / np.sqrt(w.sum()))
    assert stats["psfFluxSigma"] == pytest.approx(np.std(flux, ddof=1))
    assert stats["psfFluxChi2"] == pytest.approx(np.sum(w * (flux - mean) ** 2))
    assert (stats["psfFluxMin"], stats["psfFluxMax"]) == (flux.min(), flux.max())
    assert stats["psfFluxMaxSlope"] == pytest.approx(np.max(np.diff(flux)))
    assert stats["psfFluxErrMean"] == pytest.approx(err.mean())
    fp = light_curve_stats(flux, err, prefix="fpFlux")
    assert fp == {"fpFluxMean": pytest.approx(mean),
                  "fpFluxMeanErr": pytest.approx(1 / np.sqrt(w.sum()))}
    empty = light_curve_stats([], [])
    assert empty["psfFluxNdata"] == 0 and np.isnan(empty["psfFluxMean"])
    assert np.isnan(light_curve_stats([1.0], [1.0])["psfFluxSigma"])


def test_a_season_of_visits_builds_light_curves(tmp_path):
    """Three variables and a one-off transient over 6 visits, with position noise."""
    rng = np.random.default_rng(7)
    arcsec = 1 / 3600
    ra = RA0 + np.array([0, 20, 40]) * arcsec
    dec = np.full(3, DEC0)
    truth = np.array([[100, 300, 500, 300, 100, 300], [1000] * 6, [50, 60, 70, 80, 90, 100]],
                     float)
    apdb = Apdb(tmp_path / "apdb.sqlite", bands=("g", "r"), create=True)
    for k, visit in enumerate(range(1, 7)):
        band = "r" if visit % 2 else "g"
        r = ra + rng.normal(0, 0.1 * arcsec, 3)
        d = dec + rng.normal(0, 0.1 * arcsec, 3)
        flux = truth[:, k]
        if visit == 4:  # a transient, seen once
            r, d, flux = np.append(r, RA0 + 0.5), np.append(d, DEC0), np.append(flux, 2e4)
        rows = sources_of_visit(visit, r, d, flux, np.full(len(r), 10.0), band=band)
        result = associate_visit(apdb, visit, rows, radius_arcsec=1.0)
        assert result.n_matched == (0 if visit == 1 else 3)
        assert result.n_new == (3 if visit == 1 else 0) + (visit == 4)
    objects = apdb.objects()
    assert len(objects) == 4
    assert objects["nDiaSources"].tolist() == [6, 6, 6, 1]
    for k in range(3):
        history = apdb.sources_of([objects["diaObjectId"][k]])
        assert history["visit"].tolist() == [1, 2, 3, 4, 5, 6]
        assert np.allclose(history["psfFlux"], truth[k])
        for band, visits in (("r", [0, 2, 4]), ("g", [1, 3, 5])):
            expected = light_curve_stats(truth[k, visits], np.full(3, 10.0),
                                         60001.0 + np.array(visits))
            expected.pop("psfFluxChi2")  # not one of Rubin's DiaObject columns
            for name, value in expected.items():
                assert objects[f"{band}_{name}"][k] == pytest.approx(value, rel=1e-6,
                                                                     nan_ok=True)
        assert objects["u_psfFluxNdata"][k] == 0 and np.isnan(objects["u_psfFluxMean"][k])
    # the constant star's spread is 0; the variable's is large
    assert objects["r_psfFluxSigma"][1] == pytest.approx(0.0)
    assert objects["r_psfFluxSigma"][0] > 100
    assert objects["raErr"][0] == pytest.approx(1e-5 / np.sqrt(6), rel=1e-5)
    assert abs(objects["ra"][0] - RA0) < 0.2 * arcsec
    assert apdb.visits() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ApdbError, match=r"visit 6 detector\(s\) \[0\] were already stored"):
        associate_visit(apdb, 6, sources_of_visit(6, ra, dec, truth[:, 0], np.full(3, 1.0),
                                                  first_id=99000))
    assert len(apdb.sources_of_visit(6)) == 3  # the refused visit changed nothing
    apdb.close()


def test_apdb_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(ApdbError, match="no APDB here"):
        Apdb(tmp_path / "missing.sqlite")
    with pytest.raises(ApdbError, match="needs its bands"):
        Apdb(tmp_path / "new.sqlite", create=True)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (a INTEGER)").connection.commit()
    with pytest.raises(ApdbError, match="not an APDB"):
        Apdb(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(ApdbError, match="not an APDB"):
        Apdb(junk)
    path = tmp_path / "apdb.sqlite"
    with pytest.raises(ApdbError, match="no columns in Rubin's DiaObject"):
        Apdb(tmp_path / "bad-band.sqlite", bands=("N921",), create=True)
    Apdb(path, bands=("g",), create=True).close()
    with pytest.raises(ApdbError, match="records bands"):
        Apdb(path, bands=("r",))
    db = sqlite3.connect(path)
    db.execute("UPDATE ApdbInfo SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(ApdbError, match="version 99 is unknown"):
        Apdb(path)


def test_store_is_atomic(tmp_path):
    apdb = Apdb(tmp_path / "apdb.sqlite", bands=("r",), create=True)
    rows = sources_of_visit(1, [RA0], [DEC0], [10.0], [1.0])
    rows["diaObjectId"] = 42  # an object that exists nowhere
    with pytest.raises(ApdbError, match="unknown diaObjects"):
        apdb.store(1, [0], np.zeros(0, apdb.object_dtype), rows)
    assert apdb.visits() == [] and len(apdb.sources_of_visit(1)) == 0
    with pytest.raises(ApdbError, match="sources of visit 1 detector 0 given"):
        apdb.store(1, [3], np.zeros(0, apdb.object_dtype), rows)
    # a CCD without diaSources is stored too, and a later CCD of the same visit may follow
    associate_visit(apdb, 1, rows[:0], ccds=[2])
    rows["diaObjectId"] = 0
    associate_visit(apdb, 1, rows)
    assert apdb.ccd_visits() == [(1, 0), (1, 2)]
    apdb.close()


