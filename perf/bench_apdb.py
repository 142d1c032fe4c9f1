"""The APDB's spatial query for one CCD: HEALPix pixel ranges against a declination stripe.

Usage: python perf/bench_apdb.py [--objects 1000000] [--queries 200] [--dir DIR]

Fills an SQLite APDB (Rubin's DiaObject table, :class:`hpcpipe.ap.apdb.Apdb`) with
``--objects`` diaObjects spread uniformly over the sky, then times the association query
of one CCD (a disc of 0.1 degree radius: a 2048x2048 CCD of 0.2 arcsec pixels, with
margin) at random places, three ways, each returning the same objects (checked):

* ``healpix``: :meth:`Apdb.objects_in_region`, the ``pixelId`` index read over the ranges
  of HEALPix pixels covering the disc (hpcpipe today);
* ``dec-stripe``: an index on ``dec`` read over ``dec BETWEEN dec0 - r AND dec0 + r`` (the
  previous APDB: a 360-degree band of the sky), then the exact cut;
* ``ccd-polygon``: :meth:`Apdb.objects_in_polygon` on the CCD's four corners (the forced
  photometry's query; a superset of the CCD, not compared).

Prints the median time per query and each method's ratio to the fastest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from hpcpipe.ap.apdb import BANDS, Apdb, pixel_ids

RADIUS = 0.1  # degrees


def fill(path: Path, n: int, seed: int = 3) -> None:
    """An APDB with ``n`` diaObjects uniform on the sphere (the non-null columns filled)."""
    Apdb(path, bands=BANDS, create=True).close()
    rng = np.random.default_rng(seed)
    db = sqlite3.connect(path)
    names = ["diaObjectId", "validityStartMjdTai", "ra", "dec", "nDiaSources", "pixelId",
             *[f"{b}_psfFluxNdata" for b in BANDS], "r_psfFluxMean"]
    sql = (f"INSERT INTO DiaObject ({', '.join(names)}) "
           f"VALUES ({', '.join('?' * len(names))})")
    chunk = 200_000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        ra = rng.uniform(0, 360, m)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, m)))
        ids = np.arange(start + 1, start + m + 1)
        rows = zip(ids.tolist(), [60000.0] * m, ra.tolist(), dec.tolist(), [1] * m,
                   pixel_ids(ra, dec).tolist(), *([[0] * m] * len(BANDS)),
                   rng.normal(1000, 100, m).tolist(), strict=True)
        db.executemany(sql, rows)
        db.commit()
    db.execute("CREATE INDEX IF NOT EXISTS DiaObject_dec ON DiaObject (dec)")  # the old way
    db.execute("ANALYZE")
    db.commit()
    db.close()


def dec_stripe(apdb: Apdb, ra: float, dec: float, radius: float) -> np.ndarray:
    """The previous APDB's query: a declination band, then the exact cut."""
    t = apdb.tables["DiaObject"]
    rows = apdb._select("DiaObject", t.c.dec.between(dec - radius, dec + radius))
    r0, d0 = np.radians(ra), np.radians(dec)
    r, d = np.radians(rows["ra"]), np.radians(rows["dec"])
    cos_sep = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(r - r0)
    return rows[cos_sep >= np.cos(np.radians(radius))]


def ccd_corners(ra: float, dec: float) -> tuple[list[float], list[float]]:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [1024.5, 1024.5]
    wcs.wcs.cd = np.diag([-0.2, 0.2]) / 3600
    r, d = wcs.all_pix2world([-0.5, 2047.5, 2047.5, -0.5], [-0.5, -0.5, 2047.5, 2047.5], 0)
    return r.tolist(), d.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000, help="diaObjects (1e6)")
    parser.add_argument("--queries", type=int, default=200, help="CCD queries (200)")
    parser.add_argument("--dir", type=Path, help="work directory (a temporary one)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="hpcpipe-bench-apdb-"))
    path = root / "apdb.sqlite"
    if not path.exists():
        t = time.perf_counter()
        fill(path, args.objects)
        print(f"filled {args.objects} diaObjects in {time.perf_counter() - t:.1f} s ({path})")
    rng = np.random.default_rng(11)
    places = [(float(rng.uniform(0, 360)),
               float(np.degrees(np.arcsin(rng.uniform(-0.95, 0.95)))))
              for _ in range(args.queries)]
    times: dict[str, list[float]] = {"healpix": [], "dec-stripe": [], "ccd-polygon": []}
    found = 0
    with Apdb(path) as apdb:
        for ra, dec in places:
            t = time.perf_counter()
            pix = apdb.objects_in_region(ra, dec, RADIUS)
            times["healpix"].append(time.perf_counter() - t)
            t = time.perf_counter()
            band = dec_stripe(apdb, ra, dec, RADIUS)
            times["dec-stripe"].append(time.perf_counter() - t)
            corners = ccd_corners(ra, dec)
            t = time.perf_counter()
            apdb.objects_in_polygon(*corners)
            times["ccd-polygon"].append(time.perf_counter() - t)
            if sorted(pix["diaObjectId"].tolist()) != sorted(band["diaObjectId"].tolist()):
                raise SystemExit(f"bench_apdb: the two queries disagree at ({ra}, {dec})")
            found += len(pix)
    medians = {k: statistics.median(v) for k, v in times.items()}
    best = min(medians["healpix"], medians["dec-stripe"])
    print(f"{args.objects} diaObjects over the sky; {args.queries} queries of a "
          f"{RADIUS}-degree disc ({found / args.queries:.2f} objects found per query on "
          f"average); load average {os.getloadavg()[0]:.1f}")
    print(f"{'method':<12} {'median ms':>10} {'ratio to best':>14}")
    for name, value in medians.items():
        print(f"{name:<12} {1000 * value:10.2f} {value / best:14.2f}")
    print(f"dec-stripe / healpix = {medians['dec-stripe'] / medians['healpix']:.1f}")
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
