"""Correlation of an image with separable and general 2-D kernels (PSF-smoothed detection).

Edge and mask rule
------------------
Without a ``bad`` mask, pixels outside the image repeat the nearest edge pixel (as
``scipy.ndimage.correlate(..., mode="nearest")``) and NaNs propagate to their neighbours.

With a ``bad`` mask (normalised correlation), pixels that are flagged, not finite, or outside
the image are left out and the kernel is renormalised over the pixels that remain::

    out = sum(K * v * g) / sum(K * g) * sum(K)      (g = 1 for good pixels, 0 otherwise)

so a kernel summing to 1 gives the weighted mean of the good pixels (astropy's
``convolve(..., boundary="fill", fill_value=nan, nan_treatment="interpolate")``). A pixel
whose kernel covers no good pixel is NaN. The rule is meant for non-negative kernels. The
separable form gives the same result as the 2-D form with the outer-product kernel.
"""

from __future__ import annotations

import numpy as np

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels._checks import flag_image
from hpcpipe.kernels._loader import load_native

__all__ = [
    "correlate_2d",
    "correlate_2d_reference",
    "correlate_separable",
    "correlate_separable_reference",
    "gaussian_kernel_1d",
]


def gaussian_kernel_1d(sigma: float, half_width: int | None = None, dtype=np.float32
                       ) -> np.ndarray:
    """A normalised 1-D Gaussian of ``2 * half_width + 1`` taps (default ``ceil(4 sigma)``)."""
    if not sigma > 0:
        raise ValueError(f"Gaussian sigma must be positive; got {sigma}")
    h = int(np.ceil(4 * sigma)) if half_width is None else int(half_width)
    r = np.arange(-h, h + 1, dtype=np.float64)
    k = np.exp(-0.5 * (r / sigma) ** 2)
    return (k / k.sum()).astype(dtype)


