"""``hpcpipe alerts``: difference imaging, association and alert files, visit by visit.

A small survey (2 CCDs, 6 r-band visits a day apart, with injected transients and variable
stars) is simulated; the coadd of the first three visits is the template; ``hpcpipe alerts``
then processes the last three visits from their raw files (processCcd runs inside it) and
writes the APDB and the alert stream. The tests read the alerts back and compare them with
the APDB and the simulation's truth.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import fastavro
import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import CCDData
from diffim_truth import injected_on
from lsst.alert.packet import Schema
from mpi_helpers import on_root, shared_dir

from hpcpipe.ap import Apdb
from hpcpipe.ap.alerts import cutout_planes, iter_frames, read_alerts
from hpcpipe.ap.sdm import alert_schema_path
from hpcpipe.butler import Butler
from hpcpipe.cli import main
from hpcpipe.comm.world import World
from hpcpipe.drivers.alerts import alert_path
from hpcpipe.pipe.quality import match_truth

SIM_ARGS = ["--visits", "6", "--ccds", "2", "--filters", "r", "--size", "1024", "--seed", "21",
            "--star-density", "100000", "--transients", "24", "--variables", "10",
            "--cadence", "1"]
SKYMAP = ["-c", "makeSkyMap.patchInnerDimensions=[1200,1200]", "makeSkyMap.patchBorder=50"]
TEMPLATE_VISITS = "1000^1001^1002"
TEMPLATE_VISIT_LIST = [1000, 1001, 1002]
ALERT_VISITS = [1003, 1004, 1005]

pytestmark = pytest.mark.slow


def make_survey(root: Path) -> tuple[Path, Path]:
    repo, out = root / "repo", root / "out"
    assert main(["simulate", str(repo), *SIM_ARGS]) == 0
    assert main(["drp", str(repo), "--output", str(out), "--id", f"visit={TEMPLATE_VISITS}",
                 "--steps", "processCcd,makeSkyMap,makeCoaddTempExp,assembleCoadd",
                 *SKYMAP]) == 0
    return repo, out


def alerts(repo, out, *argv):
    return main(["alerts", str(repo), "--output", str(out), *map(str, argv)])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    repo, out = make_survey(tmp_path_factory.mktemp("alerts"))
    status = alerts(repo, out, "--visit", *ALERT_VISITS)
    return repo, out, status


def check_alerts_match_the_apdb(out: Path) -> None:
    """Every packet validates against Rubin's schema (lsst-alert-packet), and a reader that
    knows only the schema file and fastavro finds the light curves and the cutouts."""
    apdb = Apdb(out / "apdb.sqlite")
    assert apdb.ccd_visits() == [(v, c) for v in ALERT_VISITS for c in (0, 1)]
    assert apdb.forced_ccd_visits() == apdb.ccd_visits()
    rubin = Schema.from_file(str(alert_schema_path("11.1")))
    parsed = fastavro.schema.load_schema(str(alert_schema_path("11.1")))
    total = forced_history = 0
    for visit in ALERT_VISITS:
        for ccd in (0, 1):
            path = alert_path(out / "alerts", visit, ccd)
            packets = read_alerts(path)
            stored = apdb.sources_of_visit(visit, ccd)
            assert sorted(a["diaSourceId"] for a in packets) == stored["diaSourceId"].tolist()
            assert all(rubin.validate(a) for a in packets)
            total += len(packets)
            # the broker's view: Confluent frames, the schema file, fastavro
            for frame in iter_frames(path):
                assert frame[0] == 0 and int.from_bytes(frame[1:5], "big") == 1101
                packet = fastavro.schemaless_reader(io.BytesIO(frame[5:]), parsed)
                forced_history += len(packet["prvDiaForcedSources"] or [])
                assert all(f["timeWithdrawnMjdTai"] is None
                           for f in packet["prvDiaForcedSources"] or [])
                assert CCDData.read(io.BytesIO(packet["cutoutDifference"])).unit == u.nJy
            for packet in packets[:5]:
                source = packet["diaSource"]
                assert (source["visit"], source["detector"]) == (visit, ccd)
                assert source["psfNdata"] > 0 and source["bboxSize"] >= 3
                obj = packet["diaObject"]
                assert obj["diaObjectId"] == source["diaObjectId"]
                assert obj["nDiaSources"] >= 1 + len(packet["prvDiaSources"] or [])
                for name in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
                    ccd_data = CCDData.read(io.BytesIO(packet[name]))
                    assert ccd_data.unit == u.nJy and ccd_data.wcs is not None
                    image, variance, mask, header = cutout_planes(packet[name])
                    assert image.shape == (30, 30) and variance.shape == (30, 30)
                    assert "CTYPE1" in header
    assert total > 20
    assert forced_history > 0
    apdb.close()


def check_forced_photometry(repo: Path, out: Path) -> None:
    """Every diaObject whose position falls on a CCD has its forced photometry there (the
    last visit's, after which no object moved), and where the object was also detected the
    forced difference flux agrees with the detection's."""
    butler = Butler(repo, outputs=out)
    apdb = Apdb(out / "apdb.sqlite")
    objects = apdb.objects()
    visit = ALERT_VISITS[-1]
    for ccd in (0, 1):
        calexp = butler.get("calexp", visit=visit, ccd=ccd)
        x, y = calexp.wcs.all_world2pix(objects["ra"], objects["dec"], 0)
        x0, y0 = calexp.xy0
        on = ((x >= x0 - 0.5) & (x < x0 + calexp.width - 0.5)
              & (y >= y0 - 0.5) & (y < y0 + calexp.height - 0.5))
        forced = apdb.forced_sources_of_visit(visit, ccd)
        assert sorted(forced["diaObjectId"].tolist()) == sorted(
            objects["diaObjectId"][on].tolist())
        detected = apdb.sources_of_visit(visit, ccd)
        detected = detected[~detected["isDipole"]]
        by_object = {int(f["diaObjectId"]): f for f in forced}
        pulls = np.array([abs(by_object[int(d["diaObjectId"])]["psfFlux"] - d["psfFlux"])
                          / d["psfFluxErr"] for d in detected])
        assert len(pulls) > 5 and np.isfinite(pulls).mean() >= 0.9
        assert np.nanmedian(pulls) < 1.0
    apdb.close()


def check_transients_have_histories(repo: Path, out: Path) -> None:
    """A transient seen on the last two visits is one diaObject; its last alert carries the
    earlier diaSource in its history."""
    butler = Butler(repo, outputs=out)
    lc = butler.get("transient_lightcurves")
    kinds = butler.get("transient_truth")
    transients = kinds.where(kinds["kind"] == 0)
    last = read_alerts(alert_path(out / "alerts", ALERT_VISITS[-1], 0)) + read_alerts(
        alert_path(out / "alerts", ALERT_VISITS[-1], 1))
    ra = np.array([a["diaSource"]["ra"] for a in last])
    dec = np.array([a["diaSource"]["dec"] for a in last])
    m = match_truth(ra, dec, transients, 1.0, np.arange(len(transients)))
    assert len(m.source_index) >= 5
    with_history = 0
    for i in m.source_index:
        packet = last[int(i)]
        earlier = [s["visit"] for s in packet["prvDiaSources"] or []]
        with_history += ALERT_VISITS[-2] in earlier
        assert packet["diaObject"]["nDiaSources"] == 1 + len(earlier)
        # the forced light curve: the object on the visits before this one, detected or not
        forced = [f["visit"] for f in packet["prvDiaForcedSources"] or []]
        assert set(earlier) <= set(forced) and ALERT_VISITS[-1] not in forced
    assert with_history >= 0.8 * len(m.source_index)
    assert len(lc) > 0


def check_transients_above_5_sigma_give_alerts(repo: Path, out: Path) -> None:
    """At least 90% of the injected transients above 5 sigma on a difference image have an
    alert within 1 arcsec."""
    butler = Butler(repo, outputs=out)
    bright = found = 0
    for visit in ALERT_VISITS:
        for ccd in (0, 1):
            rows, _expected, _template, snr, _diff = injected_on(butler, visit, ccd,
                                                                 TEMPLATE_VISIT_LIST)
            packets = read_alerts(alert_path(out / "alerts", visit, ccd))
            ra = np.array([a["diaSource"]["ra"] for a in packets])
            dec = np.array([a["diaSource"]["dec"] for a in packets])
            sel = np.nonzero((rows["kind"] == 0) & (snr > 5))[0]
            m = match_truth(ra, dec, rows, 1.0, sel)
            bright += len(sel)
            found += len(np.unique(m.truth_index))
    assert bright >= 15
    assert found / bright >= 0.9


def test_alerts_serial(run):
    repo, out, status = run
    assert status == 0
    journal = (out / "report-alerts" / "journal.jsonl").read_text().splitlines()
    assert sum('"event": "unit"' in line for line in journal) >= 2 * len(ALERT_VISITS)
    # the report is the journal's: every unit it holds, once, in strict JSON
    keys = {json.loads(line)["key"] for line in journal if '"event": "unit"' in line}
    report = json.loads((out / "report-alerts" / "report.json").read_text(),
                        parse_constant=lambda name: pytest.fail(f"{name} in report.json"))
    assert {u["key"] for u in report["units"]} == keys
    check_alerts_match_the_apdb(out)
    check_transients_have_histories(repo, out)
    check_transients_above_5_sigma_give_alerts(repo, out)
    check_forced_photometry(repo, out)


def test_validate_reads_the_stream_as_a_broker(run, capsys):
    _repo, out, _ = run
    capsys.readouterr()
    assert main(["alerts", "--validate", str(out / "alerts")]) == 0
    printed = capsys.readouterr().out
    n = sum(len(Apdb(out / "apdb.sqlite").sources_of_visit(v)) for v in ALERT_VISITS)
    assert f"alerts: {n}\n" in printed and "invalid: 0" in printed and "files: 6" in printed


def test_rerun_does_nothing_again(run, capsys):
    repo, out, _ = run
    files = sorted((out / "alerts").rglob("*.alerts"))
    stamps = [f.stat().st_mtime_ns for f in files]
    before = Apdb(out / "apdb.sqlite").objects()
    assert alerts(repo, out, "--visit", *ALERT_VISITS) == 0
    assert [f.stat().st_mtime_ns for f in sorted((out / "alerts").rglob("*.alerts"))] == stamps
    after = Apdb(out / "apdb.sqlite").objects()
    assert before.tobytes() == after.tobytes()


def test_calexp_without_its_metadata_is_processed_again(run, tmp_path):
    """A processCcd killed after its calexp was written (no src, no processCcd_metadata):
    the calexp alone does not count as processed; alerts run processCcd again (into a new
    APDB, where the CCD is not associated yet)."""
    repo, out, _ = run
    butler = Butler(repo, outputs=out)
    for dataset in ("processCcd_metadata", "src"):
        Path(butler.getUri(dataset, visit=1003, ccd=0).removeprefix("file://")).unlink()
    assert butler.datasetExists("calexp", visit=1003, ccd=0)
    assert alerts(repo, out, "--visit", 1003, "--apdb", tmp_path / "a.sqlite",
                  "--alert-dir", tmp_path / "alerts") == 0
    butler = Butler(repo, outputs=out)
    assert butler.datasetExists("processCcd_metadata", visit=1003, ccd=0)
    assert len(butler.get("src", visit=1003, ccd=0)) > 0


def test_kafka_bootstrap_sends_a_ccd_again(run, capsys):
    """An alert file removed: the rerun writes it again and, with --kafka-bootstrap, produces
    the same messages to the broker (librdkafka's mock cluster, on 127.0.0.1)."""
    kafka = pytest.importorskip("confluent_kafka")
    repo, out, _ = run
    path = alert_path(out / "alerts", ALERT_VISITS[-1], 1)
    frames = list(iter_frames(path))
    path.unlink()
    holder = kafka.Producer({"test.mock.num.brokers": 1})  # owns the mock cluster
    broker = next(iter(holder.list_topics(timeout=10).brokers.values()))
    bootstrap = f"{broker.host}:{broker.port}"
    assert alerts(repo, out, "--visit", ALERT_VISITS[-1], "--kafka-bootstrap", bootstrap,
                  "-c", "kafkaTopic=lsst-alerts-test") == 0
    again = list(iter_frames(path))
    assert len(again) == len(frames) > 0
    consumer = kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "broker",
                               "auto.offset.reset": "earliest"})
    consumer.subscribe(["lsst-alerts-test"])
    received = []
    deadline = time.monotonic() + 60
    while len(received) < len(again) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            received.append(message.value())
    consumer.close()
    assert sorted(received) == sorted(again)
    parsed = fastavro.schema.load_schema(str(alert_schema_path("11.1")))
    ids = sorted(fastavro.schemaless_reader(io.BytesIO(m[5:]), parsed)["diaSourceId"]
                 for m in received)
    stored = Apdb(out / "apdb.sqlite").sources_of_visit(ALERT_VISITS[-1], 1)
    assert ids == stored["diaSourceId"].tolist()
    assert main(["alerts", str(repo), "--output", str(out), "--visit", "1005",
                 "--kafka-bootstrap", "nohost"]) == 2
    assert "--kafka-bootstrap" in capsys.readouterr().err
    del holder


