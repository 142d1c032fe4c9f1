"""`hpcpipe run TASK REPO --id ...`: outputs, config persistence, failures and usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcpipe.butler import Butler
from hpcpipe.cli import main

TASK = "cmdline_tasks:OverscanTask"
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("cmdline") / "repo"
    assert main(["simulate", str(path), "--visits", "2", "--ccds", "2", "--filters", "g",
                 "--size", "64", "--seed", "2"]) == 0
    return path


def run(*argv):
    try:
        return main(["run", TASK, *map(str, argv)])
    except SystemExit as exc:
        return exc.code


def test_run_writes_outputs_and_metadata_to_the_output_repo(repo, tmp_path):
    out = tmp_path / "out"
    assert run(repo, "--output", out, "--id", "visit=1000..1001", "ccd=0") == 0
    butler = Butler(out)
    for visit in (1000, 1001):
        assert butler.datasetExists("postISRCCD", visit=visit, ccd=0)
        assert not butler.datasetExists("postISRCCD", visit=visit, ccd=1)
        meta = butler.get("overscanTest_metadata", visit=visit, ccd=0)
        assert meta["overscanTest"]["nAmps"] == 2
    assert not (repo / "postISRCCD").exists()  # writes go only to the output
    assert butler.get("overscanTest_config").scale == 1.0


def test_config_change_is_refused_then_clobbered_with_backup(repo, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(repo, "--output", out, "--id", "visit=1000", "ccd=0") == 0
    assert run(repo, "--output", out, "--id", "visit=1000", "ccd=0", "-c", "scale=2.0") == 2
    err = capsys.readouterr().err
    assert "scale" in err and "--clobber-config" in err
    assert run(repo, "--output", out, "--id", "visit=1000", "ccd=0", "-c", "scale=2.0",
               "--clobber-config") == 0
    assert Butler(out).get("overscanTest_config").scale == 2.0
    assert list((out / "config").glob("overscanTest.yaml~1"))


def test_exit_status_counts_failures_and_doraise_stops(repo, tmp_path, caplog):
    out = tmp_path / "out"
    assert run(repo, "--output", out, "--id", "visit=1000^1001", "-c",
               "fail_visits=[1001]") == 2  # visit 1001 on two CCDs
    assert "fails on purpose" in caplog.text
    butler = Butler(out)
    assert butler.datasetExists("postISRCCD", visit=1000, ccd=1)
    out2 = tmp_path / "out2"
    assert run(repo, "--output", out2, "--id", "visit=1001", "--doraise", "-c",
               "fail_visits=[1001]") == 1


def test_parallel_processes_and_rerun(repo):
    assert run(repo, "--rerun", "jtest", "--id", "-j", "2") == 0  # bare --id: all data
    butler = Butler(repo / "rerun" / "jtest")
    assert len([1 for v in (1000, 1001) for c in (0, 1)
                if butler.datasetExists("postISRCCD", visit=v, ccd=c)]) == 4


def test_show_data_and_config(repo, capsys):
    assert run(repo, "--id", "visit=1000", "--show", "data") == 0
    out = capsys.readouterr().out
    assert out.count("dataRef.dataId") == 2 and "'visit': 1000" in out
    assert run(repo, "--show", "config=scale") == 0
    assert "scale" in capsys.readouterr().out


@pytest.mark.parametrize("argv, word", [
    (["--id", "visit=5..1"], "--id"),
    (["--id", "colour=red"], "colour"),
    (["-c", "nosuchfield=1"], "nosuchfield"),
    (["-c", "scale=abc"], "scale"),
])
def test_usage_errors_exit_2_before_any_data(repo, argv, word, capsys):
    assert run(repo, *argv) == 2
    assert word in capsys.readouterr().err


def test_bad_repo_and_unknown_task(tmp_path, capsys):
    assert run(tmp_path / "nothing", "--id") == 2
    assert "REPO" in capsys.readouterr().err
    assert main(["run", "noSuchTask", str(tmp_path)]) == 2
    assert "noSuchTask" in capsys.readouterr().err


def test_profile_and_loglevel(repo, tmp_path):
    import pstats

    prof = tmp_path / "run.prof"
    assert run(repo, "--output", tmp_path / "out", "--id", "visit=1000", "ccd=0",
               "--profile", prof, "--loglevel", "overscanTest=DEBUG") == 0
    stats = pstats.Stats(str(prof))
    assert any("run_data_ref" in func[2] for func in stats.stats)


def test_killed_child_of_j2_fails_its_unit_and_the_run_ends(repo, tmp_path):
    """A -j 2 child SIGKILLed (as the OOM killer does): its unit fails, the others are done,
    the summary is printed and the exit status is non-zero; no hang (bounded)."""
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "hpcpipe", "run", TASK, str(repo), "--output", str(out),
            "--id", "visit=1000..1001", "ccd=0..1", "-j", "2", "-c", "kill_visits=[1000]"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    assert "4 data id(s) processed" in result.stderr and "died" in result.stderr
    butler = Butler(out)
    assert not butler.datasetExists("postISRCCD", visit=1000, ccd=0)
    for visit, ccd in ((1000, 1), (1001, 0), (1001, 1)):  # killed with the pool or not,
        # a unit that was not running when the child died is done
        if butler.datasetExists("overscanTest_metadata", visit=visit, ccd=ccd):
            assert butler.datasetExists("postISRCCD", visit=visit, ccd=ccd)
    done = [butler.datasetExists("overscanTest_metadata", visit=v, ccd=c)
            for v, c in ((1000, 1), (1001, 0), (1001, 1))]
    assert sum(done) >= 2  # at most the unit running beside the killed one fails with it
