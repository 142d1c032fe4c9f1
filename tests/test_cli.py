"""The command line: the demo serially, info, and usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hpcpipe.cli import main


def test_demo_serial(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path), "--ccds", "2", "--size", "256"]) == 0
    out = capsys.readouterr().out
    assert "2 CCDs on 1 ranks" in out and "completeness" in out
    assert (tmp_path / "detections.h5").exists()
    assert sorted(p.name for p in (tmp_path / "calexp").iterdir()) == [
        "calexp-000.fits", "calexp-001.fits"]


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "parallel: True" in out and "kernel convolve" in out


@pytest.mark.parametrize("argv, word", [
    (["demo", "--ccds", "zero"], "--ccds"),
    (["demo", "--size", "-3"], "--size"),
    (["nosuchcommand"], "nosuchcommand"),
])
def test_usage_errors_exit_2_naming_the_option(argv, word):
    proc = subprocess.run([sys.executable, "-m", "hpcpipe", *argv], capture_output=True,
                          text=True, env={"HPCPIPE_NO_MPI": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert word in proc.stderr
