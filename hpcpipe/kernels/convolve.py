"""Separable correlation of an image (for PSF-smoothed detection)."""

from __future__ import annotations

import numpy as np

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels._loader import load_native

__all__ = ["correlate_separable", "correlate_separable_reference", "gaussian_kernel_1d"]


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


def correlate_separable_reference(image: np.ndarray, kernel_x: np.ndarray, kernel_y: np.ndarray
                                  ) -> np.ndarray:
    """NumPy reference of :func:`correlate_separable`."""
    image, kx, ky = _check(image, kernel_x, kernel_y)
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


def correlate_separable(image: np.ndarray, kernel_x: np.ndarray, kernel_y: np.ndarray,
                        out: np.ndarray | None = None) -> np.ndarray:
    """Correlate an image with ``kernel_x`` along rows, then ``kernel_y`` along columns.

    Parameters
    ----------
    image : numpy.ndarray
        2-D float32 or float64 pixels (NaNs propagate to their neighbours).
    kernel_x, kernel_y : numpy.ndarray
        1-D kernels with odd numbers of taps, centred on the middle tap.
    out : numpy.ndarray, optional
        Where to put the result (same shape and type as ``image``).

    Returns
    -------
    numpy.ndarray
        The smoothed image. Outside the image the nearest edge pixel is repeated, as in
        ``scipy.ndimage.correlate1d(..., mode="nearest")``. For symmetric kernels correlation
        and convolution are the same.
    """
    image, kx, ky = _check(image, kernel_x, kernel_y)
    native = load_native("convolve")
    if native is None:
        result = correlate_separable_reference(image, kx, ky)
        if out is not None:
            out[...] = result
            return out
        return result
    if out is None:
        out = np.empty_like(image)
    elif out.shape != image.shape or out.dtype != image.dtype or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous array of the image's shape and type")
    work = np.empty_like(image)
    native.correlate_separable(image, kx, ky, work, out)
    return out
