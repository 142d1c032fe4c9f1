"""Measurement of sources at given positions on a background-subtracted image.

Positions are 0-based pixel coordinates with pixel centres at integers. For each source:

Pixels used
    A pixel is left out of every sum when it has any of ``exclude_bits`` (default BAD and
    NO_DATA) or a non-finite value or variance (this sets the measurement's flag where it
    matters), or, with ``segments`` and ``ids``, when its segment is neither 0 nor the source's
    own id (a deblended neighbour: left out silently).
Centroid (``x``, ``y``, ``x_err``, ``y_err``, ``centroid_flag``)
    With ``recentroid``, the Gaussian-weighted centroid of SExtractor's windowed positions:
    weights ``w = exp(-r**2 / (2 s**2))`` (``s`` the PSF width) over the pixels within
    ``4 s``, iterated as ``x += 2 sum(w I dx) / sum(w I)`` until the step is below 1e-5
    pixels (30 steps at most). Errors: ``x_err**2 = sum(w**2 V dx**2) / D**2`` with
    ``D = sum(w I) - sum(w I dx**2) / s**2`` (the derivative of the centroid condition).
    When the iteration fails (no positive flux, no convergence, a move of more than
    ``2 s``) the input position is kept, the errors are NaN and ``centroid_flag`` is set.
    Without ``recentroid`` the input position is kept and the errors are NaN.
First moments (``x_moment``, ``y_moment``)
    ``sum(I x) / sum(I)`` over the pixels whose centres are within ``3 s`` of the input
    position (NaN when the sum is not positive).
Adaptive moments (``ixx``, ``iyy``, ``ixy``, ``shape_flag``)
    Bernstein & Jarvis / HSM: an elliptical Gaussian weight ``W`` of covariance ``M`` at the
    centroid, starting from ``M = s**2 I``; with ``A`` the ``W``-weighted second moments, the
    update ``M^-1 <- A^-1 - M^-1`` is exact for a Gaussian source (whose covariance is then
    ``M``); iterated until the change is below 1e-6 of the trace (100 steps at most). Moments
    of a pixel-sampled Gaussian of width ``sigma`` give ``sigma**2``. Failure (non-positive
    flux or matrices, sizes over 900 px^2, no convergence) gives NaN and ``shape_flag``.
Apertures (``ap_flux``, ``ap_flux_err``, ``ap_flag``; one column per radius)
    Circles at the centroid, with the exact overlap ``f`` of each pixel with the circle (as
    SEP's ``sum_circle(..., subpix=0)``); ``flux = sum(f I)``, ``err**2 = sum(f**2 V)``.
    ``ap_flag``: the circle leaves the image or covers a left-out (masked, non-finite) pixel.
PSF flux (``psf_flux``, ``psf_flux_err``, ``psf_flag``)
    The least-squares amplitude of the PSF model ``P`` (the given stamp, or a unit-flux
    Gaussian of width ``s`` sampled at pixel centres within ``4 s`` of the centroid):
    ``sum(P I) / sum(P**2)``, ``err**2 = sum(P**2 V) / sum(P**2)**2`` over the usable pixels;
    ``psf_flag`` when a pixel with ``P >= 0.02 max(P)`` is off the image or masked.
Kron flux (``kron_radius``, ``kron_flux``, ``kron_flux_err``, ``kron_flag``)
    Source Extractor's FLUX_AUTO on the adaptive-moment ellipse (LSST's KronFlux): with
    ``M`` the adaptive moments (a circle of ``s`` when they failed), ``scale = det(M)**0.25``
    and the elliptical radius ``r = scale * sqrt(d.M^-1.d)``, the first moment
    ``r1 = sum(r I) / sum(I)`` over the usable pixels with ``r <= 6 scale``; the Kron radius is
    ``max(2.5 r1, 3.5 scale)`` and the flux the sum within that ellipse, pixels near its edge
    sampled 5x5; ``err**2 = sum(f**2 V)``. ``kron_flag``: no positive first moment, or the
    ellipse leaves the image, covers a masked pixel or exceeds 120 pixels.
Blendedness (``blendedness``)
    LSST's ``base_Blendedness_abs`` with the segmentation as the deblender:
    ``1 - sum(W I+) / sum(W' I+)`` with ``W`` a Gaussian of the Kron ellipse (``scale``) over
    the source's own pixels and ``W'`` the same over every unmasked pixel (neighbours'
    included), ``I+ = max(I, 0)`` within ``r <= 6 scale``; 0 for an isolated source.
Pixel flags (``flag_edge``, ``flag_saturated``, ``flag_interpolated``, ``flag_cr``, ``flag_bad``)
    A pixel whose centre is within the first radius of the centroid has that mask bit
    (``flag_edge`` also when such a pixel is off the image).

A source whose input position is not finite or not on the image has NaN values and every
flag set. Pixels are read as float32 (a float64 image is converted).
"""

from __future__ import annotations

import numpy as np

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels._checks import float_image, mask_image
from hpcpipe.kernels._loader import load_native

