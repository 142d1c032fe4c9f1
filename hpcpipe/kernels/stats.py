"""Robust statistics of the cells of an image (the background mesh)."""

from __future__ import annotations

import numpy as np

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels._loader import load_native

__all__ = ["binned_clipped_mean", "binned_clipped_mean_reference", "clipped_mean_reference"]

#: The Gaussian standard deviation per unit interquartile range.
IQR_TO_SIGMA = 0.7413


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
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(
            f"binned_clipped_mean needs a non-empty 2-D image; got shape {image.shape}")
    if image.dtype not in (np.float32, np.float64):
        raise PixelTypeError(
            f"binned_clipped_mean needs float32 or float64 pixels; got {image.dtype}")
    if bad is None:
        bad = np.zeros(image.shape, dtype=np.uint8)
    bad = np.ascontiguousarray(bad, dtype=np.uint8)
    if bad.shape != image.shape:
        raise ValueError(f"the bad-pixel array's shape {bad.shape} differs from {image.shape}")
    if bin_x < 1 or bin_y < 1:
        raise ValueError(f"bin sizes must be positive; got {bin_x}x{bin_y}")
    if not nsigma > 0 or niter < 0:
        raise ValueError(f"need nsigma > 0 and niter >= 0; got {nsigma}, {niter}")
    return np.ascontiguousarray(image), bad


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
        2-D float32 or float64 pixels.
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
    return native.binned_clipped_mean(image, bad, int(bin_x), int(bin_y), float(nsigma), int(niter))
