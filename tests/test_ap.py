"""Alert production: the APDB, association of diaSources into diaObjects, alert packets."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from astropy.wcs import WCS

from hpcpipe.ap import DIA_SOURCE_DTYPE, Apdb, ApdbError, associate, associate_visit
from hpcpipe.ap.alerts import (
    ALERT_BANDS,
    SCHEMA_FILE,
    alert_schema,
    cutout_fits,
    cutout_planes,
    make_alert,
    read_alerts,
    write_alerts,
)
from hpcpipe.ap.association import light_curve_stats
from hpcpipe.errors import FileFormatError
from hpcpipe.image import Exposure

RA0, DEC0 = 150.0, 2.0


def sources_of_visit(visit, ra, dec, flux, err, band="r", mjd=None, ccd=0, first_id=None):
    n = len(ra)
    rows = np.zeros(n, DIA_SOURCE_DTYPE)
    rows["diaSourceId"] = (first_id if first_id is not None else visit * 1000) + np.arange(n)
    rows["visit"], rows["ccd"], rows["band"] = visit, ccd, band
    rows["midpointMjdTai"] = mjd if mjd is not None else 60000.0 + visit
    rows["ra"], rows["dec"] = ra, dec
    rows["x"], rows["y"] = 100.0 + np.arange(n), 200.0
    rows["psfFlux"], rows["psfFluxErr"] = flux, err
    rows["scienceFlux"], rows["scienceFluxErr"] = np.asarray(flux) + 1000.0, err
    rows["snr"] = np.asarray(flux) / np.asarray(err)
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
    stats = light_curve_stats(np.append(flux, np.nan), np.append(err, 5.0))
    w = 1 / err**2
    mean = np.sum(w * flux) / np.sum(w)
    assert stats["psfFluxNdata"] == 12
    assert stats["psfFluxMean"] == pytest.approx(mean)
    assert stats["psfFluxMeanErr"] == pytest.approx(1 / np.sqrt(w.sum()))
    assert stats["psfFluxSigma"] == pytest.approx(np.std(flux, ddof=1))
    assert stats["psfFluxChi2"] == pytest.approx(np.sum(w * (flux - mean) ** 2))
    assert (stats["psfFluxMin"], stats["psfFluxMax"]) == (flux.min(), flux.max())
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
            expected = light_curve_stats(truth[k, visits], np.full(3, 10.0))
            for name, value in expected.items():
                assert objects[f"{band}_{name}"][k] == pytest.approx(value, nan_ok=True)
    # the constant star's chi-square is 0; the variable's is large
    assert objects["r_psfFluxChi2"][1] == pytest.approx(0.0)
    assert objects["r_psfFluxChi2"][0] > 100
    assert abs(objects["ra"][0] - RA0) < 0.2 * arcsec
    assert apdb.visits() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ApdbError, match=r"visit 6 CCD\(s\) \[0\] were already stored"):
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
    with pytest.raises(ApdbError, match="sources of visit 1 CCD 0 given"):
        apdb.store(1, [3], np.zeros(0, apdb.object_dtype), rows)
    # a CCD without diaSources is stored too, and a later CCD of the same visit may follow
    associate_visit(apdb, 1, rows[:0], ccds=[2])
    rows["diaObjectId"] = 0
    associate_visit(apdb, 1, rows)
    assert apdb.ccd_visits() == [(1, 0), (1, 2)]
    apdb.close()


def exposure_with_wcs(shape=(80, 100), xy0=(1000, 2000)):
    from hpcpipe.geom import Box2I

    exp = Exposure(Box2I(xy0[0], xy0[1], shape[1], shape[0]))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [RA0, DEC0]
    wcs.wcs.crpix = [1050.0, 2040.0]
    wcs.wcs.cd = np.array([[-0.2, 0.0], [0.0, 0.2]]) / 3600
    exp.wcs = wcs
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    exp.image.array[...] = xx + 1000 * yy
    exp.variance.array[...] = 4.0
    return exp


def test_cutouts_are_on_the_sky_and_padded_at_edges():
    exp = exposure_with_wcs()
    x, y = 1030.0, 2050.0  # parent coordinates
    image, variance, mask, header = cutout_planes(cutout_fits(exp, x, y, 30))
    assert image.shape == (30, 30)
    # the cutout's centre pixel is the parent pixel (x, y), with its sky position
    assert image[15, 15] == exp.image.array[50, 30]
    stamp = WCS(header)
    ra, dec = stamp.all_pix2world([[15, 15]], 0)[0]
    ra_p, dec_p = exp.wcs.all_pix2world([[x, y]], 0)[0]
    assert (ra, dec) == pytest.approx((ra_p, dec_p), abs=1e-10)
    assert (variance == 4.0).all() and (mask == 0).all()
    edge, _, edge_mask, _ = cutout_planes(cutout_fits(exp, 1002.0, 2003.0, 30))
    assert np.isnan(edge[:12, :]).all() and np.isnan(edge[:, :13]).all()
    assert np.isfinite(edge[12:, 13:]).all()
    assert (edge_mask[:12] == exp.mask.get_plane_bitmask(["NO_DATA"])).all()


def test_alert_file_round_trip(tmp_path):
    exp = exposure_with_wcs()
    apdb = Apdb(tmp_path / "apdb.sqlite", bands=("g", "r"), create=True)
    for visit in (1, 2, 3):
        rows = sources_of_visit(visit, [RA0], [DEC0], [100.0 * visit], [5.0],
                                mjd=60000.0 + 200 * (visit - 1))
        rows["x"], rows["y"] = 1030.0, 2050.0
        associate_visit(apdb, visit, rows)
    current = apdb.sources_of_visit(3)[0]
    history = apdb.sources_of([current["diaObjectId"]])
    obj = apdb.objects([current["diaObjectId"]])[0]
    alert = make_alert(current, history, obj, difference=exp, science=exp, template=None)
    # visit 1 is 400 days earlier: outside the year of history
    assert [s["visit"] for s in alert["prvDiaSources"]] == [2]
    path = tmp_path / "alerts" / "visit3-ccd0.avro"
    assert write_alerts(path, [alert]) == 1
    back = read_alerts(path)
    assert len(back) == 1
    got = back[0]
    assert got["alertId"] == int(current["diaSourceId"])
    assert got["diaSource"]["psfFlux"] == 300.0 and got["diaSource"]["band"] == "r"
    assert got["diaObject"]["r_psfFluxNdata"] == 3 and got["diaObject"]["u_psfFluxMean"] is None
    assert got["cutoutTemplate"] is None
    image, *_ = cutout_planes(got["cutoutDifference"])
    assert image.shape == (30, 30)
    assert write_alerts(tmp_path / "empty.avro", []) == 0
    assert read_alerts(tmp_path / "empty.avro") == []


def test_alert_files_refused_when_not_alerts(tmp_path):
    bad = tmp_path / "bad.avro"
    bad.write_bytes(b"not avro at all")
    with pytest.raises(FileFormatError, match="not an Avro alert file"):
        read_alerts(bad)
    import fastavro

    other = tmp_path / "other.avro"
    with open(other, "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(
            {"type": "record", "name": "x", "fields": [{"name": "a", "type": "int"}]}),
            [{"a": 1}])
    with pytest.raises(FileFormatError, match="schema version None is unknown"):
        read_alerts(other)


def test_shipped_schema_file_is_the_schema():
    assert json.loads(SCHEMA_FILE.read_text()) == alert_schema()
    names = [f["name"] for f in alert_schema()["fields"][3]["type"][1]["fields"]]
    assert all(f"{b}_psfFluxMean" in names for b in ALERT_BANDS)
