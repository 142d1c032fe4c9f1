"""Benchmark the compiled kernels against the best peer doing the same job, in one run.

Usage: python perf/bench_kernels.py [--size 4096] [--repeat 3]

Each line gives our best time, the peer's best time on the same data in the same run, and the
ratio ours / peer (below 1 is faster). This machine is shared and noisy: compare ratios,
not absolute times. The memory-copy line is the bandwidth floor of a streaming kernel.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from hpcpipe.kernels import kernel_status  # noqa: E402
from hpcpipe.kernels.convolve import (  # noqa: E402
    correlate_separable,
    correlate_separable_reference,
    gaussian_kernel_1d,
)
from hpcpipe.kernels.stats import binned_clipped_mean  # noqa: E402


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs (the least disturbed by other load), in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def simulated_ccd(size: int, n_stars: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(1000.0, 30.0, (size, size)).astype(np.float32)
    psf = np.outer(gaussian_kernel_1d(1.7, 6), gaussian_kernel_1d(1.7, 6))
    for x, y, f in zip(rng.integers(6, size - 7, n_stars), rng.integers(6, size - 7, n_stars),
                       rng.uniform(1e3, 1e6, n_stars)):
        img[y - 6:y + 7, x - 6:x + 7] += (f * psf).astype(np.float32)
    return img


def astropy_mesh(img: np.ndarray, bin_size: int) -> np.ndarray:
    """The same job with astropy: sigma-clipped mean of each cell (cells as one axis)."""
    from astropy.stats import sigma_clip

    ny, nx = img.shape
    cells = img.reshape(ny // bin_size, bin_size, nx // bin_size, bin_size)
    cells = cells.transpose(0, 2, 1, 3).reshape(ny // bin_size, nx // bin_size, -1)
    clipped = sigma_clip(cells, sigma=3.0, maxiters=3, axis=2, cenfunc="median", stdfunc="std")
    return clipped.mean(axis=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="CCD size in pixels (4096)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (3)")
    args = parser.parse_args()
    img = simulated_ccd(args.size)
    print(f"image {args.size}x{args.size} float32; kernels: {kernel_status()}")
    rows: list[tuple[str, float, str, float]] = []

    copy_out = np.empty_like(img)
    t_copy = best_time(lambda: np.copyto(copy_out, img), args.repeat)
    bandwidth = 2 * img.nbytes / t_copy / 1e9
    print(f"memory copy floor: {t_copy:.3f} s ({bandwidth:.1f} GB/s read+write)")

    k = gaussian_kernel_1d(1.7, 4)  # 9 taps, as in the field's PSF smoothing
    out = np.empty_like(img)
    ours = best_time(lambda: correlate_separable(img, k, k, out=out), args.repeat)
    peer = best_time(lambda: ndimage.correlate1d(ndimage.correlate1d(img, k, axis=1,
                                                 mode="nearest"), k, axis=0, mode="nearest"),
                     args.repeat)
    rows.append(("separable 9-tap smoothing", ours, "scipy.ndimage.correlate1d x2", peer))
    ref = best_time(lambda: correlate_separable_reference(img, k, k), 1)
    rows.append(("separable 9-tap smoothing", ours, "our NumPy reference", ref))

    bad = np.zeros(img.shape, np.uint8)
    ours = best_time(lambda: binned_clipped_mean(img, bad, 128, 128, 3.0, 3), args.repeat)
    peer = best_time(lambda: astropy_mesh(img, 128), 1)
    rows.append(("background mesh, 128 px cells", ours, "astropy sigma_clip per cell", peer))

    width = max(len(r[0]) for r in rows)
    print(f"{'kernel':<{width}}  {'ours s':>8}  {'peer s':>8}  {'ours/peer':>9}  peer")
    for name, t_ours, peer_name, t_peer in rows:
        print(f"{name:<{width}}  {t_ours:8.3f}  {t_peer:8.3f}  {t_ours / t_peer:9.2f}  {peer_name}")


if __name__ == "__main__":
    main()
