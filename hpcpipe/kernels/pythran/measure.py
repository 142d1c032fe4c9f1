# Pythran source of hpcpipe.kernels._measure (compiled by setup.py). Reference: ../measure.py
# Each step is its own small function: large inlined loop nests make g++ need tens of GB.
#pythran export measure_sources(float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int32[:,:] order(C), int, int64[:], float64[:], float64[:], float64[:], float64[:,:,:] order(C), int64[:,:] order(C), int, float64[:], int, int, int, int, int, int, int, float64[:,:] order(C), int64[:,:] order(C))
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


def _centroid_sums(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, sigma, s):
    """s = [sum w I, sum w I dx, sum w I dy, sum w I dx2, sum w I dy2, sum w2 V dx2,
    sum w2 V dy2] over the usable pixels within 4 sigma of (xc, yc)."""
    ny, nx = image.shape
    half = int(np.ceil(4.0 * sigma))
    cx = int(np.floor(xc + 0.5))
    cy = int(np.floor(yc + 0.5))
    inv = 0.5 / (sigma * sigma)
    for k in range(7):
        s[k] = 0.0
    for i in range(max(cy - half, 0), min(cy + half, ny - 1) + 1):
        dy = i - yc
        for j in range(max(cx - half, 0), min(cx + half, nx - 1) + 1):
            if _usable(image, variance, mask, seg, use_seg, sid, exclude, i, j) != 1:
                continue
            dx = j - xc
            w = np.exp(-(dx * dx + dy * dy) * inv)
            v = w * image[i, j]
            ww = w * w * variance[i, j]
            s[0] += v
            s[1] += v * dx
            s[2] += v * dy
            s[3] += v * dx * dx
            s[4] += v * dy * dy
            s[5] += ww * dx * dx
            s[6] += ww * dy * dy


def _centroid(image, variance, mask, seg, use_seg, sid, exclude, x0, y0, sigma, out):
    """out = [x, y, x_err, y_err, flag]: Gaussian-weighted centroid (see ../measure.py)."""
    s = np.zeros(7)
    xc = x0
    yc = y0
    flag = 1
    for it in range(30):
        _centroid_sums(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, sigma, s)
        if not s[0] > 0.0:
            break
        ddx = 2.0 * s[1] / s[0]
        ddy = 2.0 * s[2] / s[0]
        xc += ddx
        yc += ddy
        if abs(xc - x0) > 2.0 * sigma or abs(yc - y0) > 2.0 * sigma:
            break
        if abs(ddx) < 1e-5 and abs(ddy) < 1e-5:
            flag = 0
            break
    if flag == 0:
        _centroid_sums(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, sigma, s)
        inv2 = 1.0 / (sigma * sigma)
        dxd = s[0] - s[3] * inv2
        dyd = s[0] - s[4] * inv2
        if not (s[0] > 0.0 and dxd > 0.0 and dyd > 0.0):
            flag = 1
        else:
            out[0] = xc
            out[1] = yc
            out[2] = np.sqrt(s[5]) / dxd
            out[3] = np.sqrt(s[6]) / dyd
    if flag != 0:
        out[0] = x0
        out[1] = y0
        out[2] = np.nan
        out[3] = np.nan
    out[4] = flag


def _first_moments(image, variance, mask, seg, use_seg, sid, exclude, x0, y0, radius, out):
    """out = [x_moment, y_moment]: unweighted first moments within radius of (x0, y0)."""
    ny, nx = image.shape
    half = int(np.ceil(radius))
    cx = int(np.floor(x0 + 0.5))
    cy = int(np.floor(y0 + 0.5))
    s0 = 0.0
    sx = 0.0
    sy = 0.0
    r2 = radius * radius
    for i in range(max(cy - half, 0), min(cy + half, ny - 1) + 1):
        for j in range(max(cx - half, 0), min(cx + half, nx - 1) + 1):
            if (j - x0) * (j - x0) + (i - y0) * (i - y0) > r2:
                continue
            if _usable(image, variance, mask, seg, use_seg, sid, exclude, i, j) != 1:
                continue
            v = image[i, j]
            s0 += v
            sx += v * j
            sy += v * i
    if s0 > 0.0:
        out[0] = sx / s0
        out[1] = sy / s0
    else:
        out[0] = np.nan
        out[1] = np.nan