def test_usage_errors_exit_2(run, capsys):
    repo, out, _ = run
    assert alerts(repo, out) == 2
    assert "--visit" in capsys.readouterr().err
    assert alerts(repo, out, "--visit", 9999) == 2
    assert "no raw data" in capsys.readouterr().err
    assert alerts(repo, out, "--night", "yesterday") == 2
    assert "--night" in capsys.readouterr().err
    assert main(["alerts", str(repo), "--visit", "1003"]) == 2
    assert "--output" in capsys.readouterr().err


def test_a_ccd_without_template_fails_alone(run, tmp_path, capsys):
    """A visit processed into a new output without its coadd: every CCD fails, with the
    reason, and the command reports them."""
    repo, _out, _ = run
    out = tmp_path / "no-template"
    status = alerts(repo, out, "--visit", ALERT_VISITS[0], "--apdb", tmp_path / "a.sqlite")
    assert status == 2  # the number of failed units: both CCDs
    printed = capsys.readouterr().out
    for ccd in (0, 1):
        line = next(x for x in printed.splitlines()
                    if x.startswith(f"FAILED imageDifference visit=1003 ccd={ccd}: "))
        assert "visit=1003" in line and "coadd" in line.lower()
    # processCcd ran inside (raw to calexp) before the template was found missing
    assert Butler(repo, outputs=out).datasetExists("calexp", visit=1003, ccd=0)


@pytest.mark.mpi(min_size=2)
def test_alerts_under_mpi(tmp_path_factory):
    world = World()
    root = Path(shared_dir(world, tmp_path_factory, "alerts-mpi"))
    repo, out = root / "repo", root / "out"
    simulated = main(["simulate", str(repo), *SIM_ARGS])
    made = main(["drp", str(repo), "--output", str(out), "--id", f"visit={TEMPLATE_VISITS}",
                 "--steps", "processCcd,makeSkyMap,makeCoaddTempExp,assembleCoadd", *SKYMAP])
    status = alerts(repo, out, "--visit", *ALERT_VISITS)
    world.barrier()

    def check() -> None:
        assert (simulated, made, status) == (0, 0, 0)
        check_alerts_match_the_apdb(out)
        check_transients_have_histories(repo, out)
        check_transients_above_5_sigma_give_alerts(repo, out)
        check_forced_photometry(repo, out)

    on_root(world, check)
