"""Layers (issue 21, item 4): cameras and productions register themselves; one-way imports.

Cameras and productions are found by name through entry points (``hpcpipe.cameras``,
``hpcpipe.productions``), hpcpipe's own as other packages' (a package is faked here by a
``.dist-info`` directory on ``sys.path``, as pip installs one); no generic code names a
camera. The camera layer (``hpcpipe.obs``) imports neither the drivers, the tasks nor the
simulator, and the simulator takes only the camera's description from it.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest

from hpcpipe.butler import Butler, UnknownMapperError, create_repository
from hpcpipe.butler.mapper import mapper_names
from hpcpipe.drivers.production import (
    ProductionError,
    find_production,
    production_for_mapper,
    registered_productions,
)
from hpcpipe.obs import registry
from hpcpipe.obs.camera import CAMERA_DIR

PACKAGE = Path(__file__).resolve().parent.parent / "hpcpipe"


def _fake_package(root: Path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    dist = root / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)
    for module, text in modules.items():
        (root / f"{module}.py").write_text(text)


@pytest.fixture
def mycams(tmp_path, monkeypatch):
    """A package registering the camera ``mycam`` (a copy of ``generic``), a production for
    it, and, wrongly, a camera under hpcpipe's own name ``simcam``."""
    site = tmp_path / "site"
    site.mkdir()
    text = (CAMERA_DIR / "generic.yaml").read_text().replace("name: generic", "name: mycam")
    (site / "mycam.yaml").write_text(text)
    (site / "impostor.yaml").write_text(text.replace("name: mycam", "name: simcam"))
    _fake_package(site, "mycams", (
        "[hpcpipe.cameras]\n"
        "mycam = mycams:CAMERA_FILE\n"
        "simcam = mycams:IMPOSTOR\n"
        "[hpcpipe.productions]\n"
        "mycam = mycams:production\n"
        "notaproduction = mycams:CAMERA_FILE\n"), {
        "mycams": (
            "from pathlib import Path\n"
            "from hpcpipe.drivers.production import Production, ProductionStep\n"
            "from hpcpipe.pipe.make_skymap import MakeSkyMapTask\n"
            "CAMERA_FILE = Path(__file__).with_name('mycam.yaml')\n"
            "IMPOSTOR = Path(__file__).with_name('impostor.yaml')\n"
            "production = Production('mycam', [ProductionStep('makeSkyMap', MakeSkyMapTask, "
            "())])\n")})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "mycams", raising=False)
    yield site
    sys.modules.pop("mycams", None)


def test_hpcpipe_registers_its_cameras_and_production_as_entry_points():
    """The installed metadata (scripts/bootstrap.sh's editable install) declares every
    shipped camera file and the standard production, and they resolve to this tree."""
    own = metadata.distribution("hpcpipe").entry_points
    cameras = {e.name: e for e in own.select(group=registry.ENTRY_POINT_GROUP)}
    shipped = {p.stem for p in CAMERA_DIR.glob("*.yaml")}
    assert set(cameras) == shipped, (
        "hpcpipe's installed entry points do not list the camera files of "
        f"{CAMERA_DIR}: reinstall its metadata (pip install --no-build-isolation --no-deps -e ., "
        "as scripts/bootstrap.sh does)")
    for name, entry in cameras.items():
        assert Path(entry.load()).resolve() == (CAMERA_DIR / f"{name}.yaml").resolve()
        assert registry.find_camera(name).name == name
    productions = {e.name: e for e in own.select(group="hpcpipe.productions")}
    assert set(productions) == {"standard"}
    assert productions["standard"].load() is find_production("standard")


