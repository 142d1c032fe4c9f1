"""Campaigns: jobs cut by their walltime resume, status lines in a batch log, memory per unit.

The toy production of tests/production_tasks.py on the repository of tests/test_production.py
(8 toyIsr units, a sky map, 4 coadds, 2 merges). A run given too short a ``--walltime-left``
stops handing out units, lets the ones in flight finish, writes the report and the journal and
exits with 75 (more to do); the same command then finishes the production with the outputs of
an uninterrupted run, serially and under ``mpirun -n 3``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mpi_helpers import mpirun_command, subprocess_env
from test_production import (
    ALL_KEYS,
    PRODUCTION,
    assert_same_outputs,
    drp,
    isr_key,
    simulate,
    states,
    units,
)

from hpcpipe.cli import main
from hpcpipe.comm.journal import archive_journal, journal_history, read_events
from hpcpipe.comm.walltime import MORE_TO_DO_EXIT, StepDurations, job_end_time

SLOW = ("-c", "toyIsr.slow_filter=r", "toyIsr.sleep=0.6")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("campaign") / "repo")


@pytest.fixture(scope="module")
def reference(repo, tmp_path_factory):
    """An uninterrupted run's output repository."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert drp(repo, out, "--id") == 0
    return out


def check_cut_then_resumed(report: Path, first: dict, second: dict) -> None:
    """The cut run left units pending and said so in its journal; the rerun did the rest."""
    assert "pending" in states(first).values()
    assert not {"failed", "blocked"} & set(states(first).values())
    ended = [e for e in read_events(report / "journal.1.jsonl") if e["event"] == "end"]
    assert ended and ended[-1]["more_to_do"] and ended[-1]["status"] == MORE_TO_DO_EXIT
    assert set(second) == ALL_KEYS
    assert set(states(second).values()) <= {"done", "skipped"}
    done_first = {k for k, s in states(first).items() if s == "done"}
    assert done_first and {k for k, s in states(second).items() if s == "skipped"} >= done_first


