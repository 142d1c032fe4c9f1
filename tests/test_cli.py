"""The command line: the production demo serially (and resumed), info, and usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hpcpipe.cli import main


def test_demo_serial(tmp_path, capsys):
    argv = ["demo", "--output", str(tmp_path), "--visits", "1", "--ccds", "1", "--filters", "r",
            "--size", "768"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "processCcd" in out and "astrometry: median offset" in out
    assert (tmp_path / "report" / "report.html").exists()
    assert (tmp_path / "coadd.png").exists()
    # the multifit models are in the release, every row of every patch once, and in its HATS
    from hpcpipe.butler import Butler
    from hpcpipe.catalog.query import ReleaseDatabase

    butler = Butler(tmp_path / "rerun")
    fitted = butler.get("release_multifit", tract=0)
    patches = sorted({p.decode() if isinstance(p, bytes) else str(p) for p in fitted["patch"]})
    assert len(fitted) == sum(len(butler.get("deepCoadd_multifit", tract=0, patch=p))
                              for p in patches) > 0
    db = ReleaseDatabase(tmp_path / "rerun" / "release" / "hats")
    assert db.query("SELECT count(*) AS n FROM multifit")["n"][0] == len(fitted)
    # a second run resumes: nothing left to do
    assert main(argv) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("processCcd")]
    assert rows and rows[0][1:3] == ["0", "1"]  # done 0, skipped 1


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "parallel: True" in out and "kernel convolve" in out


@pytest.mark.parametrize("argv, word", [
    (["demo", "--ccds", "zero"], "--ccds"),
    (["demo", "--size", "-3"], "--size"),
    (["demo", "--filters", "g,x"], "--filters"),
    (["nosuchcommand"], "nosuchcommand"),
])
def test_usage_errors_exit_2_naming_the_option(argv, word):
    proc = subprocess.run([sys.executable, "-m", "hpcpipe", *argv], capture_output=True,
                          text=True, env={"HPCPIPE_NO_MPI": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert word in proc.stderr
