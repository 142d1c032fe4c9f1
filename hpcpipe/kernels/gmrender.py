"""Rendering of PSF-convolved Gaussian mixtures into a pixel grid, with derivatives.

The model of one object on one image is a Gaussian mixture convolved analytically with the
Gaussian mixture of the image's PSF: with the profile's amplitudes ``amp[k]`` and variance
scales ``vscale[k]`` (a profile of unit covariance ``S`` is ``sum_k amp[k] N(0, vscale[k] S)``)
and the PSF's amplitudes ``pamp[j]``, offsets ``pmean[j]`` and covariances ``pcov[j]``,
the value at pixel centre ``p`` is::

    m(p) = sum_kj amp[k] pamp[j] N(p; mu + pmean[j], C_kj),   C_kj = vscale[k] S + pcov[j]

with ``N(p; c, C) = exp(-d' C^-1 d / 2) / (2 pi sqrt(det C))``, ``d = p - c``. Covariances
are given as ``(xx, xy, yy)``. A point source is ``amp = [1]``, ``vscale = [0]``. Pixel
positions are 0-based with pixel centres at integers; the stamp's first pixel is at
``(x0, y0)``. The PSF mixture, fitted to a pixelised PSF image, carries the pixel response.

With ``deriv``, the derivatives of ``m`` are returned as well::

    dm/dmu   = sum G w                      (w = C^-1 d)
    dm/dSxx  = sum vscale G (wx**2 - (C^-1)xx) / 2
    dm/dSxy  = sum vscale G (wx wy - (C^-1)xy)       (Sxy is the one off-diagonal parameter)
    dm/dSyy  = sum vscale G (wy**2 - (C^-1)yy) / 2

A Gaussian is skipped where ``d' C^-1 d > 73.7`` (its value below ``1e-16`` of its peak).
The compiled kernel (``pythran/gmrender.py``) computes the same sums pixel by pixel; the two
agree to rounding (tests/test_multifit.py).
"""

from __future__ import annotations

import numpy as np

from hpcpipe.kernels._loader import load_native

__all__ = ["gm_moments", "gm_moments_reference", "gm_render", "gm_render_reference"]

_QMAX = 73.7


def _as_mixture(amp, vscale, pamp, pmean, pcov, s, mu):  # type: ignore[no-untyped-def]
    amp = np.ascontiguousarray(amp, dtype=np.float64).ravel()
    vscale = np.ascontiguousarray(vscale, dtype=np.float64).ravel()
    pamp = np.ascontiguousarray(pamp, dtype=np.float64).ravel()
    pmean = np.ascontiguousarray(pmean, dtype=np.float64).reshape(-1, 2)
    pcov = np.ascontiguousarray(pcov, dtype=np.float64).reshape(-1, 3)
    s = np.ascontiguousarray(s, dtype=np.float64).ravel()
    mu = np.ascontiguousarray(mu, dtype=np.float64).ravel()
    if amp.shape != vscale.shape or pamp.shape[0] != pmean.shape[0] \
            or pamp.shape[0] != pcov.shape[0] or s.shape != (3,) or mu.shape != (2,):
        raise ValueError(f"gm_render: inconsistent shapes: amp {amp.shape}, vscale "
                         f"{vscale.shape}, pamp {pamp.shape}, pmean {pmean.shape}, pcov "
                         f"{pcov.shape}, S {s.shape}, mu {mu.shape}")
    return amp, vscale, pamp, pmean, pcov, s, mu


def _terms(amp, vscale, pamp, pmean, pcov, s, mu, xx, yy, deriv):  # type: ignore[no-untyped-def]
    """The model and (with ``deriv``) its 5 derivatives at pixel centres ``(xx, yy)``."""
    shape = np.broadcast(xx, yy).shape
    out = np.zeros((6 if deriv else 1,) + shape)
    for k in range(amp.size):
        for j in range(pamp.size):
            if pamp[j] == 0.0:
                continue
            cxx, cxy, cyy = vscale[k] * s + pcov[j]
            det = cxx * cyy - cxy * cxy
            ixx, ixy, iyy = cyy / det, -cxy / det, cxx / det
            norm = amp[k] * pamp[j] / (2.0 * np.pi * np.sqrt(det))
            dx = xx - (mu[0] + pmean[j, 0])
            dy = yy - (mu[1] + pmean[j, 1])
            wx = ixx * dx + ixy * dy
            wy = ixy * dx + iyy * dy
            q = dx * wx + dy * wy
            g = np.where(q > _QMAX, 0.0, norm * np.exp(-0.5 * np.minimum(q, _QMAX)))
            out[0] += g
            if deriv:
                v = vscale[k] * g
                out[1] += g * wx
                out[2] += g * wy
                out[3] += 0.5 * v * (wx * wx - ixx)
                out[4] += v * (wx * wy - ixy)
                out[5] += 0.5 * v * (wy * wy - iyy)
    return out


