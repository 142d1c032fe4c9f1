"""Alert packets in Rubin's schema: validation with lsst-alert-packet, a reader that knows
only the Rubin schema file and fastavro, cutouts read by CCDData, the wire format in files
and through a Kafka broker (librdkafka's mock cluster, over TCP on 127.0.0.1), forced
photometry and ``hpcpipe alerts --validate``."""

from __future__ import annotations

import io
import time

import fastavro
import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import CCDData, VarianceUncertainty
from astropy.wcs import WCS
from lsst.alert.packet import Schema, get_schema_path
from test_ap import DEC0, RA0, sources_of_visit

from hpcpipe.ap import DIA_FORCED_SOURCE_DTYPE, Apdb, associate_visit
from hpcpipe.ap.alerts import (
    AlertTransportError,
    cutout_fits,
    cutout_planes,
    frame_alert,
    make_alert,
    produce_alerts,
    read_alerts,
    validate_alert_dir,
    write_alert_packets,
    write_alert_stream,
)
from hpcpipe.ap.apdb import new_rows
from hpcpipe.ap.association import with_forced_stats
from hpcpipe.ap.forced import forced_photometry
from hpcpipe.ap.sdm import alert_schema, available_alert_schemas, parse_version
from hpcpipe.cli import main
from hpcpipe.errors import FileFormatError
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure, GaussianPsf
from hpcpipe.image.calib import PhotoCalib

VERSION = "11.1"
ZERO_POINT = 31.4
NJY_PER_COUNT = PhotoCalib(ZERO_POINT).calibration_mean


def rubin_schema_file(version: str = VERSION) -> str:
    major, minor = parse_version(version)
    return f"{get_schema_path(major, minor)}/lsst.v{major}_{minor}.alert.avsc"


def exposure_with_wcs(shape=(80, 100), xy0=(1000, 2000), sigma=1.5):
    exp = Exposure(Box2I(xy0[0], xy0[1], shape[1], shape[0]), psf=GaussianPsf(sigma),
                   photo_calib=PhotoCalib(ZERO_POINT))
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


def test_the_newest_stable_schema_is_shipped_and_chosen():
    shipped = available_alert_schemas()
    assert VERSION in shipped
    assert alert_schema(VERSION).get_schema_id() == 1101
    with pytest.raises(Exception, match="major version 11"):
        alert_schema("7.0")


def test_cutouts_read_by_ccddata_with_bunit_wcs_and_uncertainty():
    exp = exposure_with_wcs()
    x, y = 1030.0, 2050.0  # parent coordinates
    data = cutout_fits(exp, x, y, 30)
    ccd = CCDData.read(io.BytesIO(data))  # the FITS alone: BUNIT, WCS, UNCERT, MASK
    assert ccd.unit == u.nJy
    assert isinstance(ccd.uncertainty, VarianceUncertainty)
    assert ccd.data.shape == (30, 30)
    assert ccd.data[15, 15] == pytest.approx(exp.image.array[50, 30] * NJY_PER_COUNT, rel=1e-6)
    assert np.allclose(ccd.uncertainty.array, 4.0 * NJY_PER_COUNT**2, rtol=1e-6)
    ra, dec = ccd.wcs.all_pix2world([[15, 15]], 0)[0]
    ra_p, dec_p = exp.wcs.all_pix2world([[x, y]], 0)[0]
    assert (ra, dec) == pytest.approx((ra_p, dec_p), abs=1e-10)
    assert not ccd.mask.any()
    edge = CCDData.read(io.BytesIO(cutout_fits(exp, 1002.0, 2003.0, 30)))
    assert np.isnan(edge.data[:12, :]).all() and np.isnan(edge.data[:, :13]).all()
    assert np.isfinite(edge.data[12:, 13:]).all()
    assert edge.mask[:12].all() and not edge.mask[12:, 13:].any()
    image, variance, bits, header = cutout_planes(cutout_fits(exp, 1002.0, 2003.0, 30))
    assert (bits[:12] == exp.mask.get_plane_bitmask(["NO_DATA"])).all()
    assert header["BUNIT"] == "nJy" and "CTYPE1" in header


def season(tmp_path):
    """An APDB with one object seen on visits 1-3 (200 days apart) and forced photometry of
    it on visits 1 and 2."""
    apdb = Apdb(tmp_path / "apdb.sqlite", bands=("g", "r"), create=True)
    for visit in (1, 2, 3):
        mjd = 60000.0 + 200 * (visit - 1)
        rows = sources_of_visit(visit, [RA0], [DEC0], [100.0 * visit], [5.0], mjd=mjd)
        rows["x"], rows["y"] = 1030.0, 2050.0
        rows["pixelFlags_saturatedCenter"] = visit == 3
        associate_visit(apdb, visit, rows)
        if visit < 3:
            forced = new_rows(DIA_FORCED_SOURCE_DTYPE, 1)
            forced["diaForcedSourceId"] = 10 + visit
            forced["diaObjectId"] = 1  # the first object's id
            forced["ra"], forced["dec"] = RA0, DEC0
            forced["visit"], forced["detector"], forced["band"] = visit, 0, "r"
            forced["midpointMjdTai"] = mjd
            forced["timeProcessedMjdTai"] = mjd + 0.01
            forced["psfFlux"], forced["psfFluxErr"] = 90.0 * visit, 5.0
            forced["scienceFlux"], forced["scienceFluxErr"] = np.nan, np.nan
            every = np.concatenate([apdb.forced_sources_of([1]), forced])
            apdb.store_forced(visit, 0, forced, with_forced_stats(apdb.objects([1]), every))
    return apdb


