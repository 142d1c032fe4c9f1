"""Benchmark of the release database: cone search, whole-catalog aggregate, HATS writing.

A synthetic object catalog (``--rows``, default 10^7; ``--columns`` float columns besides the
id and position, default 48 so about 50 in all) is generated in a temporary directory (removed
at the end), written

* as a HATS catalog by the MPI ranks (:func:`hpcpipe.catalog.hats_write.write_hats_catalog`;
  run under ``mpirun -n 1`` and ``-n 2`` for the parallel efficiency), and, with
  ``--hats-import``, by hats-import's own Dask pipeline from the same rows as Parquet (2
  local workers), for the write-path choice;
* as an HDF5 release file (:func:`hpcpipe.io.release.write_release_table`),

and then measured, side by side in one run, best of ``--repeat``:

* a cone search of 1 arcmin: :class:`hpcpipe.catalog.query.ReleaseDatabase` (HEALPix pruning)
  against the same DuckDB query on the same Parquet files without pruning (a full scan), and
  against ``h5py`` reading the positions of the HDF5 release and selecting with NumPy;
* ``SELECT count(*), avg(g_psfMag) ... GROUP BY healpix`` (order 5) in DuckDB, against h5py
  + ``numpy.bincount``.

It prints ratios against the best peer and, from the measured size, an extrapolation to
10^8 rows (``--rows 100000000`` measures it, given the memory and disk). Examples::

    python perf/bench_catalog.py --rows 10000000
    mpirun -n 2 python perf/bench_catalog.py --rows 10000000 --write-only
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa

from hpcpipe.catalog.columns import field_metadata
from hpcpipe.catalog.hats_write import write_hats_catalog
from hpcpipe.catalog.query import ReleaseDatabase
from hpcpipe.comm.world import World
from hpcpipe.io.release import write_release_table
from hpcpipe.table import Catalog, Schema

CENTER = (150.0, 2.2)


def make_rows(n: int, columns: int, seed: int, first_id: int) -> dict[str, np.ndarray]:
    """``n`` rows spread over a 10 x 10 degree field (1e7 rows: 28 per square arcmin)."""
    rng = np.random.default_rng(seed)
    ra = CENTER[0] + rng.uniform(-5, 5, n)
    sin_dec = rng.uniform(np.sin(np.radians(CENTER[1] - 5)), np.sin(np.radians(CENTER[1] + 5)), n)
    data = {"id": first_id + np.arange(n, dtype=np.int64), "ra": ra,
            "dec": np.degrees(np.arcsin(sin_dec)),
            "g_psfMag": rng.normal(23.0, 1.5, n)}
    for k in range(columns - 1):
        data[f"col{k:02d}"] = rng.standard_normal(n).astype(np.float32)
    return data


def arrow_table(data: dict[str, np.ndarray]) -> pa.Table:
    fields, arrays = [], []
    units = {"ra": "deg", "dec": "deg", "g_psfMag": "mag"}
    for name, values in data.items():
        array = pa.array(values)
        fields.append(pa.field(name, array.type, metadata=field_metadata(
            units.get(name, ""), "", name)))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def hdf5_catalog(data: dict[str, np.ndarray]) -> Catalog:
    schema = Schema()
    schema.add_field("id", "L", doc="id")
    schema.add_field("coord_ra", "D", doc="ra", units="rad")
    schema.add_field("coord_dec", "D", doc="dec", units="rad")
    for name, values in data.items():
        if name not in ("id", "ra", "dec"):
            schema.add_field(name, values.dtype.str, doc=name)
    columns = {name: values for name, values in data.items() if name not in ("ra", "dec")}
    columns["coord_ra"] = np.radians(data["ra"])
    columns["coord_dec"] = np.radians(data["dec"])
    return Catalog.from_columns(schema, columns)


def best(function, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def h5py_cone(path: Path, ra0: float, dec0: float, radius: float) -> int:
    with h5py.File(path, "r") as handle:
        dataset = handle["objects"]
        ra = np.degrees(dataset.fields("coord_ra")[...])
        dec = np.degrees(dataset.fields("coord_dec")[...])
    d_ra, d_dec = np.radians(ra - ra0), np.radians(dec - dec0)
    hav = np.sin(d_dec / 2) ** 2 + np.cos(np.radians(dec)) * np.cos(np.radians(dec0)) * \
        np.sin(d_ra / 2) ** 2
    return int(np.count_nonzero(np.degrees(2 * np.arcsin(np.sqrt(hav))) <= radius))


def h5py_aggregate(path: Path) -> int:
    from hats.pixel_math.spatial_index import compute_spatial_index  # only for this peer

    with h5py.File(path, "r") as handle:
        dataset = handle["objects"]
        ra = np.degrees(dataset.fields("coord_ra")[...])
        dec = np.degrees(dataset.fields("coord_dec")[...])
        mag = dataset.fields("g_psfMag")[...]
    pixel = compute_spatial_index(ra, dec) >> (2 * (29 - 5))
    _, inverse = np.unique(pixel, return_inverse=True)
    count = np.bincount(inverse)
    mean = np.bincount(inverse, weights=mag) / count
    return int(len(mean))


def hats_import_write(data: dict[str, np.ndarray], work: Path, workers: int) -> float:
    """hats-import's pipeline on a local Dask cluster, from the rows as one Parquet file."""
    import pyarrow.parquet as pq  # only for this peer
    from distributed import Client, LocalCluster
    from hats_import import pipeline_with_client
    from hats_import.catalog.arguments import ImportArguments

    source = work / "input.parquet"
    pq.write_table(arrow_table(data), source)
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        start = time.perf_counter()
        args = ImportArguments(output_path=str(work / "hi"), output_artifact_name="objects",
                               input_file_list=[str(source)], file_reader="parquet",
                               ra_column="ra", dec_column="dec", pixel_threshold=1_000_000,
                               highest_healpix_order=7, progress_bar=False,
                               tmp_dir=str(work / "hi-tmp"), resume=False)
        pipeline_with_client(args, client)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--columns", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    parser.add_argument("--write-only", action="store_true",
                        help="measure the HATS write only (for mpirun -n 1 / -n 2)")
    parser.add_argument("--hats-import", action="store_true",
                        help="also time hats-import's Dask pipeline on the same rows")
    parser.add_argument("--workdir", default=None, help="parent of the temporary directory")
    args = parser.parse_args()
    world = World()
    work = Path(world.bcast(tempfile.mkdtemp(prefix="bench-catalog-", dir=args.workdir)
                            if world.rank == 0 else None))
    try:
        share = args.rows // world.size + (world.rank < args.rows % world.size)
        first = world.exscan_sum(share)
        data = make_rows(share, args.columns, 42 + world.rank, first)
        table = arrow_table(data)
        world.barrier()
        start = time.perf_counter()
        result = write_hats_catalog(table, work / "hats" / "objects", "objects", world,
                                    pixel_threshold=1_000_000, margin_arcsec=10.0)
        write_seconds = world.allreduce(time.perf_counter() - start, op="max")
        del table
        if world.rank == 0:
            print(f"rows {args.rows:,}, columns {len(data)}, ranks {world.size}")
            print(f"HATS write (MPI ranks): {write_seconds:.2f} s, "
                  f"{args.rows / write_seconds / 1e6:.2f} M rows/s, "
                  f"{len(result['pixels'])} pixels, {result['margin_rows']:,} margin rows")
        if args.write_only:
            return
        if world.size > 1:
            if world.rank == 0:
                print("(the queries are measured on one rank: run without mpirun)")
            return
        if args.hats_import:
            seconds = hats_import_write(data, work, 2)
            print(f"HATS write (hats-import, Dask 2 workers): {seconds:.2f} s, "
                  f"{args.rows / seconds / 1e6:.2f} M rows/s; MPI writer / hats-import: "
                  f"{seconds / write_seconds:.2f}x")
        h5 = work / "objects.h5"
        write_release_table(h5, "objects", hdf5_catalog(data), World(None))
        del data
        db = ReleaseDatabase(work / "hats", threads=args.threads, max_rows=None, timeout=600)
        files = db.catalogs["objects"].files
        db.con.execute("SELECT 1").fetchall()
        ra0, dec0, radius = 150.1, 2.2, 1 / 60
        cone = f"SELECT id, ra, dec, g_psfMag FROM objects WHERE cone(ra, dec, {ra0}, {dec0}, " \
            f"{radius})"
        t_cone, got = best(lambda: db.arrow(cone), args.repeat)
        scan = cone.replace(f"cone(ra, dec, {ra0}, {dec0}, {radius})",
                            f"ang_sep(ra, dec, {ra0}, {dec0}) <= {radius}")
        t_scan, full = best(lambda: db.arrow(scan), args.repeat)
        t_h5, n_h5 = best(lambda: h5py_cone(h5, ra0, dec0, radius), args.repeat)
        assert len(got) == len(full) == n_h5, (len(got), len(full), n_h5)
        print(f"cone 1 arcmin ({len(got)} rows, {len(files)} partition files):")
        print(f"  pruned DuckDB {t_cone * 1e3:9.1f} ms")
        print(f"  full scan     {t_scan * 1e3:9.1f} ms   ratio {t_scan / t_cone:8.1f}x")
        print(f"  h5py + NumPy  {t_h5 * 1e3:9.1f} ms   ratio {t_h5 / t_cone:8.1f}x")
        agg = ("SELECT _healpix_29 >> 48 AS healpix5, count(*) AS n, avg(g_psfMag) AS mean "
               "FROM objects GROUP BY healpix5")
        t_agg, rows = best(lambda: db.arrow(agg), args.repeat)
        t_h5agg, n_pix = best(lambda: h5py_aggregate(h5), max(1, args.repeat - 1))
        assert len(rows) == n_pix
        print(f"aggregate GROUP BY healpix (order 5, {len(rows)} groups):")
        print(f"  DuckDB        {t_agg * 1e3:9.1f} ms   {args.rows / t_agg / 1e6:8.1f} M rows/s")
        print(f"  h5py + NumPy  {t_h5agg * 1e3:9.1f} ms   ratio {t_h5agg / t_agg:8.1f}x")
        if args.rows < 100_000_000:
            scale = 100_000_000 / args.rows
            print(f"extrapolated to 10^8 rows (x{scale:g}; the pruned cone reads a fixed number "
                  "of row groups, scans and aggregates grow with the rows):")
            print(f"  cone ~{t_cone * 1e3:.0f} ms, full scan ~{t_scan * scale:.1f} s, "
                  f"h5py ~{t_h5 * scale:.1f} s, aggregate ~{t_agg * scale:.1f} s")
        db.close()
    finally:
        world.barrier()
        if world.rank == 0:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