def _check(image: np.ndarray, kernel_x: np.ndarray, kernel_y: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(
            f"correlate_separable needs a non-empty 2-D image; got shape {image.shape}")
    if image.dtype not in (np.float32, np.float64):
        raise PixelTypeError(
            f"correlate_separable needs float32 or float64 pixels; got {image.dtype}")
    kx = np.ascontiguousarray(kernel_x, dtype=image.dtype)
    ky = np.ascontiguousarray(kernel_y, dtype=image.dtype)
    for name, k in (("kernel_x", kx), ("kernel_y", ky)):
        if k.ndim != 1 or k.size % 2 == 0:
            raise ValueError(f"{name} must be 1-D with an odd number of taps; got shape {k.shape}")
    return np.ascontiguousarray(image), kx, ky


def _masked_reference(image: np.ndarray, bad: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The normalised correlation of the module's rule, in float64, by shifted sums."""
    ny, nx = image.shape
    nky, nkx = kernel.shape
    hy, hx = nky // 2, nkx // 2
    good = (bad == 0) & np.isfinite(image)
    values = np.where(good, image, 0.0).astype(np.float64)
    pv = np.pad(values, ((hy, hy), (hx, hx)))
    pg = np.pad(good.astype(np.float64), ((hy, hy), (hx, hx)))
    num = np.zeros((ny, nx))
    den = np.zeros((ny, nx))
    for u in range(nky):
        for t in range(nkx):
            w = float(kernel[u, t])
            num += w * pv[u:u + ny, t:t + nx]
            den += w * pg[u:u + ny, t:t + nx]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den != 0.0, num / np.where(den != 0.0, den, 1.0) * kernel.sum(), np.nan)
    return out.astype(image.dtype)


def correlate_separable_reference(image: np.ndarray, kernel_x: np.ndarray, kernel_y: np.ndarray,
                                  bad: np.ndarray | None = None) -> np.ndarray:
    """NumPy reference of :func:`correlate_separable`."""
    image, kx, ky = _check(image, kernel_x, kernel_y)
    if bad is not None:
        bad = flag_image(bad, image.shape, "bad", "correlate_separable")
        return _masked_reference(image, bad, np.outer(ky.astype(np.float64), kx))
    hx, hy = kx.size // 2, ky.size // 2
    ny, nx = image.shape
    padded = np.pad(image.astype(np.float64), ((0, 0), (hx, hx)), mode="edge")
    rows = np.zeros((ny, nx), dtype=np.float64)
    for t in range(kx.size):
        rows += kx[t] * padded[:, t:t + nx]
    rows = rows.astype(image.dtype)
    padded = np.pad(rows, ((hy, hy), (0, 0)), mode="edge")
    out = np.zeros((ny, nx), dtype=image.dtype)
    for t in range(ky.size):
        out += ky[t] * padded[t:t + ny, :]
    return out


def _out(out: np.ndarray | None, image: np.ndarray, in_place: bool = False) -> np.ndarray:
    """The output array: new, or the caller's (checked); ``in_place`` allows the image
    itself (the kernels that read every row they need before writing it)."""
    if out is None:
        return np.empty_like(image)
    if out.shape != image.shape or out.dtype != image.dtype or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous array of the image's shape and type")
    if in_place and out is image:
        return out
    if np.shares_memory(out, image):
        raise ValueError("out must not share memory with the image"
                         + (" (other than being the image itself)" if in_place else ""))
    return out


def correlate_separable(image: np.ndarray, kernel_x: np.ndarray, kernel_y: np.ndarray,
                        out: np.ndarray | None = None, bad: np.ndarray | None = None
                        ) -> np.ndarray:
    """Correlate an image with ``kernel_x`` along rows, then ``kernel_y`` along columns.

    Parameters
    ----------
    image : numpy.ndarray
        2-D float32 or float64 pixels.
    kernel_x, kernel_y : numpy.ndarray
        1-D kernels with odd numbers of taps, centred on the middle tap.
    out : numpy.ndarray, optional
        Where to put the result (same shape and type as ``image``); it may be ``image``
        itself (smoothing in place: each row is read before it is overwritten).
    bad : numpy.ndarray, optional
        Non-zero where a pixel must be left out: switches to the normalised correlation of
        the module's edge and mask rule.

    Returns
    -------
    numpy.ndarray
        The smoothed image. Without ``bad``, outside the image the nearest edge pixel is
        repeated, as in ``scipy.ndimage.correlate1d(..., mode="nearest")``, and NaNs
        propagate. For symmetric kernels correlation and convolution are the same.
    """
    image, kx, ky = _check(image, kernel_x, kernel_y)
    if bad is not None:
        bad = flag_image(bad, image.shape, "bad", "correlate_separable")
    native = load_native("convolve")
    if native is None:
        result = correlate_separable_reference(image, kx, ky, bad)
        if out is not None:
            _out(out, image, in_place=True)[...] = result
            return out
        return result
    # in place is safe: the ring holds the row-correlated rows an output row needs (all read
    # before it is written), and the masked kernel reads the whole image first
    out = _out(out, image, in_place=True)
    if bad is None:
        # a ring of the row-correlated rows that one output row needs
        work = np.empty((min(ky.size, image.shape[0]), image.shape[1]), image.dtype)
        native.correlate_separable(image, kx, ky, work, out)
    else:
        native.correlate_separable_masked(image, bad, kx, ky, np.empty_like(image),
                                          np.empty_like(image), out)
    return out


def _check_2d(image: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"correlate_2d needs a non-empty 2-D image; got shape {image.shape}")
    if image.dtype not in (np.float32, np.float64):
        raise PixelTypeError(f"correlate_2d needs float32 or float64 pixels; got {image.dtype}")
    k = np.ascontiguousarray(kernel, dtype=image.dtype)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(f"the 2-D kernel must have odd sizes; got shape {k.shape}")
    return np.ascontiguousarray(image), k


def correlate_2d_reference(image: np.ndarray, kernel: np.ndarray,
                           bad: np.ndarray | None = None) -> np.ndarray:
    """NumPy reference of :func:`correlate_2d`."""
    image, k = _check_2d(image, kernel)
    if bad is not None:
        bad = flag_image(bad, image.shape, "bad", "correlate_2d")
        return _masked_reference(image, bad, k)
    ny, nx = image.shape
    hy, hx = k.shape[0] // 2, k.shape[1] // 2
    padded = np.pad(image.astype(np.float64), ((hy, hy), (hx, hx)), mode="edge")
    out = np.zeros((ny, nx))
    for u in range(k.shape[0]):
        for t in range(k.shape[1]):
            out += float(k[u, t]) * padded[u:u + ny, t:t + nx]
    return out.astype(image.dtype)


def correlate_2d(image: np.ndarray, kernel: np.ndarray, out: np.ndarray | None = None,
                 bad: np.ndarray | None = None) -> np.ndarray:
    """Correlate an image with a general 2-D kernel.

    Parameters
    ----------
    image : numpy.ndarray
        2-D float32 or float64 pixels.
    kernel : numpy.ndarray
        2-D kernel with odd sizes, centred on its middle pixel.
    out : numpy.ndarray, optional
        Where to put the result (same shape and type as ``image``).
    bad : numpy.ndarray, optional
        Non-zero where a pixel must be left out (normalised correlation).

    Returns
    -------
    numpy.ndarray
        The correlated image, with the module's edge and mask rule: without ``bad`` the
        same as ``scipy.ndimage.correlate(image, kernel, mode="nearest")``.
    """
    image, k = _check_2d(image, kernel)
    if bad is not None:
        bad = flag_image(bad, image.shape, "bad", "correlate_2d")
    native = load_native("convolve")
    if native is None:
        result = correlate_2d_reference(image, k, bad)
        if out is not None:
            _out(out, image)[...] = result
            return out
        return result
    out = _out(out, image)
    if bad is None:
        native.correlate_2d(image, k, out)
    else:
        native.correlate_2d_masked(image, bad, k, out)
    return out
