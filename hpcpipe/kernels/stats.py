"""Robust statistics of the cells of an image (the background mesh).

The rule is :func:`clipped_mean_reference`'s: a first pass centred on the median with a width
of 0.7413 interquartile ranges, then mean and standard deviation passes over the values within
``nsigma`` widths of the centre. The compiled kernel reads each cell once: it copies the good
pixels out, with their bin numbers in a histogram of ``_NBINS`` bins between the 2nd and 98th
percentiles of a 16 x 16 grid sample of the cell (widened by a tenth of their distance on
either side), and sums ``v - lo`` and ``(v - lo)**2`` over the values inside the histogram.
The quartiles are exact order statistics, found by quickselect among the values of the one
bin that holds each rank (or among the values outside the histogram). When both limits of a
clipping pass lie two bins or more outside the histogram (the usual case for ``nsigma = 3``),
the values inside it are all kept, their sums come from the histogram's, and only the values
outside it are tested one by one; otherwise every value is tested. The kept pixels are the
reference's exactly; the means and widths differ from NumPy's by rounding.
"""

from __future__ import annotations

import numpy as np

from hpcpipe.kernels._checks import flag_image, float_image
from hpcpipe.kernels._loader import load_native

__all__ = [
    "binned_clipped_mean",
    "binned_clipped_mean_reference",
    "clipped_mean_reference",
    "clipped_stats",
]

#: The Gaussian standard deviation per unit interquartile range.
IQR_TO_SIGMA = 0.7413

# the compiled kernel's histogram bins and range sample (see pythran/stats.py)
_NBINS = 1024
_NSAMPLE = 256


def clipped_mean_reference(values: np.ndarray, nsigma: float, niter: int
                           ) -> tuple[float, float, int]:
    """Clipped mean, standard deviation and kept count of a 1-D array of good values.

    The first pass is centred on the median with a width of 0.7413 interquartile ranges; each
    of the ``niter`` passes keeps the values within ``nsigma`` widths of the centre and
    replaces the centre and width by their mean and standard deviation.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return float("nan"), float("nan"), 0
    q25, center, q75 = np.percentile(values, [25, 50, 75])
    width = IQR_TO_SIGMA * (q75 - q25)
    kept = n
    for _ in range(niter):
        sel = values[np.abs(values - center) <= nsigma * width]
        if sel.size == 0:
            break
        center, width, kept = sel.mean(), sel.std(), sel.size
    return float(center), float(width), int(kept)


def _check(image: np.ndarray, bad: np.ndarray | None, bin_x: int, bin_y: int, nsigma: float,
           niter: int) -> tuple[np.ndarray, np.ndarray]:
    image = float_image(image, "image", "binned_clipped_mean", dtype=np.float32)
    bad = flag_image(bad, image.shape, "bad", "binned_clipped_mean")
    if int(bin_x) < 1 or int(bin_y) < 1:
        raise ValueError(f"binned_clipped_mean: bin sizes must be positive; got {bin_x}x{bin_y}")
    if not nsigma > 0 or int(niter) < 0:
        raise ValueError(f"binned_clipped_mean: need nsigma > 0 and niter >= 0; got {nsigma}, "
                         f"{niter}")
    return image, bad


def binned_clipped_mean_reference(image: np.ndarray, bad: np.ndarray | None, bin_x: int,
                                  bin_y: int, nsigma: float = 3.0, niter: int = 3
                                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy reference of :func:`binned_clipped_mean`."""
    image, bad = _check(image, bad, bin_x, bin_y, nsigma, niter)
    ny, nx = image.shape
    nby, nbx = -(-ny // bin_y), -(-nx // bin_x)
    mean = np.full((nby, nbx), np.nan)
    std = np.full((nby, nbx), np.nan)
    count = np.zeros((nby, nbx), dtype=np.int64)
    for by in range(nby):
        for bx in range(nbx):
            cell = image[by * bin_y:(by + 1) * bin_y, bx * bin_x:(bx + 1) * bin_x]
            good = (bad[by * bin_y:(by + 1) * bin_y, bx * bin_x:(bx + 1) * bin_x] == 0)
            values = cell[good & np.isfinite(cell)]
            mean[by, bx], std[by, bx], count[by, bx] = clipped_mean_reference(values, nsigma, niter)
    return mean, std, count


def binned_clipped_mean(image: np.ndarray, bad: np.ndarray | None, bin_x: int, bin_y: int,
                        nsigma: float = 3.0, niter: int = 3
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sigma-clipped statistics of each ``bin_x`` by ``bin_y`` cell of an image.

    Parameters
    ----------
    image : numpy.ndarray
        2-D float32 or float64 pixels (float64 pixels are rounded to float32 first, by the
        compiled kernel and the reference alike).
    bad : numpy.ndarray or None
        Non-zero where a pixel must be left out (masked); NaN and infinite pixels are always
        left out.
    bin_x, bin_y : int
        Cell size; the last row and column of cells may be smaller.
    nsigma : float
        Clipping limit in standard deviations.
    niter : int
        Clipping passes after the first, median-centred one (see
        :func:`clipped_mean_reference`).

    Returns
    -------
    mean, std : numpy.ndarray
        ``(ceil(ny / bin_y), ceil(nx / bin_x))`` float64 arrays; NaN for a cell with no good
        pixel.
    count : numpy.ndarray
        The number of pixels kept in each cell (0 for an all-masked cell).
    """
    image, bad = _check(image, bad, bin_x, bin_y, nsigma, niter)
    native = load_native("stats")
    if native is None:
        return binned_clipped_mean_reference(image, bad, bin_x, bin_y, nsigma, niter)
    bin_x, bin_y = int(bin_x), int(bin_y)
    cap = min(bin_x, image.shape[1]) * min(bin_y, image.shape[0])
    nbins = _NBINS + 2
    return native.binned_clipped_mean(
        np.ascontiguousarray(image), np.ascontiguousarray(bad), bin_x, bin_y, float(nsigma),
        int(niter), np.empty(cap, np.float32), np.empty(cap, np.float32),
        np.empty(_NSAMPLE, np.float32), np.zeros(nbins, np.int64), np.zeros(nbins + 1, np.int64),
        np.zeros(nbins, np.int64), np.zeros(nbins, np.int64), np.empty(cap, np.int16))


def clipped_stats(image: np.ndarray, bad: np.ndarray | None = None, nsigma: float = 3.0,
                  niter: int = 3) -> tuple[float, float, int]:
    """Clipped mean, standard deviation and kept count of all the good pixels of an image.

    The rule of :func:`clipped_mean_reference` (one cell covering the whole image).

    Parameters
    ----------
    image : numpy.ndarray
        1-D or 2-D float32 or float64 values.
    bad : numpy.ndarray, optional
        Non-zero where a value must be left out; NaN and infinite values are always left out.
    nsigma, niter : float, int
        Clipping limit and number of mean/standard deviation passes.

    Returns
    -------
    mean, std : float
        NaN when no value is good.
    count : int
        The number of values kept.
    """
    arr = np.asarray(image)
    if arr.ndim == 1:
        arr = arr[None, :]
        if bad is not None:
            bad = np.asarray(bad)[None, :]
    arr = float_image(arr, "image", "clipped_stats")
    mean, std, count = binned_clipped_mean(arr, bad, arr.shape[1], arr.shape[0], nsigma, niter)
    return float(mean[0, 0]), float(std[0, 0]), int(count[0, 0])
