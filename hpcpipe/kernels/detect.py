"""Detection: thresholded footprints, grown and labelled, with their deblended peaks.

The algorithm (LSST's ``SourceDetectionTask`` with a watershed deblender):

1. Optionally smooth the image by a Gaussian matching the PSF; the noise of the smoothed
   image is then ``noise * sqrt(sum(K**2))``.
2. Positive detection: pixels with ``value > threshold * noise`` (negative: ``value <
   -threshold * noise``) that are not flagged bad; NaN pixels are never above threshold.
   With a per-pixel noise image the threshold applies to ``value / noise``.
3. Connected groups (8-connectivity) of fewer than ``min_pixels`` pixels are dropped, the
   rest grown by a disc of ``grow`` pixels (pixels whose centres lie within ``grow`` of a
   detected pixel), and the grown mask labelled again (8-connectivity): overlapping grown
   footprints merge. Footprints are numbered from 1 in raster order of their first pixel
   (as ``scipy.ndimage.label``).
4. Peaks and deblending: each footprint's pixels are flooded from the brightest down
   (ties in raster order). A pixel with no flooded neighbour starts a basin (a local
   maximum); a pixel touching several basins merges every lower basin into the highest one
   unless that basin's peak is above the threshold and rises above this pixel (the saddle)
   by at least ``max(prominence * noise, contrast * peak)``; the pixel then joins the basin
   of its brightest neighbour. The basins left are the deblended children: each has one
   peak, and every (good) footprint pixel is assigned to one (``segments``).

Outputs for positive sources use positive ids; negative sources use negative ids in the same
images. Where a grown positive and a grown negative footprint overlap, the pixel shows the
positive one (the footprint tables still count it in both).

Defined results: no pixel above threshold gives empty tables and zero images; all-NaN or
all-bad images detect nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import numpy as np

from hpcpipe.kernels._checks import flag_image, float_image
from hpcpipe.kernels._loader import load_native
from hpcpipe.kernels.convolve import correlate_separable, gaussian_kernel_1d

__all__ = [
    "Polarity",
    "DetectionParameters",
    "Detections",
    "FOOTPRINT_DTYPE",
    "PEAK_DTYPE",
    "detect_sources",
    "detect_sources_reference",
    "label_8",
    "label_connected",
]

#: One row per footprint: signed id, polarity, pixel count, inclusive bounding box, peaks.
FOOTPRINT_DTYPE = np.dtype([
    ("id", np.int32), ("sign", np.int8), ("npix", np.int64), ("x0", np.int32),
    ("y0", np.int32), ("x1", np.int32), ("y1", np.int32), ("n_peaks", np.int32),
    ("first_peak", np.int64),
])

#: One row per deblended peak: signed id, footprint id, pixel, value and significance.
PEAK_DTYPE = np.dtype([
    ("id", np.int32), ("footprint", np.int32), ("sign", np.int8), ("x", np.int32),
    ("y", np.int32), ("value", np.float32), ("significance", np.float32),
])

#: Which peaks detection finds: above the threshold, below minus it, or both.
Polarity = Literal["positive", "negative", "both"]
POLARITIES: tuple[Polarity, ...] = ("positive", "negative", "both")

# The columns of the int64 tables one polarity's pass returns (the NumPy reference and the
# compiled kernel, whose source ``pythran/detect.py`` declares the same numbers: a test
# compares them). Footprints, one row each:
FP_NPIX = 0        # pixel count
FP_X0 = 1          # inclusive bounding box
FP_Y0 = 2
FP_X1 = 3
FP_Y1 = 4
FP_NPEAKS = 5      # number of peaks
FP_FIRST_PEAK = 6  # row of its first peak in the peak table
FP_NCOLS = 7
# Peaks, one row each:
PK_FOOTPRINT = 0   # footprint number, from 1
PK_X = 1           # peak pixel
PK_Y = 2
PK_NCOLS = 3


@dataclass(frozen=True)
class DetectionParameters:
    """The settings of :func:`detect_sources` (see its parameters), checked on creation."""

    threshold: float = 5.0
    polarity: Polarity = "positive"
    grow: int = 2
    min_pixels: int = 1
    smooth_sigma: float | None = None
    prominence: float = 3.0
    contrast: float = 0.01
    overwrite_input: bool = False

    def __post_init__(self) -> None:
        if self.polarity not in POLARITIES:
            raise ValueError(f"detect_sources: polarity must be one of {POLARITIES}; got "
                             f"{self.polarity!r}")
        if not self.threshold > 0 or int(self.grow) < 0 or int(self.min_pixels) < 0:
            raise ValueError("detect_sources: need threshold > 0, grow >= 0, min_pixels >= 0; "
                             f"got {self.threshold}, {self.grow}, {self.min_pixels}")
        if self.prominence < 0 or self.contrast < 0:
            raise ValueError("detect_sources: prominence and contrast must be >= 0")


@dataclass(frozen=True)
class _Polarity:
    """One polarity's pass, in the units of the image it thresholds.

    ``level``: the threshold; ``sign``: +1.0 or -1.0; ``radius``: the growing disc's;
    ``prom_level``: the prominence a separate peak needs.
    """

    level: float
    sign: float
    radius: int
    min_pixels: int
    prom_level: float
    contrast: float


@dataclass
class Detections:
    """Footprints and peaks found by :func:`detect_sources`.

    Attributes
    ----------
    labels : numpy.ndarray
        int32 image: footprint id (negative for negative detections), 0 outside.
    segments : numpy.ndarray
        int32 image: the (signed) id of the peak each footprint pixel was assigned to.
    footprints : numpy.ndarray
        :data:`FOOTPRINT_DTYPE` table; the peaks of footprint ``k`` are rows
        ``first_peak:first_peak + n_peaks`` of ``peaks``, brightest first.
    peaks : numpy.ndarray
        :data:`PEAK_DTYPE` table.
    smoothed : numpy.ndarray
        The image that was thresholded.
    noise : float or numpy.ndarray
        Its noise (per pixel, or one value).
    threshold : float
        The threshold in units of the noise.
    """

    labels: np.ndarray
    segments: np.ndarray
    footprints: np.ndarray
    peaks: np.ndarray
    smoothed: np.ndarray
    noise: float | np.ndarray
    threshold: float

    def mask_bits(self, detected: int = 1 << 5, detected_negative: int = 1 << 6) -> np.ndarray:
        """An int32 mask with ``detected`` on positive and ``detected_negative`` on negative
        footprint pixels (the DETECTED and DETECTED_NEGATIVE planes by default)."""
        out = np.zeros(self.labels.shape, np.int32)
        out[self.labels > 0] = detected
        out[self.labels < 0] = detected_negative
        return out


def label_8(fg: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components (8-connectivity) of a boolean image, in NumPy.

    Labels from 1 in raster order of each component's first pixel, by minimum-label
    propagation with pointer jumping.
    """
    fg = np.asarray(fg, dtype=bool)
    ny, nx = fg.shape
    big = ny * nx
    flat_index = np.arange(big, dtype=np.int64).reshape(ny, nx)
    lab = np.where(fg, flat_index, big)
    while True:
        padded = np.pad(lab, 1, constant_values=big)
        new = lab.copy()
        for dy in range(3):
            for dx in range(3):
                np.minimum(new, padded[dy:dy + ny, dx:dx + nx], out=new)
        new = np.where(fg, new, big)
        flat = np.append(new.ravel(), big)
        while True:  # pointer jumping: the label of my label's pixel
            jumped = flat[flat]
            if np.array_equal(jumped, flat):
                break
            flat = jumped
        new = flat[:-1].reshape(ny, nx)
        if np.array_equal(new, lab):
            break
        lab = new
    roots = np.unique(lab[fg])
    out = np.zeros((ny, nx), np.int32)
    out[fg] = np.searchsorted(roots, lab[fg]) + 1
    return out, int(roots.size)


