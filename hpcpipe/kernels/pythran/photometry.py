# Pythran source of hpcpipe.kernels._photometry (compiled by setup.py). Reference: ../measure.py
# The PSF flux of models realised at the centroids and the Kron flux and blendedness: a module
# of its own, small, so that the measurement kernel's (large) build is unchanged.
#pythran export psf_fluxes(float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int32[:,:] order(C), int, int64[:], float64[:,:,:] order(C), int64[:,:] order(C), int, float64[:,:] order(C), int64[:] order(C))
#pythran export kron_fluxes(float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int32[:,:] order(C), int, int64[:], float64[:], float64[:], float64[:,:] order(C), float64[:], int, float64[:,:] order(C), int64[:] order(C))
import numpy as np


def _usable(image, variance, mask, seg, use_seg, sid, exclude, i, j):
    """1: use the pixel; 0: masked or not finite (flags); -1: another source's (silent)."""
    if use_seg != 0:
        s = seg[i, j]
        if s != 0 and s != sid:
            return -1
    if (mask[i, j] & exclude) != 0:
        return 0
    if not (np.isfinite(image[i, j]) and np.isfinite(variance[i, j])):
        return 0
    return 1


def _psf_flux(image, variance, mask, seg, use_seg, sid, exclude, stamp, ox, oy, out):
    """out = [flux, error, flag]: least-squares amplitude of the PSF stamp at (ox, oy)."""
    ny, nx = image.shape
    kh = stamp.shape[0]
    kw = stamp.shape[1]
    pmax = 0.0
    for u in range(kh):
        for t in range(kw):
            pmax = max(pmax, stamp[u, t])
    spi = 0.0
    spp = 0.0
    sppv = 0.0
    flag = 0
    for u in range(kh):
        i = oy + u
        for t in range(kw):
            j = ox + t
            p = stamp[u, t]
            if i < 0 or j < 0 or i >= ny or j >= nx:
                if p >= 0.02 * pmax:
                    flag = 1
                continue
            use = _usable(image, variance, mask, seg, use_seg, sid, exclude, i, j)
            if use != 1:
                if use == 0 and p >= 0.02 * pmax:
                    flag = 1
                continue
            spi += p * image[i, j]
            spp += p * p
            sppv += p * p * variance[i, j]
    if spp > 0.0 and pmax > 0.0:
        out[0] = spi / spp
        out[1] = np.sqrt(sppv) / spp
    else:
        out[0] = np.nan
        out[1] = np.nan
        flag = 1
    out[2] = flag


def _kron_shape(mxx, myy, mxy, sigma, out):
    """out = [a, b, c, scale, d, stretch]: r**2 = a dx2 + 2 c dx dy + b dy2 (pixel units),
    the geometric-mean width, the largest change of r across one pixel and the largest
    pixel offset per unit of r."""
    if not (mxx > 0.0 and myy > 0.0 and mxx * myy - mxy * mxy > 0.0):
        mxx = sigma * sigma
        myy = sigma * sigma
        mxy = 0.0
    det = mxx * myy - mxy * mxy
    scale = np.sqrt(np.sqrt(det))
    out[0] = myy / det * scale * scale
    out[1] = mxx / det * scale * scale
    out[2] = -mxy / det * scale * scale
    out[3] = scale
    lmin = 0.5 * (mxx + myy) - np.sqrt(0.25 * (mxx - myy) * (mxx - myy) + mxy * mxy)
    lmax = 0.5 * (mxx + myy) + np.sqrt(0.25 * (mxx - myy) * (mxx - myy) + mxy * mxy)
    out[4] = 0.7072 * scale / np.sqrt(max(lmin, 1e-6 * det / (mxx + myy)))
    out[5] = np.sqrt(lmax) / scale


def _kron_first_moment(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, sh, out):
    """out = [sum I, sum r I, own weighted flux, all weighted flux] within r <= 6 scale."""
    ny, nx = image.shape
    a = sh[0]
    b = sh[1]
    c = sh[2]
    scale = sh[3]
    cx = int(np.floor(xc + 0.5))
    cy = int(np.floor(yc + 0.5))
    rmax = 6.0 * scale
    half = min(int(np.ceil(rmax * sh[5])) + 1, 120)
    for k in range(4):
        out[k] = 0.0
    for i in range(max(cy - half, 0), min(cy + half, ny - 1) + 1):
        dy = i - yc
        for j in range(max(cx - half, 0), min(cx + half, nx - 1) + 1):
            dx = j - xc
            r = np.sqrt(a * dx * dx + 2.0 * c * dx * dy + b * dy * dy)
            if r > rmax:
                continue
            use = _usable(image, variance, mask, seg, use_seg, sid, exclude, i, j)
            if use == 0:
                continue
            v = image[i, j]
            w = 0.0
            if v > 0.0:
                w = np.exp(-0.5 * r * r / (scale * scale)) * v
            out[3] += w
            if use != 1:
                continue
            out[2] += w
            out[0] += v
            out[1] += v * r