def gm_render_reference(amp: np.ndarray, vscale: np.ndarray, pamp: np.ndarray,
                        pmean: np.ndarray, pcov: np.ndarray, s: np.ndarray, mu: np.ndarray,
                        x0: int, y0: int, nx: int, ny: int, deriv: bool = True) -> np.ndarray:
    """NumPy reference of :func:`gm_render` (same arguments and result)."""
    amp, vscale, pamp, pmean, pcov, s, mu = _as_mixture(amp, vscale, pamp, pmean, pcov, s, mu)
    xx = np.arange(x0, x0 + nx, dtype=np.float64)[None, :]
    yy = np.arange(y0, y0 + ny, dtype=np.float64)[:, None]
    return _terms(amp, vscale, pamp, pmean, pcov, s, mu, xx, yy, deriv)


def gm_render(amp: np.ndarray, vscale: np.ndarray, pamp: np.ndarray, pmean: np.ndarray,
              pcov: np.ndarray, s: np.ndarray, mu: np.ndarray, x0: int, y0: int, nx: int,
              ny: int, deriv: bool = True) -> np.ndarray:
    """Render the PSF-convolved mixture on an ``ny x nx`` stamp whose first pixel is ``(x0, y0)``.

    Parameters
    ----------
    amp, vscale : numpy.ndarray
        The profile's amplitudes (sum 1 for a unit-flux profile) and variance scales, ``(K,)``.
    pamp, pmean, pcov : numpy.ndarray
        The PSF mixture: amplitudes ``(J,)``, offsets ``(J, 2)`` and covariances ``(J, 3)``
        (``xx, xy, yy``, pixels**2).
    s : numpy.ndarray
        The profile's unit covariance in pixels, ``(xx, xy, yy)``.
    mu : numpy.ndarray
        The centre ``(x, y)``, pixels.
    x0, y0, nx, ny : int
        The stamp.
    deriv : bool
        Whether to return the derivatives too.

    Returns
    -------
    numpy.ndarray
        ``(6, ny, nx)`` with ``deriv`` (model, d/dmu_x, d/dmu_y, d/dSxx, d/dSxy, d/dSyy),
        else ``(1, ny, nx)``.
    """
    args = _as_mixture(amp, vscale, pamp, pmean, pcov, s, mu)
    native = load_native("gmrender")
    if native is None:
        return gm_render_reference(*args, x0, y0, nx, ny, deriv)
    out = np.empty((6 if deriv else 1, ny, nx))
    native.gm_render(*args, int(x0), int(y0), int(nx), int(ny), int(bool(deriv)), out)
    return out


def _moment_args(amp, vscale, pamp, pmean, pcov, s, mu, px, py, data, w, start
                 ):  # type: ignore[no-untyped-def]
    f64 = np.float64
    amp = np.ascontiguousarray(amp, dtype=f64).ravel()
    vscale = np.ascontiguousarray(vscale, dtype=f64).ravel()
    pamp = np.ascontiguousarray(pamp, dtype=f64)
    ne = pamp.shape[0] if pamp.ndim == 2 else -1
    pmean = np.ascontiguousarray(pmean, dtype=f64)
    pcov = np.ascontiguousarray(pcov, dtype=f64)
    s = np.ascontiguousarray(s, dtype=f64)
    mu = np.ascontiguousarray(mu, dtype=f64)
    px, py, data, w = (np.ascontiguousarray(a, dtype=f64).ravel() for a in (px, py, data, w))
    start = np.ascontiguousarray(start, dtype=np.int64).ravel()
    nj = pamp.shape[1] if ne >= 0 else -1
    if (ne < 0 or amp.shape != vscale.shape or pmean.shape != (ne, nj, 2)
            or pcov.shape != (ne, nj, 3) or s.shape != (ne, 3) or mu.shape != (ne, 2)
            or not (px.size == py.size == data.size == w.size) or start.shape != (ne + 1,)
            or start[0] != 0 or start[-1] != px.size or np.any(np.diff(start) < 0)):
        raise ValueError(f"gm_moments: inconsistent shapes: amp {amp.shape}, vscale "
                         f"{vscale.shape}, pamp {pamp.shape}, pmean {pmean.shape}, pcov "
                         f"{pcov.shape}, S {s.shape}, mu {mu.shape}, pixels {px.size}, "
                         f"start {start.tolist()[:3]}...")
    return amp, vscale, pamp, pmean, pcov, s, mu, px, py, data, w, start


