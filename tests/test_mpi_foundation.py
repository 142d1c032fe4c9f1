"""The foundation under MPI: collective catalog writes and the demo on every rank."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi_helpers import on_root, shared_dir

from hpcpipe.comm.world import World
from hpcpipe.io.parallel_table import mpio_available, write_rows_collectively

ROW = np.dtype([("rank", np.int32), ("i", np.int64), ("value", np.float64)])


@pytest.mark.mpi(min_size=2)
def test_h5py_has_mpio():
    assert mpio_available()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("empty_rank", [None, 0, 1])
def test_collective_write_has_every_row_once(tmp_path_factory, empty_rank):
    """Each rank writes a different number of rows, one rank none: no hang, nothing lost."""
    world = World()
    directory = shared_dir(world, tmp_path_factory)
    n = 0 if world.rank == empty_rank else 3 + 5 * world.rank
    rows = np.zeros(n, ROW)
    rows["rank"] = world.rank
    rows["i"] = np.arange(n)
    rows["value"] = world.rank + np.arange(n) / 100.0
    offset = write_rows_collectively(f"{directory}/rows.h5", "rows", rows, world)
    counts = world.allgather(n)
    offsets = world.allgather(offset)

    def check() -> None:
        assert offsets == [sum(counts[:r]) for r in range(world.size)]
        with h5py.File(f"{directory}/rows.h5", "r") as handle:  # read back without MPI
            data = handle["rows"][()]
        assert data.shape == (sum(counts),)
        for rank, count in enumerate(counts):
            mine = data[data["rank"] == rank]
            np.testing.assert_array_equal(mine["i"], np.arange(count))
            np.testing.assert_allclose(mine["value"], rank + np.arange(count) / 100.0)

    on_root(world, check)


@pytest.mark.mpi(min_size=2)
def test_demo_production_under_mpi(tmp_path_factory):
    from hpcpipe.drivers.demo import DemoSettings, run_production_demo

    world = World()
    directory = shared_dir(world, tmp_path_factory)
    settings = DemoSettings(visits=1, ccds=2, filters=("r",), size=768, seed=1)
    summary = run_production_demo(Path(directory), settings, world=world)
    only_root_has_summary = world.allgather(summary is not None)

    def check() -> None:
        assert only_root_has_summary == [True] + [False] * (world.size - 1)
        assert summary is not None
        assert summary["exit_status"] == 0
        assert summary["steps"]["processCcd"]["done"] == 2
        assert all(not counts.get("failed") for counts in summary["steps"].values())
        assert summary["quality"]["n_objects"] > 0
        assert summary["quality"]["astrom_mas"] < 30.0
        # the release's objects are also a HATS catalog, with the same rows
        objects = sum(n for path, n in summary["release_rows"].items() if "/objects/" in path)
        assert summary["release_hats"]["objects"] == objects > 0

    on_root(world, check)
