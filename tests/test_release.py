"""Release files: catalogs from many ranks in one HDF5 file (shared or per-rank + VDS)."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from mpi_helpers import on_root, shared_dir

from hpcpipe.comm.world import World
from hpcpipe.errors import FileFormatError
from hpcpipe.io.release import (
    ReleaseError,
    open_release,
    read_release_table,
    write_release_table,
)
from hpcpipe.table import Catalog, Schema


def source_schema() -> Schema:
    schema = Schema.minimal()
    schema.add_field("visit", "L", doc="visit number")
    schema.add_field("ccd", "I", doc="detector")
    schema.add_field("psf_flux", "D", doc="PSF flux", units="count")
    schema.add_field("ap_flux", "F", doc="aperture fluxes", units="count", shape=(3,))
    schema.add_flag("flag_edge", doc="too close to the edge")
    return schema


def rank_catalog(rank: int, n: int) -> Catalog:
    ids = rank * 1_000_000 + np.arange(n)
    columns = {"id": ids, "coord_ra": np.radians(150 + ids * 1e-6),
               "coord_dec": np.radians(2 + ids * 1e-6), "visit": np.full(n, 7),
               "ccd": np.full(n, rank, np.int32), "psf_flux": ids * 0.5,
               "ap_flux": np.repeat(ids[:, None], 3, axis=1).astype(np.float32),
               "flag_edge": ids % 2 == 0}
    cat = Catalog.from_columns(source_schema(), columns)
    cat.metadata["VISIT"] = 7
    return cat


def check_release(path: str, counts: list[int]) -> None:
    cat = read_release_table(path, "sources")
    assert len(cat) == sum(counts)
    for rank, count in enumerate(counts):
        mine = cat.where(cat["ccd"] == rank)
        expected = rank_catalog(rank, count)
        np.testing.assert_array_equal(np.sort(mine["id"]), expected["id"])
        order = np.argsort(mine["id"])
        np.testing.assert_array_equal(mine["ap_flux"][order], expected["ap_flux"])
        np.testing.assert_array_equal(mine["flag_edge"][order], expected["flag_edge"])
    assert len(np.unique(cat["id"])) == len(cat)  # every row exactly once
    assert cat.schema["psf_flux"].units == "ct" and cat.metadata["VISIT"] == 7
    table = cat.to_astropy()
    assert len(table) == sum(counts)
    with h5py.File(path, "r") as plain:  # plain h5py, no MPI
        assert plain["sources"].shape == (sum(counts),)
        assert plain["provenance"].attrs["software"].startswith("hpcpipe")


@pytest.mark.parametrize("mode", ["shared", "per-rank"])
def test_serial_release_round_trip(tmp_path, mode):
    world = World()
    path = tmp_path / "sources-visit-7.h5"
    assert write_release_table(path, "sources", rank_catalog(0, 25), world, mode=mode,
                               compression="gzip") == 25
    check_release(str(path), [25])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mode, compression", [("shared", None), ("shared", "gzip"),
                                               ("per-rank", None)])
@pytest.mark.parametrize("empty_rank", [None, 1])
@pytest.mark.parametrize("block_bytes", [16 << 20, 300])
def test_mpi_release_every_row_once(tmp_path_factory, monkeypatch, mode, compression,
                                    empty_rank, block_bytes):
    """Uneven row counts, a rank with none, and (with 300-byte blocks: a few rows per
    collective call) ranks that make different numbers of calls with rows in them."""
    import hpcpipe.io.release as release

    monkeypatch.setattr(release, "WRITE_BLOCK_BYTES", block_bytes)
    world = World()
    directory = shared_dir(world, tmp_path_factory)
    counts = [0 if r == empty_rank else 10 + 7 * r for r in range(world.size)]
    path = f"{directory}/sources-{mode}-{compression}-{empty_rank}-{block_bytes}.h5"
    total = write_release_table(path, "sources", rank_catalog(world.rank, counts[world.rank]),
                                world, mode=mode, compression=compression)
    assert total == sum(counts)

    def check() -> None:
        check_release(path, counts)
        if compression:
            with h5py.File(path, "r") as plain:
                assert plain["sources"].compression == "gzip"

    on_root(world, check)


@pytest.mark.mpi(min_size=2)
def test_mpi_ranks_with_different_schemas_are_refused(tmp_path_factory):
    world = World()
    directory = shared_dir(world, tmp_path_factory)
    cat = rank_catalog(world.rank, 3)
    if world.rank == 1:
        schema = source_schema()
        schema.add_field("extra", "D")
        cat = Catalog(schema)
    with pytest.raises(ReleaseError, match="schema"):
        write_release_table(f"{directory}/bad.h5", "sources", cat, world)
    assert not os.path.exists(f"{directory}/bad.h5")


def test_missing_part_is_an_error_not_fill_values(tmp_path):
    path = tmp_path / "objects.h5"
    write_release_table(path, "sources", rank_catalog(0, 5), World(), mode="per-rank")
    part = next((tmp_path / "objects.h5.parts").rglob("*.h5"))
    part.unlink()
    with pytest.raises(FileFormatError, match="missing"):
        read_release_table(path, "sources")


def test_not_a_release_and_unknown_version(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(FileFormatError, match="not an HDF5 file"):
        open_release(junk)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as handle:
        handle["x"] = np.arange(3)
    with pytest.raises(FileFormatError, match="not an hpcpipe release"):
        open_release(plain)
    future = tmp_path / "future.h5"
    write_release_table(future, "sources", rank_catalog(0, 2), World())
    with h5py.File(future, "r+") as handle:
        handle.attrs["hpcpipe_layout_version"] = 42
    with pytest.raises(FileFormatError, match="version 42"):
        read_release_table(future, "sources")
    ok = tmp_path / "ok.h5"
    write_release_table(ok, "sources", rank_catalog(0, 1), World())
    with pytest.raises(FileFormatError, match="no dataset 'objects'"):
        read_release_table(ok, "objects")


@pytest.mark.mpi(min_size=2)
def test_mpi_compression_falls_back_with_a_warning(tmp_path_factory, monkeypatch):
    """Where HDF5 cannot compress collectively, the data go uncompressed, with a warning."""
    import hpcpipe.io.release as release

    world = World()
    directory = shared_dir(world, tmp_path_factory)
    monkeypatch.setattr(release, "parallel_compression_works", lambda world, directory: False)
    path = f"{directory}/fallback.h5"
    if world.rank == 0:
        with pytest.warns(UserWarning, match="uncompressed"):
            write_release_table(path, "sources", rank_catalog(0, 4), world, compression="gzip")
    else:
        write_release_table(path, "sources", rank_catalog(world.rank, 4), world,
                            compression="gzip")

    def check() -> None:
        with h5py.File(path, "r") as plain:
            assert plain["sources"].compression is None
        check_release(path, [4] * world.size)

    on_root(world, check)


def make_coadd(seed: int):
    from test_exposure_io import make_exposure

    return make_exposure("pixel" if seed % 2 else "gaussian", seed=seed)


@pytest.mark.mpi(min_size=2)
def test_mpi_coadds_of_a_tract(tmp_path_factory):
    from hpcpipe.io.release import read_release_coadd, write_release_coadds

    world = World()
    directory = shared_dir(world, tmp_path_factory)
    # rank r holds patch r,0 in g and r; rank 0 also holds 9,9 in i
    mine = {(f"{world.rank},0", band): make_coadd(10 * world.rank + k)
            for k, band in enumerate("gr")}
    if world.rank == 0:
        mine[("9,9", "i")] = make_coadd(99)
    path = f"{directory}/coadd-tract-0.h5"
    groups = write_release_coadds(path, mine, world)
    assert len(groups) == 2 * world.size + 1

    def check() -> None:
        for rank in range(world.size):
            for k, band in enumerate("gr"):
                back = read_release_coadd(path, f"{rank},0", band)
                assert back == make_coadd(10 * rank + k)
        assert read_release_coadd(path, "9,9", "i") == make_coadd(99)
        with pytest.raises(FileFormatError, match="no coadd patch_5,5/g"):
            read_release_coadd(path, "5,5", "g")

    on_root(world, check)


CRASH_BEFORE_RENAME = """
import os, signal, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
from test_release import rank_catalog
from hpcpipe.comm.world import World
from hpcpipe.io.release import write_release_table