def _moment_sums(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, wxx, wyy, wxy,
                 half, s):
    """s = [sum W I, sum W I dx2, sum W I dy2, sum W I dx dy], W = exp(-d.M^-1.d / 2)."""
    ny, nx = image.shape
    cx = int(np.floor(xc + 0.5))
    cy = int(np.floor(yc + 0.5))
    for k in range(4):
        s[k] = 0.0
    for i in range(max(cy - half, 0), min(cy + half, ny - 1) + 1):
        dy = i - yc
        for j in range(max(cx - half, 0), min(cx + half, nx - 1) + 1):
            if _usable(image, variance, mask, seg, use_seg, sid, exclude, i, j) != 1:
                continue
            dx = j - xc
            q = wxx * dx * dx + 2.0 * wxy * dx * dy + wyy * dy * dy
            if q > 32.0:
                continue
            v = np.exp(-0.5 * q) * image[i, j]
            s[0] += v
            s[1] += v * dx * dx
            s[2] += v * dy * dy
            s[3] += v * dx * dy


def _adaptive_moments(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, sigma, out):
    """out = [ixx, iyy, ixy, flag]: elliptical-Gaussian-weighted moments, iterated."""
    s = np.zeros(4)
    mxx = sigma * sigma
    myy = sigma * sigma
    mxy = 0.0
    flag = 1
    for it in range(100):
        det = mxx * myy - mxy * mxy
        if not det > 0.0:
            break
        wxx = myy / det
        wyy = mxx / det
        wxy = -mxy / det
        half = min(int(np.ceil(4.0 * np.sqrt(max(mxx, myy)))), 60)
        _moment_sums(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, wxx, wyy, wxy,
                     half, s)
        if not s[0] > 0.0:
            break
        axx = s[1] / s[0]
        ayy = s[2] / s[0]
        axy = s[3] / s[0]
        dm = axx * ayy - axy * axy
        if not (dm > 0.0 and axx > 0.0):
            break
        ia = ayy / dm - wxx
        ib = axx / dm - wyy
        ic = -axy / dm - wxy
        dd = ia * ib - ic * ic
        if not (ia > 0.0 and dd > 0.0):
            break
        nxx = ib / dd
        nyy = ia / dd
        nxy = -ic / dd
        change = abs(nxx - mxx) + abs(nyy - myy) + abs(nxy - mxy)
        mxx = nxx
        myy = nyy
        mxy = nxy
        if mxx > 900.0 or myy > 900.0:
            break
        if change < 1e-6 * (mxx + myy):
            flag = 0
            break
    if flag == 0:
        out[0] = mxx
        out[1] = myy
        out[2] = mxy
    else:
        out[0] = np.nan
        out[1] = np.nan
        out[2] = np.nan
    out[3] = flag


def _arc_integral(x, r):
    """The integral of sqrt(r^2 - t^2) from 0 to x, for -r <= x <= r."""
    x = min(max(x, -r), r)
    return 0.5 * (x * np.sqrt(max(r * r - x * x, 0.0)) + r * r * np.arcsin(x / r))


