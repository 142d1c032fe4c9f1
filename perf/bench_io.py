"""Aggregate write bandwidth of a collective catalog write, beside one rank and a plain write.

Usage: mpirun -n 2 python perf/bench_io.py [--megabytes 512] [--repeat 3] [--dir DIR]

In one run, on the same bytes (a catalog of 16 float64 columns):

* collective: every rank writes its share into one shared file through
  :func:`hpcpipe.io.release.write_release_table` (MPI-IO, one collective call per rank),
  which also packs the catalog's columns into HDF5 rows;
* collective, packed: the same write from rows packed beforehand
  (:func:`hpcpipe.io.parallel_table.write_rows_collectively`): the HDF5 write alone;
* one rank: rank 0 writes all the rows into an HDF5 file alone (h5py, no MPI);
* plain: rank 0 writes the same bytes with ``file.write`` (the disk's floor).

Each write ends with ``fsync``, so the page cache does not flatter anyone. Ratios are
bandwidth / plain bandwidth (1.0 = as fast as the plain write). The machine may be shared:
compare ratios, not absolute rates.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import h5py
import numpy as np

from hpcpipe.comm.world import World
from hpcpipe.io.hdf5_table import catalog_rows
from hpcpipe.io.parallel_table import write_rows_collectively
from hpcpipe.io.release import write_release_table
from hpcpipe.table import Catalog, Schema

COLUMNS = 16


def make_catalog(rows: int, seed: int) -> Catalog:
    schema = Schema()
    for k in range(COLUMNS):
        schema.add_field(f"col{k:02d}", "D", doc=f"column {k}")
    rng = np.random.default_rng(seed)
    return Catalog.from_columns(schema, {f"col{k:02d}": rng.random(rows) for k in range(COLUMNS)})


def fsync_path(path: str) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=float, default=512.0, help="total size (512)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best counts (3)")
    parser.add_argument("--dir", default=None, help="where to write (a temporary directory)")
    args = parser.parse_args()
    world = World()
    total_rows = int(args.megabytes * 1e6 / (8 * COLUMNS))
    share = total_rows // world.size + (1 if world.rank < total_rows % world.size else 0)
    mine = make_catalog(share, world.rank)
    directory = world.bcast(args.dir or tempfile.mkdtemp(prefix="hpcpipe-bench-io-")
                            if world.rank == 0 else None)
    nbytes = total_rows * 8 * COLUMNS
    best = {"collective": 0.0, "packed": 0.0, "one rank": 0.0, "plain": 0.0}
    my_rows = catalog_rows(mine)
    everything = make_catalog(total_rows, 0) if world.rank == 0 else None
    for _ in range(args.repeat):
        path = f"{directory}/collective.h5"
        world.barrier()
        start = time.perf_counter()
        write_release_table(path, "objects", mine, world)
        if world.rank == 0:
            fsync_path(path)
        world.barrier()
        best["collective"] = max(best["collective"], nbytes / (time.perf_counter() - start))
        path = f"{directory}/packed.h5"
        world.barrier()
        start = time.perf_counter()
        write_rows_collectively(path, "objects", my_rows, world)
        if world.rank == 0:
            fsync_path(path)
        world.barrier()
        best["packed"] = max(best["packed"], nbytes / (time.perf_counter() - start))
        if world.rank == 0:
            assert everything is not None
            rows = catalog_rows(everything)
            start = time.perf_counter()
            with h5py.File(f"{directory}/one-rank.h5", "w") as handle:
                handle.create_dataset("objects", data=rows)
            fsync_path(f"{directory}/one-rank.h5")
            best["one rank"] = max(best["one rank"], nbytes / (time.perf_counter() - start))
            start = time.perf_counter()
            with open(f"{directory}/plain.bin", "wb") as handle:
                handle.write(memoryview(rows).cast("B"))
                handle.flush()
                os.fsync(handle.fileno())
            best["plain"] = max(best["plain"], nbytes / (time.perf_counter() - start))
        world.barrier()
    if world.rank == 0:
        print(f"{nbytes / 1e6:.0f} MB; collective write from {world.size} rank(s)")
        print(f"{'writer':<34} {'MB/s':>8} {'vs plain':>9}")
        for name, label in (("collective", f"collective, {world.size} ranks (mpio)"),
                            ("packed", f"collective, {world.size} ranks, packed rows"),
                            ("one rank", "one rank, h5py"), ("plain", "plain file.write")):
            print(f"{label:<34} {best[name] / 1e6:8.0f} {best[name] / best['plain']:9.2f}")
        for name in ("collective.h5", "packed.h5", "one-rank.h5", "plain.bin"):
            os.unlink(os.path.join(directory, name))
        if not args.dir:
            os.rmdir(directory)


if __name__ == "__main__":
    main()
