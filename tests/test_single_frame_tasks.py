"""The single-frame steps as command-line tasks (as in the LSST stack): ``isr``, then
``characterizeImage``, then ``calibrate`` give what ``processCcd`` gives in one go; a missing
input names the dataset and the step that makes it; camera-level config defaults come from
the repository's mapper, before ``-C`` and ``-c``."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from hpcpipe.butler import Butler
from hpcpipe.butler.mapper import Mapper
from hpcpipe.cli import main
from hpcpipe.commands.alerts import parse_alerts_args
from hpcpipe.commands.drp import parse_drp_args
from hpcpipe.task.discovery import BUILTIN_TASKS, find_task

VISIT_CCD = ["visit=1000", "ccd=0"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("single_frame") / "repo"
    assert main(["simulate", str(path), "--visits", "1", "--ccds", "1", "--filters", "r",
                 "--size", "512", "--seed", "4", "--star-density", "300000"]) == 0
    return path


def run(*argv):
    try:
        return main(["run", *map(str, argv)])
    except SystemExit as exc:
        return exc.code


def test_builtin_tasks_are_found_without_installed_metadata():
    for name, path in BUILTIN_TASKS.items():
        cls = find_task(name)
        assert f"{cls.__module__}:{cls.__name__}" == path and cls._DefaultName == name


def test_isr_characterize_calibrate_equal_process_ccd(repo, tmp_path):
    one, steps = tmp_path / "one", tmp_path / "steps"
    assert run("processCcd", repo, "--output", one, "--id", *VISIT_CCD, "--doraise") == 0
    for task in ("isr", "characterizeImage", "calibrate"):
        assert run(task, repo, "--output", steps, "--id", *VISIT_CCD, "--doraise") == 0, task
    a, b = Butler(repo, outputs=one), Butler(repo, outputs=steps)
    key = dict(visit=1000, ccd=0)
    for name in ("postISRCCD", "icExp", "icExpBackground", "icSrc", "calexp", "src",
                 "srcMatch", "characterizeImage_metadata", "calibrate_metadata"):
        assert b.datasetExists(name, **key), name
    assert not a.datasetExists("postISRCCD", **key) and not a.datasetExists("icExp", **key)
    for name in ("icSrc", "src", "srcMatch"):
        ours, theirs = b.get(name, **key), a.get(name, **key)
        assert len(ours) >= 15 and len(ours) == len(theirs), name
        assert ours.schema == theirs.schema
        for field in ours.schema.names:
            x, y = np.asarray(ours[field]), np.asarray(theirs[field])
            if x.dtype.kind == "f":
                np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12, equal_nan=True,
                                           err_msg=f"{name}.{field}")
            else:
                np.testing.assert_array_equal(x, y, err_msg=f"{name}.{field}")
    ca, cb = a.get("calexp", **key), b.get("calexp", **key)
    np.testing.assert_array_equal(ca.image.array, cb.image.array)
    np.testing.assert_array_equal(ca.mask.array, cb.mask.array)
    assert ca.photo_calib.zero_point == pytest.approx(cb.photo_calib.zero_point, abs=1e-9)
    np.testing.assert_array_equal(a.get("calexpBackground", **key).image.array,
                                  b.get("icExpBackground", **key).image.array)
    for name in ("icSrc_schema", "src_schema", "srcMatch_schema"):
        assert b.get(name) is not None


@pytest.mark.parametrize("task, missing, producer", [
    ("characterizeImage", "postISRCCD", "isr"),
    ("calibrate", "icExp", "characterizeImage")])
def test_missing_input_is_named(repo, tmp_path, caplog, task, missing, producer):
    with caplog.at_level(logging.ERROR):
        assert run(task, repo, "--output", tmp_path / "out", "--id", *VISIT_CCD,
                   "--doraise") == 1
    text = caplog.text
    assert f"{task} needs the {missing} of visit=1000, ccd=0" in text
    assert f"run {producer}" in text


def test_missing_calibration_on_the_command_line(repo, tmp_path, caplog, monkeypatch):
    butler = Butler(repo)
    uri = str(butler.getUri("dark", visit=1000, ccd=0))
    assert uri.startswith("file://")
    # a repository whose dark is gone: the same raw, no dark calibration
    from pathlib import Path
    dark = Path(uri[len("file://"):])
    moved = tmp_path / dark.name
    dark.rename(moved)
    try:
        with caplog.at_level(logging.ERROR):
            status = run("isr", repo, "--output", tmp_path / "out", "--id", *VISIT_CCD,
                         "--doraise")
        assert status == 1
        assert "doDark is on but no dark was found for visit=1000, ccd=0" in caplog.text
        assert "set doDark=False" in caplog.text
        assert run("isr", repo, "--output", tmp_path / "out2", "--id", *VISIT_CCD, "--doraise",
                   "-c", "doDark=False") == 0
    finally:
        moved.rename(dark)


def test_camera_defaults_come_before_config_files_and_values(repo, tmp_path, capsys,
                                                              monkeypatch):
    mapper_class = type(Butler(repo).mapper)

    def overrides(self, task_name):
        return {"isr.doOverscan": False, "isr.overscanFitType": "mean"}

    monkeypatch.setattr(mapper_class, "config_overrides", overrides)
    assert run("isr", repo, "--show", "config=doOverscan") == 0
    assert "doOverscan = False" in capsys.readouterr().out
    assert run("processCcd", repo, "--show", "config=isr.doOverscan") == 0
    assert "isr.doOverscan = False" in capsys.readouterr().out
    assert run("isr", repo, "--show", "history=doOverscan") == 0
    assert "camera" in capsys.readouterr().out
    override = tmp_path / "over.py"
    override.write_text("config.overscanFitType = 'poly'\n")
    assert run("isr", repo, "-C", override, "-c", "doOverscan=True", "--show",
               "config=overscan*", "config=doOverscan") == 0
    out = capsys.readouterr().out
    assert "overscanFitType = 'poly'" in out and "doOverscan = True" in out
    request = parse_drp_args([str(repo), "--output", str(tmp_path / "drp"), "--id"])
    assert request.configs["processCcd"].isr.doOverscan is False
    assert request.configs["makeSkyMap"].compare(type(request.configs["makeSkyMap"])()) == []
    alerts = parse_alerts_args([str(repo), "--output", str(tmp_path / "l1"), "--visit", "1000",
                                "-c", "processCcd.isr.overscanFitType=poly"])
    assert alerts.config.processCcd.isr.doOverscan is False
    assert alerts.config.processCcd.isr.overscanFitType == "poly"

    def bad(self, task_name):
        return {"doOverscn": False} if task_name == "isr" else {}

    monkeypatch.setattr(mapper_class, "config_overrides", bad)
    assert run("isr", repo, "--show", "config") == 2
    err = capsys.readouterr().err
    assert "the camera's config defaults" in err and "doOverscn" in err


def test_base_mapper_has_no_config_defaults():
    assert Mapper.config_overrides(object.__new__(Mapper), "processCcd") == {}