def _circle_rectangle_area(x0, x1, y0, y1, r, bp):
    """The exact area of the circle of radius r at the origin within [x0, x1] x [y0, y1].

    ``bp``: a work array of 6 (the caller's: one allocation per call would cost more than
    the area). The integral of the arc at each breakpoint is computed once and used by the
    two intervals it bounds (the same values as computing it for each).
    """
    a = max(x0, -r)
    b = min(x1, r)
    if a >= b:
        return 0.0
    bp[0] = a
    bp[1] = b
    n = 2
    for yy in (y0, y1):
        if abs(yy) < r:
            q = np.sqrt(r * r - yy * yy)
            if a < q < b:
                bp[n] = q
                n += 1
            if a < -q < b:
                bp[n] = -q
                n += 1
    for k in range(1, n):
        v = bp[k]
        m = k - 1
        while m >= 0 and bp[m] > v:
            bp[m + 1] = bp[m]
            m -= 1
        bp[m + 1] = v
    area = 0.0
    arc_at = -1  # the breakpoint whose arc integral arc_v holds
    arc_v = 0.0
    for k in range(n - 1):
        u = bp[k]
        v = bp[k + 1]
        if v <= u:
            continue
        mid = 0.5 * (u + v)
        s = np.sqrt(max(r * r - mid * mid, 0.0))
        if min(y1, s) <= max(y0, -s):
            continue
        arc_u = arc_v if arc_at == k else _arc_integral(u, r)
        arc_v = _arc_integral(v, r)
        arc_at = k + 1
        arc = arc_v - arc_u
        top = y1 * (v - u) if y1 < s else arc
        bottom = y0 * (v - u) if y0 > -s else -arc
        area += top - bottom
    return area


def _apertures(image, variance, mask, seg, use_seg, sid, exclude, xc, yc, radii, acc):
    """acc[q] = [flux, variance, flag] in the circle of radius radii[q], exact pixel overlap.

    One pass over the box of the largest circle for all the radii: each pixel is tested
    (usable or not) once, and each radius sums the pixels it overlaps in raster order, as a
    pass per radius would (pixels outside a radius' own box overlap it by 0), so the sums
    are those of separate passes exactly.
    """
    ny, nx = image.shape
    nr = radii.shape[0]
    bp = np.empty(6)
    rmax = 0.0
    for q in range(nr):
        rmax = max(rmax, radii[q])
        acc[q, 0] = 0.0
        acc[q, 1] = 0.0
        acc[q, 2] = 0.0
    for i in range(int(np.floor(yc - rmax - 0.5)), int(np.ceil(yc + rmax + 0.5)) + 1):
        dy = i - yc
        ay = abs(dy)
        ney = max(ay - 0.5, 0.0)
        fy = ay + 0.5
        for j in range(int(np.floor(xc - rmax - 0.5)), int(np.ceil(xc + rmax + 0.5)) + 1):
            dx = j - xc
            ax = abs(dx)
            nex = max(ax - 0.5, 0.0)
            near = nex * nex + ney * ney
            if near >= rmax * rmax:
                continue
            fx = ax + 0.5
            far = fx * fx + fy * fy
            inside = i >= 0 and j >= 0 and i < ny and j < nx
            use = 1
            if inside:
                use = _usable(image, variance, mask, seg, use_seg, sid, exclude, i, j)
            for q in range(nr):
                r = radii[q]
                # _pixel_overlap(dx, dy, r), its tests in its order
                if near >= r * r:
                    continue
                f = 1.0
                if far > r * r:
                    f = _circle_rectangle_area(dx - 0.5, dx + 0.5, dy - 0.5, dy + 0.5, r, bp)
                if f <= 0.0:
                    continue
                if not inside:
                    acc[q, 2] = 1.0
                    continue
                if use == 0:
                    acc[q, 2] = 1.0
                if use != 1:
                    continue
                acc[q, 0] += f * image[i, j]
                acc[q, 1] += f * f * variance[i, j]


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


def _gaussian_stamp(xc, yc, sigma, stamp):
    """A Gaussian of unit flux (sampled at pixel centres) on a stamp around (xc, yc)."""
    half = stamp.shape[0] // 2
    cx = int(np.floor(xc + 0.5))
    cy = int(np.floor(yc + 0.5))
    norm = 1.0 / (2.0 * np.pi * sigma * sigma)
    for u in range(stamp.shape[0]):
        dy = cy - half + u - yc
        for t in range(stamp.shape[1]):
            dx = cx - half + t - xc
            stamp[u, t] = norm * np.exp(-0.5 * (dx * dx + dy * dy) / (sigma * sigma))


