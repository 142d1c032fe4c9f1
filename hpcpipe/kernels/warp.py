"""Resampling an image, its variance and its mask from one pixel grid (WCS) to another.

A warp is described by where each destination pixel falls in the source image, ``src_x`` and
``src_y`` (0-based source pixel coordinates, pixel centres at integers): :func:`wcs_transform`
maps destination pixels through the sky to source pixels, and :func:`transform_grid`
evaluates it exactly every ``step`` pixels and interpolates bilinearly in between (LSST's
``interpLength``). :func:`warp_image` then resamples.

Resampling rule
---------------
``lanczos3``: each destination pixel is the sum of the 6x6 source pixels around its source
position weighted by the separable Lanczos-3 kernel ``L(x) = sinc(x) sinc(x / 3)``, each
1-D kernel normalised to sum 1 (a source position on a pixel centre copies that pixel).
``bilinear``: the 2x2 neighbours with the bilinear weights (as
``scipy.ndimage.map_coordinates(order=1)``).

The variance is resampled with the squared weights, ``sum(w**2 V)``: the covariance this
introduces between neighbouring destination pixels is neglected (so the per-pixel variance
is an underestimate of the noise of sums over many warped pixels, by a factor that depends on
the sub-pixel offset: up to about 2 for Lanczos-3; LSST does the same).
The mask is the OR of the source pixels of the 2x2 bilinear neighbourhood that have a
non-zero bilinear weight. NaN source pixels under the kernel make the destination NaN, and
a destination that is not finite gets ``no_data_bit`` added to its mask.

A destination whose kernel footprint (columns ``floor(x) - 2 .. floor(x) + 3`` for
Lanczos-3; ``floor(x) .. floor(x) + 1`` with a non-zero weight for bilinear, likewise in y)
leaves the source image, or whose source position is not finite, is NaN with variance NaN
and mask ``no_data_bit`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels._checks import mask_image
from hpcpipe.kernels._loader import load_native

__all__ = ["WarpResult", "WARP_METHODS", "lanczos3_weights", "transform_grid", "warp_image",
           "warp_image_reference", "wcs_transform"]

#: The resampling kernels of :func:`warp_image`.
WARP_METHODS = ("lanczos3", "bilinear")


@dataclass
class WarpResult:
    """The output of :func:`warp_image`: float32 image and variance, int32 mask."""

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray


def transform_grid(transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                   shape: tuple[int, int], step: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Source positions of every destination pixel, interpolated from a coarse grid.

    Parameters
    ----------
    transform : callable
        ``(x_dest, y_dest) -> (x_src, y_src)`` on arrays of destination pixel coordinates.
    shape : tuple of int
        ``(ny, nx)`` of the destination image.
    step : int
        The transform is evaluated exactly every ``step`` pixels and on the last row and
        column; in between the positions are interpolated bilinearly. ``step=1`` evaluates
        it everywhere.

    Returns
    -------
    src_x, src_y : numpy.ndarray
        ``(ny, nx)`` float64 source pixel coordinates.
    """
    ny, nx = (int(v) for v in shape)
    if ny < 1 or nx < 1:
        raise ValueError(f"transform_grid: shape must be positive; got {shape}")
    if step < 1:
        raise ValueError(f"transform_grid: step must be >= 1; got {step}")
    gx = np.unique(np.append(np.arange(0, nx, step), nx - 1)).astype(np.float64)
    gy = np.unique(np.append(np.arange(0, ny, step), ny - 1)).astype(np.float64)
    xx, yy = np.meshgrid(gx, gy)
    cx, cy = transform(xx, yy)
    cx = np.asarray(cx, dtype=np.float64).reshape(xx.shape)
    cy = np.asarray(cy, dtype=np.float64).reshape(xx.shape)
    if step == 1:
        return cx, cy
    # bilinear interpolation: the cell of each pixel and its position within the cell
    px = np.arange(nx, dtype=np.float64)
    py = np.arange(ny, dtype=np.float64)
    kx = np.clip(np.searchsorted(gx, px, side="right") - 1, 0, max(gx.size - 2, 0))
    ky = np.clip(np.searchsorted(gy, py, side="right") - 1, 0, max(gy.size - 2, 0))
    kx1 = np.minimum(kx + 1, gx.size - 1)
    ky1 = np.minimum(ky + 1, gy.size - 1)
    tx = np.where(kx1 > kx, (px - gx[kx]) / np.maximum(gx[kx1] - gx[kx], 1), 0.0)
    ty = np.where(ky1 > ky, (py - gy[ky]) / np.maximum(gy[ky1] - gy[ky], 1), 0.0)
    out = []
    # the rows of one cell of the coarse grid share ky: rows[ky] * (1 - ty) + rows[ky1] * ty
    # band by band (the same operations as whole-array gathers, without their copies)
    bands = np.flatnonzero(np.diff(ky)) + 1
    starts = np.concatenate([[0], bands])
    stops = np.concatenate([bands, [ny]])
    for c in (cx, cy):
        rows = c[:, kx] * (1 - tx) + c[:, kx1] * tx          # (ngy, nx)
        full = np.empty((ny, nx))
        for r0, r1 in zip(starts, stops):
            k, k1 = ky[r0], ky1[r0]
            np.multiply(rows[k], (1 - ty[r0:r1])[:, None], out=full[r0:r1])
            full[r0:r1] += rows[k1] * ty[r0:r1, None]
        out.append(full)
    return out[0], out[1]


