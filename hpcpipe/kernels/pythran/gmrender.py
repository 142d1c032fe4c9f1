# Pythran source of hpcpipe.kernels._gmrender (compiled by setup.py). Reference: ../gmrender.py
# (gm_render_reference; the model and its derivatives are described in that module's docstring).
#pythran export gm_render(float64[:], float64[:], float64[:], float64[:,:] order(C), float64[:,:] order(C), float64[:], float64[:], int, int, int, int, int, float64[:,:,:] order(C))
#pythran export gm_moments(float64[:], float64[:], float64[:,:] order(C), float64[:,:,:] order(C), float64[:,:,:] order(C), float64[:,:] order(C), float64[:,:] order(C), int64[:,:] order(C), float64[:], float64[:], int64[:], int, float64[:,:,:] order(C))
#
# Pythran notes: the output comes from the caller and is overwritten; the helper returns a
# tuple of scalars (see pythran/stats.py for why).
import numpy as np

# a Gaussian is not evaluated where its exponent q = d' C^-1 d exceeds this (exp(-q/2) < 1e-16)
_QMAX = 73.7


def _pair(amp, vscale, pamp, pmean, pcov, s, mu, k, j):
    """Inverse covariance, normalisation and centre of the (profile k) x (PSF j) Gaussian."""
    cxx = vscale[k] * s[0] + pcov[j, 0]
    cxy = vscale[k] * s[1] + pcov[j, 1]
    cyy = vscale[k] * s[2] + pcov[j, 2]
    det = cxx * cyy - cxy * cxy
    norm = amp[k] * pamp[j] / (2.0 * np.pi * np.sqrt(det))
    return cyy / det, -cxy / det, cxx / det, norm, mu[0] + pmean[j, 0], mu[1] + pmean[j, 1]


def gm_render(amp, vscale, pamp, pmean, pcov, s, mu, x0, y0, nx, ny, deriv, out):
    """Render (and differentiate) a PSF-convolved Gaussian mixture into ``out``."""
    nk = amp.shape[0]
    nj = pamp.shape[0]
    npair = nk * nj
    par = np.empty((npair, 7))
    for k in range(nk):
        for j in range(nj):
            ixx, ixy, iyy, norm, mx, my = _pair(amp, vscale, pamp, pmean, pcov, s, mu, k, j)
            p = k * nj + j
            par[p, 0] = ixx
            par[p, 1] = ixy
            par[p, 2] = iyy
            par[p, 3] = norm
            par[p, 4] = mx
            par[p, 5] = my
            par[p, 6] = vscale[k]
    nout = 6 if deriv != 0 else 1
    for c in range(nout):
        for i in range(ny):
            for t in range(nx):
                out[c, i, t] = 0.0
    for i in range(ny):
        yy = float(y0 + i)
        for t in range(nx):
            xx = float(x0 + t)
            m = 0.0
            gx = 0.0
            gy = 0.0
            sxx = 0.0
            sxy = 0.0
            syy = 0.0
            for p in range(npair):
                dx = xx - par[p, 4]
                dy = yy - par[p, 5]
                wx = par[p, 0] * dx + par[p, 1] * dy
                wy = par[p, 1] * dx + par[p, 2] * dy
                q = dx * wx + dy * wy
                if q > _QMAX:
                    continue
                g = par[p, 3] * np.exp(-0.5 * q)
                m += g
                if deriv != 0:
                    gx += g * wx
                    gy += g * wy
                    v = par[p, 6] * g
                    sxx += 0.5 * v * (wx * wx - par[p, 0])
                    sxy += v * (wx * wy - par[p, 1])
                    syy += 0.5 * v * (wy * wy - par[p, 2])
            out[0, i, t] = m
            if deriv != 0:
                out[1, i, t] = gx
                out[2, i, t] = gy
                out[3, i, t] = sxx
                out[4, i, t] = sxy
                out[5, i, t] = syy