def test_walltime_cut_then_rerun_serial(repo, reference, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report"
    code = drp(repo, out, "--id", "--walltime-left", "1.5", *SLOW, report=report)
    assert code == MORE_TO_DO_EXIT
    first = units(out, report)
    # nothing started after the end (less the reserve); what was in flight finished
    start = next(e for e in read_events(report / "journal.jsonl") if e["event"] == "start")
    assert max(u["start"] for u in first.values() if u["start"] is not None) < start["end_time"]
    assert (report / "report.html").exists()
    assert drp(repo, out, "--id", *SLOW, report=report) == 0
    second = units(out, report)
    check_cut_then_resumed(report, first, second)
    assert_same_outputs(reference, out)


@pytest.mark.slow
def test_walltime_cut_then_rerun_mpi_with_status_lines_and_rank_logs(repo, reference, tmp_path):
    """Under mpirun -n 3: the cut and the resume as serially; the master's status lines are in
    its (non-terminal) log, its records carry rank@host, the workers log to files."""
    mpirun = mpirun_command(3)
    if mpirun is None:
        pytest.skip("no mpirun")
    out, report = tmp_path / "out", tmp_path / "report"
    command = [*mpirun, sys.executable, "-m", "hpcpipe", "drp", str(repo), "--output", str(out),
               "--id", "--production", PRODUCTION, "--report", str(report), *SLOW,
               "--status-interval", "0.3", "--rank-logs", "files"]
    cut = subprocess.run([*command, "--walltime-left", "2"], env=subprocess_env(),
                         capture_output=True, text=True, timeout=300)
    assert cut.returncode == MORE_TO_DO_EXIT, cut.stdout + cut.stderr
    first = units(out, report)
    lines = [line for line in cut.stderr.splitlines() if "hpcpipe.progress" in line]
    assert lines, cut.stderr
    assert all(" 0@" in line and "units/s" in line for line in lines)
    assert any("ETA" in line and "toyIsr" in line for line in lines)
    assert "not started" in cut.stderr  # the master said why it stopped
    for rank in (1, 2):
        assert (report / "logs" / f"rank-{rank:05d}.log").exists()
    again = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    check_cut_then_resumed(report, first, units(out, report))
    assert_same_outputs(reference, out)


def test_sigusr1_stops_the_handing_out(repo, tmp_path):
    """SIGUSR1 (what SLURM sends before the walltime): no unit starts after it, the run ends
    with 75 and its report."""
    out, report = tmp_path / "out", tmp_path / "report"
    command = [sys.executable, "-m", "hpcpipe", "drp", str(repo), "--output", str(out), "--id",
               "--production", PRODUCTION, "--report", str(report), *SLOW]
    env = {**subprocess_env(), "HPCPIPE_NO_MPI": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    journal = report / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # wait for the first toyIsr
        if journal.exists() and '"job": "toyIsr"' in journal.read_text():
            break
        time.sleep(0.05)
    signalled = time.time()
    proc.send_signal(signal.SIGUSR1)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == MORE_TO_DO_EXIT, stdout + stderr
    assert "SIGUSR1" in stderr
    records = units(out, report)
    assert "pending" in states(records).values()
    started = [u["start"] for u in records.values() if u["start"] is not None]
    assert sum(s > signalled for s in started) == 0


def test_memory_limit_fails_the_unit_alone_and_its_retry_gets_more(repo, tmp_path):
    """A unit that allocates past its step's limit fails alone ("exceeded its memory limit of
    0.15 GB"); the others are done; with a retry (twice the limit) it succeeds. Every unit's
    peak memory is in the report."""
    out, report = tmp_path / "out", tmp_path / "report"
    hungry = ("-c", "toyIsr.allocate_mb=250", "toyIsr.allocate_visit=1001")
    code = drp(repo, out, "--id", "--steps", "toyIsr", "--memory-limit", "toyIsr=0.15",
               *hungry, report=report)
    assert code == 2  # visit 1001 on two CCDs
    records = units(out, report)
    failed = {k for k, s in states(records).items() if s == "failed"}
    assert failed == {isr_key(1001, 0), isr_key(1001, 1)}
    assert all("exceeded its memory limit of 0.15 GB" in records[k]["error"] for k in failed)
    assert {s for k, s in states(records).items() if k not in failed} == {"done"}
    assert all(u["peak_rss"] and u["peak_rss"] > 1e6 for u in records.values())
    summary = json.loads((report / "report.json").read_text())["summary"]
    assert summary["peak_rss"]["toyIsr"] > 0
    # the retry gets 0.3 GB: the unit succeeds there, and its peak shows the allocation
    out2, report2 = tmp_path / "out2", tmp_path / "report2"
    assert drp(repo, out2, "--id", "--steps", "toyIsr", "--memory-limit", "toyIsr=0.15",
               "--retries", "1", *hungry, report=report2) == 0
    records = units(out2, report2)
    hungry_unit = records[isr_key(1001, 0)]
    assert hungry_unit["attempts"] == 2 and hungry_unit["state"] == "done"
    light = records[isr_key(1000, 0)]
    assert hungry_unit["peak_rss"] - light["peak_rss"] > 0.2e9


def test_memory_limit_usage_errors(repo, tmp_path, capsys):
    for bad, word in ((["--memory-limit", "nostep=1"], "nostep"),
                      (["--memory-limit", "toyIsr=0"], "more than 0"),
                      (["--memory-limit", "lots"], "[STEP=]GB"),
                      (["--walltime-left", "-3"], "--walltime-left")):
        capsys.readouterr()
        assert drp(repo, tmp_path / "out", "--id", *bad) == 2
        assert word in capsys.readouterr().err


def test_job_end_time_sources():
    assert job_end_time(10, {}, now=100.0) == 110.0
    assert job_end_time(None, {"SLURM_JOB_END_TIME": "5000"}) == 5000.0
    env = {"HPCPIPE_JOB_END_TIME": "7000", "SLURM_JOB_END_TIME": "5000"}
    assert job_end_time(None, env) == 7000.0  # the job script's own first
    assert job_end_time(None, {}) is None
    with pytest.raises(ValueError, match="SLURM_JOB_END_TIME"):
        job_end_time(None, {"SLURM_JOB_END_TIME": "soon"})


def test_step_durations_running_median():
    durations = StepDurations()
    assert durations.expected("a") == 0.0
    for seconds in (1.0, 2.0, 100.0):
        durations.add("a", seconds)
    durations.add("b", math.nan)  # ignored
    assert durations.median("a") == 2.0 and durations.median("b") is None
    assert durations.expected("b") == 2.0  # an unmeasured step: the largest known median
    for _ in range(1000):
        durations.add("a", 5.0)
    assert durations.median("a") == 5.0  # only the latest units count


def test_journals_are_kept_in_run_order(tmp_path):
    path = tmp_path / "journal.jsonl"
    assert archive_journal(path) is None
    for k in range(3):
        path.write_text(f'{{"event": "run", "title": "{k}"}}\n')
        assert archive_journal(path) == tmp_path / f"journal.{k + 1}.jsonl"
    path.write_text('{"event": "run", "title": "now"}\n')
    history = journal_history(path)
    assert [p.name for p in history] == ["journal.1.jsonl", "journal.2.jsonl",
                                         "journal.3.jsonl", "journal.jsonl"]
    assert [read_events(p)[0]["title"] for p in history] == ["0", "1", "2", "now"]


# --- campaigns: status, chained submissions, the job script itself -------------------------
def test_status_of_a_cut_then_finished_campaign(repo, tmp_path, capsys):
    out, report = tmp_path / "out", tmp_path / "report"
    assert drp(repo, out, "--id", "--walltime-left", "1.5", *SLOW,
               report=report) == MORE_TO_DO_EXIT
    first = units(out, report)
    capsys.readouterr()
    assert main(["status", str(report), "--check"]) == MORE_TO_DO_EXIT
    printed = capsys.readouterr().out
    pending = sum(s == "pending" for s in states(first).values())
    assert f"remaining: {pending} unit(s)" in printed and "more to do" in printed
    row = next(line.split() for line in printed.splitlines() if line.startswith("toyIsr"))
    isr = states(first, "toyIsr").values()
    assert row[1:6] == [str(len(isr)), str(sum(s == "done" for s in isr)), "0", "0",
                        str(sum(s == "pending" for s in isr))]
    assert "units/s" in printed and "core-hours" in printed
    assert drp(repo, out, "--id", *SLOW, report=report) == 0
    assert main(["status", str(report), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "2 run(s)" in printed and printed.rstrip().endswith("complete")
    assert main(["status", str(tmp_path / "nowhere")]) == 2
    assert "OUT" in capsys.readouterr().err


def fake_scheduler(directory: Path) -> Path:
    """A fake sbatch that numbers the jobs from 100 and records each call's arguments, and a
    fake srun that runs its command (without MPI) and records that it did."""
    directory.mkdir(exist_ok=True)
    calls = directory / "sbatch.calls"
    sbatch = directory / "sbatch"
    sbatch.write_text(f'#!/bin/bash\nn=$(( $(wc -l < {calls} 2>/dev/null || echo 0) + 100 ))\n'
                      f'echo "$@" >> {calls}\necho "Submitted batch job $n"\n')
    srun = directory / "srun"
    srun.write_text(f'#!/bin/bash\necho ran >> {directory}/srun.calls\n'
                    'while [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    for tool in (sbatch, srun):
        tool.chmod(0o755)
    return calls


def test_chain_dry_run_prints_dependent_jobs(repo, tmp_path, capsys):
    batch = tmp_path / "batch"
    assert main(["submit", "--batch-type", "pbs", "--time", "1:00:00", "--chain", "3",
                 "--dry-run", "--batch-output", str(batch), "drp", str(repo), "--output",
                 str(tmp_path / "out"), "--id", "--production", PRODUCTION]) == 0
    printed = capsys.readouterr().out
    submits = [line for line in printed.splitlines() if line.startswith("# submit with:")]
    assert len(submits) == 3 and "depend" not in submits[0]
    assert "-W 'depend=afterany:<job 1>'" in submits[1]
    assert "-W 'depend=afterany:<job 2>'" in submits[2]
    assert printed.count("status --check") == 1  # in the followers' script only
    assert "HPCPIPE_JOB_END_TIME" in printed and "kill -USR1" in printed
    assert not batch.exists()


def test_chain_with_fake_sbatch_then_the_scripts_run(repo, reference, tmp_path, monkeypatch):
    """--chain 3 with a fake sbatch: each job depends on the one before. Then the scripts
    run here with a fake srun: the first job, cut by SIGUSR1 forwarded by the script, exits
    75; a follower finishes the production; the last finds nothing to do and ends at once."""
    bin_dir = tmp_path / "bin"
    calls = fake_scheduler(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])
    monkeypatch.setenv("HPCPIPE_NO_MPI", "1")
    out, batch = tmp_path / "out", tmp_path / "batch"
    assert main(["submit", "--batch-type", "slurm", "--time", "10", "--chain", "3",
                 "--job", "dr1", "--batch-output", str(batch), "drp", str(repo), "--output",
                 str(out), "--id", "--production", PRODUCTION, *SLOW]) == 0
    recorded = [line.split() for line in calls.read_text().splitlines()]
    first, follower = str(batch / "dr1.slurm.sh"), str(batch / "dr1.next.slurm.sh")
    assert recorded == [[first], ["--dependency=afterany:100", follower],
                        ["--dependency=afterany:101", follower]]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_"))}
    env.update(SLURM_JOB_ID="100", SLURM_NTASKS="1", SLURM_JOB_NUM_NODES="1")
    job = subprocess.Popen(["bash", first], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    journal = out / "report" / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.poll() is None:
        if journal.exists() and '"job": "toyIsr"' in journal.read_text():
            break
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR1)  # what SLURM's --signal=B:USR1@... does
    log = job.communicate(timeout=120)[0]
    assert job.returncode == MORE_TO_DO_EXIT, log
    assert "SIGUSR1, the walltime is near" in log and "exit status 75" in log
    second = subprocess.run(["bash", follower], env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert_same_outputs(reference, out)
    third = subprocess.run(["bash", follower], env=env, capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0 and "nothing left to do" in third.stdout, third.stdout
    assert (bin_dir / "srun.calls").read_text().count("ran") == 2  # not run by the third


# --- many ranks on a few cores -----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("ranks", [16, 32])
def test_production_on_many_more_ranks_than_cores(repo, reference, tmp_path, ranks):
    """mpirun -n 16 and -n 32 (oversubscribed on this 2-core machine): the production, its
    report and its outputs as with one rank; above 16 ranks the workers log to files."""
    mpirun = mpirun_command(ranks)
    if mpirun is None:
        pytest.skip("no mpirun")
    out, report = tmp_path / "out", tmp_path / "report"
    run = subprocess.run([*mpirun, sys.executable, "-m", "hpcpipe", "drp", str(repo),
                          "--output", str(out), "--id", "--production", PRODUCTION,
                          "--report", str(report)],
                         env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    records = units(out, report)
    assert set(records) == ALL_KEYS and set(states(records).values()) == {"done"}
    assert len({u["rank"] for u in records.values()}) >= 8  # the toyIsr units at once
    assert_same_outputs(reference, out)
    if ranks > 16:  # --rank-logs auto: one log file per worker
        logs = sorted(p.name for p in (report / "logs").glob("rank-*.log"))
        assert logs == [f"rank-{r:05d}.log" for r in range(1, ranks)]


# --- the pool's API (what other drivers use) ------------------------------------------------
def _nap(cache, seconds):
    time.sleep(seconds)
    return seconds


def test_pool_end_time_status_lines_and_stop(caplog):
    """Pool(end_time=...): units that would not fit stay pending (result None, record
    "pending"), out_of_time is set; status lines go to hpcpipe.progress; request_stop()."""
    from hpcpipe.comm.pool import Pool
    from hpcpipe.comm.world import World

    world = World()
    if world.size > 1:
        pytest.skip("serial")
    pool = Pool(world, end_time=time.time() + 1.0, walltime_reserve=0.0, status_interval=0.2)
    caplog.set_level("INFO", logger="hpcpipe.progress")
    results = pool.map(_nap, [0.25] * 10, name="naps")
    ran = [r for r in results if r is not None]
    assert 1 <= len(ran) <= 5 and pool.out_of_time  # 4 fit on an idle machine
    records = pool.records
    assert [r.state for r in records].count("pending") == 10 - len(ran)
    # a unit started only while its step's median (0.25 s) still fitted before the end
    assert all(r.start <= pool.end_time - 0.2 for r in records if r.state == "done")
    lines = [r.getMessage() for r in caplog.records if r.name == "hpcpipe.progress"]
    assert any("units/s" in line and "naps" in line for line in lines)
    assert pool.durations.median("naps") >= 0.25
    stopped = Pool(world)
    stopped.request_stop()
    assert stopped.map(_nap, [0.0] * 3) == [None] * 3 and stopped.out_of_time