def _disc_offsets(radius: int) -> list[tuple[int, int]]:
    r = int(radius)
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
            if dx * dx + dy * dy <= r * r]


def _deblend_reference(vals: np.ndarray, ys: np.ndarray, xs: np.ndarray, level: float,
                       prom_level: float, contrast: float) -> tuple[list[int], np.ndarray]:
    """The watershed of one footprint's good pixels (raster order) in plain Python.

    Returns the peak pixels (indices into the inputs, brightest first) and, per pixel, the
    index of its peak in that list (-1 if its basin has no significant peak).
    """
    n = vals.size
    order = np.lexsort((np.arange(n), -vals))
    pos = {(int(y), int(x)): k for k, (y, x) in enumerate(zip(ys, xs))}
    basin = np.full(n, -1, np.int64)
    parent: list[int] = []
    peak_v: list[float] = []
    peak_k: list[int] = []

    def find(b: int) -> int:
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        return b

    for k in order:
        y, x = int(ys[k]), int(xs[k])
        v = float(vals[k])
        nbrs = [pos[(y + dy, x + dx)] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                if (dy or dx) and (y + dy, x + dx) in pos and basin[pos[(y + dy, x + dx)]] >= 0]
        if not nbrs:
            parent.append(len(parent))
            peak_v.append(v)
            peak_k.append(int(k))
            basin[k] = len(parent) - 1
            continue
        roots = sorted({find(int(basin[q])) for q in nbrs})
        best = max(roots, key=lambda r: (peak_v[r], -r))
        for r in roots:
            if r == best:
                continue
            rise = peak_v[r] - v
            if peak_v[r] <= level or rise < prom_level or rise < contrast * peak_v[r]:
                parent[r] = best
        steep = nbrs[int(np.argmax([vals[q] for q in nbrs]))]
        basin[k] = find(int(basin[steep]))
    roots = [b for b in range(len(parent)) if parent[b] == b and peak_v[b] > level]
    roots.sort(key=lambda b: (-peak_v[b], b))
    index = {b: t for t, b in enumerate(roots)}
    assign = np.array([index.get(find(int(basin[k])), -1) for k in range(n)], np.int64)
    return [peak_k[b] for b in roots], assign


