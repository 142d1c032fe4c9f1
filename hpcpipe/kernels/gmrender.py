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

from typing import Any

import numpy as np

from hpcpipe.kernels._loader import load_native

__all__ = ["gm_moments", "gm_moments_reference", "gm_render", "gm_render_reference"]

_QMAX = 73.7


def _as_mixture(amp: Any, vscale: Any, pamp: Any, pmean: Any, pcov: Any, s: Any, mu: Any
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                           np.ndarray]:
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


def _terms(amp, vscale, pamp, pmean, pcov, s, mu, xx, yy, deriv):
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


def _moment_args(amp: Any, vscale: Any, pamp: Any, pmean: Any, pcov: Any, s: Any, mu: Any,
                 box: Any, data: Any, w: Any, start: Any
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                            np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    f64 = np.float64
    amp = np.ascontiguousarray(amp, dtype=f64).ravel()
    vscale = np.ascontiguousarray(vscale, dtype=f64).ravel()
    pamp = np.ascontiguousarray(pamp, dtype=f64)
    ne = pamp.shape[0] if pamp.ndim == 2 else -1
    pmean = np.ascontiguousarray(pmean, dtype=f64)
    pcov = np.ascontiguousarray(pcov, dtype=f64)
    s = np.ascontiguousarray(s, dtype=f64)
    mu = np.ascontiguousarray(mu, dtype=f64)
    box = np.ascontiguousarray(box, dtype=np.int64)
    data, w = (np.ascontiguousarray(a, dtype=f64).ravel() for a in (data, w))
    start = np.ascontiguousarray(start, dtype=np.int64).ravel()
    nj = pamp.shape[1] if ne >= 0 else -1
    ok = (ne >= 0 and amp.shape == vscale.shape and pmean.shape == (ne, nj, 2)
          and pcov.shape == (ne, nj, 3) and s.shape == (ne, 3) and mu.shape == (ne, 2)
          and box.shape == (ne, 4) and data.size == w.size and start.shape == (ne + 1,))
    if ok:
        sizes = box[:, 2] * box[:, 3]
        ok = (bool(np.all(box[:, 2:] >= 0)) and start[0] == 0
              and bool(np.all(np.diff(start) == sizes)) and start[-1] == data.size)
    if not ok:
        raise ValueError(f"gm_moments: inconsistent shapes: amp {amp.shape}, vscale "
                         f"{vscale.shape}, pamp {pamp.shape}, pmean {pmean.shape}, pcov "
                         f"{pcov.shape}, S {s.shape}, mu {mu.shape}, box {box.shape}, pixels "
                         f"{data.size}/{w.size}, start {start.shape} (each epoch's pixels are "
                         "its box's nx * ny, row by row)")
    return amp, vscale, pamp, pmean, pcov, s, mu, box, data, w, start


def gm_moments_reference(amp: np.ndarray, vscale: np.ndarray, pamp: np.ndarray,
                         pmean: np.ndarray, pcov: np.ndarray, s: np.ndarray, mu: np.ndarray,
                         box: np.ndarray, data: np.ndarray, w: np.ndarray, start: np.ndarray,
                         deriv: bool = True) -> np.ndarray:
    """NumPy reference of :func:`gm_moments` (same arguments and result)."""
    (amp, vscale, pamp, pmean, pcov, s, mu, box, data, w,
     start) = _moment_args(amp, vscale, pamp, pmean, pcov, s, mu, box, data, w, start)
    ne = pamp.shape[0]
    out = np.zeros((ne, 7, 7))
    for e in range(ne):
        x0, y0, nx, ny = (int(v) for v in box[e])
        sl = slice(start[e], start[e + 1])
        use = w[sl] > 0
        xx = np.arange(x0, x0 + nx, dtype=np.float64)[None, :]
        yy = np.arange(y0, y0 + ny, dtype=np.float64)[:, None]
        t = _terms(amp, vscale, pamp[e], pmean[e], pcov[e], s[e], mu[e], xx, yy, deriv)
        t = t.reshape(t.shape[0], -1)[:, use]
        ww, dd = w[sl][use], data[sl][use]
        if deriv:
            zz = np.vstack([t, dd[None, :]])
            out[e] = (zz * ww) @ zz.T
        else:
            m = t[0]
            out[e, 0, 0] = np.sum(ww * m * m)
            out[e, 0, 6] = out[e, 6, 0] = np.sum(ww * m * dd)
            out[e, 6, 6] = np.sum(ww * dd * dd)
    return out


def gm_moments(amp: np.ndarray, vscale: np.ndarray, pamp: np.ndarray, pmean: np.ndarray,
               pcov: np.ndarray, s: np.ndarray, mu: np.ndarray, box: np.ndarray,
               data: np.ndarray, w: np.ndarray, start: np.ndarray, deriv: bool = True
               ) -> np.ndarray:
    """The weighted moments of the model, its derivatives and the data over several epochs.

    Epoch ``e`` is the stamp ``box[e] = (x0, y0, nx, ny)`` (its first pixel in its own pixel
    coordinates, and its size); its pixels are ``data`` and ``w`` (inverse variance; pixels
    with ``w <= 0`` are left out) ``start[e]:start[e+1]``, row by row. Each epoch has its own
    PSF mixture (``pamp`` ``(E, J)``, zero amplitudes for unused Gaussians; ``pmean``
    ``(E, J, 2)``; ``pcov`` ``(E, J, 3)``), unit covariance ``s`` ``(E, 3)`` and centre ``mu``
    ``(E, 2)`` in its pixels; the profile (``amp``, ``vscale``) is shared.

    The compiled kernel evaluates each Gaussian along a row with one exponential at the pixel
    nearest its maximum on the row and the ratios of neighbouring pixels outwards (two
    multiplications a pixel), stopping where it falls below ``exp(-73.7/2)`` of its peak; the
    reference evaluates every exponential. They agree to rounding.

    Returns
    -------
    numpy.ndarray
        ``(E, 7, 7)``: ``sum w z z'`` with ``z = (m, dm/dmu_x, dm/dmu_y, dm/dSxx, dm/dSxy,
        dm/dSyy, data)``. Without ``deriv`` only the ``(0, 0)``, ``(0, 6)``, ``(6, 0)`` and
        ``(6, 6)`` entries are computed (the rest is 0): what a trial step's chi^2 and linear
        fluxes need.
    """
    args = _moment_args(amp, vscale, pamp, pmean, pcov, s, mu, box, data, w, start)
    native = load_native("gmrender")
    if native is None:
        return gm_moments_reference(*args, deriv)
    out = np.empty((args[2].shape[0], 7, 7))
    native.gm_moments(*args, int(bool(deriv)), out)
    return out
