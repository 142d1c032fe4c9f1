"""``hpcpipe alerts``: difference imaging, association and alert files, visit by visit.

A small survey (2 CCDs, 6 r-band visits a day apart, with injected transients and variable
stars) is simulated; the coadd of the first three visits is the template; ``hpcpipe alerts``
then processes the last three visits from their raw files (processCcd runs inside it) and
writes the APDB and the alert stream. The tests read the alerts back and compare them with
the APDB and the simulation's truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from diffim_truth import injected_on
from mpi_helpers import on_root, shared_dir

from hpcpipe.ap import Apdb
from hpcpipe.ap.alerts import cutout_planes, read_alerts
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
    apdb = Apdb(out / "apdb.sqlite")
    assert apdb.ccd_visits() == [(v, c) for v in ALERT_VISITS for c in (0, 1)]
    total = 0
    for visit in ALERT_VISITS:
        for ccd in (0, 1):
            packets = read_alerts(alert_path(out / "alerts", visit, ccd))
            stored = apdb.sources_of_visit(visit, ccd)
            assert sorted(a["alertId"] for a in packets) == stored["diaSourceId"].tolist()
            total += len(packets)
            for packet in packets[:5]:
                source = packet["diaSource"]
                assert (source["visit"], source["ccd"]) == (visit, ccd)
                obj = packet["diaObject"]
                assert obj["diaObjectId"] == source["diaObjectId"]
                assert obj["nDiaSources"] >= 1 + len(packet["prvDiaSources"] or [])
                for name in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
                    image, variance, mask, header = cutout_planes(packet[name])
                    assert image.shape == (30, 30) and variance.shape == (30, 30)
                    assert "CTYPE1" in header
    assert total > 20
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
    check_alerts_match_the_apdb(out)
    check_transients_have_histories(repo, out)
    check_transients_above_5_sigma_give_alerts(repo, out)


def test_rerun_does_nothing_again(run, capsys):
    repo, out, _ = run
    files = sorted((out / "alerts").rglob("*.avro"))
    stamps = [f.stat().st_mtime_ns for f in files]
    before = Apdb(out / "apdb.sqlite").objects()
    assert alerts(repo, out, "--visit", *ALERT_VISITS) == 0
    assert [f.stat().st_mtime_ns for f in sorted((out / "alerts").rglob("*.avro"))] == stamps
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

    on_root(world, check)