def gm_moments(amp, vscale, pamp, pmean, pcov, s, mu, box, data, w, start, deriv, out):
    """Per epoch e, out[e] = sum over its stamp's pixels of w z z' with z = (m, dm/dmu_x,
    dm/dmu_y, dm/dSxx, dm/dSxy, dm/dSyy, data) (only the m and data entries without
    ``deriv``). Along each row a Gaussian is evaluated with one exp at the pixel nearest its
    maximum on the row and ratios (exp(-q/2) of the neighbours by multiplication) outwards,
    until it falls below exp(-_QMAX/2) of its peak."""
    nk = amp.shape[0]
    ne = pamp.shape[0]
    nj = pamp.shape[1]
    npair = nk * nj
    par = np.empty((npair, 7))
    nxmax = 1
    for e in range(ne):
        nxmax = max(nxmax, box[e, 2])
    buf = np.zeros((6, nxmax))
    z = np.empty(7)
    emin = np.exp(-0.5 * _QMAX)
    for e in range(ne):
        for a in range(7):
            for b in range(7):
                out[e, a, b] = 0.0
        for k in range(nk):
            for j in range(nj):
                cxx = vscale[k] * s[e, 0] + pcov[e, j, 0]
                cxy = vscale[k] * s[e, 1] + pcov[e, j, 1]
                cyy = vscale[k] * s[e, 2] + pcov[e, j, 2]
                det = cxx * cyy - cxy * cxy
                p = k * nj + j
                par[p, 0] = cyy / det
                par[p, 1] = -cxy / det
                par[p, 2] = cxx / det
                par[p, 3] = amp[k] * pamp[e, j] / (2.0 * np.pi * np.sqrt(det))
                par[p, 4] = mu[e, 0] + pmean[e, j, 0]
                par[p, 5] = mu[e, 1] + pmean[e, j, 1]
                par[p, 6] = vscale[k]
        x0 = box[e, 0]
        y0 = box[e, 1]
        nx = box[e, 2]
        ny = box[e, 3]
        for i in range(ny):
            for c in range(6):
                for t in range(nx):
                    buf[c, t] = 0.0
            for p in range(npair):
                norm = par[p, 3]
                if norm == 0.0:
                    continue
                ixx = par[p, 0]
                ixy = par[p, 1]
                iyy = par[p, 2]
                v = par[p, 6]
                dy = float(y0 + i) - par[p, 5]
                # the pixel of the row nearest the Gaussian's maximum along it
                t0 = int(np.floor(par[p, 4] - ixy * dy / ixx - x0 + 0.5))
                t0 = min(max(t0, 0), nx - 1)
                dx0 = float(x0 + t0) - par[p, 4]
                q0 = ixx * dx0 * dx0 + 2.0 * ixy * dx0 * dy + iyy * dy * dy
                if q0 > _QMAX:
                    continue
                # f = exp(-q/2) (the amplitude may be negative: g = norm f)
                f0 = np.exp(-0.5 * q0)
                dec = np.exp(-ixx)
                # rightwards: q(dx + 1) - q(dx) = ixx (2 dx + 1) + 2 ixy dy
                f = f0
                ratio = np.exp(-0.5 * (ixx * (2.0 * dx0 + 1.0) + 2.0 * ixy * dy))
                for t in range(t0, nx):
                    if f < emin:
                        break
                    g = norm * f
                    dx = dx0 + float(t - t0)
                    buf[0, t] += g
                    if deriv != 0:
                        wx = ixx * dx + ixy * dy
                        wy = ixy * dx + iyy * dy
                        buf[1, t] += g * wx
                        buf[2, t] += g * wy
                        vg = v * g
                        buf[3, t] += 0.5 * vg * (wx * wx - ixx)
                        buf[4, t] += vg * (wx * wy - ixy)
                        buf[5, t] += 0.5 * vg * (wy * wy - iyy)
                    f *= ratio
                    ratio *= dec
                # leftwards: q(dx - 1) - q(dx) = ixx (1 - 2 dx) - 2 ixy dy
                ratio = np.exp(-0.5 * (ixx * (1.0 - 2.0 * dx0) - 2.0 * ixy * dy))
                f = f0 * ratio
                ratio *= dec
                for t in range(t0 - 1, -1, -1):
                    if f < emin:
                        break
                    g = norm * f
                    dx = dx0 + float(t - t0)
                    buf[0, t] += g
                    if deriv != 0:
                        wx = ixx * dx + ixy * dy
                        wy = ixy * dx + iyy * dy
                        buf[1, t] += g * wx
                        buf[2, t] += g * wy
                        vg = v * g
                        buf[3, t] += 0.5 * vg * (wx * wx - ixx)
                        buf[4, t] += vg * (wx * wy - ixy)
                        buf[5, t] += 0.5 * vg * (wy * wy - iyy)
                    f *= ratio
                    ratio *= dec
            row = start[e] + i * nx
            for t in range(nx):
                wn = w[row + t]
                if wn <= 0.0:
                    continue
                dn = data[row + t]
                if deriv != 0:
                    for c in range(6):
                        z[c] = buf[c, t]
                    z[6] = dn
                    for a in range(7):
                        wa = wn * z[a]
                        for b in range(a, 7):
                            out[e, a, b] += wa * z[b]
                else:
                    m = buf[0, t]
                    out[e, 0, 0] += wn * m * m
                    out[e, 0, 6] += wn * m * dn
                    out[e, 6, 6] += wn * dn * dn
        for a in range(7):
            for b in range(a + 1, 7):
                out[e, b, a] = out[e, a, b]