def _ellipse_fraction(a, b, c, dx, dy, radius):
    """The fraction of the 5x5 sub-pixel centres of the pixel at (dx, dy) in the ellipse."""
    f = 0.0
    for p in range(5):
        ey = dy + (p - 2) * 0.2
        for q in range(5):
            ex = dx + (q - 2) * 0.2
            if a * ex * ex + 2.0 * c * ex * ey + b * ey * ey <= radius * radius:
                f += 0.04
    return f


def _kron_sum(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, sh, radius, limit,
              out):
    """out = [flux, variance, flag] within the ellipse of the Kron radius."""
    ny, nx = image.shape
    a = sh[0]
    b = sh[1]
    c = sh[2]
    d = sh[4]
    cx = int(np.floor(xc + 0.5))
    cy = int(np.floor(yc + 0.5))
    flux = 0.0
    var = 0.0
    flag = 0
    for i in range(cy - limit, cy + limit + 1):
        dy = i - yc
        for j in range(cx - limit, cx + limit + 1):
            dx = j - xc
            r = np.sqrt(a * dx * dx + 2.0 * c * dx * dy + b * dy * dy)
            if r > radius + d:
                continue
            f = 1.0
            if r > radius - d:
                f = _ellipse_fraction(a, b, c, dx, dy, radius)
                if f <= 0.0:
                    continue
            if i < 0 or j < 0 or i >= ny or j >= nx:
                flag = 1
                continue
            use = _usable(image, variance, mask, seg, use_seg, sid, exclude, i, j)
            if use == 0:
                flag = 1
            if use != 1:
                continue
            flux += f * image[i, j]
            var += f * f * variance[i, j]
    out[0] = flux
    out[1] = var
    out[2] = flag


def _kron(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, mxx, myy, mxy, sigma,
          out):
    """out = [radius, flux, error, flag, blendedness] (see ../measure.py)."""
    sh = np.zeros(6)
    _kron_shape(mxx, myy, mxy, sigma, sh)
    m = np.zeros(4)
    _kron_first_moment(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, sh, m)
    out[4] = 1.0 - m[2] / m[3] if m[3] > 0.0 else 0.0
    if not (m[0] > 0.0 and m[1] > 0.0):
        out[0] = np.nan
        out[1] = np.nan
        out[2] = np.nan
        out[3] = 1
        return
    radius = max(2.5 * (m[1] / m[0]), 3.5 * sh[3])
    flag = 0
    limit = int(np.ceil((radius + sh[4]) * sh[5])) + 1
    if limit > 120:
        limit = 120
        flag = 1
    ks = np.zeros(3)
    _kron_sum(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, sh, radius, limit, ks)
    out[0] = radius
    out[1] = ks[0]
    out[2] = np.sqrt(ks[1])
    out[3] = max(flag, int(ks[2]))


def psf_fluxes(image, variance, mask, seg, use_seg, ids, psfs, origins, exclude_bits, fout,
               iout):
    """PSF fluxes of stamps already realised at each source's position (../measure.py)."""
    pf = np.zeros(3)
    for k in range(ids.shape[0]):
        stamp = psfs[k].copy()
        _psf_flux(image, variance, mask, seg, use_seg, ids[k], exclude_bits, stamp,
                  int(origins[k, 0]), int(origins[k, 1]), pf)
        fout[k, 0] = pf[0]
        fout[k, 1] = pf[1]
        iout[k] = int(pf[2])


def kron_fluxes(image, variance, mask, seg, use_seg, ids, xs, ys, moments, sigmas,
                exclude_bits, fout, iout):
    """Kron radius, flux, error and blendedness (fout) and flag (iout) at (xs, ys) with the
    adaptive moments (ixx, iyy, ixy; NaN: a circle of sigma); see ../measure.py."""
    ny, nx = image.shape
    kr = np.zeros(5)
    for k in range(ids.shape[0]):
        xc = xs[k]
        yc = ys[k]
        if not (np.isfinite(xc) and np.isfinite(yc) and xc > -0.5 and yc > -0.5
                and xc < nx - 0.5 and yc < ny - 0.5):
            for c in range(4):
                fout[k, c] = np.nan
            iout[k] = 1
            continue
        _kron(image, variance, mask, seg, use_seg, ids[k], exclude_bits, xc, yc,
              moments[k, 0], moments[k, 1], moments[k, 2], sigmas[k], kr)
        fout[k, 0] = kr[0]
        fout[k, 1] = kr[1]
        fout[k, 2] = kr[2]
        fout[k, 3] = kr[4]
        iout[k] = int(kr[3])
