"""Sharded reference catalogs: ingest rate per core, and the time to read one CCD's stars.

Usage: python perf/bench_refcat.py [--rows 1e7] [--orders 3,4,5] [--ccds 200] [--dir DIR]
       mpirun -n 2 python perf/bench_refcat.py ...   (the ingest shared by the ranks)

In one run, on one synthetic all-sky catalog (uniform on the sphere, Gaia-like columns: ra,
dec, their errors, two magnitudes and an error, proper motions; written as Parquet in a
temporary directory and removed afterwards):

* ingest: ``ingest_reference_catalog`` into a repository (HEALPix order chosen from the data,
  at most 20000 stars a shard), in rows per second per core, beside the floor of reading the
  same columns of the input with pyarrow alone;
* per CCD: the reference stars of a 4k x 4k CCD at 0.2"/px (a TAN WCS at a random position
  and rotation, padded by the calibration's default 250 pixels) through
  ``ReferenceObjectLoader.load_pixel_box``: the median over ``--ccds`` positions, at the
  automatic order and at each of ``--orders`` (re-ingested);
* peers for the same CCDs: reading the single Parquet file through ``pyarrow.dataset`` with a
  predicate filter on the CCD's RA/Dec bounding box, and astropy ``Table.read`` of the whole
  file followed by a mask (a few CCDs each: they read everything).

Ratios are peer time / sharded time (above 1: the shards are faster). The shard read time
grows with the stars per shard, not with the catalog's size: a catalog ten times larger, at
the order chosen for it, has about as many stars per shard (``--orders`` shows the cost at
coarser orders, i.e. more stars per shard, from the same file).
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from astropy.table import Table
from astropy.wcs import WCS

from hpcpipe.butler import create_repository
from hpcpipe.comm.world import World
from hpcpipe.geom import Box2I
from hpcpipe.refcat import (
    IngestSpec,
    LoadReferenceObjectsConfig,
    ReferenceObjectLoader,
    ingest_reference_catalog,
)
from hpcpipe.refcat.ingest import jyear_to_mjd

CCD = 4096
SCALE = 0.2  # arcsec per pixel
MARGIN = 250  # pixels, LoadReferenceObjectsConfig.pixelMargin's default
CHUNK = 1_000_000


def write_catalog(path: Path, rows: int, seed: int) -> None:
    """A uniform all-sky catalog in Parquet, written in row groups of 1M rows."""
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        table = pa.table({
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
            "ra_error": rng.uniform(0.02, 1.0, n), "dec_error": rng.uniform(0.02, 1.0, n),
            "g": rng.uniform(12, 21, n), "g_error": rng.uniform(0.001, 0.05, n),
            "r": rng.uniform(12, 21, n),
            "pmra": rng.normal(0, 5, n), "pmdec": rng.normal(0, 5, n),
        })
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


SPEC = IngestSpec(ra="ra", dec="dec", ra_err="ra_error", dec_err="dec_error",
                  mags={"g": "g", "r": "r"}, mag_errs={"g": "g_error"}, pm_ra="pmra",
                  pm_dec="pmdec", epoch=float(jyear_to_mjd(2016.0)))


def ccd_wcs(rng: np.random.Generator) -> WCS:
    ra = rng.uniform(0, 360)
    dec = math.degrees(math.asin(rng.uniform(-0.98, 0.98)))
    rot = math.radians(rng.uniform(0, 360))
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [CCD / 2 + 0.5, CCD / 2 + 0.5]
    s = SCALE / 3600.0
    w.wcs.cd = [[-s * math.cos(rot), s * math.sin(rot)], [s * math.sin(rot), s * math.cos(rot)]]
    return w


def bounding_box(loader: ReferenceObjectLoader, wcs: WCS) -> tuple[float, ...]:
    poly = loader.polygon(Box2I(0, 0, CCD, CCD), wcs)
    return (poly[:, 0].min(), poly[:, 0].max(), poly[:, 1].min(), poly[:, 1].max())


def time_shards(repo: Path, name: str, wcses: list[WCS]) -> tuple[float, float, float]:
    """Median ms per CCD (wall clock and CPU) and mean stars per CCD, through the loader."""
    loader = ReferenceObjectLoader(repo, LoadReferenceObjectsConfig(ref_dataset_name=name,
                                                                    pixelMargin=MARGIN))
    box = Box2I(0, 0, CCD, CCD)
    loader.load_pixel_box(box, wcses[0], epoch=61000.0)  # warm the manifest cache
    times, cpu, stars = [], [], []
    for wcs in wcses:
        start, start_cpu = time.perf_counter(), time.process_time()
        cat = loader.load_pixel_box(box, wcs, epoch=61000.0)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        stars.append(len(cat))
    return statistics.median(times) * 1e3, statistics.median(cpu) * 1e3, float(np.mean(stars))


def time_dataset(path: Path, loader: ReferenceObjectLoader, wcses: list[WCS]) -> float:
    """Median ms per CCD: pyarrow.dataset with a predicate on the RA/Dec bounding box."""
    dataset = ds.dataset(path, format="parquet")
    times = []
    for wcs in wcses:
        ra0, ra1, dec0, dec1 = bounding_box(loader, wcs)
        start = time.perf_counter()
        flt = (ds.field("dec") >= dec0) & (ds.field("dec") <= dec1)
        if ra1 - ra0 < 180:  # no wrap at 0/360
            flt = flt & (ds.field("ra") >= ra0) & (ds.field("ra") <= ra1)
        table = dataset.to_table(filter=flt)
        x, y = wcs.all_world2pix(table.column("ra").to_numpy(), table.column("dec").to_numpy(),
                                 0)
        np.count_nonzero((x > -MARGIN) & (x < CCD + MARGIN) & (y > -MARGIN) & (y < CCD + MARGIN))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def time_astropy(path: Path, loader: ReferenceObjectLoader, wcses: list[WCS]) -> float:
    """Median ms per CCD: astropy Table.read of the whole file, then a mask."""
    times = []
    for wcs in wcses:
        ra0, ra1, dec0, dec1 = bounding_box(loader, wcs)
        start = time.perf_counter()
        table = Table.read(path)
        ra, dec = np.asarray(table["ra"]), np.asarray(table["dec"])
        near = (dec >= dec0) & (dec <= dec1) & (((ra >= ra0) & (ra <= ra1)) | (ra1 - ra0 >= 180))
        x, y = wcs.all_world2pix(ra[near], dec[near], 0)
        np.count_nonzero((x > -MARGIN) & (x < CCD + MARGIN) & (y > -MARGIN) & (y < CCD + MARGIN))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=float, default=1e7, help="catalog rows (1e7)")
    parser.add_argument("--orders", default="", help="also time CCD reads at these HEALPix "
                        "orders (comma-separated; each is a new ingest)")
    parser.add_argument("--ccds", type=int, default=200, help="random CCD positions (200)")
    parser.add_argument("--peer-ccds", type=int, default=5,
                        help="CCD positions for the full-file peers (5)")
    parser.add_argument("--dir", default=None, help="where to work (a temporary directory)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    world = World()
    rows = int(args.rows)
    work = world.bcast(tempfile.mkdtemp(prefix="bench-refcat-", dir=args.dir)
                       if world.rank == 0 else None)
    base = Path(work)
    try:
        if world.rank == 0:
            start = time.perf_counter()
            write_catalog(base / "catalog.parquet", rows, args.seed)
            create_repository(base / "repo", "simcam")
            print(f"catalog: {rows:.3g} rows, {(base / 'catalog.parquet').stat().st_size / 1e6:.0f}"
                  f" MB of Parquet, written in {time.perf_counter() - start:.1f} s", flush=True)
            start = time.perf_counter()
            columns = sorted({c for _, c in SPEC.named_columns()})
            pq.read_table(base / "catalog.parquet", columns=columns, use_threads=False)
            read_floor = time.perf_counter() - start
        world.barrier()
        start, start_cpu = time.perf_counter(), time.process_time()
        manifest = ingest_reference_catalog(base / "repo", "auto", base / "catalog.parquet",
                                            SPEC, world=world)
        cpu = world.allreduce(time.process_time() - start_cpu, "sum")
        world.barrier()
        seconds = time.perf_counter() - start
        if world.rank == 0:
            rate = rows / seconds / world.size
            floor = rows / read_floor
            print(f"ingest: {seconds:.1f} s on {world.size} core(s): {rate / 1e6:.2f} M rows/s "
                  f"per core (order {manifest.order}, {manifest.shard_count} shards, "
                  f"{rows / manifest.shard_count:.0f} stars a shard); reading the input "
                  f"alone (pyarrow, 1 core): {floor / 1e6:.2f} M rows/s; ratio ingest/read "
                  f"{rate / floor:.2f}", flush=True)
            print(f"ingest, CPU time: {cpu:.1f} core-s: {rows / cpu / 1e6:.2f} M rows per "
                  f"CPU-second (a loaded machine inflates the wall clock, not this)",
                  flush=True)
        results = {}
        orders = [int(o) for o in args.orders.split(",") if o.strip()]
        for order in orders:
            ingest_reference_catalog(base / "repo", f"order{order}", base / "catalog.parquet",
                                     SPEC, order=order, world=world)
        if world.rank == 0:
            rng = np.random.default_rng(args.seed + 1)
            wcses = [ccd_wcs(rng) for _ in range(args.ccds)]
            ms, ms_cpu, stars = time_shards(base / "repo", "auto", wcses)
            results[f"auto (order {manifest.order})"] = (ms, ms_cpu, stars,
                                                         manifest.shard_count)
            for order in orders:
                ms_o, cpu_o, stars_o = time_shards(base / "repo", f"order{order}", wcses)
                results[f"order {order}"] = (ms_o, cpu_o, stars_o, 12 * 4 ** order)
            for label, (ms_o, cpu_o, stars_o, shards) in results.items():
                print(f"per CCD, shards {label}: median {ms_o:.2f} ms ({cpu_o:.2f} ms CPU) "
                      f"for {stars_o:.0f} stars ({rows / shards:.0f} stars a shard)",
                      flush=True)
            loader = ReferenceObjectLoader(base / "repo", LoadReferenceObjectsConfig(
                ref_dataset_name="auto", pixelMargin=MARGIN))
            peers = wcses[:args.peer_ccds]
            ms_ds = time_dataset(base / "catalog.parquet", loader, peers)
            ms_ap = time_astropy(base / "catalog.parquet", loader, peers)
            print(f"per CCD, pyarrow.dataset + predicate on the whole file: {ms_ds:.1f} ms; "
                  f"ratio {ms_ds / ms:.0f}x", flush=True)
            print(f"per CCD, astropy Table.read + mask of the whole file: {ms_ap:.1f} ms; "
                  f"ratio {ms_ap / ms:.0f}x", flush=True)
        world.barrier()
    finally:
        if world.rank == 0:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
