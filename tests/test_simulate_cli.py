"""`hpcpipe simulate REPO`: a survey written, ingested and readable through the butler."""

from __future__ import annotations

import numpy as np
import pytest

from hpcpipe.butler import Butler
from hpcpipe.cli import main

ARGS = ["--visits", "1", "--ccds", "3", "--filters", "g,r", "--size", "128", "--seed", "5"]


def test_simulate_then_read_back(tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["simulate", str(repo), *ARGS]) == 0
    # 2 visits x 3 CCDs, and per CCD a bias, a dark and a flat per band
    assert "18 files ingested" in capsys.readouterr().out
    butler = Butler(repo)
    assert butler.queryMetadata("raw", ["visit", "filter"]) == [(1000, "g"), (1100, "r")]
    assert sorted(butler.queryMetadata("raw", "ccd")) == [0, 1, 2]
    raw = butler.get("raw", visit=1100, ccd=2)
    assert raw.metadata["FILTER"] == "r" and raw.detector.id == 2
    flat = butler.get("flat", visit=1100, ccd=2)  # calibration rendezvous by date
    assert flat.filter.band == "r"
    assert butler.get("bias", visit=1100, ccd=2).image.array.shape == (128, 128)
    ref, truth = butler.get("ref_cat"), butler.get("truth_cat")
    assert 0 < len(ref) < len(truth)
    assert not (repo / "_staging").exists()
    # the same seed gives the same survey
    other = tmp_path / "again"
    assert main(["simulate", str(other), *ARGS]) == 0
    np.testing.assert_array_equal(Butler(other).get("raw", visit=1000, ccd=1).image.array,
                                  butler.get("raw", visit=1000, ccd=1).image.array)


@pytest.mark.parametrize("argv, word", [
    (["--filters", "g,x"], "--filters"),
    (["--visits", "0"], "--visits"),
    (["--transients", "-2"], "--transients"),
    (["--cadence", "0"], "--cadence"),
    (["--variables", "5", "--size", "64"], "dither"),
])
def test_simulate_usage_errors(tmp_path, argv, word, capsys):
    try:
        code = main(["simulate", str(tmp_path / "r"), *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    assert word in captured.out + captured.err
