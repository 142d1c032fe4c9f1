"""Reading a repository runs none of its content: code planted in its files never executes.

A shared input repository is written by someone else. Its configs, metadata, sky map,
repository configuration (parents), catalogs and images are planted with Python, YAML tags
that an unsafe loader would execute, and shell substitutions; every reading command (butler
get and subset, ``butler describe``, ``hpcpipe drp --output``, ``hpcpipe submit --dry-run``)
must leave the marker file those would create absent. ``_mapper`` is left alone (it names a
registered camera, checked where it is read).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpcpipe.butler import Butler
from hpcpipe.cli import main

TESTS = Path(__file__).resolve().parent
PRODUCTION = "production_tasks:TOY"


def python_payload(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"


def yaml_payload(marker: Path) -> str:
    return f"pwned: !!python/object/apply:os.system ['touch {marker}']\n"


def shell_payload(marker: Path) -> str:
    return f"$(touch {marker})`touch {marker}`"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A simulated repository and the toy production's outputs on it (another user's)."""
    root = tmp_path_factory.mktemp("shared")
    assert main(["simulate", str(root / "repo"), "--visits", "2", "--ccds", "2", "--filters",
                 "g", "--size", "64", "--seed", "3"]) == 0
    assert main(["drp", str(root / "repo"), "--output", str(root / "out"), "--id",
                 "--production", PRODUCTION, "--report", str(root / "report")]) == 0
    return root


def hpcpipe(*argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "hpcpipe", *map(str, argv)], env=env,
                          capture_output=True, text=True, timeout=timeout)


READ_EVERYTHING = """
import sys
from hpcpipe.butler import Butler
butler = Butler(sys.argv[1])
calls = [("toyIsr_config", {}), ("toyCoadd_config", {}), ("toySkyMap_config", {}),
         ("toyIsr_metadata", {"visit": 1000, "ccd": 0}), ("toySkyMap_metadata", {}),
         ("deepCoadd_skyMap", {}), ("raw", {"visit": 1000, "ccd": 0}), ("ref_cat", {}),
         ("postISRCCD", {"visit": 1000, "ccd": 0})]
for name, data_id in calls:
    try:
        butler.get(name, data_id)
        print(name, "read")
    except Exception as exc:
        print(name, type(exc).__name__, exc)
for name in ("raw", "postISRCCD", "toyIsr_metadata"):
    try:
        print(name, len(butler.subset(name)), "refs")
    except Exception as exc:
        print(name, type(exc).__name__, exc)
"""


def read_everything(repo: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", READ_EVERYTHING, str(repo)], env=env,
                          capture_output=True, text=True, timeout=120)


def every_reader(repo: Path, tmp: Path) -> list[subprocess.CompletedProcess]:
    mine = tmp / "my output"
    return [
        read_everything(repo),
        hpcpipe("butler", "describe", repo),
        hpcpipe("drp", repo, "--output", mine, "--id", "--production", PRODUCTION,
                "--report", tmp / "my report"),
        hpcpipe("submit", "--dry-run", "--batch-type", "slurm", "--time", "10",
                "--batch-output", tmp / "batch", "drp", repo, "--output", tmp / "mine2",
                "--id", "--production", PRODUCTION),
    ]


def test_config_planted_in_an_input_repository_does_not_run(shared, tmp_path):
    """The issue's case: another user's repository holds a config that is Python code."""
    root = tmp_path / "shared"
    shutil.copytree(shared, root, symlinks=True)
    marker = tmp_path / "marker"
    out = root / "out"
    # the old form of a stored config: Python, run by the old butler on every read
    (out / "config" / "toyIsr.py").write_text(
        "# hpcpipe config class: production_tasks.ToyIsrConfig\n" + python_payload(marker))
    # the new form, with other values and hostile strings: data, never run
    stored = yaml.safe_load((out / "config" / "toyIsr.yaml").read_text())
    stored["fields"]["scale"] = 3.0
    stored["fields"]["slow_filter"] = shell_payload(marker)
    (out / "config" / "toyIsr.yaml").write_text(yaml.safe_dump(stored))
    before = (out / "config" / "toyIsr.yaml").read_text()
    mine = tmp_path / "my out"  # a path with a space
    result = hpcpipe("drp", out, "--output", mine, "--id", "--production", PRODUCTION,
                     "--report", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    # the output repository gets its own config, compared with nothing of the input's
    assert Butler(mine).get("toyIsr_config").scale == 1.0
    assert (out / "config" / "toyIsr.yaml").read_text() == before
    # a changed config is compared with the output's own, and backed up there only
    result = hpcpipe("drp", out, "--output", mine, "--id", "--production", PRODUCTION,
                     "-c", "toyIsr.scale=2", "--report", tmp_path / "report")
    assert result.returncode == 2 and "--clobber-config" in result.stderr
    result = hpcpipe("drp", out, "--output", mine, "--id", "--production", PRODUCTION,
                     "-c", "toyIsr.scale=2", "--clobber-config", "--report",
                     tmp_path / "report")
    assert result.returncode == 0, result.stderr
    assert Butler(mine).get("toyIsr_config").scale == 2.0
    assert (mine / "config" / "toyIsr.yaml~1").exists()
    assert not list((out / "config").glob("*~*"))
    assert not marker.exists()


@pytest.mark.parametrize("spare", ["nothing", "repositoryCfg.yaml"])
def test_code_planted_in_every_file_never_runs(shared, tmp_path, spare):
    """Every file of both repositories planted (but ``_mapper``); ``spare`` keeps the chain
    readable so that the readers go deeper."""
    root = tmp_path / "shared"
    shutil.copytree(shared, root, symlinks=True)
    marker = tmp_path / "marker"
    planted = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        # the camera description (data, read by a strict loader that refuses a planted key)
        # is spared with repositoryCfg.yaml so that the chain opens and the readers go deeper
        spared = ("_mapper", spare) + (("_camera.yaml",) if spare != "nothing" else ())
        if path.name in spared or path.parent.name == "report":
            continue
        data = path.read_bytes()
        if path.suffix == ".yaml":
            text = data.decode()
            if text.lstrip().startswith(("-", "[")):  # a YAML list: a tagged item
                text = text + f"- !!python/object/apply:os.system ['touch {marker}']\n"
            else:
                text = text + yaml_payload(marker)
            path.write_text(text)
        elif path.suffix in (".py", "") or path.suffix.startswith(".yaml"):
            path.write_text(data.decode(errors="replace") + "\n" + python_payload(marker))
        else:  # binary files (FITS, SQLite): code appended after their content
            path.write_bytes(data + python_payload(marker).encode())
        planted += 1
    # the old stored-config form, and a parent named by a shell substitution
    for name in ("toyIsr", "toyCoadd", "toySkyMap"):
        (root / "out" / "config" / f"{name}.py").write_text(
            f"# hpcpipe config class: production_tasks.{name[0].upper()}{name[1:]}Config\n"
            + python_payload(marker))
    (root / "out" / "_parent").write_text(shell_payload(marker) + "\n")
    assert planted > 20
    results = every_reader(root / "out", tmp_path)
    assert not marker.exists(), [r.stdout + r.stderr for r in results]
    if spare == "repositoryCfg.yaml":  # the chain opens: the readers got to the datasets
        assert "toyIsr_config" in results[0].stdout and "raw" in results[0].stdout
