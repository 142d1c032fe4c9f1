"""The mapper's documentation (describe, docs/butler_simcam.md) and the butler commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpcpipe.butler import Butler, describe
from hpcpipe.cli import main
from hpcpipe.commands.butler import add_butler_command
from hpcpipe.commands.ingest import add_ingest_command
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure
from hpcpipe.obs.simcam import SimCamMapper, raw_header

DOCS = Path(__file__).resolve().parent.parent / "docs" / "butler_simcam.md"

ISSUE_TYPES = ["raw", "bias", "dark", "flat", "postISRCCD", "calexp", "calexpBackground",
               "icSrc", "src", "srcMatch", "skyMap", "deepCoadd_directWarp", "coaddTempExp",
               "deepCoadd", "deepCoadd_calexp", "deepCoadd_det", "deepCoadd_meas",
               "deepCoadd_ref", "deepCoadd_forced_src", "forced_src", "src_schema",
               "processCcd_config", "processCcd_metadata"]


def test_the_mapper_defines_every_dataset_type_of_the_issue():
    mapper = SimCamMapper()
    for name in ISSUE_TYPES:
        assert mapper.dataset_type(name, {"visit": 1, "ccd": 0}).doc


def test_describe_lists_every_dataset_type_with_keys_type_format_and_template():
    mapper = SimCamMapper()
    text = describe(mapper)
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)`.*$", text, re.M)}
    for dataset_type in mapper.dataset_types.values():
        row = rows[dataset_type.name]
        assert ", ".join(dataset_type.keys) in row or not dataset_type.keys
        assert dataset_type.python_type in row
        assert dataset_type.formatter.name in row
        assert dataset_type.template.text in row
        assert f"- **{dataset_type.name}**: {dataset_type.doc}" in text
    assert "(alias `coaddTempExp`)" in text
    for key in mapper.keys.values():
        assert f"| `{key.name}` | {key.type.__name__} |" in text
        assert key.doc in text
    for keyword in ("VISIT", "CCDNUM", "FILTER", "DATE-OBS", "EXPTIME", "OBSTYPE", "CALIB_ID"):
        assert f"| `{keyword}` |" in text
    assert "`<task>_config`" in text and "`<task>_metadata`" in text
    assert "Calibration product" in text and "repositoryCfg.yaml" in text


def test_the_generated_docs_are_up_to_date():
    assert DOCS.read_text() == describe("simcam"), (
        "regenerate with: python -c \"from hpcpipe.butler.describe import write_docs; "
        "write_docs('simcam', 'docs')\"")


def test_cli_create_describe_and_ingest(tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["butler", "create", str(repo), "--mapper", "simcam"]) == 0
    assert "mapper simcam" in capsys.readouterr().out
    assert main(["butler", "describe", str(repo)]) == 0
    assert capsys.readouterr().out == describe("simcam")

    good = tmp_path / "good.fits"
    exposure = Exposure(Box2I(0, 0, 4, 4))
    exposure.metadata.update(raw_header(3, 1, "g", "2026-01-01T00:00:00", 5.0))
    exposure.write(good)
    bad = tmp_path / "bad.fits"
    exposure.metadata.pop("FILTER")
    exposure.write(bad)
    assert main(["ingest", str(repo), str(good), str(bad), "--mode", "link"]) == 2
    out = capsys.readouterr().out
    assert f"skipped {bad}: missing header keyword FILTER" in out
    assert "1 files ingested, 0 already ingested, 1 skipped" in out
    assert (repo / "raw/v0000003/g/raw_v0000003_c001.fits").is_symlink()
    assert main(["ingest", str(repo), str(good)]) == 0
    assert "0 files ingested, 1 already ingested" in capsys.readouterr().out
    assert Butler(repo).queryMetadata("raw", "visit") == [3]

    child = tmp_path / "child"
    assert main(["butler", "create", str(child), "--mapper", "simcam", "--parent",
                 str(repo)]) == 0
    assert Butler(child).get("raw", visit=3, ccd=1).image.array.shape == (4, 4)


@pytest.mark.parametrize("argv, message", [
    (["butler", "describe", "{tmp}/nothing"], "no repository at"),
    (["butler", "describe", "{tmp}"], "has no _mapper file"),
    (["butler", "create", "{tmp}/r", "--mapper", "nosuchcam"], "unknown mapper 'nosuchcam'"),
    (["ingest", "{tmp}/nothing", "x.fits"], "no repository at"),
])
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_commands_plug_into_another_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="hpcpipe")
    sub = parser.add_subparsers(dest="command", required=True)
    add_butler_command(sub)
    add_ingest_command(sub)
    args = parser.parse_args(["ingest", "repo", "a.fits", "b.fits", "--mode", "move"])
    assert args.command == "ingest" and args.files == ["a.fits", "b.fits"]
    assert args.mode == "move" and callable(args.handler)
    args = parser.parse_args(["butler", "describe", "--mapper", "simcam"])
    assert args.handler.__name__ == "cmd_butler_describe"
    with pytest.raises(SystemExit):
        parser.parse_args(["ingest", "repo", "a.fits", "--mode", "teleport"])