def gm_moments_reference(amp: np.ndarray, vscale: np.ndarray, pamp: np.ndarray,
                         pmean: np.ndarray, pcov: np.ndarray, s: np.ndarray, mu: np.ndarray,
                         px: np.ndarray, py: np.ndarray, data: np.ndarray, w: np.ndarray,
                         start: np.ndarray, deriv: bool = True) -> np.ndarray:
    """NumPy reference of :func:`gm_moments` (same arguments and result)."""
    (amp, vscale, pamp, pmean, pcov, s, mu, px, py, data, w,
     start) = _moment_args(amp, vscale, pamp, pmean, pcov, s, mu, px, py, data, w, start)
    ne = pamp.shape[0]
    out = np.zeros((ne, 7, 7))
    for e in range(ne):
        sl = slice(start[e], start[e + 1])
        use = w[sl] > 0
        t = _terms(amp, vscale, pamp[e], pmean[e], pcov[e], s[e], mu[e], px[sl][use],
                   py[sl][use], deriv)
        ww, dd = w[sl][use], data[sl][use]
        if deriv:
            z = np.vstack([t, dd[None, :]])
            out[e] = (z * ww) @ z.T
        else:
            m = t[0]
            out[e, 0, 0] = np.sum(ww * m * m)
            out[e, 0, 6] = out[e, 6, 0] = np.sum(ww * m * dd)
            out[e, 6, 6] = np.sum(ww * dd * dd)
    return out


def gm_moments(amp: np.ndarray, vscale: np.ndarray, pamp: np.ndarray, pmean: np.ndarray,
               pcov: np.ndarray, s: np.ndarray, mu: np.ndarray, px: np.ndarray,
               py: np.ndarray, data: np.ndarray, w: np.ndarray, start: np.ndarray,
               deriv: bool = True) -> np.ndarray:
    """The weighted moments of the model, its derivatives and the data over several epochs.

    The epochs' pixels are concatenated: epoch ``e`` has the pixels ``start[e]:start[e+1]``
    of ``px``, ``py`` (pixel centres, its own pixel coordinates), ``data`` and ``w`` (inverse
    variance; pixels with ``w <= 0`` are left out). Each epoch has its own PSF mixture
    (``pamp`` ``(E, J)``, zero amplitudes for unused Gaussians; ``pmean`` ``(E, J, 2)``;
    ``pcov`` ``(E, J, 3)``), unit covariance ``s`` ``(E, 3)`` and centre ``mu`` ``(E, 2)`` in
    its pixels; the profile (``amp``, ``vscale``) is shared.

    Returns
    -------
    numpy.ndarray
        ``(E, 7, 7)``: ``sum w z z'`` with ``z = (m, dm/dmu_x, dm/dmu_y, dm/dSxx, dm/dSxy,
        dm/dSyy, data)``. Without ``deriv`` only the ``(0, 0)``, ``(0, 6)``, ``(6, 0)`` and
        ``(6, 6)`` entries are computed (the rest is 0): what a trial step's chi^2 and linear
        fluxes need.
    """
    args = _moment_args(amp, vscale, pamp, pmean, pcov, s, mu, px, py, data, w, start)
    native = load_native("gmrender")
    if native is None:
        return gm_moments_reference(*args, deriv)
    out = np.empty((args[2].shape[0], 7, 7))
    native.gm_moments(*args, int(bool(deriv)), out)
    return out
