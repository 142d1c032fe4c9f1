"""Cosmic-ray detection and interpolation over bad pixels.

Detection rule (the idea of LSST's ``findCosmicRays``, after SDSS's photo)
--------------------------------------------------------------------------
A pixel is a cosmic ray when it is far above the background and sharper than the PSF allows:

1. ``p = image - background >= nsigma * s`` with ``s = sqrt(variance)``;
2. for at least one of the four directions (horizontal, vertical and the two diagonals)
   whose two opposite neighbours are inside the image, unmasked (no ``bad_bits``) and
   finite, with ``m`` their mean above the background and ``s_m = sqrt(v_a + v_b) / 2``::

       cond3_fac2 * R(d) * (p - cond3_fac * s) > m + cond3_fac * s_m

   where ``R(d) = exp(-d**2 / (2 psf_sigma**2))`` is the Gaussian PSF's value at the
   neighbours' distance ``d`` (1 or sqrt 2) relative to its peak. A star's neighbours hold at
   least about ``R(d)`` of its peak, so with ``cond3_fac2 < 1`` no star core qualifies, while
   a cosmic ray's neighbours hold much less.

Pixels with ``bad_bits`` set are never candidates. With ``niter > 1`` the pixels found are
interpolated over and the search repeated, which finds the pixels of wide tracks whose
neighbours were themselves cosmic rays. The result is finally grown by ``grow`` pixels
(a square of side ``2 grow + 1``).

Interpolation rule
------------------
Each run of flagged pixels along a row no longer than ``max_width`` is replaced by the line
between the nearest good pixels on either side. Pixels left (the run touches the image edge
or is too long) are interpolated the same way down their column; then from the nearest good
pixel on the one side of the row that has one, then of the column. A pixel with no good
pixel within ``max_width`` in its row or column keeps its value. The variance of an
interpolated pixel is ``(1 - t)**2 v_a + t**2 v_b`` (copied for a one-sided fill).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hpcpipe.kernels._checks import flag_image, float_image, mask_image
from hpcpipe.kernels._loader import load_native

__all__ = ["find_cosmic_rays", "find_cosmic_rays_reference", "interpolate_over",
           "interpolate_over_reference"]

#: Default mask bits of pixels that are never cosmic-ray candidates: BAD, SAT, NO_DATA.
DEFAULT_BAD_BITS = (1 << 0) | (1 << 1) | (1 << 8)


def _check_find(image, variance, mask, psf_sigma, nsigma, grow, niter, bad_bits):
    image = float_image(image, "image", "find_cosmic_rays", dtype=np.float32)
    variance = float_image(variance, "variance", "find_cosmic_rays", dtype=np.float32)
    if variance.shape != image.shape:
        raise ValueError(f"find_cosmic_rays: variance's shape {variance.shape} differs from "
                         f"the image's {image.shape}")
    mask = mask_image(mask, image.shape, "mask", "find_cosmic_rays")
    if not psf_sigma > 0:
        raise ValueError(f"find_cosmic_rays: psf_sigma must be positive; got {psf_sigma}")
    if not nsigma > 0:
        raise ValueError(f"find_cosmic_rays: nsigma must be positive; got {nsigma}")
    if grow < 0 or niter < 1:
        raise ValueError(f"find_cosmic_rays: need grow >= 0 and niter >= 1; got {grow}, {niter}")
    bad = np.ascontiguousarray((mask & int(bad_bits)) != 0, dtype=np.uint8)
    return image, variance, bad


def _find_once_reference(image, variance, bad, background, nsigma, c1, c2, r1, r2):
    ny, nx = image.shape
    img = image.astype(np.float64)
    var = variance.astype(np.float64)
    with np.errstate(invalid="ignore"):
        p = img - background
        s = np.sqrt(np.where(var > 0, var, np.nan))
        cand = (bad == 0) & np.isfinite(p) & (var > 0) & (p >= nsigma * s)
    found = np.zeros(image.shape, bool)
    pi = np.pad(img, 1, constant_values=np.nan)
    pv = np.pad(var, 1, constant_values=np.nan)
    pb = np.pad(bad, 1, constant_values=1)
    for (di, dj), ratio in (((0, 1), r1), ((1, 0), r1), ((1, 1), r2), ((1, -1), r2)):
        a = pi[1 - di:1 - di + ny, 1 - dj:1 - dj + nx]
        b = pi[1 + di:1 + di + ny, 1 + dj:1 + dj + nx]
        va = pv[1 - di:1 - di + ny, 1 - dj:1 - dj + nx]
        vb = pv[1 + di:1 + di + ny, 1 + dj:1 + dj + nx]
        ok = (pb[1 - di:1 - di + ny, 1 - dj:1 - dj + nx] == 0) & \
            (pb[1 + di:1 + di + ny, 1 + dj:1 + dj + nx] == 0)
        with np.errstate(invalid="ignore"):
            ok &= np.isfinite(a) & np.isfinite(b) & (va >= 0) & (vb >= 0)
            mean = 0.5 * (a + b) - background
            s_mean = 0.5 * np.sqrt(va + vb)
            found |= ok & (c2 * ratio * (p - c1 * s) > mean + c1 * s_mean)
    return found & cand


def _find(image, variance, mask, psf_sigma, nsigma, cond3_fac, cond3_fac2, grow, bad_bits,
          background, niter, native) -> np.ndarray:
    image, variance, bad = _check_find(image, variance, mask, psf_sigma, nsigma, grow, niter,
                                       bad_bits)
    r1 = float(np.exp(-1.0 / (2 * psf_sigma**2)))
    r2 = float(np.exp(-2.0 / (2 * psf_sigma**2)))
    found = np.zeros(image.shape, bool)
    work = image
    for it in range(niter):
        if native is not None:
            out = np.empty(image.shape, np.uint8)
            native.find_cosmic_ray_pixels(work, variance, bad, float(background), float(nsigma),
                                          float(cond3_fac), float(cond3_fac2), r1, r2, out)
            new = out.view(bool)
        else:
            new = _find_once_reference(work, variance, bad, float(background), float(nsigma),
                                       float(cond3_fac), float(cond3_fac2), r1, r2)
        new &= ~found
        if not new.any():
            break
        found |= new
        if it + 1 < niter:
            work, _ = _interpolate(work, found, None, None, native)
    if grow > 0 and found.any():
        found = ndimage.binary_dilation(found, np.ones((2 * grow + 1, 2 * grow + 1), bool))
    return found


def find_cosmic_rays(image: np.ndarray, variance: np.ndarray, mask: np.ndarray | None = None,
                     *, psf_sigma: float, nsigma: float = 6.0, cond3_fac: float = 2.5,
                     cond3_fac2: float = 0.4, grow: int = 1,
                     bad_bits: int = DEFAULT_BAD_BITS, background: float = 0.0,
                     niter: int = 2) -> np.ndarray:
    """The pixels hit by cosmic rays: far above the background and sharper than the PSF.

    Parameters
    ----------
    image, variance : numpy.ndarray
        2-D float32 or float64 pixels and their variance (computed in float32).
    mask : numpy.ndarray, optional
        int32 mask; pixels with ``bad_bits`` are never cosmic rays nor used as neighbours.
    psf_sigma : float
        Gaussian width of the PSF (pixels).
    nsigma : float
        Detection threshold above the background, in units of the pixel's noise.
    cond3_fac, cond3_fac2 : float
        The noise margin (sigma) and the fraction of the PSF's neighbour ratio of the
        sharpness test (the module's rule).
    grow : int
        Pixels by which the result is grown.
    bad_bits : int
        Mask bits of pixels to leave out (default BAD, SAT, NO_DATA).
    background : float
        The background level to subtract (0 for a background-subtracted image).
    niter : int
        Passes; between passes the pixels found are interpolated over.

    Returns
    -------
    numpy.ndarray
        Boolean map of the cosmic-ray pixels (grown).
    """
    return _find(image, variance, mask, psf_sigma, nsigma, cond3_fac, cond3_fac2, grow,
                 bad_bits, background, niter, load_native("cosmic"))


def find_cosmic_rays_reference(image: np.ndarray, variance: np.ndarray,
                               mask: np.ndarray | None = None, *, psf_sigma: float,
                               nsigma: float = 6.0, cond3_fac: float = 2.5,
                               cond3_fac2: float = 0.4, grow: int = 1,
                               bad_bits: int = DEFAULT_BAD_BITS, background: float = 0.0,
                               niter: int = 2) -> np.ndarray:
    """NumPy reference of :func:`find_cosmic_rays`."""
    return _find(image, variance, mask, psf_sigma, nsigma, cond3_fac, cond3_fac2, grow,
                 bad_bits, background, niter, None)


def _fill_reference(img, var, bad, done, max_width, one_sided, axis):
    """One pass of the interpolation rule along rows (axis 1) or columns (axis 0), in place."""
    if axis == 0:
        img, var, bad, done = img.T, (None if var is None else var.T), bad.T, done.T
    ny, nx = img.shape
    for i in np.nonzero((bad & ~done).any(axis=1))[0]:
        row = bad[i]
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
        for start, end in zip(edges[::2], edges[1::2]):
            if end - start > max_width:
                continue
            left, right = start - 1, end
            todo = np.arange(start, end)[~done[i, start:end]]
            if todo.size == 0:
                continue
            if left >= 0 and right < nx:
                if one_sided:
                    continue
                t = (todo - left) / float(right - left)
                a, b = float(img[i, left]), float(img[i, right])
                img[i, todo] = a + t * (b - a)
                if var is not None:
                    var[i, todo] = (1 - t) ** 2 * float(var[i, left]) + t**2 * float(var[i, right])
            elif one_sided and (left >= 0 or right < nx):
                src = left if left >= 0 else right
                img[i, todo] = img[i, src]
                if var is not None:
                    var[i, todo] = var[i, src]
            else:
                continue
            done[i, todo] = True


def _interpolate(image, bad, max_width, variance, native):
    img = np.array(image, dtype=np.float32, order="C")
    bad = np.ascontiguousarray(bad, dtype=np.uint8)
    var = None if variance is None else np.array(variance, dtype=np.float32, order="C")
    ny, nx = img.shape
    wr = nx if max_width is None else int(max_width)
    wc = ny if max_width is None else int(max_width)
    if native is not None:
        done = np.zeros(img.shape, np.uint8)
        native.interpolate_runs(img, var if var is not None else np.zeros((1, 1), np.float32),
                                bad, int(var is not None), wr, wc, done)
        return img, var
    badb = bad.view(bool)
    done = np.zeros(img.shape, bool)
    _fill_reference(img, var, badb, done, wr, False, 1)
    if (badb & ~done).any():
        _fill_reference(img, var, badb, done, wc, False, 0)
        _fill_reference(img, var, badb, done, wr, True, 1)
        _fill_reference(img, var, badb, done, wc, True, 0)
    return img, var


def _check_interp(image, bad, max_width, variance):
    image = float_image(image, "image", "interpolate_over")
    bad = flag_image(bad, image.shape, "bad", "interpolate_over")
    if variance is not None:
        variance = float_image(variance, "variance", "interpolate_over")
        if variance.shape != image.shape:
            raise ValueError(f"interpolate_over: variance's shape {variance.shape} differs "
                             f"from the image's {image.shape}")
    if max_width is not None and max_width < 1:
        raise ValueError(f"interpolate_over: max_width must be >= 1 or None; got {max_width}")
    return image, bad, variance


def interpolate_over(image: np.ndarray, bad: np.ndarray, *, max_width: int | None = None,
                     variance: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Replace flagged pixels by interpolation from good neighbours (copies).

    Parameters
    ----------
    image : numpy.ndarray
        2-D float32 or float64 pixels.
    bad : numpy.ndarray
        Non-zero (or True) at the pixels to replace.
    max_width : int, optional
        The longest run of flagged pixels to bridge (default: any).
    variance : numpy.ndarray, optional
        The image's variance, interpolated with the same weights (squared).

    Returns
    -------
    image : numpy.ndarray
        float32 copy with the flagged pixels replaced (the module's interpolation rule).
    variance : numpy.ndarray or None
        float32 copy of the variance, or None when none was given.
    """
    image, bad, variance = _check_interp(image, bad, max_width, variance)
    return _interpolate(image, bad, max_width, variance, load_native("cosmic"))


def interpolate_over_reference(image: np.ndarray, bad: np.ndarray, *,
                               max_width: int | None = None,
                               variance: np.ndarray | None = None
                               ) -> tuple[np.ndarray, np.ndarray | None]:
    """NumPy reference of :func:`interpolate_over`."""
    image, bad, variance = _check_interp(image, bad, max_width, variance)
    return _interpolate(image, bad, max_width, variance, None)