def wcs_transform(src_wcs, dest_wcs, dest_origin: tuple[int, int] = (0, 0)
                  ) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The map from destination pixels to source pixels through the sky.

    Parameters
    ----------
    src_wcs, dest_wcs : astropy.wcs.WCS
        The WCSs of the source and destination images (0-based pixel coordinates, as
        astropy's ``pixel_to_world_values``).
    dest_origin : tuple of int
        ``(x0, y0)``: destination array pixel ``(0, 0)`` is ``dest_wcs`` pixel ``(x0, y0)``
        (a patch of a tract).

    Returns
    -------
    callable
        ``(x_dest, y_dest) -> (x_src, y_src)``.
    """
    ox, oy = dest_origin

    def transform(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        world = dest_wcs.pixel_to_world_values(np.asarray(x) + ox, np.asarray(y) + oy)
        sx, sy = src_wcs.world_to_pixel_values(*world)
        return np.asarray(sx, dtype=np.float64), np.asarray(sy, dtype=np.float64)

    return transform


def lanczos3_weights(frac: np.ndarray) -> np.ndarray:
    """Normalised Lanczos-3 weights ``(..., 6)`` of taps ``-2..3`` for offsets in ``[0, 1)``."""
    frac = np.asarray(frac, dtype=np.float64)
    u = frac[..., None] - np.arange(-2, 4)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = 3.0 * np.sin(np.pi * u) * np.sin(np.pi * u / 3.0) / (np.pi * np.pi * u * u)
    w = np.where(u == 0.0, 1.0, w)
    w = np.where((frac == 0.0)[..., None], (np.arange(-2, 4) == 0).astype(np.float64), w)
    return w / w.sum(axis=-1, keepdims=True)


def _check(image, variance, mask, src_x, src_y, method):
    if method not in WARP_METHODS:
        raise ValueError(f"warp_image: method must be one of {WARP_METHODS}; got {method!r}")
    img = np.asarray(image)
    if img.dtype not in (np.float32, np.float64):
        raise PixelTypeError(f"warp_image: image needs float32 or float64 pixels; got {img.dtype}")
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"warp_image: image must be a non-empty 2-D array; got {img.shape}")
    if variance is None:
        var = np.zeros(img.shape, np.float32)
    else:
        var = np.asarray(variance)
        if var.dtype not in (np.float32, np.float64):
            raise PixelTypeError(f"warp_image: variance needs float pixels; got {var.dtype}")
        if var.shape != img.shape:
            raise ValueError(f"warp_image: variance's shape {var.shape} differs from the "
                             f"image's {img.shape}")
    msk = mask_image(mask, img.shape, "mask", "warp_image")
    sx = np.asarray(src_x)
    sy = np.asarray(src_y)
    if sx.ndim != 2 or sx.shape != sy.shape:
        raise ValueError(f"warp_image: src_x and src_y must be 2-D arrays of one shape; got "
                         f"{sx.shape} and {sy.shape}")
    if sx.dtype.kind not in "iuf" or sy.dtype.kind not in "iuf":
        raise PixelTypeError("warp_image: src_x and src_y must be real numbers")
    return (np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(var, np.float32),
            msk, np.ascontiguousarray(sx, np.float64), np.ascontiguousarray(sy, np.float64))


def warp_image(image: np.ndarray, variance: np.ndarray | None, mask: np.ndarray | None,
               src_x: np.ndarray, src_y: np.ndarray, *, method: str = "lanczos3",
               no_data_bit: int = 1 << 8) -> WarpResult:
    """Resample an image, its variance and its mask at the given source positions.

    Parameters
    ----------
    image : numpy.ndarray
        2-D float32 or float64 source pixels (computed in float64, returned as float32).
    variance : numpy.ndarray or None
        Its variance (None: zeros).
    mask : numpy.ndarray or None
        Its integer mask (None: zeros).
    src_x, src_y : numpy.ndarray
        ``(ny, nx)`` source positions of each destination pixel (see :func:`transform_grid`).
    method : str
        ``"lanczos3"`` (default) or ``"bilinear"``.
    no_data_bit : int
        Mask value of destinations that cannot be computed (the NO_DATA plane).

    Returns
    -------
    WarpResult
        ``(ny, nx)`` float32 image and variance and int32 mask, by the module's rule.
    """
    img, var, msk, sx, sy = _check(image, variance, mask, src_x, src_y, method)
    native = load_native("warp")
    if native is None:
        return _reference(img, var, msk, sx, sy, method, no_data_bit)
    out_i = np.empty(sx.shape, np.float32)
    out_v = np.empty(sx.shape, np.float32)
    out_m = np.empty(sx.shape, np.int32)
    func = native.warp_lanczos3 if method == "lanczos3" else native.warp_bilinear
    func(img, var, msk, sx, sy, out_i, out_v, out_m, int(no_data_bit))
    return WarpResult(out_i, out_v, out_m)


def warp_image_reference(image: np.ndarray, variance: np.ndarray | None,
                         mask: np.ndarray | None, src_x: np.ndarray, src_y: np.ndarray, *,
                         method: str = "lanczos3", no_data_bit: int = 1 << 8) -> WarpResult:
    """NumPy reference of :func:`warp_image`."""
    img, var, msk, sx, sy = _check(image, variance, mask, src_x, src_y, method)
    return _reference(img, var, msk, sx, sy, method, no_data_bit)


def _reference(img, var, msk, sx, sy, method, no_data_bit) -> WarpResult:
    ny, nx = img.shape
    shape = sx.shape
    out_i = np.full(shape, np.nan, np.float32)
    out_v = np.full(shape, np.nan, np.float32)
    out_m = np.full(shape, no_data_bit, np.int32)
    finite = np.isfinite(sx) & np.isfinite(sy)
    fx = np.floor(np.where(finite, sx, -10.0))
    fy = np.floor(np.where(finite, sy, -10.0))
    ax, ay = np.where(finite, sx, 0) - fx, np.where(finite, sy, 0) - fy
    if method == "lanczos3":
        ok = finite & (fx >= 2) & (fy >= 2) & (fx <= nx - 4) & (fy <= ny - 4)
        ix, iy = fx[ok].astype(np.int64), fy[ok].astype(np.int64)
        wx, wy = lanczos3_weights(ax[ok]), lanczos3_weights(ay[ok])
        offsets = np.arange(-2, 4)
    else:
        ok = finite & (fx >= 0) & (fy >= 0) & (fx <= nx - 1) & (fy <= ny - 1)
        ok &= ~((ax > 0) & (fx > nx - 2)) & ~((ay > 0) & (fy > ny - 2))
        ix, iy = fx[ok].astype(np.int64), fy[ok].astype(np.int64)
        wx = np.stack([1 - ax[ok], ax[ok]], axis=-1)
        wy = np.stack([1 - ay[ok], ay[ok]], axis=-1)
        offsets = np.arange(0, 2)
    img64, var64 = img.astype(np.float64), var.astype(np.float64)
    acc = np.zeros(ix.size)
    vacc = np.zeros(ix.size)
    for u, du in enumerate(offsets):
        rows = np.minimum(iy + du, ny - 1)
        a = np.zeros(ix.size)
        b = np.zeros(ix.size)
        for t, dt in enumerate(offsets):
            cols = np.minimum(ix + dt, nx - 1)
            a += wx[:, t] * img64[rows, cols]
            b += wx[:, t] ** 2 * var64[rows, cols]
        acc += wy[:, u] * a
        vacc += wy[:, u] ** 2 * b
    ix1 = np.where(ax[ok] > 0, ix + 1, ix)
    iy1 = np.where(ay[ok] > 0, iy + 1, iy)
    m = msk[iy, ix] | msk[iy, ix1] | msk[iy1, ix] | msk[iy1, ix1]
    m |= np.where(np.isfinite(acc), 0, no_data_bit).astype(np.int32)
    out_i[ok], out_v[ok], out_m[ok] = acc, vacc, m
    return WarpResult(out_i, out_v, out_m)
