"""Benchmark every compiled kernel against the best peer doing the same job, in one run.

Usage: python perf/bench_kernels.py [--size 4096] [--repeat 7] [--sources 2000]
       [--warps 20] [--coadd-size 2048] [--only background,detection,...] [--split]

On a ``size`` x ``size`` float32 simulated CCD (4096: an LSST CCD), each line runs ours and the
peer alternately on the same data (``--repeat`` pairs, :mod:`timing`) and gives the median
times, the median of the per-pair ratios ours / peer (below 1 is faster) and their
interquartile range; the load average is printed before and after. The streaming kernels
(instrument signature removal, coaddition) also print the bytes per second they achieve
beside ``np.copyto`` of the same array (the memory-bandwidth floor). The goals of the
kernels' issue are printed beside the lines they concern. ``--split`` first prints where the
time of background, detection, measurement and ISR goes: the median time of each compiled
function they call (and the Python around them). This machine is shared and noisy:
compare ratios, not absolute times. Kernels run on one thread (``OMP_NUM_THREADS=1``: MPI
ranks fill the cores).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from timing import Paired, format_paired, interleaved, load_line  # noqa: E402

import hpcpipe.kernels.background as background_module  # noqa: E402
import hpcpipe.kernels.convolve as convolve_module  # noqa: E402
import hpcpipe.kernels.detect as detect_module  # noqa: E402
import hpcpipe.kernels.isr as isr_module  # noqa: E402
import hpcpipe.kernels.measure as measure_module  # noqa: E402
import hpcpipe.kernels.stats as stats_module  # noqa: E402
from hpcpipe.kernels import kernel_status  # noqa: E402
from hpcpipe.kernels.background import estimate_background  # noqa: E402
from hpcpipe.kernels.coadd import clipped_mean_stack  # noqa: E402
from hpcpipe.kernels.convolve import (  # noqa: E402
    correlate_2d,
    correlate_separable,
    gaussian_kernel_1d,
)
from hpcpipe.kernels.cosmic import find_cosmic_rays, interpolate_over  # noqa: E402
from hpcpipe.kernels.detect import detect_sources  # noqa: E402
from hpcpipe.kernels.isr import run_isr  # noqa: E402
from hpcpipe.kernels.measure import DEFAULT_RADII, measure_sources  # noqa: E402
from hpcpipe.kernels.stats import binned_clipped_mean, clipped_stats  # noqa: E402
from hpcpipe.kernels.warp import transform_grid, warp_image  # noqa: E402
from hpcpipe.sim.camera import CameraConfig, SimCamera  # noqa: E402

SECTIONS = ("convolution", "statistics", "background", "detection", "isr", "measurement",
            "warping", "cosmic", "coadd")

#: One line: what we run, the interleaved timing, what the peer is.
Row = tuple[str, Paired, str]

#: Pairs for peers that take tens of seconds (astropy's sigma_clip of a whole stack...).
SLOW_PAIRS = 2


def simulated_ccd(size: int, n_stars: int, seed: int = 0, sky: float = 1000.0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A float32 CCD: sky plus noise (sigma 30), Gaussian stars (sigma 1.7), cosmic rays.

    Returns the image, its variance and the stars' x, y.
    """
    rng = np.random.default_rng(seed)
    img = rng.normal(sky, 30.0, (size, size)).astype(np.float32)
    r = np.arange(-6, 7)
    g = np.exp(-0.5 * (r / 1.7) ** 2)
    psf = np.outer(g, g) / np.outer(g, g).sum()
    xs = rng.integers(30, size - 31, n_stars)
    ys = rng.integers(30, size - 31, n_stars)
    for x, y, f in zip(xs, ys, 10 ** rng.uniform(3, 6, n_stars)):
        img[y - 6:y + 7, x - 6:x + 7] += (f * psf).astype(np.float32)
    hits = rng.integers(0, size, (2, size * size // 20000))
    img[hits[0], hits[1]] += rng.uniform(1500, 6000, hits.shape[1]).astype(np.float32)
    var = np.full(img.shape, 900.0, np.float32) + np.clip(img - sky, 0, None)
    sub = rng.uniform(-0.3, 0.3, (2, n_stars))
    return img, var, xs + sub[0], ys + sub[1]


def bench_convolution(img: np.ndarray, repeat: int) -> list[Row]:
    from astropy.convolution import convolve

    rows = []
    k = gaussian_kernel_1d(1.7, 4)  # 9 taps, as in PSF smoothing
    out = np.empty_like(img)
    rows.append(("separable 9-tap smoothing", interleaved(
        lambda: correlate_separable(img, k, k, out=out),
        lambda: ndimage.correlate1d(ndimage.correlate1d(img, k, axis=1, mode="nearest"), k,
                                    axis=0, mode="nearest"), repeat),
        "scipy.ndimage.correlate1d x2"))
    k2 = np.outer(k, k).astype(np.float32)
    rows.append(("general 9x9 kernel", interleaved(
        lambda: correlate_2d(img, k2, out=out),
        lambda: ndimage.correlate(img, k2, mode="nearest"), repeat), "scipy.ndimage.correlate"))
    bad = np.zeros(img.shape, np.uint8)
    bad[:, 100] = 1
    masked = np.where(bad, np.nan, img)
    rows.append(("general 9x9 kernel, masked", interleaved(
        lambda: correlate_2d(img, k2, out=out, bad=bad),
        lambda: convolve(masked, k2, boundary="extend", nan_treatment="interpolate"),
        min(repeat, SLOW_PAIRS)), "astropy convolve (NaN interpolate)"))
    return rows


def bench_statistics(img: np.ndarray, repeat: int) -> list[Row]:
    from astropy.stats import sigma_clip, sigma_clipped_stats

    rows = []
    rows.append(("clipped mean/std of the CCD", interleaved(
        lambda: clipped_stats(img, nsigma=3.0, niter=3),
        lambda: sigma_clipped_stats(img, sigma=3.0, maxiters=3), min(repeat, SLOW_PAIRS)),
        "astropy sigma_clipped_stats"))
    bad = np.zeros(img.shape, np.uint8)
    ny, nx = img.shape

    def astropy_mesh() -> np.ndarray:
        cells = img.reshape(ny // 128, 128, nx // 128, 128).transpose(0, 2, 1, 3)
        cells = cells.reshape(ny // 128, nx // 128, -1)
        return sigma_clip(cells, sigma=3.0, maxiters=3, axis=2).mean(axis=2)

    rows.append(("clipped mean per 128 px cell", interleaved(
        lambda: binned_clipped_mean(img, bad, 128, 128, 3.0, 3), astropy_mesh,
        min(repeat, SLOW_PAIRS)), "astropy sigma_clip per cell"))
    return rows


def bench_background(img: np.ndarray, repeat: int) -> list[Row]:
    import sep
    from photutils.background import Background2D

    rows = []
    rows.append(("background, 128 px mesh", interleaved(
        lambda: estimate_background(img, bin_size=128),
        lambda: sep.Background(img, bw=128, bh=128, fw=3, fh=3), repeat), "sep.Background"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows.append(("background, 128 px mesh", interleaved(
            lambda: estimate_background(img, bin_size=128),
            lambda: Background2D(img, 128, filter_size=3), min(repeat, SLOW_PAIRS)),
            "photutils Background2D"))
    return rows


def bench_detection(img: np.ndarray, repeat: int) -> list[Row]:
    import sep

    def ours() -> int:
        # bg.subtract(img), like SEP's img - bkg, evaluates the model and subtracts it at once;
        # that temporary is then smoothed in place
        bg = estimate_background(img, bin_size=128)
        found = detect_sources(bg.subtract(img), bg.rms, threshold=5.0, smooth_sigma=1.7,
                               overwrite_input=True)
        return len(found.peaks)

    def peer() -> int:
        bkg = sep.Background(img, bw=128, bh=128, fw=3, fh=3)
        return len(sep.extract(img - bkg, 1.5, err=bkg.globalrms))

    print(f"detection: ours {ours()} peaks (5 sigma of the smoothed image), "
          f"SEP {peer()} objects (1.5 sigma per pixel, 3x3 filter)")
    bg = estimate_background(img, bin_size=128)
    sub = img - bg.image
    return [("background + detection", interleaved(ours, peer, repeat),
             "sep.Background + sep.extract (goal: ratio < 0.5)"),
            ("detection alone", interleaved(
                lambda: detect_sources(sub, bg.rms, threshold=5.0, smooth_sigma=1.7),
                lambda: sep.extract(sub, 1.5, err=bg.rms), repeat), "sep.extract")]


def bench_labelling(img: np.ndarray, repeat: int) -> list[Row]:
    from hpcpipe.kernels.detect import label_8, label_connected

    fg = img > np.percentile(img, 97)
    small = fg[:512, :512]
    structure = np.ones((3, 3))
    rows = [("label 8-connected (NumPy reference, 512 px)", interleaved(
        lambda: label_8(small), lambda: ndimage.label(small, structure=structure),
        min(repeat, SLOW_PAIRS)), "scipy.ndimage.label")]
    rows.append(("label 8-connected (compiled runs, whole CCD)", interleaved(
        lambda: label_connected(fg), lambda: ndimage.label(fg, structure=structure), repeat),
        "scipy.ndimage.label"))
    return rows


def bench_isr(size: int, repeat: int) -> list[Row]:
    camera = SimCamera(CameraConfig(nx=1, ny=1, width=size, height=size, overscan=32))
    det = camera.detector(0)
    rng = np.random.default_rng(1)
    raw = rng.normal(2000.0, 30.0, (size, camera.raw_width)).astype(np.float32)
    calibs = dict(bias=rng.normal(0, 1, (size, size)).astype(np.float32),
                  dark=np.full((size, size), 0.02, np.float32), dark_time=30.0,
                  flat=rng.normal(1, 0.01, (size, size)).astype(np.float32),
                  defects=np.zeros((size, size), np.uint8))
    # into planes kept from one frame to the next, as np.copyto writes into an existing array
    # (fresh planes add the operating system's zeroing of their pages: the second row)
    planes = (np.empty((size, size), np.float32), np.empty((size, size), np.float32),
              np.empty((size, size), np.int32))
    # the frame copied holds data: pages of np.empty never written all map to the kernel's
    # one zero page, whose reads hit the cache (a copy floor several times too fast)
    frame = raw[:, :size].copy()
    copy_out = np.empty_like(frame)
    copy_out.fill(0.0)

    def copy() -> None:
        np.copyto(copy_out, frame)

    kept = interleaved(lambda: run_isr(raw, det, out=planes, **calibs), copy, repeat)
    fresh = interleaved(lambda: run_isr(raw, det, **calibs), copy, repeat)
    # read raw + bias + dark + flat (float32) + defects (uint8); write image, variance, mask
    isr_bytes = size * size * (4 * 4 + 1 + 3 * 4)
    # copy rate / ISR rate = (t_isr / isr_bytes) / (t_copy / copy_bytes), per pair
    scale = 2 * frame.nbytes / isr_bytes
    print(f"ISR: {isr_bytes / kept.ours / 1e9:.1f} GB/s ({isr_bytes / 1e6:.0f} MB moved); "
          f"copy rate / ISR rate = {kept.ratio * scale:.2f} [{kept.low * scale:.2f}-"
          f"{kept.high * scale:.2f}] (goal <= 2); into new planes {fresh.ratio * scale:.2f}")
    return [("ISR, one frame (into kept planes)", kept, "np.copyto of the frame"),
            ("ISR, one frame (new planes)", fresh, "np.copyto of the frame")]


def bench_measurement(img: np.ndarray, var: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                      sky: float, repeat: int) -> list[Row]:
    import sep

    sub = img - np.float32(sky)
    sub64, var64 = sub.astype(np.float64), var.astype(np.float64)

    def sep_all() -> None:
        wx, wy, _ = sep.winpos(sub64, xs, ys, 1.7)
        for r in DEFAULT_RADII:
            sep.sum_circle(sub64, wx, wy, r, var=var64, subpix=0)

    def sep_forced() -> None:
        for r in DEFAULT_RADII:
            sep.sum_circle(sub64, xs, ys, r, var=var64, subpix=0)

    n, nr = len(xs), len(DEFAULT_RADII)
    return [(f"measure {n} sources (all)", interleaved(
                lambda: measure_sources(sub, var, None, xs, ys, psf_sigma=1.7), sep_all, repeat),
             f"sep winpos + sum_circle x{nr} (goal: ratio <= 0.7)"),
            (f"measure {n} sources forced", interleaved(
                lambda: measure_sources(sub, var, None, xs, ys, psf_sigma=1.7,
                                        recentroid=False), sep_forced, repeat),
             f"sep sum_circle x{nr} (goal: ratio <= 0.7)")]


def bench_warping(img: np.ndarray, var: np.ndarray, repeat: int) -> list[Row]:
    n = img.shape[0]
    theta = np.radians(0.5)

    def transform(x, y):
        c, s = np.cos(theta), np.sin(theta)
        return c * x - s * y + 3.3 + n * s / 2, s * x + c * y - 2.7 - n * s / 2

    sx, sy = transform_grid(transform, (n, n), step=10)
    mask = np.zeros(img.shape, np.int32)
    coords = [sy, sx]
    return [("warp Lanczos-3 (image+var+mask)", interleaved(
                lambda: warp_image(img, var, mask, sx, sy),
                lambda: ndimage.map_coordinates(img, coords, order=3), min(repeat, SLOW_PAIRS)),
             "map_coordinates order=3 (image)"),
            ("warp bilinear (image+var+mask)", interleaved(
                lambda: warp_image(img, var, mask, sx, sy, method="bilinear"),
                lambda: ndimage.map_coordinates(img, coords, order=1), repeat),
             "map_coordinates order=1 (image)")]


def bench_cosmic(img: np.ndarray, var: np.ndarray, sky: float, repeat: int) -> list[Row]:
    sub = img - np.float32(sky)
    found = find_cosmic_rays(sub, var, psf_sigma=1.7)
    out = np.empty_like(sub)
    print(f"cosmic-ray pixels found (grown): {int(found.sum())}")
    return [("cosmic rays (2 passes, grow 1)", interleaved(
                lambda: find_cosmic_rays(sub, var, psf_sigma=1.7),
                lambda: ndimage.median_filter(sub, size=3), min(repeat, SLOW_PAIRS)),
             "scipy median_filter 3x3"),
            ("interpolate over the rays", interleaved(
                lambda: interpolate_over(sub, found, variance=var),
                lambda: np.copyto(out, sub), repeat), "np.copyto of the frame")]


def bench_coadd(n_warps: int, size: int, repeat: int) -> list[Row]:
    from astropy.stats import sigma_clip

    rng = np.random.default_rng(2)
    sigma = rng.uniform(20.0, 40.0, n_warps)
    images = (rng.normal(0.0, 1.0, (n_warps, size, size)) * sigma[:, None, None]
              ).astype(np.float32)
    hits = rng.random(images.shape) < 0.001
    images[hits] += 5000.0
    variances = np.empty_like(images)
    variances[...] = (sigma**2)[:, None, None]
    masks = np.zeros(images.shape, np.int32)
    weights = 1.0 / sigma**2

    def ours() -> None:
        clipped_mean_stack(images, variances, masks, weights, nsigma=3.0, niter=2)

    def peer() -> None:
        clipped = sigma_clip(images, sigma=3.0, maxiters=2, cenfunc="median", stdfunc="std",
                             axis=0)
        np.ma.average(clipped, axis=0, weights=np.broadcast_to(weights[:, None, None],
                                                                images.shape))

    out = np.empty_like(images)
    vs_peer = interleaved(ours, peer, min(repeat, SLOW_PAIRS))
    vs_copy = interleaved(ours, lambda: np.copyto(out, images), repeat)
    moved = images.nbytes * 3 + size * size * 16  # read image, variance, mask; write 4 planes
    print(f"coadd: {moved / vs_copy.ours / 1e9:.2f} GB/s ({moved / 1e6:.0f} MB moved) beside "
          f"a copy of the stack at {2 * images.nbytes / vs_copy.peer / 1e9:.1f} GB/s; "
          f"astropy / ours = {1 / vs_peer.ratio:.1f} (goal >= 10); ours / copy of the stack "
          f"{format_paired(vs_copy)} (goal <= 5)")
    return [(f"coadd {n_warps} warps of {size}x{size}, clipped", vs_peer,
             "astropy sigma_clip(axis=0) + np.ma.average"),
            (f"coadd {n_warps} warps of {size}x{size}, clipped", vs_copy,
             "np.copyto of the stack")]

#: The kernel modules whose compiled functions ``--split`` times.
SPLIT_MODULES = (background_module, convolve_module, detect_module, isr_module, measure_module,
                 stats_module)


class _TimedNative:
    """A compiled kernel module whose functions add their run times to ``times``."""

    def __init__(self, name: str, module: object, times: dict[str, float]) -> None:
        self._name, self._module, self._times = name, module, times

    def __getattr__(self, attr: str) -> object:
        fn = getattr(self._module, attr)
        key = f"{self._name}.{attr}"

        def timed(*args: object) -> object:
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self._times[key] = self._times.get(key, 0.0) + time.perf_counter() - start

        return timed


@contextlib.contextmanager
def _timed_natives(times: dict[str, float]) -> Iterator[None]:
    """Make the kernel modules' ``load_native`` hand out :class:`_TimedNative` modules."""
    originals = [module.load_native for module in SPLIT_MODULES]

    def load(name: str) -> object:
        native = originals[0](name)
        return None if native is None else _TimedNative(name, native, times)

    try:
        for module in SPLIT_MODULES:
            module.load_native = load
        yield
    finally:
        for module, original in zip(SPLIT_MODULES, originals):
            module.load_native = original


def split(label: str, job: Callable[[], object], repeat: int) -> None:
    """Print the median time of ``job`` and of each compiled function it calls.

    "Python and NumPy" is the rest: checks, temporaries, tables built around the kernels.
    """
    job()  # warm-up
    runs: list[dict[str, float]] = []
    for _ in range(repeat):
        times: dict[str, float] = {}
        with _timed_natives(times):
            start = time.perf_counter()
            job()
            times["total"] = time.perf_counter() - start
        runs.append(times)
    names = sorted({k for run in runs for k in run if k != "total"},
                   key=lambda k: -np.median([run.get(k, 0.0) for run in runs]))
    total = float(np.median([run["total"] for run in runs]))
    rest = float(np.median([run["total"] - sum(v for k, v in run.items() if k != "total")
                            for run in runs]))
    print(f"split of {label}: {total * 1e3:.1f} ms (median of {repeat})")
    for name in names:
        t = float(np.median([run.get(name, 0.0) for run in runs]))
        print(f"  {name:<38} {t * 1e3:8.1f} ms  {100 * t / total:5.1f}%")
    print(f"  {'Python and NumPy around them':<38} {rest * 1e3:8.1f} ms  "
          f"{100 * rest / total:5.1f}%")


def print_splits(img: np.ndarray, var: np.ndarray, xs: np.ndarray, ys: np.ndarray, sky: float,
                 size: int, repeat: int, only: list[str]) -> None:
    """``--split``: where the time of each kernel goes (the jobs of the paired lines)."""
    if "background" in only or "detection" in only:
        split("background", lambda: estimate_background(img, bin_size=128), repeat)
        bg = estimate_background(img, bin_size=128)
        split("background + detection", lambda: detect_sources(
            estimate_background(img, bin_size=128).subtract(img), bg.rms, threshold=5.0,
            smooth_sigma=1.7, overwrite_input=True), repeat)
    if "measurement" in only:
        sub = img - np.float32(sky)
        split(f"measurement of {len(xs)} sources (all)", lambda: measure_sources(
            sub, var, None, xs, ys, psf_sigma=1.7), repeat)
        split(f"measurement of {len(xs)} sources (forced)", lambda: measure_sources(
            sub, var, None, xs, ys, psf_sigma=1.7, recentroid=False), repeat)
        split(f"measurement of {len(xs)} sources (all, one aperture)", lambda: measure_sources(
            sub, var, None, xs, ys, psf_sigma=1.7, radii=(DEFAULT_RADII[0],)), repeat)
    if "isr" in only:
        camera = SimCamera(CameraConfig(nx=1, ny=1, width=size, height=size, overscan=32))
        rng = np.random.default_rng(1)
        raw = rng.normal(2000.0, 30.0, (size, camera.raw_width)).astype(np.float32)
        planes = (np.empty((size, size), np.float32), np.empty((size, size), np.float32),
                  np.empty((size, size), np.int32))
        flat = rng.normal(1, 0.01, (size, size)).astype(np.float32)
        split("ISR (flat only, into kept planes)", lambda: run_isr(
            raw, camera.detector(0), flat=flat, out=planes), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="CCD size in pixels (4096)")
    parser.add_argument("--repeat", type=int, default=7,
                        help="interleaved pairs per comparison (7; 2 for the slowest peers)")
    parser.add_argument("--sources", type=int, default=2000, help="stars on the CCD (2000)")
    parser.add_argument("--warps", type=int, default=20, help="warps in the coadd (20)")
    parser.add_argument("--coadd-size", type=int, default=2048,
                        help="size of each warp in pixels (2048)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections ({','.join(SECTIONS)})")
    parser.add_argument("--split", action="store_true",
                        help="first print where the time of background, detection, "
                             "measurement and ISR goes (each compiled function's median time)")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    if args.repeat < 1:
        parser.error(f"--repeat: {args.repeat} is not a positive number of pairs")
    print(load_line("before"))

    sky = 1000.0
    img, var, xs, ys = simulated_ccd(args.size, args.sources, sky=sky)
    print(f"image {args.size}x{args.size} float32, {args.sources} stars; "
          f"kernels: {kernel_status()}")

    rows: list[Row] = []
    r = args.repeat
    if args.split:
        print_splits(img, var, xs, ys, sky, args.size, r, only)
    runners: dict[str, Callable[[], list[Row]]] = {
        "convolution": lambda: bench_convolution(img, r),
        "statistics": lambda: bench_statistics(img, r),
        "background": lambda: bench_background(img, r),
        "detection": lambda: bench_detection(img, r) + bench_labelling(img, r),
        "isr": lambda: bench_isr(args.size, r),
        "measurement": lambda: bench_measurement(img, var, xs, ys, sky, r),
        "warping": lambda: bench_warping(img - np.float32(sky), var, r),
        "cosmic": lambda: bench_cosmic(img, var, sky, r),
        "coadd": lambda: bench_coadd(args.warps, args.coadd_size, r),
    }
    for name in SECTIONS:
        if name in only:
            rows += runners[name]()

    width = max(len(row[0]) for row in rows)
    print(f"{'kernel':<{width}}  {'ours s':>8}  {'peer s':>8}  {'ours/peer [IQR]':>17}  pairs  "
          "peer")
    for name, paired, peer_name in rows:
        print(f"{name:<{width}}  {paired.ours:8.3f}  {paired.peer:8.3f}  "
              f"{format_paired(paired):>17}  {paired.pairs:5d}  {peer_name}")
    print(load_line("after"))


if __name__ == "__main__":
    main()
