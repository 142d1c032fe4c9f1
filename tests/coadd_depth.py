"""Synthetic warps of one patch in a butler repository (tests and perf/bench_coadd.py).

``make_depth_repo(root, n_visits, size)`` makes a SimCam repository with ``n_visits``
r-band visits (tiny raws, ingested so that the registry knows them), a one-tract sky map
whose patch 0,0 has an outer box of ``size`` x ``size`` pixels, and one
``deepCoadd_directWarp`` per visit on that patch: sky noise of a per-visit variance, a few
stars, NO_DATA edges of per-visit width, a cosmic-ray-like outlier per visit (so that the
clipping has work to do), and a PSF. ``distinct`` caps the number of different warp files:
visit ``v`` beyond it is a hard link to the file of visit ``v % distinct`` (deep stacks on a
small disk; the reader cannot tell).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hpcpipe.butler import Butler, create_repository, ingest
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure, PhotoCalib
from hpcpipe.image.calib import AB_NANOJANSKY_ZERO_POINT, FilterLabel
from hpcpipe.image.psf import GaussianPsf
from hpcpipe.obs.simcam import raw_header
from hpcpipe.skymap import DiscreteSkyMap, SkyMapConfig

__all__ = ["KEY", "make_depth_repo", "synthetic_warp"]

#: The data id of the coadd (tract 0, patch 0,0, r).
KEY = {"tract": 0, "patch": "0,0", "filter": "r"}


def synthetic_warp(bbox: Box2I, wcs, visit: int, seed: int) -> Exposure:
    """A warp of ``bbox`` (nJy) with noise, stars, NO_DATA edges and one outlier."""
    rng = np.random.default_rng(seed)
    warp = Exposure(bbox, wcs=wcs, filter=FilterLabel(band="r", physical="r"),
                    photo_calib=PhotoCalib(AB_NANOJANSKY_ZERO_POINT))
    h, w = bbox.shape
    sigma = 10.0 * (0.8 + 0.4 * ((visit * 7919) % 101) / 100)
    img = rng.normal(0.0, sigma, (h, w)).astype(np.float32)
    yy, xx = np.mgrid[0:h:1, 0:w:1]
    star_rng = np.random.default_rng(1234)  # the same stars in every visit
    for _ in range(max(4, h * w // 40000)):
        x, y, f = star_rng.uniform(0, w), star_rng.uniform(0, h), star_rng.uniform(500, 5000)
        y0, y1, x0, x1 = (max(int(y) - 10, 0), min(int(y) + 11, h), max(int(x) - 10, 0),
                          min(int(x) + 11, w))
        r2 = (xx[y0:y1, x0:x1] - x) ** 2 + (yy[y0:y1, x0:x1] - y) ** 2
        img[y0:y1, x0:x1] += (f / (2 * np.pi * 4.0) * np.exp(-r2 / 8.0)).astype(np.float32)
    img[rng.integers(0, h), rng.integers(0, w)] += 1e5  # a cosmic ray the clipping removes
    warp.image.array[:] = img
    warp.variance.array[:] = np.float32(sigma * sigma)
    edge = 3 + visit % 17
    nodata = warp.mask.get_plane_bitmask("NO_DATA")
    for sl in (np.s_[:edge, :], np.s_[:, -edge:]):
        warp.image.array[sl] = np.nan
        warp.variance.array[sl] = np.nan
        warp.mask.array[sl] = nodata
    warp.psf = GaussianPsf(2.0 + 0.01 * (visit % 10), size=21)
    return warp


def make_depth_repo(root: Path, n_visits: int, size: int, distinct: int | None = None
                    ) -> Butler:
    """A repository with ``n_visits`` warps of a ``size`` x ``size`` patch (see the module).

    Returns a butler on it (read and written in place).
    """
    root = Path(root)
    raws = root / "raws"
    raws.mkdir(parents=True, exist_ok=True)
    files = []
    for visit in range(1, n_visits + 1):
        raw = Exposure(Box2I(0, 0, 4, 4))
        day = 1 + (visit - 1) // 24
        raw.metadata.update(raw_header(visit, 0, "r", f"2026-01-{day:02d}T{(visit - 1) % 24:02d}"
                                       ":00:00", 30.0))
        path = raws / f"raw-{visit}.fits"
        raw.write(path)
        files.append(path)
    repo = root / "repo"
    create_repository(repo, "simcam")
    report = ingest(repo, files)
    if not report.ok:
        raise RuntimeError(report.summary())
    butler = Butler(repo)
    inner = size - 2 * 10
    sky_map = DiscreteSkyMap([150.0], [2.0], [inner * 0.2 / 3600 / 2],
                             config=SkyMapConfig(patch_inner_dimensions=(inner, inner),
                                                 patch_border=10))
    butler.put(sky_map, "skyMap")
    patch = sky_map[0].get_patch_info((0, 0))
    first_paths: list[str] = []
    for visit in range(1, n_visits + 1):
        k = (visit - 1) % distinct if distinct else visit - 1
        if distinct and visit > distinct:
            dest = butler.getUri("deepCoadd_directWarp", visit=visit, **KEY)
            dest = dest.removeprefix("file://")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.link(first_paths[k], dest)
            continue
        warp = synthetic_warp(patch.outer_bbox, patch.wcs, visit, seed=visit)
        butler.put(warp, "deepCoadd_directWarp", visit=visit, **KEY)
        first_paths.append(butler.getUri("deepCoadd_directWarp", visit=visit,
                                         **KEY).removeprefix("file://"))
    return butler