__all__ = ["DEFAULT_RADII", "MEASUREMENT_DTYPE", "PSF_FLUX_DTYPE", "measure_sources",
           "measure_sources_reference", "measurement_dtype", "pixel_overlap", "psf_fluxes",
           "psf_fluxes_reference"]

#: Aperture radii (pixels) measured by default.
DEFAULT_RADII = (3.0, 4.5, 6.0, 9.0, 12.0, 17.0, 25.0)

_FLOAT_COLUMNS = ("x", "y", "x_err", "y_err", "x_moment", "y_moment", "ixx", "iyy", "ixy",
                  "psf_flux", "psf_flux_err")
_KRON_COLUMNS = ("kron_radius", "kron_flux", "kron_flux_err", "blendedness")
_FLAG_COLUMNS = ("centroid_flag", "shape_flag", "psf_flag", "flag_edge", "flag_saturated",
                 "flag_interpolated", "flag_cr", "flag_bad")


def measurement_dtype(nradii: int = len(DEFAULT_RADII)) -> np.dtype:
    """The structured dtype of :func:`measure_sources`' rows for ``nradii`` apertures."""
    fields: list[tuple] = [("id", np.int64)]
    fields += [(name, np.float64) for name in _FLOAT_COLUMNS]
    fields += [("ap_flux", np.float64, (nradii,)), ("ap_flux_err", np.float64, (nradii,)),
               ("ap_flag", np.bool_, (nradii,))]
    fields += [(name, np.bool_) for name in _FLAG_COLUMNS]
    fields += [(name, np.float64) for name in _KRON_COLUMNS] + [("kron_flag", np.bool_)]
    return np.dtype(fields)


#: The row dtype for the default radii.
MEASUREMENT_DTYPE = measurement_dtype()


def _arc_integral(x: np.ndarray, r: float) -> np.ndarray:
    x = np.clip(x, -r, r)
    return 0.5 * (x * np.sqrt(np.maximum(r * r - x * x, 0.0)) + r * r * np.arcsin(x / r))


def _circle_rectangle_area(x0: float, x1: float, y0: float, y1: float, r: float) -> float:
    """Exact area of the circle of radius r at the origin within [x0, x1] x [y0, y1]."""
    a, b = max(x0, -r), min(x1, r)
    if a >= b:
        return 0.0
    points = [a, b]
    for yy in (y0, y1):
        if abs(yy) < r:
            q = np.sqrt(r * r - yy * yy)
            points += [p for p in (q, -q) if a < p < b]
    ends = np.sort(np.array(points))
    u, v = ends[:-1], ends[1:]
    keep = v > u
    u, v = u[keep], v[keep]
    mid = 0.5 * (u + v)
    s = np.sqrt(np.maximum(r * r - mid * mid, 0.0))
    arc = _arc_integral(v, r) - _arc_integral(u, r)
    top = np.where(y1 < s, y1 * (v - u), arc)
    bottom = np.where(y0 > -s, y0 * (v - u), -arc)
    inside = np.minimum(y1, s) > np.maximum(y0, -s)
    return float(np.sum(np.where(inside, top - bottom, 0.0)))


