"""`hpcpipe release`: a finished production's outputs gathered into the release files.

A small "finished production" is made directly through the butler (source catalogs for
several visits and CCDs, reference and forced catalogs and coadds for several patches), so
that the test is about the release step: every row from every unit is in the files exactly
once, whichever rank wrote it, and the files read back without MPI, through the butler and
with plain h5py.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi_helpers import on_root, shared_dir

from hpcpipe.butler import Butler, ButlerError, create_repository
from hpcpipe.comm.world import World
from hpcpipe.drivers.release import write_release
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure, FilterLabel
from hpcpipe.skymap import DiscreteSkyMap, SkyMapConfig
from hpcpipe.table import Catalog, Schema

VISITS = {1000: "g", 1001: "g", 1100: "r"}
CCDS = (0, 1, 2)


def _catalog(n: int, first_id: int) -> Catalog:
    schema = Schema.minimal()
    schema.add_field("flux", "D", doc="a flux", units="count")
    return Catalog.from_columns(schema, {
        "id": first_id + np.arange(n), "coord_ra": np.full(n, 2.6),
        "coord_dec": np.full(n, 0.03), "flux": np.arange(n, dtype=float)})


def _make_finished_production(root: Path) -> Butler:
    repo = root / "repo"
    create_repository(repo, "simcam")
    butler = Butler(repo)
    sky_map = DiscreteSkyMap([150.0], [2.0], [0.02],
                             config=SkyMapConfig(patch_inner_dimensions=(200, 200),
                                                 patch_border=10))
    butler.put(sky_map, "skyMap")
    butler.put(Catalog(_catalog(0, 0).schema), "src_schema")
    return butler


def _fill(butler: Butler) -> dict[str, int]:
    counts = {"sources": 0, "objects": 0, "forced": 0}
    for visit, band in VISITS.items():
        for ccd in CCDS:
            n = 5 + ccd + visit % 7  # a different count per unit
            butler.put(_catalog(n, visit * 1000 + ccd * 100), "src", visit=visit, ccd=ccd,
                       filter=band)
            counts["sources"] += n
    tract = next(iter(butler.get("skyMap")))
    for k, patch_info in enumerate(list(tract)[:3]):
        patch = "{},{}".format(*patch_info.index)
        n = 4 + 3 * k
        butler.put(_catalog(n, 10_000 * (k + 1)), "deepCoadd_ref", tract=0, patch=patch)
        counts["objects"] += n
        for band in ("g", "r"):
            butler.put(_catalog(n, 10_000 * (k + 1)), "deepCoadd_forced_src", tract=0,
                       patch=patch, filter=band)
            coadd = Exposure(Box2I(0, 0, 16, 12), filter=FilterLabel(band))
            coadd.image.array[:] = k
            butler.put(coadd, "deepCoadd_calexp", tract=0, patch=patch, filter=band)
        counts["forced"] += n
    return counts


def _register_raws(monkeypatch: pytest.MonkeyPatch, butler: Butler) -> None:
    """The release lists visits and CCDs from the registry: answer as if raws were ingested."""
    rows = [(v, c) for v in VISITS for c in CCDS]

    def query(dataset_type, keys, data_id=None, **kw):  # noqa: ANN001
        if keys == ["visit", "ccd"]:
            return rows
        if keys == "filter":
            return sorted(set(VISITS.values()))
        raise AssertionError(f"unexpected query {keys}")

    monkeypatch.setattr(butler, "queryMetadata", query)


def _check(directory: Path, counts: dict[str, int], butler: Butler) -> None:
    ids = []
    for visit in VISITS:
        path = directory / "sources" / f"visit-{visit}.h5"
        with h5py.File(path, "r") as handle:  # plain h5py, no MPI
            rows = handle["sources"][...]
        assert sorted(set(rows["ccd"])) == list(CCDS)
        assert set(rows["visit"]) == {visit}
        ids.append(rows["id"])
    ids = np.concatenate(ids)
    assert ids.size == counts["sources"] == np.unique(ids).size
    objects = butler.get("release_objects", tract=0)
    assert len(objects) == counts["objects"] == np.unique(objects["id"]).size
    assert set(objects["patch"]) == {b"0,0", b"1,0", b"2,0"} or len(set(objects["patch"])) == 3
    forced = butler.get("release_forced", tract=0, filter="r")
    assert len(forced) == counts["forced"]
    table = butler.get("release_sources", visit=1100).to_astropy()
    assert len(table) == sum(5 + c + 1100 % 7 for c in CCDS)
    with h5py.File(directory / "coadds" / "tract-0.h5", "r") as handle:
        groups = [k for k in handle if k.startswith("patch_")]
        assert len(groups) == 3


def test_release_serial(tmp_path, monkeypatch):
    butler = _make_finished_production(tmp_path)
    counts = _fill(butler)
    _register_raws(monkeypatch, butler)
    result = write_release(butler, tmp_path / "repo" / "release", World())
    assert len(result["files"]) == len(VISITS) + 1 + 2 + 1
    _check(tmp_path / "repo" / "release", counts, butler)
    with pytest.raises(ButlerError):
        butler.put(_catalog(1, 0), "release_objects", tract=0)


@pytest.mark.mpi(min_size=2)
def test_release_mpi_every_row_once(tmp_path_factory, monkeypatch):
    world = World()
    root = Path(shared_dir(world, tmp_path_factory, "release"))
    counts = None
    if world.rank == 0:
        butler = _make_finished_production(root)
        counts = _fill(butler)
    counts = world.bcast(counts)
    world.barrier()
    butler = Butler(root / "repo")
    _register_raws(monkeypatch, butler)
    result = write_release(butler, root / "repo" / "release", world, mode="shared")
    assert len(result["files"]) == len(VISITS) + 1 + 2 + 1
    on_root(world, lambda: _check(root / "repo" / "release", counts, butler))
