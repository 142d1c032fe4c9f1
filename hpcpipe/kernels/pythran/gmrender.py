# Pythran source of hpcpipe.kernels._gmrender (compiled by setup.py). Reference: ../gmrender.py
# (gm_render_reference; the model and its derivatives are described in that module's docstring).
#pythran export gm_render(float64[:], float64[:], float64[:], float64[:,:] order(C), float64[:,:] order(C), float64[:], float64[:], int, int, int, int, int, float64[:,:,:] order(C))
#pythran export gm_moments(float64[:], float64[:], float64[:,:] order(C), float64[:,:,:] order(C), float64[:,:,:] order(C), float64[:,:] order(C), float64[:,:] order(C), float64[:], float64[:], float64[:], float64[:], int64[:], int, float64[:,:,:] order(C))
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


def gm_moments(amp, vscale, pamp, pmean, pcov, s, mu, px, py, data, w, start, deriv, out):
    """Per epoch e, out[e] = sum over its pixels of w z z' with z = (m, dm/dmu_x, dm/dmu_y,
    dm/dSxx, dm/dSxy, dm/dSyy, data) (only the m and data entries without ``deriv``)."""
    nk = amp.shape[0]
    ne = pamp.shape[0]
    nj = pamp.shape[1]
    npair = nk * nj
    par = np.empty((npair, 7))
    z = np.empty(7)
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
        for n in range(start[e], start[e + 1]):
            wn = w[n]
            if wn <= 0.0:
                continue
            m = 0.0
            gx = 0.0
            gy = 0.0
            sxx = 0.0
            sxy = 0.0
            syy = 0.0
            for p in range(npair):
                if par[p, 3] == 0.0:
                    continue
                dx = px[n] - par[p, 4]
                dy = py[n] - par[p, 5]
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
            if deriv != 0:
                z[0] = m
                z[1] = gx
                z[2] = gy
                z[3] = sxx
                z[4] = sxy
                z[5] = syy
                z[6] = data[n]
                for a in range(7):
                    wa = wn * z[a]
                    for b in range(a, 7):
                        out[e, a, b] += wa * z[b]
            else:
                out[e, 0, 0] += wn * m * m
                out[e, 0, 6] += wn * m * data[n]
                out[e, 6, 6] += wn * data[n] * data[n]
        for a in range(7):
            for b in range(a + 1, 7):
                out[e, b, a] = out[e, a, b]