def pixel_overlap(dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """The exact fraction of each unit pixel, centred ``(dx, dy)`` from a circle's centre,
    inside the circle of radius ``r``."""
    dx, dy = np.broadcast_arrays(np.asarray(dx, np.float64), np.asarray(dy, np.float64))
    ax, ay = np.abs(dx), np.abs(dy)
    near = np.maximum(ax - 0.5, 0) ** 2 + np.maximum(ay - 0.5, 0) ** 2
    far = (ax + 0.5) ** 2 + (ay + 0.5) ** 2
    out = np.where(far <= r * r, 1.0, 0.0)
    edge = (near < r * r) & (far > r * r)
    for idx in zip(*np.nonzero(edge)):
        x, y = dx[idx], dy[idx]
        out[idx] = _circle_rectangle_area(x - 0.5, x + 0.5, y - 0.5, y + 0.5, r)
    return out


class _Pixels:
    """The arrays of one measurement and the usable-pixel rule (NumPy reference)."""

    def __init__(self, image, variance, mask, seg, exclude):
        self.image, self.variance, self.mask, self.seg = image, variance, mask, seg
        self.exclude = exclude

    def box(self, cx: int, cy: int, half: int, sid: int):
        """Rows, columns (clipped to the image), values, variances and usable codes."""
        return self.region(cy - half, cy + half, cx - half, cx + half, sid)

    def region(self, i0: int, i1: int, j0: int, j1: int, sid: int):
        """:meth:`box` of rows i0..i1 and columns j0..j1 (inclusive)."""
        ny, nx = self.image.shape
        i0, i1 = max(i0, 0), min(i1, ny - 1) + 1
        j0, j1 = max(j0, 0), min(j1, nx - 1) + 1
        rows = np.arange(i0, i1)[:, None]
        cols = np.arange(j0, j1)[None, :]
        img = self.image[i0:i1, j0:j1].astype(np.float64)
        var = self.variance[i0:i1, j0:j1].astype(np.float64)
        code = np.where(((self.mask[i0:i1, j0:j1] & self.exclude) != 0)
                        | ~np.isfinite(img) | ~np.isfinite(var), 0, 1)
        if self.seg is not None:
            s = self.seg[i0:i1, j0:j1]
            code = np.where((s != 0) & (s != sid), -1, code)
        return rows, cols, img, var, code


def _round(v: float) -> int:
    return int(np.floor(v + 0.5))


def _centroid_ref(px: _Pixels, sid, x0, y0, sigma):
    half = int(np.ceil(4.0 * sigma))

    def sums(xc, yc):
        rows, cols, img, var, code = px.box(_round(xc), _round(yc), half, sid)
        dx, dy = cols - xc, rows - yc
        w = np.where(code == 1, np.exp(-(dx * dx + dy * dy) * (0.5 / sigma**2)), 0.0)
        v = w * np.where(code == 1, img, 0.0)
        ww = w * w * np.where(code == 1, var, 0.0)
        return (v.sum(), (v * dx).sum(), (v * dy).sum(), (v * dx * dx).sum(),
                (v * dy * dy).sum(), (ww * dx * dx).sum(), (ww * dy * dy).sum())

    xc, yc, flag = x0, y0, True
    for _ in range(30):
        s = sums(xc, yc)
        if not s[0] > 0:
            break
        ddx, ddy = 2 * s[1] / s[0], 2 * s[2] / s[0]
        xc, yc = xc + ddx, yc + ddy
        if abs(xc - x0) > 2 * sigma or abs(yc - y0) > 2 * sigma:
            break
        if abs(ddx) < 1e-5 and abs(ddy) < 1e-5:
            flag = False
            break
    if not flag:
        s = sums(xc, yc)
        dxd, dyd = s[0] - s[3] / sigma**2, s[0] - s[4] / sigma**2
        if s[0] > 0 and dxd > 0 and dyd > 0:
            return xc, yc, np.sqrt(s[5]) / dxd, np.sqrt(s[6]) / dyd, False
    return x0, y0, np.nan, np.nan, True


def _first_moments_ref(px: _Pixels, sid, x0, y0, radius):
    rows, cols, img, var, code = px.box(_round(x0), _round(y0), int(np.ceil(radius)), sid)
    use = (code == 1) & ((cols - x0) ** 2 + (rows - y0) ** 2 <= radius * radius)
    v = np.where(use, img, 0.0)
    s0 = v.sum()
    if not s0 > 0:
        return np.nan, np.nan
    return (v * cols).sum() / s0, (v * rows).sum() / s0


def _adaptive_ref(px: _Pixels, sid, xc, yc, sigma):
    mxx, myy, mxy = sigma**2, sigma**2, 0.0
    for _ in range(100):
        det = mxx * myy - mxy * mxy
        if not det > 0:
            break
        wxx, wyy, wxy = myy / det, mxx / det, -mxy / det
        half = min(int(np.ceil(4.0 * np.sqrt(max(mxx, myy)))), 60)
        rows, cols, img, var, code = px.box(_round(xc), _round(yc), half, sid)
        dx, dy = cols - xc, rows - yc
        q = wxx * dx * dx + 2 * wxy * dx * dy + wyy * dy * dy
        v = np.where((code == 1) & (q <= 32.0), np.exp(-0.5 * q) * img, 0.0)
        s0 = v.sum()
        if not s0 > 0:
            break
        axx, ayy, axy = (v * dx * dx).sum() / s0, (v * dy * dy).sum() / s0, (v * dx * dy).sum() / s0
        dm = axx * ayy - axy * axy
        if not (dm > 0 and axx > 0):
            break
        ia, ib, ic = ayy / dm - wxx, axx / dm - wyy, -axy / dm - wxy
        dd = ia * ib - ic * ic
        if not (ia > 0 and dd > 0):
            break
        nxx, nyy, nxy = ib / dd, ia / dd, -ic / dd
        change = abs(nxx - mxx) + abs(nyy - myy) + abs(nxy - mxy)
        mxx, myy, mxy = nxx, nyy, nxy
        if mxx > 900 or myy > 900:
            break
        if change < 1e-6 * (mxx + myy):
            return mxx, myy, mxy, False
    return np.nan, np.nan, np.nan, True


def _aperture_ref(px: _Pixels, sid, xc, yc, r):
    ny, nx = px.image.shape
    i0, i1 = int(np.floor(yc - r - 0.5)), int(np.ceil(yc + r + 0.5))
    j0, j1 = int(np.floor(xc - r - 0.5)), int(np.ceil(xc + r + 0.5))
    rows = np.arange(i0, i1 + 1)[:, None]
    cols = np.arange(j0, j1 + 1)[None, :]
    f = pixel_overlap(cols - xc, rows - yc, r)
    on = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    flag = bool((f[~np.broadcast_to(on, f.shape)] > 0).any())
    brows, bcols, img, var, code = px.region(i0, i1, j0, j1, sid)
    fb = f[brows[:, 0] - i0][:, bcols[0] - j0]
    flag |= bool(((fb > 0) & (code == 0)).any())
    use = (fb > 0) & (code == 1)
    flux = float(np.sum(np.where(use, fb * img, 0.0)))
    err = float(np.sqrt(np.sum(np.where(use, fb * fb * var, 0.0))))
    return flux, err, flag


def _psf_ref(px: _Pixels, sid, stamp, ox, oy):
    ny, nx = px.image.shape
    kh, kw = stamp.shape
    pmax = max(float(stamp.max()), 0.0)
    rows = oy + np.arange(kh)[:, None]
    cols = ox + np.arange(kw)[None, :]
    on = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    strong = stamp >= 0.02 * pmax
    flag = bool((strong & ~on).any())
    code = np.full(stamp.shape, 0)
    img = np.zeros(stamp.shape)
    var = np.zeros(stamp.shape)
    if on.any():
        r_on, c_on = np.nonzero(on)
        sl = (slice(oy + r_on.min(), oy + r_on.max() + 1),
              slice(ox + c_on.min(), ox + c_on.max() + 1))
        inner = (slice(r_on.min(), r_on.max() + 1), slice(c_on.min(), c_on.max() + 1))
        img[inner] = px.image[sl]
        var[inner] = px.variance[sl]
        bad = ((px.mask[sl] & px.exclude) != 0) | ~np.isfinite(img[inner]) | \
            ~np.isfinite(var[inner])
        code[inner] = np.where(bad, 0, 1)
        if px.seg is not None:
            s = px.seg[sl]
            code[inner] = np.where((s != 0) & (s != sid), -1, code[inner])
    flag |= bool((on & (code == 0) & strong).any())
    use = on & (code == 1)
    spp = float(np.sum(np.where(use, stamp * stamp, 0.0)))
    if not (spp > 0 and pmax > 0):
        return np.nan, np.nan, True
    spi = float(np.sum(np.where(use, stamp * img, 0.0)))
    sppv = float(np.sum(np.where(use, stamp * stamp * var, 0.0)))
    return spi / spp, np.sqrt(sppv) / spp, flag


def _kron_shape_ref(mxx, myy, mxy, sigma):
    if not (mxx > 0 and myy > 0 and mxx * myy - mxy * mxy > 0):
        mxx, myy, mxy = sigma * sigma, sigma * sigma, 0.0
    det = mxx * myy - mxy * mxy
    scale = np.sqrt(np.sqrt(det))
    a, b, c = myy / det * scale * scale, mxx / det * scale * scale, -mxy / det * scale * scale
    lmin = 0.5 * (mxx + myy) - np.sqrt(0.25 * (mxx - myy) * (mxx - myy) + mxy * mxy)
    lmax = 0.5 * (mxx + myy) + np.sqrt(0.25 * (mxx - myy) * (mxx - myy) + mxy * mxy)
    d = 0.7072 * scale / np.sqrt(max(lmin, 1e-6 * det / (mxx + myy)))
    return a, b, c, scale, d, np.sqrt(lmax) / scale


def _kron_ref(px: _Pixels, sid, xc, yc, mxx, myy, mxy, sigma):
    a, b, c, scale, d, stretch = _kron_shape_ref(mxx, myy, mxy, sigma)
    cx, cy = _round(xc), _round(yc)
    rmax = 6.0 * scale
    half = min(int(np.ceil(rmax * stretch)) + 1, 120)
    rows, cols, img, var, code = px.box(cx, cy, half, sid)
    dx, dy = cols - xc, rows - yc
    r = np.sqrt(a * dx * dx + 2.0 * c * dx * dy + b * dy * dy)
    inside = r <= rmax
    w = np.where(inside & (code != 0) & (img > 0), np.exp(-0.5 * r * r / (scale * scale)) * img,
                 0.0)
    every = float(w.sum())
    own = float(np.where(code == 1, w, 0.0).sum())
    blend = 1.0 - own / every if every > 0 else 0.0
    use = inside & (code == 1)
    s0 = float(np.where(use, img, 0.0).sum())
    s1 = float(np.where(use, img * r, 0.0).sum())
    if not (s0 > 0 and s1 > 0):
        return np.nan, np.nan, np.nan, True, blend
    radius = max(2.5 * (s1 / s0), 3.5 * scale)
    flag = False
    limit = int(np.ceil((radius + d) * stretch)) + 1
    if limit > 120:
        limit, flag = 120, True
    ny, nx = px.image.shape
    rows = np.arange(cy - limit, cy + limit + 1)[:, None]
    cols = np.arange(cx - limit, cx + limit + 1)[None, :]
    dx, dy = cols - xc, rows - yc
    r = np.sqrt(a * dx * dx + 2.0 * c * dx * dy + b * dy * dy)
    f = np.where(r > radius + d, 0.0, 1.0)
    edge = (r <= radius + d) & (r > radius - d)
    sub = (np.arange(5) - 2) * 0.2
    for i, j in zip(*np.nonzero(edge)):
        ey = dy[i, 0] + sub[:, None]
        ex = dx[0, j] + sub[None, :]
        f[i, j] = 0.04 * np.count_nonzero(a * ex * ex + 2.0 * c * ex * ey + b * ey * ey
                                          <= radius * radius)
    on = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    flag |= bool((f[~on] > 0).any())
    brows, bcols, img, var, code = px.region(cy - limit, cy + limit, cx - limit, cx + limit, sid)
    fb = f[brows[:, 0] - (cy - limit)][:, bcols[0] - (cx - limit)]
    flag |= bool(((fb > 0) & (code == 0)).any())
    use = (fb > 0) & (code == 1)
    flux = float(np.sum(np.where(use, fb * img, 0.0)))
    err = float(np.sqrt(np.sum(np.where(use, fb * fb * var, 0.0))))
    return radius, flux, err, flag, blend


def _gaussian_stamp_ref(xc, yc, sigma):
    half = int(np.ceil(4.0 * sigma))
    cx, cy = _round(xc), _round(yc)
    dy = (cy - half + np.arange(2 * half + 1) - yc)[:, None]
    dx = (cx - half + np.arange(2 * half + 1) - xc)[None, :]
    stamp = np.exp(-0.5 * (dx * dx + dy * dy) / sigma**2) / (2 * np.pi * sigma**2)
    return stamp, cx - half, cy - half


def _pixel_flags_ref(mask, xc, yc, r, bits):
    ny, nx = mask.shape
    half = int(np.ceil(r)) + 1
    cx, cy = _round(xc), _round(yc)
    rows = np.arange(cy - half, cy + half + 1)[:, None]
    cols = np.arange(cx - half, cx + half + 1)[None, :]
    inside = (cols - xc) ** 2 + (rows - yc) ** 2 <= r * r
    on = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    sel = inside & on
    m = mask[np.broadcast_to(rows, sel.shape)[sel], np.broadcast_to(cols, sel.shape)[sel]]
    out = [bool(((m & b) != 0).any()) for b in bits]
    out[0] |= bool((inside & ~on).any())
    return out


def _measure_reference(image, variance, mask, seg, ids, xs, ys, sigmas, psfs, origins, radii,
                       recentroid, exclude, bits, fout, iout):
    ny, nx = image.shape
    px = _Pixels(image, variance, mask, seg, exclude)
    nr = radii.size
    for k in range(xs.size):
        x0, y0, sid, sigma = float(xs[k]), float(ys[k]), int(ids[k]), float(sigmas[k])
        fout[k] = np.nan
        iout[k] = 1
        if not (np.isfinite(x0) and np.isfinite(y0)):
            continue
        if not (-0.5 < x0 < nx - 0.5 and -0.5 < y0 < ny - 0.5):
            continue
        if recentroid:
            xc, yc, fout[k, 2], fout[k, 3], iout[k, 0] = _centroid_ref(px, sid, x0, y0, sigma)
        else:
            xc, yc, iout[k, 0] = x0, y0, 0
        fout[k, 0], fout[k, 1] = xc, yc
        fout[k, 4], fout[k, 5] = _first_moments_ref(px, sid, x0, y0, 3.0 * sigma)
        fout[k, 6], fout[k, 7], fout[k, 8], iout[k, 1] = _adaptive_ref(px, sid, xc, yc, sigma)
        if psfs is not None:
            stamp, ox, oy = psfs[k], int(origins[k, 0]), int(origins[k, 1])
        else:
            stamp, ox, oy = _gaussian_stamp_ref(xc, yc, sigma)
        fout[k, 9], fout[k, 10], iout[k, 2] = _psf_ref(px, sid, stamp, ox, oy)
        for q in range(nr):
            fout[k, 11 + q], fout[k, 11 + nr + q], iout[k, 8 + q] = _aperture_ref(
                px, sid, xc, yc, float(radii[q]))
        iout[k, 3:8] = _pixel_flags_ref(mask, xc, yc, float(radii[0]), bits)


def _kron_reference(image, variance, mask, seg, ids, xs, ys, moments, sigmas, exclude, fout,
                    iout):
    ny, nx = image.shape
    px = _Pixels(image, variance, mask, seg, exclude)
    for k in range(xs.size):
        xc, yc = float(xs[k]), float(ys[k])
        if not (np.isfinite(xc) and np.isfinite(yc) and -0.5 < xc < nx - 0.5
                and -0.5 < yc < ny - 0.5):
            fout[k] = np.nan
            iout[k] = 1
            continue
        kr = _kron_ref(px, int(ids[k]), xc, yc, moments[k, 0], moments[k, 1], moments[k, 2],
                       float(sigmas[k]))
        fout[k] = kr[0], kr[1], kr[2], kr[4]
        iout[k] = kr[3]


def _psf_sigma_from_stamps(psfs: np.ndarray) -> np.ndarray:
    """The Gaussian-equivalent width of each PSF stamp from its second moments."""
    n, kh, kw = psfs.shape
    yy, xx = np.mgrid[0:kh, 0:kw]
    total = psfs.sum(axis=(1, 2))
    total = np.where(total > 0, total, 1.0)
    mx = (psfs * xx).sum(axis=(1, 2)) / total
    my = (psfs * yy).sum(axis=(1, 2)) / total
    ixx = (psfs * (xx - mx[:, None, None]) ** 2).sum(axis=(1, 2)) / total
    iyy = (psfs * (yy - my[:, None, None]) ** 2).sum(axis=(1, 2)) / total
    return np.sqrt(np.maximum(0.5 * (ixx + iyy), 0.25))


def _run(image, variance, mask, x, y, psf_images, psf_origins, psf_sigma, radii, recentroid,
         segments, ids, edge_bits, saturated_bits, interpolated_bits, cr_bits, bad_bits,
         exclude_bits, native, phot=None):
    func = "measure_sources"
    image = float_image(image, "image", func, dtype=np.float32)
    variance = float_image(variance, "variance", func, dtype=np.float32)
    if variance.shape != image.shape:
        raise ValueError(f"{func}: variance's shape {variance.shape} differs from the image's "
                         f"{image.shape}")
    mask = mask_image(mask, image.shape, "mask", func)
    xs = np.atleast_1d(np.asarray(x, dtype=np.float64))
    ys = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if xs.ndim != 1 or xs.shape != ys.shape:
        raise ValueError(f"{func}: x and y must be 1-D of one length; got {xs.shape}, {ys.shape}")
    n = xs.size
    radii = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    if radii.ndim != 1 or radii.size == 0 or not np.all(radii > 0):
        raise ValueError(f"{func}: radii must be positive numbers; got {radii}")
    seg = None
    if segments is not None:
        seg = np.asarray(segments)
        if seg.shape != image.shape:
            raise ValueError(f"{func}: segments' shape {seg.shape} differs from the image's "
                             f"{image.shape}")
        if seg.dtype.kind not in "iu":
            raise PixelTypeError(f"{func}: segments must be integers; got {seg.dtype}")
        seg = np.ascontiguousarray(seg, dtype=np.int32)
        if ids is None:
            raise ValueError(f"{func}: segments need the sources' ids")
    if ids is None:
        id_arr = np.arange(n, dtype=np.int64)
    else:
        id_arr = np.atleast_1d(np.asarray(ids)).astype(np.int64)
        if id_arr.shape != xs.shape:
            raise ValueError(f"{func}: ids must have one entry per source; got {id_arr.shape}")
    psfs = origins = None
    if psf_images is not None:
        psfs = np.ascontiguousarray(psf_images, dtype=np.float64)
        if psfs.ndim != 3 or psfs.shape[0] != n:
            raise ValueError(f"{func}: psf_images must be (n, k, k) with n = {n}; got "
                             f"{psfs.shape}")
        if psf_origins is None:
            raise ValueError(f"{func}: psf_images need psf_origins")
        origins = np.ascontiguousarray(psf_origins, dtype=np.int64)
        if origins.shape != (n, 2):
            raise ValueError(f"{func}: psf_origins must be ({n}, 2); got {origins.shape}")
    if psf_sigma is None:
        if psfs is None:
            raise ValueError(f"{func}: give psf_sigma or psf_images")
        sigmas = _psf_sigma_from_stamps(psfs)
    else:
        sigmas = np.broadcast_to(np.asarray(psf_sigma, dtype=np.float64), (n,)).copy()
    if not np.all(sigmas > 0):
        raise ValueError(f"{func}: psf_sigma must be positive")
    nr = radii.size
    fout = np.empty((n, 11 + 2 * nr))
    iout = np.empty((n, 8 + nr), np.int64)
    kout = np.empty((n, 4))
    kflag = np.empty(n, np.int64)
    bits = [int(edge_bits), int(saturated_bits), int(interpolated_bits), int(cr_bits),
            int(bad_bits)]
    if n > 0:
        if native is not None:
            native.measure_sources(
                image, variance, mask, seg if seg is not None else np.zeros((1, 1), np.int32),
                int(seg is not None), id_arr, xs, ys, sigmas,
                psfs if psfs is not None else np.zeros((n, 1, 1)),
                origins if origins is not None else np.zeros((n, 2), np.int64),
                int(psfs is not None), radii, int(bool(recentroid)), int(exclude_bits),
                *bits, fout, iout)
        else:
            _measure_reference(image, variance, mask, seg, id_arr, xs, ys, sigmas, psfs,
                               origins, radii, bool(recentroid), int(exclude_bits), bits,
                               fout, iout)
        # the Kron flux and blendedness at the centroids, with the adaptive moments
        moments = np.ascontiguousarray(fout[:, 6:9])
        cx, cy = np.ascontiguousarray(fout[:, 0]), np.ascontiguousarray(fout[:, 1])
        if phot is not None:
            phot.kron_fluxes(image, variance, mask,
                             seg if seg is not None else np.zeros((1, 1), np.int32),
                             int(seg is not None), id_arr, cx, cy, moments, sigmas,
                             int(exclude_bits), kout, kflag)
        else:
            _kron_reference(image, variance, mask, seg, id_arr, cx, cy, moments, sigmas,
                            int(exclude_bits), kout, kflag)
    out = np.zeros(n, dtype=measurement_dtype(nr))
    out["id"] = id_arr
    for c, name in enumerate(_FLOAT_COLUMNS):
        out[name] = fout[:, c]
    out["ap_flux"] = fout[:, 11:11 + nr]
    out["ap_flux_err"] = fout[:, 11 + nr:]
    out["ap_flag"] = iout[:, 8:] != 0
    for c, name in enumerate(_FLAG_COLUMNS):
        out[name] = iout[:, c] != 0
    for c, name in enumerate(_KRON_COLUMNS):
        out[name] = kout[:, c]
    out["kron_flag"] = kflag != 0
    return out


def measure_sources(image: np.ndarray, variance: np.ndarray, mask: np.ndarray | None,
                    x: np.ndarray, y: np.ndarray, *, psf_images: np.ndarray | None = None,
                    psf_origins: np.ndarray | None = None,
                    psf_sigma: float | np.ndarray | None = None,
                    radii=DEFAULT_RADII, recentroid: bool = True,
                    segments: np.ndarray | None = None, ids: np.ndarray | None = None,
                    edge_bits: int = (1 << 4) | (1 << 8), saturated_bits: int = 1 << 1,
                    interpolated_bits: int = 1 << 2, cr_bits: int = 1 << 3,
                    bad_bits: int = 1 << 0, exclude_bits: int = (1 << 0) | (1 << 8)
                    ) -> np.ndarray:
    """Centroids, shapes, aperture and PSF fluxes and pixel flags of sources.

    Parameters
    ----------
    image, variance : numpy.ndarray
        Background-subtracted pixels and their variance (2-D float32 or float64).
    mask : numpy.ndarray or None
        int32 mask planes.
    x, y : numpy.ndarray
        Source positions (0-based pixels, pixel centres at integers).
    psf_images : numpy.ndarray, optional
        ``(n, k, k)`` PSF model of each source (as ``Psf.compute_image`` returns, sum 1).
    psf_origins : numpy.ndarray, optional
        ``(n, 2)`` integer ``(x0, y0)`` of each stamp's lower-left pixel in the image.
    psf_sigma : float or numpy.ndarray, optional
        Gaussian PSF width(s): the centroid and moment weights, and the PSF model when no
        ``psf_images`` are given (default: from the stamps' second moments).
    radii : sequence of float
        Aperture radii in pixels; the first is also the radius of the pixel flags.
    recentroid : bool
        Measure the centroid (else keep the given positions: forced photometry).
    segments : numpy.ndarray, optional
        int32 segmentation map; with ``ids``, a source only uses pixels of segment 0 or its id.
    ids : numpy.ndarray, optional
        Each source's id (its segment number); copied to the ``id`` column (default 0..n-1).
    edge_bits, saturated_bits, interpolated_bits, cr_bits, bad_bits : int
        Mask bits of the pixel flags (EDGE and NO_DATA, SAT, INTRP, CR, BAD).
    exclude_bits : int
        Mask bits of pixels left out of all sums (BAD and NO_DATA).

    Returns
    -------
    numpy.ndarray
        One row per source, of dtype ``measurement_dtype(len(radii))``; see the module's
        documentation for each column's definition.
    """
    return _run(image, variance, mask, x, y, psf_images, psf_origins, psf_sigma, radii,
                recentroid, segments, ids, edge_bits, saturated_bits, interpolated_bits,
                cr_bits, bad_bits, exclude_bits, load_native("measure"),
                load_native("photometry"))


def measure_sources_reference(image: np.ndarray, variance: np.ndarray, mask: np.ndarray | None,
                              x: np.ndarray, y: np.ndarray, *,
                              psf_images: np.ndarray | None = None,
                              psf_origins: np.ndarray | None = None,
                              psf_sigma: float | np.ndarray | None = None,
                              radii=DEFAULT_RADII, recentroid: bool = True,
                              segments: np.ndarray | None = None,
                              ids: np.ndarray | None = None,
                              edge_bits: int = (1 << 4) | (1 << 8),
                              saturated_bits: int = 1 << 1, interpolated_bits: int = 1 << 2,
                              cr_bits: int = 1 << 3, bad_bits: int = 1 << 0,
                              exclude_bits: int = (1 << 0) | (1 << 8)) -> np.ndarray:
    """NumPy reference of :func:`measure_sources` (the same arguments and results)."""
    return _run(image, variance, mask, x, y, psf_images, psf_origins, psf_sigma, radii,
                recentroid, segments, ids, edge_bits, saturated_bits, interpolated_bits,
                cr_bits, bad_bits, exclude_bits, None)


#: The rows of :func:`psf_fluxes`.
PSF_FLUX_DTYPE = np.dtype([("psf_flux", np.float64), ("psf_flux_err", np.float64),
                           ("psf_flag", np.bool_)])


def _psf_fluxes(image, variance, mask, psf_images, psf_origins, segments, ids, exclude_bits,
                native) -> np.ndarray:
    func = "psf_fluxes"
    image = float_image(image, "image", func, dtype=np.float32)
    variance = float_image(variance, "variance", func, dtype=np.float32)
    if variance.shape != image.shape:
        raise ValueError(f"{func}: variance's shape {variance.shape} differs from the image's "
                         f"{image.shape}")
    mask = mask_image(mask, image.shape, "mask", func)
    psfs = np.ascontiguousarray(psf_images, dtype=np.float64)
    if psfs.ndim != 3:
        raise ValueError(f"{func}: psf_images must be (n, k, k); got {psfs.shape}")
    n = psfs.shape[0]
    origins = np.ascontiguousarray(psf_origins, dtype=np.int64)
    if origins.shape != (n, 2):
        raise ValueError(f"{func}: psf_origins must be ({n}, 2); got {origins.shape}")
    seg = None
    if segments is not None:
        seg = np.asarray(segments)
        if seg.shape != image.shape or seg.dtype.kind not in "iu":
            raise ValueError(f"{func}: segments must be integers of the image's shape; got "
                             f"{seg.dtype} {seg.shape}")
        seg = np.ascontiguousarray(seg, dtype=np.int32)
        if ids is None:
            raise ValueError(f"{func}: segments need the sources' ids")
    id_arr = (np.arange(n, dtype=np.int64) if ids is None
              else np.atleast_1d(np.asarray(ids)).astype(np.int64))
    if id_arr.shape != (n,):
        raise ValueError(f"{func}: ids must have one entry per stamp; got {id_arr.shape}")
    fout = np.full((n, 2), np.nan)
    iout = np.ones(n, np.int64)
    if n > 0:
        if native is not None:
            native.psf_fluxes(image, variance, mask,
                              seg if seg is not None else np.zeros((1, 1), np.int32),
                              int(seg is not None), id_arr, psfs, origins, int(exclude_bits),
                              fout, iout)
        else:
            px = _Pixels(image, variance, mask, seg, int(exclude_bits))
            for k in range(n):
                fout[k, 0], fout[k, 1], iout[k] = _psf_ref(
                    px, int(id_arr[k]), psfs[k], int(origins[k, 0]), int(origins[k, 1]))
    out = np.zeros(n, PSF_FLUX_DTYPE)
    out["psf_flux"] = fout[:, 0]
    out["psf_flux_err"] = fout[:, 1]
    out["psf_flag"] = iout != 0
    return out


def psf_fluxes(image: np.ndarray, variance: np.ndarray, mask: np.ndarray | None,
               psf_images: np.ndarray, psf_origins: np.ndarray, *,
               segments: np.ndarray | None = None, ids: np.ndarray | None = None,
               exclude_bits: int = (1 << 0) | (1 << 8)) -> np.ndarray:
    """PSF fluxes of PSF models already realised at each source's (sub-pixel) position.

    The fit and its error are those of :func:`measure_sources`' ``psf_flux`` (least-squares
    amplitude over the usable pixels, error from the variance plane, the flag when a pixel
    with ``P >= 0.02 max(P)`` is off the image or masked); the model is the caller's: for
    PSF photometry at the measured centroid, ``Psf.compute_image(x, y)`` at the centroids of
    a first :func:`measure_sources` pass.

    Parameters
    ----------
    image, variance, mask : numpy.ndarray
        As :func:`measure_sources`.
    psf_images : numpy.ndarray
        ``(n, k, k)`` PSF models (sum 1).
    psf_origins : numpy.ndarray
        ``(n, 2)`` integer ``(x0, y0)`` of each stamp's lower-left pixel in the image.
    segments, ids, exclude_bits
        As :func:`measure_sources`.

    Returns
    -------
    numpy.ndarray
        ``PSF_FLUX_DTYPE`` rows: ``psf_flux``, ``psf_flux_err``, ``psf_flag``.
    """
    return _psf_fluxes(image, variance, mask, psf_images, psf_origins, segments, ids,
                       exclude_bits, load_native("photometry"))


def psf_fluxes_reference(image: np.ndarray, variance: np.ndarray, mask: np.ndarray | None,
                         psf_images: np.ndarray, psf_origins: np.ndarray, *,
                         segments: np.ndarray | None = None, ids: np.ndarray | None = None,
                         exclude_bits: int = (1 << 0) | (1 << 8)) -> np.ndarray:
    """NumPy reference of :func:`psf_fluxes`."""
    return _psf_fluxes(image, variance, mask, psf_images, psf_origins, segments, ids,
                       exclude_bits, None)