def test_a_package_registers_a_camera_and_its_production(mycams, tmp_path):
    assert registry.camera_files()["mycam"] == mycams / "mycam.yaml"
    assert mapper_names()["mycam"] == str(mycams / "mycam.yaml")
    # hpcpipe's own cameras come first: a package cannot take one of their names
    assert registry.camera_files()["simcam"] == CAMERA_DIR / "simcam.yaml"
    repo = create_repository(tmp_path / "repo", "mycam")
    assert (tmp_path / "repo" / "_mapper").read_text().strip() == "mycam"
    mapper = Butler(repo.uri).mapper
    assert mapper.name == "mycam" and mapper.camera.layout == "detector-per-file"
    assert "mycam" in registered_productions()
    production = production_for_mapper(mapper)
    assert production.name == "mycam" and production.step_names == ["makeSkyMap"]


def test_a_camera_without_a_production_of_its_own_runs_the_standard_one(tmp_path):
    for name in ("simcam", "generic", "mosaic4"):
        mapper = Butler(create_repository(tmp_path / name, name).uri).mapper
        production = production_for_mapper(mapper)
        assert production.name == "standard" and production.step_names[0] == "processCcd"
    # no production is registered under a camera's name by hpcpipe itself
    with pytest.raises(ProductionError, match="no production registered for 'simcam'"):
        find_production("simcam")


def test_a_repository_of_an_unregistered_camera_names_it_and_imports_nothing(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "_mapper").write_text("mycam\n")
    with pytest.raises(UnknownMapperError, match=r"unknown mapper 'mycam'.*generic, mosaic4"):
        Butler(repo)
    (repo / "_mapper").write_text("mycams:CAMERA_FILE\n")
    with pytest.raises(UnknownMapperError, match="unknown mapper 'mycams:CAMERA_FILE'"):
        Butler(repo)
    assert "mycams" not in sys.modules


def test_the_shipped_cameras_without_installed_metadata(monkeypatch):
    """A source tree on PYTHONPATH whose metadata is not installed still has its cameras."""
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [])
    assert registry.camera_files() == {p.stem: p for p in CAMERA_DIR.glob("*.yaml")}
    assert registry.find_camera("mosaic4").name == "mosaic4"


def test_productions_by_import_path_and_bad_registrations(mycams):
    assert find_production("mycams:production").name == "mycam"
    with pytest.raises(ProductionError, match="'notaproduction' is not a Production"):
        find_production("notaproduction")


def _imports(path: Path) -> set[str]:
    """Every hpcpipe module a source file imports (top level or inside functions)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # the module's parts end with its file name (or __init__)
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("hpcpipe.")}


@pytest.mark.parametrize("layer, allowed", [
    # the camera layer stands on the butler and the data model only
    ("obs", ("hpcpipe.obs", "hpcpipe.butler", "hpcpipe.image", "hpcpipe.geom",
             "hpcpipe.errors")),
    # the simulator takes the camera's description (data), nothing else of the cameras
    ("sim", ("hpcpipe.sim", "hpcpipe.obs.camera", "hpcpipe.obs.cameras", "hpcpipe.image",
             "hpcpipe.geom", "hpcpipe.table", "hpcpipe.io", "hpcpipe.comm")),
])
def test_layers_import_one_way(layer, allowed):
    wrong = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        bad = sorted(name for name in _imports(path)
                     if not any(name == a or name.startswith(a + ".") for a in allowed))
        if bad:
            wrong[str(path.relative_to(PACKAGE.parent))] = bad
    assert not wrong


def test_generic_code_names_no_camera():
    """The butler and the production machinery look cameras up by name: none is written in."""
    butler = [p for p in sorted((PACKAGE / "butler").glob("*.py")) if p.name != "cli.py"]
    for path in [*butler,
                 PACKAGE / "drivers" / "production.py", PACKAGE / "obs" / "registry.py",
                 PACKAGE / "obs" / "mapper.py"]:
        tree = ast.parse(path.read_text())
        strings = [n.value for n in ast.walk(tree)
                   if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        docstrings = {ast.get_docstring(n, clean=False) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))}
        named = [s for s in strings if s not in docstrings and "simcam" in s.lower()]
        assert not named, f"{path} names a camera: {named}"
