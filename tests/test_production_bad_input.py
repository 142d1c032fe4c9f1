"""Bad input in a real production: each broken CCD fails alone, with a message saying why.

A small simulated survey (one visit, four CCDs) is damaged three ways: the raw file of CCD 0
gets an unparsable header card, the flat of CCD 1 is deleted, and the pixels of CCD 2 are
replaced by featureless noise (a CCD with no stars). ``hpcpipe drp`` must fail those three
units with messages naming the file, the dataset and data id, or the missing stars; process
CCD 3; exit with the number of failed units; and list everything in its run report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hpcpipe.butler import Butler
from hpcpipe.cli import main

pytestmark = pytest.mark.slow

SIM_ARGS = ["--visits", "1", "--ccds", "4", "--filters", "g", "--size", "1024", "--seed", "5",
            "--star-density", "100000"]


def _path(butler: Butler, dataset: str, **data_id) -> Path:
    return Path(butler.getUri(dataset, **data_id).removeprefix("file://"))


def _damage(repo: Path) -> tuple[int, dict[int, Path]]:
    butler = Butler(repo)
    visit = butler.queryMetadata("raw", "visit")[0]
    raw0, flat1, raw2 = (_path(butler, "raw", visit=visit, ccd=0),
                         _path(butler, "flat", visit=visit, ccd=1),
                         _path(butler, "raw", visit=visit, ccd=2))
    data = bytearray(raw0.read_bytes())
    card = data.find(b"NAXIS1  =")
    data[card:card + 80] = b"NAXIS1  = garbage".ljust(80)
    raw0.write_bytes(bytes(data))
    flat1.unlink()
    with fits.open(raw2, mode="update") as hdus:
        hdu = next(h for h in hdus if h.data is not None)
        level = float(np.median(hdu.data))
        noise = np.random.default_rng(0).normal(level, 5.0, hdu.data.shape)
        hdu.data[...] = np.round(noise).astype(hdu.data.dtype)
    return visit, {0: raw0, 1: flat1, 2: raw2}


def test_broken_ccds_fail_alone_with_their_reasons(tmp_path, capsys):
    repo, out, report = tmp_path / "repo", tmp_path / "out", tmp_path / "report"
    assert main(["simulate", str(repo), *SIM_ARGS]) == 0
    visit, paths = _damage(repo)
    status = main(["drp", str(repo), "--output", str(out), "--id", "--steps", "processCcd",
                   "--report", str(report)])
    assert status == 3  # the number of failed units
    units = {u["key"]: u for u in json.loads((report / "report.json").read_text())["units"]}
    key = f"processCcd visit={visit} ccd={{}}".format
    assert {k: u["state"] for k, u in units.items()} == {
        key(0): "failed", key(1): "failed", key(2): "failed", key(3): "done"}
    errors = {ccd: units[key(ccd)]["error"] for ccd in range(3)}
    assert str(paths[0]) in errors[0] and "NAXIS1" in errors[0]
    assert "no flat dataset" in errors[1] and "ccd=1" in errors[1]
    assert paths[1].name in errors[1]
    assert "PSF stars" in errors[2]
    assert all(units[key(c)]["traceback"] for c in range(3))
    printed = capsys.readouterr().out
    for ccd in range(3):
        assert f"FAILED {key(ccd)}" in printed
    butler = Butler(repo, outputs=out)
    assert butler.datasetExists("calexp", visit=visit, ccd=3)
    assert len(butler.get("src", visit=visit, ccd=3)) > 20
    for ccd in range(3):
        assert not butler.datasetExists("calexp", visit=visit, ccd=ccd)
        assert not butler.datasetExists("processCcd_metadata", visit=visit, ccd=ccd)
    # the report's HTML lists the failures too
    html = (report / "report.html").read_text()
    for ccd in range(3):
        assert key(ccd) in html
    assert "PsfFitError" in html and "NoSuchDatasetError" in html