def _pixel_flags(mask, xc, yc, r, bits, out):
    """out[k] = 1 if a pixel centre within r of (xc, yc) has bits[k]; off-image is bits 0."""
    ny, nx = mask.shape
    for k in range(bits.shape[0]):
        out[k] = 0
    half = int(np.ceil(r)) + 1
    cx = int(np.floor(xc + 0.5))
    cy = int(np.floor(yc + 0.5))
    for i in range(cy - half, cy + half + 1):
        for j in range(cx - half, cx + half + 1):
            if (j - xc) * (j - xc) + (i - yc) * (i - yc) > r * r:
                continue
            if i < 0 or j < 0 or i >= ny or j >= nx:
                out[0] = 1
                continue
            m = mask[i, j]
            for k in range(bits.shape[0]):
                if (m & bits[k]) != 0:
                    out[k] = 1


def measure_sources(image, variance, mask, seg, use_seg, ids, xs, ys, sigmas, psfs, origins,
                    use_psf, radii, recentroid, exclude_bits, edge_bits, sat_bits, intrp_bits,
                    cr_bits, bad_bits, fout, iout):
    """Measure each source; see ../measure.py for the columns of fout and iout."""
    ny, nx = image.shape
    nr = radii.shape[0]
    cen = np.zeros(5)
    mom = np.zeros(4)
    first = np.zeros(2)
    ap = np.zeros((radii.shape[0], 3))
    pf = np.zeros(3)
    pix = np.zeros(5, np.int64)
    bits = np.array([edge_bits, sat_bits, intrp_bits, cr_bits, bad_bits], np.int64)
    for k in range(xs.shape[0]):
        x0 = xs[k]
        y0 = ys[k]
        sid = ids[k]
        sigma = sigmas[k]
        for c in range(fout.shape[1]):
            fout[k, c] = np.nan
        for c in range(iout.shape[1]):
            iout[k, c] = 1
        if not (np.isfinite(x0) and np.isfinite(y0)):
            continue
        if not (x0 > -0.5 and y0 > -0.5 and x0 < nx - 0.5 and y0 < ny - 0.5):
            continue
        if recentroid != 0:
            _centroid(image, variance, mask, seg, use_seg, sid, exclude_bits, x0, y0, sigma, cen)
            xc = cen[0]
            yc = cen[1]
            fout[k, 2] = cen[2]
            fout[k, 3] = cen[3]
            iout[k, 0] = int(cen[4])
        else:
            xc = x0
            yc = y0
            iout[k, 0] = 0
        fout[k, 0] = xc
        fout[k, 1] = yc
        _first_moments(image, variance, mask, seg, use_seg, sid, exclude_bits, x0, y0,
                       3.0 * sigma, first)
        fout[k, 4] = first[0]
        fout[k, 5] = first[1]
        _adaptive_moments(image, variance, mask, seg, use_seg, sid, exclude_bits, xc, yc, sigma,
                          mom)
        fout[k, 6] = mom[0]
        fout[k, 7] = mom[1]
        fout[k, 8] = mom[2]
        iout[k, 1] = int(mom[3])
        # one stamp type and one call: each distinct argument type would compile the callee
        # again
        if use_psf != 0:
            stamp = psfs[k].copy()
            ox = int(origins[k, 0])
            oy = int(origins[k, 1])
        else:
            size = 2 * int(np.ceil(4.0 * sigma)) + 1
            stamp = np.empty((size, size))
            _gaussian_stamp(xc, yc, sigma, stamp)
            ox = int(np.floor(xc + 0.5)) - size // 2
            oy = int(np.floor(yc + 0.5)) - size // 2
        _psf_flux(image, variance, mask, seg, use_seg, sid, exclude_bits, stamp, ox, oy, pf)
        fout[k, 9] = pf[0]
        fout[k, 10] = pf[1]
        iout[k, 2] = int(pf[2])
        _apertures(image, variance, mask, seg, use_seg, sid, exclude_bits, xc, yc, radii, ap)
        for q in range(nr):
            fout[k, 11 + q] = ap[q, 0]
            fout[k, 11 + nr + q] = np.sqrt(ap[q, 1])
            iout[k, 8 + q] = int(ap[q, 2])
        _pixel_flags(mask, xc, yc, radii[0], bits, pix)
        for q in range(5):
            iout[k, 3 + q] = pix[q]