def test_packets_are_rubin_alerts_read_by_fastavro_alone(tmp_path):
    exp = exposure_with_wcs()
    apdb = season(tmp_path)
    current = apdb.sources_of_visit(3)[0]
    oid = int(current["diaObjectId"])
    alert = make_alert(current, apdb.sources_of([oid]), apdb.objects([oid])[0], exp, exp, exp,
                       forced_history=apdb.forced_sources_of([oid]), schema_version=VERSION)
    assert Schema.from_file(rubin_schema_file()).validate(alert)
    frame = frame_alert(alert, VERSION)
    assert frame[0] == 0 and int.from_bytes(frame[1:5], "big") == 1101
    # a broker: the schema file and fastavro, nothing of hpcpipe
    parsed = fastavro.schema.load_schema(rubin_schema_file())
    got = fastavro.schemaless_reader(io.BytesIO(frame[5:]), parsed)
    assert got["diaSourceId"] == int(current["diaSourceId"])
    source = got["diaSource"]
    assert source["psfFlux"] == 300.0 and source["band"] == "r" and source["detector"] == 0
    assert source["apFlux"] is None  # NaN: null
    assert source["trailFlux"] is None and source["reliability"] is None  # not measured
    assert source["pixelFlags_saturatedCenter"] is True
    assert source["psfNdata"] == 441 and source["bboxSize"] == 9
    # visit 1 is 400 days earlier: outside the year of history
    assert [s["visit"] for s in got["prvDiaSources"]] == [2]
    assert [(f["visit"], f["psfFlux"]) for f in got["prvDiaForcedSources"]] == [(2, 180.0)]
    assert got["prvDiaForcedSources"][0]["timeWithdrawnMjdTai"] is None
    obj = got["diaObject"]
    assert obj["diaObjectId"] == oid and obj["nDiaSources"] == 3
    assert obj["r_psfFluxNdata"] == 3 and obj["u_psfFluxNdata"] == 0
    assert obj["u_psfFluxMean"] is None
    w = np.array([1 / 25.0, 1 / 25.0])
    assert obj["r_fpFluxMean"] == pytest.approx(np.sum(w * [90.0, 180.0]) / w.sum())
    assert obj["r_scienceFluxMean"] == pytest.approx(1200.0)
    assert CCDData.read(io.BytesIO(got["cutoutDifference"])).unit == u.nJy
    apdb.close()


def test_a_required_field_without_value_is_refused(tmp_path):
    apdb = season(tmp_path)
    source = apdb.sources_of_visit(3)[0]
    obj = apdb.objects()[0]
    obj["validityStartMjdTai"] = np.nan
    with pytest.raises(ValueError, match="diaObject.validityStartMjdTai is required"):
        make_alert(source, apdb.sources_of([1]), obj)
    apdb.close()


def packets_of_season(tmp_path):
    apdb = season(tmp_path)
    exp = exposure_with_wcs()
    out = []
    for visit in (1, 2, 3):
        for source in apdb.sources_of_visit(visit):
            oid = int(source["diaObjectId"])
            alert = make_alert(source, apdb.sources_of([oid]), apdb.objects([oid])[0], exp,
                               exp, None, forced_history=apdb.forced_sources_of([oid]))
            out.append((int(source["diaSourceId"]), frame_alert(alert)))
    apdb.close()
    return out


def test_stream_and_packet_files_replay_and_validate(tmp_path, capsys):
    packets = packets_of_season(tmp_path)
    stream = tmp_path / "alerts" / "v0000001" / "alerts_v0000001_c000.alerts"
    assert write_alert_stream(stream, (f for _, f in packets)) == 3
    assert [a["diaSourceId"] for a in read_alerts(stream)] == [i for i, _ in packets]
    directory = tmp_path / "alerts" / "v0000002" / "c000"
    assert write_alert_packets(directory, packets) == 3
    assert sorted(a["diaSourceId"] for a in read_alerts(directory)) == [i for i, _ in packets]
    counts = validate_alert_dir(tmp_path / "alerts")
    assert counts["files"] == 4 and counts["alerts"] == 6 and counts["invalid"] == 0
    # per copy: visit 2 has visit 1 in its history, visit 3 visit 2 (visit 1 is too old)
    assert counts["prvDiaSources"] == 2 * 2 and counts["prvDiaForcedSources"] == 2 * 2
    assert counts["cutouts"] == 6 * 2 and counts["schemaIds"] == {1101: 6}
    assert main(["alerts", "--validate", str(tmp_path / "alerts")]) == 0
    printed = capsys.readouterr().out
    assert "alerts: 6" in printed and "invalid: 0" in printed
    # a broken file: counted, named, and the status says so
    bad = tmp_path / "alerts" / "v0000003" / "alerts_v0000003_c000.alerts"
    bad.parent.mkdir()
    bad.write_bytes(len(packets[0][1]).to_bytes(4, "big") + b"\x01" + packets[0][1][1:])
    with pytest.raises(FileFormatError, match="not a Confluent-framed"):
        read_alerts(bad)
    assert main(["alerts", "--validate", str(tmp_path / "alerts")]) == 1
    assert "INVALID" in capsys.readouterr().out
    assert main(["alerts", "--validate", str(tmp_path / "missing")]) == 2
    assert "--validate" in capsys.readouterr().err


