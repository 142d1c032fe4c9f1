"""Batch submission: scripts that pass `bash -n`, stub schedulers, walltimes, usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcpipe.cli import main
from hpcpipe.drivers.submit import (
    BatchRequest,
    SubmitError,
    estimate_walltime,
    format_walltime,
    job_environment,
    make_script,
    parse_walltime,
)


def stub_scheduler(directory: Path, name: str, reply: str) -> Path:
    """A fake sbatch/qsub that records its arguments and the script it was given."""
    log = directory / f"{name}.args"
    stub = directory / name
    stub.write_text(f'#!/bin/bash\necho "$@" > {log}\ncp "$1" {directory}/{name}.script\n'
                    f'echo "{reply}"\n')
    stub.chmod(0o755)
    return log


@pytest.mark.parametrize("batch_type", ["slurm", "pbs"])
def test_script_passes_bash_n(tmp_path, batch_type):
    request = BatchRequest(batch_type, "drp-run1", [sys.executable, "-m", "hpcpipe", "demo",
                                                    "--ccds", "4"],
                           nodes=3, procs_per_node=8, walltime_seconds=5400, queue="normal",
                           extra_options=["--mem-per-cpu=4G"], log_dir=tmp_path,
                           environment={"PATH": "/usr/bin:/bin", "HPCPIPE_X": "it's quoted"})
    text = make_script(request)
    script = tmp_path / "job.sh"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "export HPCPIPE_X='it'\"'\"'s quoted'" in text
    if batch_type == "slurm":
        for line in ("#SBATCH --nodes=3", "#SBATCH --ntasks-per-node=8", "#SBATCH --time=01:30:00",
                     "#SBATCH --partition=normal", "#SBATCH --mem-per-cpu=4G",
                     "#SBATCH --export=NONE", "#SBATCH --job-name=drp-run1"):
            assert line in text
        assert "\nsrun --kill-on-bad-exit=1 " in text and "$SLURM_NTASKS" in text
    else:
        assert "#PBS -l select=3:ncpus=8:mpiprocs=8" in text and "mpiexec -n 24 " in text
        assert "#PBS -q normal" in text


def test_environment_leaves_out_functions_and_the_rest():
    env = job_environment({"PATH": "/bin", "BASH_FUNC_module%%": "() { echo; }", "HOME": "/h",
                           "HPCPIPE_VENV": "/v", "LD_LIBRARY_PATH": "/lib"})
    assert env == {"PATH": "/bin", "HPCPIPE_VENV": "/v", "LD_LIBRARY_PATH": "/lib",
                   "OMP_NUM_THREADS": "1"}


def test_walltimes():
    assert parse_walltime("1-02:03:04") == 86400 + 7384
    assert parse_walltime("02:30") == 150 and parse_walltime("90") == 5400
    assert format_walltime(61) == "00:02:00" and format_walltime(90000) == "25:00:00"
    # 100 units of 60 s over 8 ranks (7 workers): 15 rounds, with margin and start-up
    assert estimate_walltime(60, 100, 8) == pytest.approx(300 + 1.25 * 15 * 60)
    with pytest.raises(SubmitError, match="--time 'soon'"):
        parse_walltime("soon")


def test_submit_with_stub_sbatch(tmp_path, monkeypatch, capsys):
    log = stub_scheduler(tmp_path, "sbatch", "Submitted batch job 4242")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    code = main(["submit", "--batch-type", "slurm", "--nodes", "2", "--procs-per-node", "4",
                 "--time", "30", "--job", "demo1", "--batch-output", str(tmp_path / "out"),
                 "demo", "--ccds", "8"])
    assert code == 0
    script = tmp_path / "out" / "demo1.slurm.sh"
    assert log.read_text().split() == [str(script)]
    text = (tmp_path / "sbatch.script").read_text()
    assert "#SBATCH --time=00:30:00" in text
    # the driver runs in the background, so that the script can pass SIGUSR1 on to it
    assert "-m hpcpipe demo --ccds 8 &\n" in text and "#SBATCH --signal=B:USR1@90" in text
    assert "job 4242" in capsys.readouterr().err


def test_submit_with_stub_qsub(tmp_path, monkeypatch):
    log = stub_scheduler(tmp_path, "qsub", "777.pbs-server")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert main(["submit", "--batch-type", "pbs", "--time-per-unit", "10", "--units", "5",
                 "--batch-output", str(tmp_path), "demo"]) == 0
    assert log.read_text().strip().endswith("hpcpipe.pbs.sh")


def test_dry_run_prints_and_submits_nothing(tmp_path, monkeypatch, capsys):
    log = stub_scheduler(tmp_path, "sbatch", "Submitted batch job 1")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert main(["submit", "--batch-type", "slurm", "--time", "10", "--dry-run",
                 "--batch-output", str(tmp_path / "none"), "demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/bin/bash") and "# submit with: sbatch " in out
    assert not log.exists() and not (tmp_path / "none").exists()


def test_smp_runs_now(tmp_path, capsys):
    assert main(["submit", "--batch-type", "none", "info"]) == 0
    assert "-m hpcpipe info" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["submit", "--batch-type", "slurm", "demo"], "--time"),
    (["submit", "--batch-type", "slurm", "--time", "later", "demo"], "--time 'later'"),
    (["submit", "--batch-type", "slurm", "--time", "5", "--job", "a b", "demo"], "--job"),
    (["submit", "--batch-type", "lsf", "demo"], "--batch-type"),
    (["submit", "--batch-type", "slurm", "--nodes", "0", "--time", "5", "demo"], "--nodes"),
])
def test_usage_errors_exit_2(argv, words, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    assert words in capsys.readouterr().err


def test_failed_sbatch_is_reported(tmp_path, monkeypatch, capsys):
    stub = tmp_path / "sbatch"
    stub.write_text("#!/bin/bash\necho 'sbatch: error: invalid partition' >&2\nexit 1\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert main(["submit", "--batch-type", "slurm", "--time", "5", "--queue", "nope",
                 "--batch-output", str(tmp_path), "demo"]) == 1
    assert "invalid partition" in capsys.readouterr().err


INJECTIONS = [
    ("--queue", "normal\ntouch pwned"),
    ("--queue", "normal;touch pwned"),
    ("--queue", "normal\rx"),
    ("--job", "run\ntouch pwned"),
    ("--account", "proj\ntouch pwned"),
    ("--account", "proj $(touch pwned)"),
    ("--batch-option", "--mem=8G\ntouch pwned"),
    ("--batch-option", "touch pwned"),
    ("--batch-option", "--mem=8G\x00"),
    ("--batch-output", "logs\ntouch pwned"),
]


@pytest.mark.parametrize("batch_type", ["slurm", "pbs"])
@pytest.mark.parametrize("option, value", INJECTIONS)
def test_injected_script_lines_are_refused(tmp_path, monkeypatch, capsys, batch_type, option,
                                           value):
    """A newline (or a name outside the documented set) never reaches the script: exit 2,
    no script written, nothing submitted, no config written for the driver."""
    log = stub_scheduler(tmp_path, "sbatch" if batch_type == "slurm" else "qsub", "1.pbs")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    batch = tmp_path / "batch"
    argv = ["submit", "--batch-type", batch_type, "--time", "10", "--batch-output", str(batch),
            f"{option}={value}" if option != "--batch-output" else "--job=x",
            "demo", "--output", str(tmp_path / "out")]
    if option == "--batch-output":
        argv[argv.index(str(batch))] = value
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert option in err
    assert not log.exists() and not batch.exists() and not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("*.sh"))


def test_account_and_queue_list_reach_the_script(tmp_path):
    for batch_type, lines in (("slurm", ("#SBATCH --account=proj_1", "#SBATCH --partition=a,b")),
                              ("pbs", ("#PBS -A proj_1", "#PBS -q a,b"))):
        text = make_script(BatchRequest(batch_type, "j", ["true"], queue="a,b",
                                        account="proj_1", log_dir=tmp_path))
        assert all(line in text for line in lines)
    with pytest.raises(SubmitError, match="--account"):
        BatchRequest("slurm", "j", ["true"], account="a\nb")
