"""Fault injection on real `mpirun -n 3` jobs: the master never waits forever for a worker.

Each fault used to hang the job until it was killed from outside: a worker stopped by
SIGSTOP (``--timeout`` is an alarm inside the worker: a stopped process never sees it), a
unit blocked in an MPI receive (the alarm's handler never runs), a unit calling
``sys.exit(0)`` (its worker ended cleanly, and MPI saw nothing wrong). Now the job ends with
the unit failed, the report and the journal written; a worker that cannot be reclaimed ends
the job through MPI_Abort. Every run is bounded by ``timeout`` so that a regression fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mpi_helpers import require_mpirun, subprocess_env

from hpcpipe.butler import Butler
from hpcpipe.cli import main
from hpcpipe.comm.pool import LOST_WORKER_EXIT, grace_seconds

TESTS = Path(__file__).resolve().parent
PRODUCTION = "production_tasks:TOY"
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "repo"
    assert main(["simulate", str(path), "--visits", "2", "--ccds", "2", "--filters", "g",
                 "--size", "64", "--seed", "3"]) == 0
    return path


def run_with_fault(repo: Path, tmp_path: Path, mode: str, *extra: str
                   ) -> tuple[subprocess.CompletedProcess, float]:
    marker = tmp_path / "crash-now"
    marker.touch()
    command = [*require_mpirun(3), sys.executable, "-m", "hpcpipe", "drp", str(repo), "--output",
               str(tmp_path / "out"), "--id", "--production", PRODUCTION, "--report",
               str(tmp_path / "report"), "--timeout", str(TIMEOUT), *extra,
               "-c", f"toyIsr.crash_file={marker}", "toyIsr.crash_visit=1001",
               "toyIsr.crash_ccd=1", f"toyIsr.crash_mode={mode}"]
    start = time.monotonic()
    result = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True,
                            timeout=180)
    return result, time.monotonic() - start


def report_units(tmp_path: Path) -> dict[str, dict]:
    text = (tmp_path / "report" / "report.json").read_text()
    return {u["key"]: u for u in json.loads(text)["units"]}  # strict JSON: no NaN


KEY = "toyIsr visit=1001 ccd=1"


@pytest.mark.parametrize("mode", ["sigstop", "mpirecv"])
def test_hung_worker_is_given_up_and_the_job_ends(repo, tmp_path, mode):
    """A stopped worker, or one blocked in MPI: the unit fails with rank, host and "no
    answer for N s"; the others are done; the report is written; the job ends (MPI_Abort)
    within the timeout plus the grace (plus start-up)."""
    result, seconds = run_with_fault(repo, tmp_path, mode)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    units = report_units(tmp_path)
    assert units[KEY]["state"] == "failed"
    assert "no answer for" in units[KEY]["error"] and units[KEY]["host"]
    assert units[KEY]["rank"] in (1, 2)
    others = [u for k, u in units.items() if k.startswith("toyIsr") and k != KEY]
    assert all(u["state"] == "done" for u in others), output
    assert "MPI_Abort" in output or result.returncode == LOST_WORKER_EXIT
    # start-up and the other units take a few seconds; the hang costs timeout + grace
    assert seconds < TIMEOUT + grace_seconds(TIMEOUT) + 90
    journal = [json.loads(line) for line in
               (tmp_path / "report" / "journal.jsonl").read_text().splitlines()]
    assert any(e.get("key") == KEY and e.get("state") == "failed" for e in journal)


def test_unit_calling_sys_exit_fails_alone(repo, tmp_path):
    """sys.exit(0) in a unit fails that unit; its worker goes on; the job ends normally."""
    result, _ = run_with_fault(repo, tmp_path, "exit")
    output = result.stdout + result.stderr
    assert result.returncode not in (0, LOST_WORKER_EXIT), output
    units = report_units(tmp_path)
    assert units[KEY]["state"] == "failed" and "SystemExit" in units[KEY]["error"]
    assert sum(u["state"] == "done" for u in units.values()) == len(units) - 1 - sum(
        u["state"] == "blocked" for u in units.values())
    assert Butler(tmp_path / "out").datasetExists("toyIsr_metadata", visit=1001, ccd=0)


def test_worker_leaving_its_loop_says_so(repo, tmp_path):
    """A KeyboardInterrupt escapes the unit and ends the worker's loop: the worker tells the
    master before it goes, the unit fails with the reason at once (no deadline needed), the
    other units are done by the other worker, and the job ends (MPI_Abort)."""
    result, seconds = run_with_fault(repo, tmp_path, "interrupt")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    units = report_units(tmp_path)
    assert units[KEY]["state"] == "failed"
    assert "left the pool: KeyboardInterrupt" in units[KEY]["error"]
    assert "no answer" not in units[KEY]["error"]
    others = [u for k, u in units.items() if k.startswith("toyIsr") and k != KEY]
    assert all(u["state"] == "done" for u in others), output


def drp_serial(repo: Path, tmp_path: Path, *extra: str, timeout: float = 180
               ) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "hpcpipe", "drp", str(repo), "--output",
               str(tmp_path / "out"), "--id", "--production", PRODUCTION, *extra]
    env = {**subprocess_env(), "HPCPIPE_NO_MPI": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def test_killed_master_leaves_a_journal_the_report_is_rebuilt_from(repo, tmp_path):
    """The master killed mid-run (SIGKILL): no report, but `hpcpipe report OUT` rebuilds it
    from the journal, with the units that ended before the kill; strict JSON."""
    marker = tmp_path / "crash-now"
    marker.touch()
    first = drp_serial(repo, tmp_path, "-c", f"toyIsr.crash_file={marker}",
                       "toyIsr.crash_visit=1001", "toyIsr.crash_ccd=1")
    assert first.returncode == -9, first.stderr
    report = tmp_path / "out" / "report"
    assert not (report / "report.json").exists() and (report / "journal.jsonl").exists()
    rebuilt = subprocess.run([sys.executable, "-m", "hpcpipe", "report", str(tmp_path / "out")],
                             env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stderr
    units = {u["key"]: u for u in json.loads((report / "report.json").read_text(),
                                             parse_constant=pytest.fail)["units"]}
    butler = Butler(tmp_path / "out")
    done = {k for k, u in units.items() if u["state"] == "done" and k.startswith("toyIsr")}
    assert done and KEY not in units
    for key in done:
        _, visit, ccd = key.split()
        assert butler.datasetExists("toyIsr_metadata", visit=int(visit[6:]), ccd=int(ccd[4:]))
    assert (report / "report.html").exists() and (report / "timeline.png").exists()


def test_resume_removes_debris_and_verifies_outputs(repo, tmp_path):
    """A killed writer's temporary files are removed by the resumed run; with
    --verify-outputs a done unit whose output is truncated is redone, not skipped."""
    assert drp_serial(repo, tmp_path).returncode == 0
    out = tmp_path / "out"
    postisr = Butler(out).getUri("postISRCCD", visit=1000, ccd=0).removeprefix("file://")
    debris = [Path(postisr).with_name(f".tmp-{Path(postisr).name}.x1y2z3"),
              out / "config" / ".tmp-toyIsr.yaml.a1b2c3"]
    for path in debris:  # what killed writers leave (atomic_path's temporary names)
        path.write_bytes(b"SIMPLE  =  half written")
    with open(postisr, "r+b") as handle:  # a done unit's output, truncated
        handle.truncate(2880)
    second = drp_serial(repo, tmp_path, "--verify-outputs", "--report", str(tmp_path / "r2"))
    assert second.returncode == 0, second.stderr
    assert not [p for p in out.rglob(".tmp-*")]
    units = {u["key"]: u
             for u in json.loads((tmp_path / "r2" / "report.json").read_text())["units"]}
    assert units["toyIsr visit=1000 ccd=0"]["state"] == "done"  # redone
    assert units["toyIsr visit=1000 ccd=1"]["state"] == "skipped"
    assert Butler(out).get("postISRCCD", visit=1000, ccd=0).image.array.size > 0