def test_forced_photometry_measures_the_injected_flux():
    exp = exposure_with_wcs(shape=(120, 120), xy0=(0, 0), sigma=1.5)
    exp.image.array[...] = 0.0
    exp.variance.array[...] = 1.0
    flux = 5000.0  # counts
    psf, (px, py) = exp.psf.compute_image(60.0, 55.0)
    k = psf.shape[0]
    exp.image.array[py:py + k, px:px + k] += flux * psf / psf.sum()
    ra, dec = exp.wcs.all_pix2world([60.0, 10.0, 500.0], [55.0, 100.0, 500.0], 0)
    objects = np.zeros(3, [("diaObjectId", np.int64), ("ra", float), ("dec", float)])
    objects["diaObjectId"], objects["ra"], objects["dec"] = [7, 8, 9], ra, dec
    rows = forced_photometry(objects, exp, exp, visit=5, detector=1, band="r",
                             midpoint_mjd_tai=60100.0, time_processed=60100.1)
    assert rows["diaObjectId"].tolist() == [7, 8]  # the third is off the image
    assert rows["psfFlux"][0] == pytest.approx(flux * NJY_PER_COUNT, rel=1e-3)
    assert abs(rows["psfFlux"][1]) < 1e-3 * flux * NJY_PER_COUNT
    assert np.all(rows["psfFluxErr"] > 0)
    assert rows["visit"].tolist() == [5, 5] and rows["band"].tolist() == ["r", "r"]
    assert len(set(rows["diaForcedSourceId"].tolist())) == 2
    assert np.isnan(rows["timeWithdrawnMjdTai"]).all()  # not withdrawn: NULL


def test_kafka_round_trip_through_a_mock_broker(tmp_path):
    """librdkafka's mock cluster (``test.mock.num.brokers``) listens on 127.0.0.1: the
    producer and the consumer below are separate clients talking the Kafka protocol to it."""
    kafka = pytest.importorskip("confluent_kafka")
    holder = kafka.Producer({"test.mock.num.brokers": 1})  # owns the mock cluster
    broker = next(iter(holder.list_topics(timeout=10).brokers.values()))
    bootstrap = f"{broker.host}:{broker.port}"
    assert broker.host == "127.0.0.1"
    packets = packets_of_season(tmp_path)
    assert produce_alerts(packets, bootstrap, "alerts-test") == len(packets)
    consumer = kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "broker",
                               "auto.offset.reset": "earliest"})
    consumer.subscribe(["alerts-test"])
    parsed = fastavro.schema.load_schema(rubin_schema_file())
    received = {}
    deadline = time.monotonic() + 60
    while len(received) < len(packets) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        value = message.value()
        assert value[0] == 0 and int.from_bytes(value[1:5], "big") == 1101
        alert = fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed)
        assert int(message.key()) == alert["diaSourceId"]
        received[alert["diaSourceId"]] = alert
    consumer.close()
    assert sorted(received) == sorted(i for i, _ in packets)
    last = received[max(received)]
    assert [s["visit"] for s in last["prvDiaSources"]] == [2]
    assert CCDData.read(io.BytesIO(last["cutoutScience"])).unit == u.nJy
    del holder


def test_kafka_failure_names_the_broker():
    pytest.importorskip("confluent_kafka")
    with pytest.raises(AlertTransportError, match="127.0.0.1:9 topic t"):
        produce_alerts([(1, b"\x00\x00\x00\x04\x4d")], "127.0.0.1:9", "t",
                       config={"message.timeout.ms": 1500}, timeout=5)


def test_cutout_wcs_keeps_the_sip_distortion():
    from astropy.wcs import Sip

    exp = exposure_with_wcs()
    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    a[2, 0], b[0, 2], a[1, 1] = 2e-5, -3e-5, 1e-5
    exp.wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    exp.wcs.sip = Sip(a, b, None, None, exp.wcs.wcs.crpix)
    for x, y in ((1030.0, 2050.0), (1090.0, 2010.0)):
        ccd = CCDData.read(io.BytesIO(cutout_fits(exp, x, y, 30)))
        assert ccd.wcs.sip is not None
        ra, dec = ccd.wcs.all_pix2world([[15, 15]], 0)[0]
        ra_p, dec_p = exp.wcs.all_pix2world([[x, y]], 0)[0]
        assert (ra, dec) == pytest.approx((ra_p, dec_p), abs=1e-10)
