"""A PSF image approximated by a small Gaussian mixture (the PSF of the analytic convolution).

:func:`fit_psf_mixture` fits ``n`` Gaussians with a common centre to a pixelised PSF image
(the image's pixel response is part of each Gaussian): a Levenberg-Marquardt fit of the
centre, per Gaussian its ellipse ``(eta1, eta2, ln sigma)`` and the amplitudes (which may be
negative), with analytic derivatives, from two starting sets of widths (the better kept). The
amplitudes are then scaled to sum 1 (a PSF image is normalised to a sum of 1 over its stamp;
the mixture to an integral of 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from hpcpipe.errors import HpcpipeError
from hpcpipe.kernels.gmrender import gm_render
from hpcpipe.meas.multifit.profiles import unit_covariance

__all__ = ["PsfMixture", "PsfFitError", "fit_psf_mixture"]


# starting widths of the Gaussians, in units of the PSF core's width
_STARTS = ((0.8, 1.5, 3.0, 5.0), (0.5, 1.0, 2.0, 4.0))


class PsfFitError(HpcpipeError, ValueError):
    """A PSF image that cannot be approximated (empty, not finite)."""


@dataclass(frozen=True)
class PsfMixture:
    """A PSF as a Gaussian mixture, in pixels, relative to the point source's position.

    Attributes
    ----------
    amp : numpy.ndarray
        ``(J,)``, sum 1.
    mean : numpy.ndarray
        ``(J, 2)``: offsets ``(x, y)`` of each Gaussian from the source position.
    cov : numpy.ndarray
        ``(J, 3)``: covariances ``(xx, xy, yy)``, pixels**2.
    residual : float
        RMS of the fit's residuals relative to the PSF image's peak.
    """

    amp: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    residual: float = 0.0

    @classmethod
    def gaussian(cls, sigma: float) -> PsfMixture:
        """A circular Gaussian PSF of width ``sigma`` pixels."""
        return cls(np.ones(1), np.zeros((1, 2)), np.array([[sigma * sigma, 0.0, sigma * sigma]]))

    def render(self, shape: tuple[int, int], x: float, y: float) -> np.ndarray:
        """The mixture on a ``shape`` grid, the source at pixel ``(x, y)`` of the grid."""
        return gm_render(np.ones(1), np.zeros(1), self.amp, self.mean, self.cov,
                         np.zeros(3), np.array([x, y]), 0, 0, shape[1], shape[0],
                         deriv=False)[0]


def _mixture(p: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    cov = np.empty((n, 3))
    for j in range(n):
        s = np.asarray(unit_covariance(p[2 + 3 * j], p[3 + 3 * j], p[4 + 3 * j]))
        cov[j] = s[0, 0], s[0, 1], s[1, 1]
    return p[:2], cov


def fit_psf_mixture(image: np.ndarray, n: int = 3) -> PsfMixture:
    """Fit ``n`` concentric Gaussians to the PSF ``image`` (centred on its middle pixel).

    Parameters
    ----------
    image : numpy.ndarray
        The PSF image, odd dimensions, the PSF centred at ``(h // 2, w // 2)``.
    n : int
        Number of Gaussians (1 to 4).

    Returns
    -------
    PsfMixture
        Offsets relative to the image's middle pixel.

    Raises
    ------
    PsfFitError
        If the image is not finite or has no positive flux.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or not np.all(np.isfinite(img)) or img.sum() <= 0:
        raise PsfFitError(f"PSF image of shape {img.shape} is not finite or has no flux")
    if not 1 <= n <= 4:
        raise PsfFitError(f"number of PSF Gaussians {n} must be 1 to 4")
    h, w = img.shape
    cy, cx = h // 2, w // 2
    yy, xx = np.mgrid[:h, :w]
    total = img.sum()
    pos = np.clip(img, 0, None)
    mx = (pos * xx).sum() / pos.sum()
    my = (pos * yy).sum() / pos.sum()
    core = pos * (np.hypot(xx - mx, yy - my) < 3.0 * max(1.0, (pos > 0.5 * pos.max()).sum()
                                                             ** 0.5))
    var = max(0.25, float(((core * ((xx - mx) ** 2 + (yy - my) ** 2)).sum()
                           / core.sum()) / 2.0))
    target = img.ravel() / total
    # parameters: the centre, then per Gaussian (eta1, eta2, ln sigma), then the amplitudes
    ns = 2 + 3 * n

    def terms(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each Gaussian's image and its derivatives (mu_x, mu_y, eta1, eta2, ln sigma)."""
        t = np.empty((n, h * w))
        d = np.empty((n, 5, h * w))
        for k in range(n):
            sig, dsig = unit_covariance(p[2 + 3 * k], p[3 + 3 * k], p[4 + 3 * k], deriv=True)
            out = gm_render(np.ones(1), np.ones(1), np.ones(1), np.zeros((1, 2)),
                            np.zeros((1, 3)), np.array([sig[0, 0], sig[0, 1], sig[1, 1]]),
                            p[:2], 0, 0, w, h, deriv=True).reshape(6, -1)
            t[k] = out[0]
            d[k, 0:2] = out[1:3]
            for i in range(3):
                d[k, 2 + i] = (out[3] * dsig[i, 0, 0] + out[4] * dsig[i, 0, 1]
                               + out[5] * dsig[i, 1, 1])
        return t, d

    def resid(p: np.ndarray) -> np.ndarray:
        t, _ = terms(p)
        return p[ns:] @ t - target

    def jac(p: np.ndarray) -> np.ndarray:
        t, d = terms(p)
        a = p[ns:]
        out = np.empty((h * w, ns + n))
        out[:, 0:2] = np.einsum("k,kin->ni", a, d[:, 0:2])
        for k in range(n):
            out[:, 2 + 3 * k:5 + 3 * k] = a[k] * d[k, 2:5].T
        out[:, ns:] = t.T
        return out

    # two starts (the Gaussians' widths in units of the core's), the better fit kept: one
    # start alone can end in a local minimum where two Gaussians merge
    fit = None
    for scales in _STARTS:
        p0 = [mx, my]
        for sc in scales[:n] if n > 1 else (1.0,):
            p0 += [0.0, 0.0, 0.5 * np.log(var) + np.log(sc)]
        p0 += [1.0 / n] * n
        start = np.array(p0)
        t0, _ = terms(start)
        start[ns:] = np.linalg.lstsq(t0.T, target, rcond=None)[0]
        # unconstrained (any real eta and ln sigma is a valid Gaussian): Levenberg-Marquardt
        trial = least_squares(resid, start, jac=jac, method="lm", x_scale="jac", xtol=1e-6,
                              ftol=1e-6, max_nfev=40)
        if fit is None or trial.cost < fit.cost:
            fit = trial
        if n == 1:
            break
    assert fit is not None  # the loop runs at least once
    amp = fit.x[ns:]
    mean, cov = _mixture(fit.x, n)
    model = amp @ terms(fit.x)[0]
    rms = float(np.sqrt(np.mean((model - target) ** 2)) / target.max())
    amp = amp / amp.sum()
    offsets = np.tile([mean[0] - cx, mean[1] - cy], (n, 1))
    return PsfMixture(amp, offsets, cov, rms)