def _polarity_reference(image: np.ndarray, bad: np.ndarray, pol: _Polarity,
                        labels: np.ndarray, segments: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """One polarity by NumPy: the footprint (:data:`FP_NCOLS` columns) and peak
    (:data:`PK_NCOLS`) tables; writes ``labels`` and ``segments``."""
    level, sign, radius, min_pixels = pol.level, pol.sign, pol.radius, pol.min_pixels
    above = (sign * image > level) & (bad == 0)
    if min_pixels > 1 and above.any():
        lab, n = label_8(above)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        above &= sizes[lab] >= min_pixels
    grown = above.copy()
    if radius > 0 and above.any():
        ny, nx = above.shape
        for dy, dx in _disc_offsets(radius):
            src = above[max(0, -dy):ny - max(0, dy), max(0, -dx):nx - max(0, dx)]
            grown[max(0, dy):ny - max(0, -dy), max(0, dx):nx - max(0, -dx)] |= src
    lab, nfp = label_8(grown)
    labels[lab > 0] = int(sign) * lab[lab > 0]
    fp = np.zeros((nfp, FP_NCOLS), np.int64)
    peaks: list[tuple[int, int, int]] = []
    values = sign * image.astype(np.float64)
    for f in range(1, nfp + 1):
        ys, xs = np.nonzero(lab == f)
        row = fp[f - 1]
        row[FP_NPIX], row[FP_X0], row[FP_Y0] = ys.size, xs.min(), ys.min()
        row[FP_X1], row[FP_Y1] = xs.max(), ys.max()
        row[FP_FIRST_PEAK] = len(peaks)
        good = (bad[ys, xs] == 0) & np.isfinite(values[ys, xs])
        ys, xs = ys[good], xs[good]
        if ys.size == 0:
            continue
        peak_k, assign = _deblend_reference(values[ys, xs], ys, xs, level, pol.prom_level,
                                            pol.contrast)
        first = len(peaks)
        for k in peak_k:
            peaks.append((f, int(xs[k]), int(ys[k])))  # PK_FOOTPRINT, PK_X, PK_Y
        row[FP_NPEAKS] = len(peak_k)
        ok = assign >= 0
        segments[ys[ok], xs[ok]] = int(sign) * (first + 1 + assign[ok])
    pk = np.array(peaks, np.int64).reshape(-1, PK_NCOLS)
    return fp, pk


def _runs(find: Callable[..., int], shape: tuple[int, int], *args: object
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Call a compiled run finder with run arrays of a likely size, then of the largest
    possible size if they were too short. Returns (ry, rx0, rx1, first, n)."""
    ny, nx = shape
    for cap in (ny * nx // 16 + 1024, ny * ((nx + 1) // 2)):
        ry, rx0, rx1 = (np.empty(cap, np.int64) for _ in range(3))
        first = np.empty(ny + 1, np.int64)
        n = find(*args, ry, rx0, rx1, first)
        if n >= 0:
            return ry, rx0, rx1, first, n
    raise AssertionError("unreachable: the largest run arrays always suffice")


def _native_labels(native, fg: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`label_8` by the compiled run labelling."""
    mask = np.ascontiguousarray(fg, dtype=bool).view(np.uint8)
    ry, rx0, rx1, first, n = _runs(native.mask_runs, mask.shape, mask)
    comp = np.empty(n, np.int64)
    count = native.label_runs(rx0, rx1, first, n, comp)
    out = np.zeros(mask.shape, np.int32)
    native.footprints(ry, rx0, rx1, comp, n, 1, out, np.zeros((count, FP_NCOLS), np.int64),
                      np.zeros(count + 1, np.int64), np.empty(n, np.int64))
    return out, count


def label_connected(fg: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components (8-connectivity) of a boolean image.

    Parameters
    ----------
    fg : numpy.ndarray
        2-D mask (non-zero: foreground).

    Returns
    -------
    labels : numpy.ndarray
        int32 image: components numbered from 1 in raster order of their first pixel (as
        ``scipy.ndimage.label`` with a 3x3 structure), 0 on the background.
    count : int
        The number of components.
    """
    fg = np.asarray(fg)
    if fg.ndim != 2:
        raise ValueError(f"label_connected needs a 2-D mask; got shape {fg.shape}")
    native = load_native("detect")
    if native is None or fg.size == 0:
        return label_8(fg)
    return _native_labels(native, fg != 0)


def _polarity_native(native: ModuleType, image: np.ndarray, bad: np.ndarray, pol: _Polarity,
                     labels: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_polarity_reference` by the compiled kernels (the same results).

    Thresholding, the ``min_pixels`` cut, growing and labelling work on runs of pixels; the
    footprints' good pixels are then gathered footprint by footprint, each sorted from the
    brightest down (ties in raster order) and flooded.
    """
    ny, nx = image.shape
    level, radius, min_pixels = pol.level, pol.radius, pol.min_pixels
    isign = 1 if pol.sign > 0 else -1
    with np.errstate(over="ignore"):
        # ``sign * image > level`` compares float32 pixels with the level in float32
        thr = float(np.float32(level))
    ry, rx0, rx1, first, n = _runs(native.threshold_runs, image.shape, image, bad, thr, isign)
    if min_pixels > 1 and n > 0:
        comp = np.empty(n, np.int64)
        count = native.label_runs(rx0, rx1, first, n, comp)
        size = np.bincount(comp, weights=rx1[:n] - rx0[:n] + 1, minlength=count + 1)
        keep = np.flatnonzero(size[comp] >= min_pixels)
        n = keep.size
        ry, rx0, rx1 = ry[keep], rx0[keep], rx1[keep]
        first = np.searchsorted(ry, np.arange(ny + 1)).astype(np.int64)
    if radius > 0 and n > 0:
        mask = np.zeros((ny, nx), np.uint8)
        ry, rx0, rx1, first, n = _runs(native.grow_runs, image.shape, ry, rx0, rx1, n,
                                       int(radius), mask)
    comp = np.empty(n, np.int64)
    nfp = native.label_runs(rx0, rx1, first, n, comp)
    fp = np.zeros((nfp, FP_NCOLS), np.int64)
    if nfp == 0:
        return fp, np.zeros((0, PK_NCOLS), np.int64)
    start = np.zeros(nfp + 1, np.int64)
    grouped = np.empty(n, np.int64)
    native.footprints(ry, rx0, rx1, comp, n, isign, labels, fp, start, grouped)
    total = int(fp[:, FP_NPIX].sum())
    ys, xs = np.empty(total, np.int64), np.empty(total, np.int64)
    vals = np.empty(total, np.float64)
    prev = np.empty(total, np.int32)
    pstart = np.empty(nfp + 1, np.int64)
    # the segment image serves as the pixel -> good-pixel index until number_peaks writes
    # the segments (and puts back what the other polarity left on unassigned pixels)
    n_good = native.gather(image, bad, isign, ry, rx0, rx1, start, grouped, segments, prev,
                           ys, xs, vals, pstart)
    ys, xs, vals, prev = ys[:n_good], xs[:n_good], vals[:n_good], prev[:n_good]
    order = np.empty(n_good, np.int64)
    native.sort_footprints(vals, pstart, order, np.empty(n_good, np.int64))
    basin, parent, peak_v, peak_k = native.watershed(
        vals, ys, xs, order, segments, float(level), float(pol.prom_level),
        float(pol.contrast))
    fp[:, FP_NPEAKS] = 0
    fp[:, FP_FIRST_PEAK] = 0
    pk = np.empty((parent.size, PK_NCOLS), np.int64)
    npk = native.number_peaks(basin, parent, peak_v, peak_k, ys, xs, pstart, prev,
                              float(level), isign, segments, fp, pk)
    return fp, pk[:npk]


#: One polarity's pass: (image, bad, polarity, labels, segments) -> (footprints, peaks).
OnePolarity = Callable[[np.ndarray, np.ndarray, _Polarity, np.ndarray, np.ndarray],
                       tuple[np.ndarray, np.ndarray]]


def _check(image: np.ndarray, noise: float | np.ndarray, bad: np.ndarray | None,
           params: DetectionParameters
           ) -> tuple[np.ndarray, float | np.ndarray, np.ndarray]:
    image = float_image(image, "image", "detect_sources", dtype=np.dtype(np.float32))
    bad = flag_image(bad, image.shape, "bad", "detect_sources")
    if np.ndim(noise) == 0:
        noise = float(noise)
        if not noise > 0:
            raise ValueError(f"detect_sources: the noise must be positive; got {noise}")
    else:
        noise = float_image(noise, "noise", "detect_sources", dtype=np.dtype(np.float32))
        if noise.shape != image.shape:
            raise ValueError(f"detect_sources: the noise image's shape {noise.shape} differs "
                             f"from {image.shape}")
    if params.smooth_sigma is not None:
        kernel = gaussian_kernel_1d(float(params.smooth_sigma))
        image = correlate_separable(image, kernel, kernel,
                                    out=image if params.overwrite_input else None)
        norm = float((kernel.astype(np.float64) ** 2).sum())  # = sqrt(sum of the 2-D K**2)
        if isinstance(noise, float):
            noise = noise * norm
        else:
            k2 = (kernel.astype(np.float64) ** 2).astype(np.float32)
            noise = np.sqrt(np.maximum(correlate_separable(noise**2, k2, k2), 0.0))
    return image, noise, bad


def _run(image: np.ndarray, noise: float | np.ndarray, bad: np.ndarray | None,
         params: DetectionParameters, one_polarity: OnePolarity) -> Detections:
    smoothed, noise, bad = _check(image, noise, bad, params)
    if isinstance(noise, float):
        work, scale = smoothed, noise
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            work = smoothed / noise  # float32 / float32: float32, no further copy
        scale = 1.0
    labels = np.zeros(smoothed.shape, np.int32)
    segments = np.zeros(smoothed.shape, np.int32)
    signs = {"positive": [1.0], "negative": [-1.0], "both": [-1.0, 1.0]}[params.polarity]
    tables = {}
    for sign in signs:
        pol = _Polarity(level=float(params.threshold * scale), sign=sign,
                        radius=int(params.grow), min_pixels=int(params.min_pixels),
                        prom_level=float(params.prominence * scale),
                        contrast=float(params.contrast))
        tables[sign] = one_polarity(work, bad, pol, labels, segments)
    fp_rows, pk_rows = [], []
    n_peaks_before = 0
    for sign in sorted(signs, reverse=True):  # positive first in the tables
        fp, pk = tables[sign]
        f = np.zeros(fp.shape[0], FOOTPRINT_DTYPE)
        f["id"] = sign * np.arange(1, fp.shape[0] + 1)
        f["sign"] = sign
        for name, col in (("npix", FP_NPIX), ("x0", FP_X0), ("y0", FP_Y0), ("x1", FP_X1),
                          ("y1", FP_Y1), ("n_peaks", FP_NPEAKS)):
            f[name] = fp[:, col]
        f["first_peak"] = fp[:, FP_FIRST_PEAK] + n_peaks_before
        p = np.zeros(pk.shape[0], PEAK_DTYPE)
        p["id"] = sign * np.arange(1, pk.shape[0] + 1)
        p["footprint"] = sign * pk[:, PK_FOOTPRINT]
        p["sign"] = sign
        px, py = pk[:, PK_X], pk[:, PK_Y]
        p["x"] = px
        p["y"] = py
        p["value"] = smoothed[py, px]
        nz = noise if isinstance(noise, float) else noise[py, px]
        p["significance"] = p["value"] / nz
        fp_rows.append(f)
        pk_rows.append(p)
        n_peaks_before += pk.shape[0]
    return Detections(labels, segments, np.concatenate(fp_rows), np.concatenate(pk_rows),
                      smoothed, noise, float(params.threshold))


def detect_sources_reference(image: np.ndarray, noise: float | np.ndarray,
                             threshold: float = 5.0, polarity: Polarity = "positive",
                             grow: int = 2, min_pixels: int = 1, bad: np.ndarray | None = None,
                             smooth_sigma: float | None = None, prominence: float = 3.0,
                             contrast: float = 0.01, overwrite_input: bool = False
                             ) -> Detections:
    """NumPy reference of :func:`detect_sources`."""
    params = DetectionParameters(threshold, polarity, grow, min_pixels, smooth_sigma,
                                 prominence, contrast, overwrite_input)
    return _run(image, noise, bad, params, _polarity_reference)


def detect_sources(image: np.ndarray, noise: float | np.ndarray, threshold: float = 5.0,
                   polarity: Polarity = "positive", grow: int = 2, min_pixels: int = 1,
                   bad: np.ndarray | None = None, smooth_sigma: float | None = None,
                   prominence: float = 3.0, contrast: float = 0.01,
                   overwrite_input: bool = False) -> Detections:
    """Detect sources: threshold, grown footprints, peaks and deblending (see the module).

    Parameters
    ----------
    image : numpy.ndarray
        2-D float32 or float64 pixels (float64 is converted to float32), already smoothed
        unless ``smooth_sigma`` is given.
    noise : float or numpy.ndarray
        The per-pixel noise of ``image`` (one value or an image of the same shape).
    threshold : float
        Detection threshold in units of the noise (LSST: 5).
    polarity : {"positive", "negative", "both"}
        Which sources to find.
    grow : int
        Footprints are grown by a disc of this radius in pixels (LSST: 2.4 PSF sigma).
    min_pixels : int
        Connected groups with fewer pixels above threshold are dropped.
    bad : numpy.ndarray, optional
        Non-zero where pixels must not be detected (and are not deblended).
    smooth_sigma : float, optional
        Smooth by a Gaussian of this sigma first (and scale the noise accordingly).
    prominence, contrast : float
        A peak is a separate child when it rises above its saddle with a brighter peak by
        at least ``prominence`` noise units and ``contrast`` times its height.
    overwrite_input : bool
        With ``smooth_sigma``, smooth a C-contiguous float32 ``image`` in place (it becomes
        ``Detections.smoothed``) instead of into a new image, as scipy's ``overwrite_x``:
        for a temporary image, such as a background-subtracted copy.

    Returns
    -------
    Detections
        Label and segment images, footprint and peak tables.
    """
    params = DetectionParameters(threshold, polarity, grow, min_pixels, smooth_sigma,
                                 prominence, contrast, overwrite_input)
    native = load_native("detect")
    one: OnePolarity = _polarity_reference
    if native is not None:
        one = functools.partial(_polarity_native, native)
    return _run(image, noise, bad, params, one)