final = os.path.abspath(sys.argv[1])
real_replace = os.replace

def replace(src, dst, *args, **kwargs):
    if os.path.abspath(dst) == final:  # the crash: everything written, nothing renamed
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)

os.replace = replace
write_release_table(final, "sources", rank_catalog(0, 7), World(), mode=sys.argv[2])
"""


@pytest.mark.parametrize("mode", ["shared", "per-rank"])
def test_crash_before_the_rename_keeps_the_previous_release(tmp_path, mode):
    """A writer killed after writing everything but before the rename: the published file
    still serves the previous release, whole; the next write leaves no debris."""
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "release" / "objects.h5"
    write_release_table(path, "sources", rank_catalog(0, 5), World(), mode=mode)
    env = {**os.environ, "HPCPIPE_NO_MPI": "1"}
    crashed = subprocess.run([sys.executable, "-c", CRASH_BEFORE_RENAME, str(path), mode,
                              str(Path(__file__).parent)], env=env, capture_output=True,
                             text=True, timeout=120)
    assert crashed.returncode == -9, crashed.stderr  # killed where we wanted
    check_release(str(path), [5])  # the previous release, intact and readable
    write_release_table(path, "sources", rank_catalog(0, 7), World(), mode=mode)
    check_release(str(path), [7])
    leftovers = [p.name for p in path.parent.rglob("*") if p.name.startswith(".tmp-")]
    assert not leftovers
    parts = path.with_name("objects.h5.parts")
    if mode == "per-rank":  # only the parts of the published file are left
        assert len(list(parts.iterdir())) == 1 and len(list(parts.rglob("*.h5"))) == 1
    else:
        assert not parts.exists()
