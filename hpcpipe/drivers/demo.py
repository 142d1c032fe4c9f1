"""The built-in demonstration: a small simulated star field processed under MPI.

The master-worker pool hands the CCDs out to the workers; each simulates and processes its
CCDs (background mesh, PSF smoothing, thresholding, centroids, all through the compiled
kernels) and writes each exposure atomically. All ranks then write their detections into one
shared catalog with parallel HDF5 (one collective write). Rank 0 checks the detections
against the truth, writes the run report and prints a summary table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from hpcpipe.comm.world import World
from hpcpipe.io.parallel_table import write_rows_collectively
from hpcpipe.kernels.convolve import correlate_separable, gaussian_kernel_1d
from hpcpipe.kernels.stats import binned_clipped_mean
from hpcpipe.sim.starfield import StarFieldConfig, simulate_ccd

__all__ = ["DemoResult", "process_ccd", "run_demo"]

log = logging.getLogger("hpcpipe.demo")

DETECTION_DTYPE = np.dtype([
    ("ccd", np.int32), ("x", np.float64), ("y", np.float64), ("ra", np.float64),
    ("dec", np.float64), ("peak_snr", np.float32), ("npix", np.int32),
])


@dataclass
class DemoResult:
    """What one CCD gave: detections, and the truth match statistics."""

    ccd: int
    rank: int
    seconds: float
    detections: np.ndarray
    n_truth_bright: int
    n_found_bright: int
    n_spurious: int


def _background(image: np.ndarray, bad: np.ndarray, bin_size: int) -> np.ndarray:
    mean, _std, _count = binned_clipped_mean(image, bad, bin_size, bin_size, 3.0, 3)
    if np.isnan(mean).any():
        mean[np.isnan(mean)] = np.nanmedian(mean)
    ny, nx = image.shape
    # bilinear interpolation of the cell centres back to every pixel
    yc = (np.arange(mean.shape[0]) + 0.5) * bin_size - 0.5
    xc = (np.arange(mean.shape[1]) + 0.5) * bin_size - 0.5
    fy = np.interp(np.arange(ny), yc, np.arange(mean.shape[0]))
    fx = np.interp(np.arange(nx), xc, np.arange(mean.shape[1]))
    return ndimage.map_coordinates(mean, np.meshgrid(fy, fx, indexing="ij"), order=1,
                                   mode="nearest").astype(image.dtype)


def process_ccd(config: StarFieldConfig, ccd: int, seed: int, output: Path | None,
                rank: int = 0) -> DemoResult:
    """Simulate, process and check one CCD; write its exposure if ``output`` is given."""
    start = time.perf_counter()
    exposure, truth = simulate_ccd(config, ccd, seed=seed)
    image = exposure.image.array
    bad = np.zeros(image.shape, np.uint8)
    image -= _background(image, bad, 128)
    sigma = exposure.psf.sigma_at()
    kernel = gaussian_kernel_1d(sigma)
    smoothed = correlate_separable(image, kernel, kernel)
    # noise of the smoothed image: per-pixel noise times the kernel's norm
    noise = float(np.sqrt(np.median(exposure.variance.array)) * (kernel**2).sum())
    above = smoothed > 5.0 * noise
    exposure.mask.set_plane("DETECTED", above)
    labels, n = ndimage.label(above)
    index = np.arange(1, n + 1)
    if n:
        cy, cx = np.array(ndimage.center_of_mass(np.clip(smoothed, 0, None), labels, index)).T
        peak = np.asarray(ndimage.maximum(smoothed, labels, index)) / noise
        npix = np.asarray(ndimage.sum(np.ones_like(labels), labels, index))
        sky = exposure.pixel_to_sky(cx, cy)
        ra, dec = sky.ra.deg, sky.dec.deg
    else:
        cx = cy = peak = npix = ra = dec = np.zeros(0)
    detections = np.zeros(n, DETECTION_DTYPE)
    for name, values in (("x", cx), ("y", cy), ("ra", ra), ("dec", dec), ("peak_snr", peak),
                         ("npix", npix)):
        detections[name] = values
    detections["ccd"] = ccd
    if output is not None:
        exposure.write(output / "calexp" / f"calexp-{ccd:03d}.fits")

    # truth check: stars whose peak in the smoothed image is above 5 sigma
    psf_norm = 1.0 / (4 * np.pi * sigma**2)  # peak of a unit-flux star smoothed by the PSF
    bright = truth["flux"] * psf_norm > 5.0 * noise * 1.5
    inside = (truth["x"] > 3) & (truth["x"] < image.shape[1] - 4) & (truth["y"] > 3) & (
        truth["y"] < image.shape[0] - 4)
    bright &= inside
    found = np.zeros(truth["x"].size, bool)
    matched = np.zeros(n, bool)
    if n:
        from scipy.spatial import cKDTree

        tree = cKDTree(np.c_[cx, cy])
        dist, idx = tree.query(np.c_[truth["x"], truth["y"]], distance_upper_bound=2.0)
        found = np.isfinite(dist)
        matched[idx[found]] = True
    return DemoResult(ccd, rank, time.perf_counter() - start, detections,
                      int(bright.sum()), int((found & bright).sum()), int((~matched).sum()))


def _demo_unit(cache: Any, ccd: int, config: StarFieldConfig, seed: int, output: Path
               ) -> tuple[int, int, float, int, int, int, int]:
    """A pool unit: process one CCD, keep its detections on this rank, return its summary."""
    result = process_ccd(config, ccd, seed, output, World().rank)
    cache.__dict__.setdefault("detections", []).append(result.detections)
    return (result.ccd, result.rank, result.seconds, result.detections.size,
            result.n_truth_bright, result.n_found_bright, result.n_spurious)


def run_demo(output: Path, n_ccds: int = 6, size: int = 1024, seed: int = 42,
             world: World | None = None, progress: bool = False) -> dict[str, Any] | None:
    """Run the demo on every rank of ``world``; rank 0 returns the summary, others None.

    The CCDs are handed out by the master-worker pool (:class:`~hpcpipe.comm.pool.Pool`);
    each worker keeps its detections, and once the pool is closed every rank writes its own
    rows into one HDF5 catalog with a single collective call (the master, with none, takes
    part with an empty selection). The run report goes to ``output/report``.
    """
    from hpcpipe.comm.pool import Pool
    from hpcpipe.drivers.report import write_report

    world = world or World()
    # the star density of the default 1024x1024 CCD with 300 stars, whatever the size
    config = StarFieldConfig(width=size, height=size,
                             stars_per_ccd=max(10, round(300 * size * size / 1024**2)))
    pool = Pool(world, progress=progress)
    start = time.perf_counter()

    def main(pool: Pool) -> list[Any]:
        rows = pool.map(_demo_unit, range(n_ccds), config, seed, output,
                        keys=[f"ccd={c}" for c in range(n_ccds)], name="processCcd")
        write_report(pool.records, output / "report", title="hpcpipe demo")
        return rows

    table = pool.run(main)
    mine = pool.cache.__dict__.get("detections", [])
    rows = np.concatenate(mine) if mine else np.zeros(0, DETECTION_DTYPE)
    catalog_path = output / "detections.h5"
    write_rows_collectively(catalog_path, "detections", rows, world)
    if world.rank != 0:
        return None
    done = [row for row in table if row]
    bright = sum(r[4] for r in done)
    found = sum(r[5] for r in done)
    return {
        "ccds": done,
        "failed": len(table) - len(done),
        "ranks": world.size,
        "detections": sum(r[3] for r in done),
        "completeness": found / bright if bright else float("nan"),
        "catalog": str(catalog_path),
        "report": str(output / "report" / "report.html"),
        "wall_seconds": time.perf_counter() - start,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary table printed at the end of the demo."""
    lines = [f"{'ccd':>4} {'rank':>4} {'seconds':>8} {'sources':>8} {'bright':>7} "
             f"{'found':>6} {'spurious':>8}"]
    for ccd, rank, secs, ndet, nb, nf, nsp in summary["ccds"]:
        lines.append(f"{ccd:>4} {rank:>4} {secs:>8.2f} {ndet:>8} {nb:>7} {nf:>6} {nsp:>8}")
    lines.append(
        f"{len(summary['ccds'])} CCDs on {summary['ranks']} ranks in "
        f"{summary['wall_seconds']:.1f} s: {summary['detections']} sources, "
        f"completeness of bright stars {summary['completeness']:.1%}; "
        f"{summary['failed']} failed\ncatalog {summary['catalog']}; report {summary['report']}"
    )
    return "\n".join(lines)
