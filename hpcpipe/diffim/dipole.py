"""Dipoles: a positive and a negative PSF lobe fitted jointly (LSST's ``DipoleFitPlugin``).

A badly subtracted pair (a small astrometric misregistration, a star with proper motion, a
mover slightly trailed) leaves a positive and a negative lobe side by side on the difference
image. The model is

    D(x, y) = F_pos P(x - x_pos, y - y_pos) - F_neg P(x - x_neg, y - y_neg)

with ``P`` the difference image's PSF (unit sum; the PSF image at the pair's midpoint,
shifted by cubic-spline interpolation), fitted by non-linear least squares (weights: the
inverse variance) to the pixels within ``radius`` of either lobe's starting position. The
errors are those of the covariance matrix ``(J^T W J)^-1`` at the solution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates, spline_filter
from scipy.optimize import least_squares

__all__ = ["DipoleFit", "fit_dipole"]


@dataclass
class DipoleFit:
    """The result of :func:`fit_dipole` (parent pixel coordinates, image units).

    Attributes
    ----------
    pos_flux, pos_flux_err, neg_flux, neg_flux_err : float
        The lobes' fluxes (both positive numbers) and errors.
    pos_x, pos_y, neg_x, neg_y : float
        The lobes' centres.
    chi2, dof : float
        Chi-square of the fit and degrees of freedom.
    success : bool
        The optimiser converged to finite values.
    """

    pos_flux: float
    pos_flux_err: float
    neg_flux: float
    neg_flux_err: float
    pos_x: float
    pos_y: float
    neg_x: float
    neg_y: float
    chi2: float
    dof: float
    success: bool

    @property
    def centroid(self) -> tuple[float, float]:
        """The midpoint between the lobes."""
        return 0.5 * (self.pos_x + self.neg_x), 0.5 * (self.pos_y + self.neg_y)

    @property
    def separation(self) -> float:
        """Distance between the lobes, pixels."""
        return float(np.hypot(self.pos_x - self.neg_x, self.pos_y - self.neg_y))

    @property
    def orientation(self) -> float:
        """Angle (degrees, from +x towards +y) of the vector from the negative to the
        positive lobe."""
        return float(np.degrees(np.arctan2(self.pos_y - self.neg_y, self.pos_x - self.neg_x)))


def fit_dipole(image: np.ndarray, variance: np.ndarray, usable: np.ndarray,
               psf_image: np.ndarray, xy0: tuple[int, int], pos: tuple[float, float, float],
               neg: tuple[float, float, float], radius: float) -> DipoleFit:
    """Fit a dipole to a difference image.

    Parameters
    ----------
    image, variance : numpy.ndarray
        The difference image and its variance.
    usable : numpy.ndarray
        Boolean: pixels that may be used (not masked, finite).
    psf_image : numpy.ndarray
        The PSF at the pair (odd size, centred, unit sum).
    xy0 : tuple of int
        Parent coordinates of ``image[0, 0]``.
    pos, neg : tuple of float
        Starting ``(x, y, flux)`` of the positive and negative lobes (fluxes positive).
    radius : float
        Pixels within this distance of either starting position are fitted.

    Returns
    -------
    DipoleFit
    """
    ny, nx = image.shape
    x0, y0 = xy0
    lo_x = int(np.floor(min(pos[0], neg[0]) - radius)) - x0
    hi_x = int(np.ceil(max(pos[0], neg[0]) + radius)) - x0
    lo_y = int(np.floor(min(pos[1], neg[1]) - radius)) - y0
    hi_y = int(np.ceil(max(pos[1], neg[1]) + radius)) - y0
    lo_x, lo_y = max(lo_x, 0), max(lo_y, 0)
    hi_x, hi_y = min(hi_x, nx - 1), min(hi_y, ny - 1)
    failed = DipoleFit(*(float("nan"),) * 10, success=False)
    if hi_x <= lo_x or hi_y <= lo_y:
        return failed
    yy, xx = np.mgrid[lo_y:hi_y + 1, lo_x:hi_x + 1]
    px, py = xx + x0, yy + y0
    near = ((np.hypot(px - pos[0], py - pos[1]) <= radius)
            | (np.hypot(px - neg[0], py - neg[1]) <= radius))
    sel = near & usable[yy, xx] & (variance[yy, xx] > 0)
    if sel.sum() < 8:
        return failed
    data = image[yy, xx][sel].astype(np.float64)
    sigma = np.sqrt(variance[yy, xx][sel].astype(np.float64))
    px, py = px[sel].astype(np.float64), py[sel].astype(np.float64)
    coeffs = spline_filter(np.asarray(psf_image, dtype=np.float64), order=3)
    half_y, half_x = (s // 2 for s in psf_image.shape)

    # the finite-difference Jacobian moves one parameter at a time: a flux step or the other
    # lobe's step leaves a lobe's position unchanged, so its last images are reused
    images: dict[tuple[float, float], np.ndarray] = {}

    def lobe(xc: float, yc: float) -> np.ndarray:
        key = (float(xc), float(yc))
        found = images.get(key)
        if found is None:
            if len(images) >= 8:
                images.clear()
            found = images[key] = map_coordinates(
                coeffs, [py - yc + half_y, px - xc + half_x], order=3, mode="constant",
                cval=0.0, prefilter=False)
        return found

    def residual(p: np.ndarray) -> np.ndarray:
        model = p[0] * lobe(p[1], p[2]) - p[3] * lobe(p[4], p[5])
        return (data - model) / sigma

    start = np.array([max(pos[2], 1e-3), pos[0], pos[1], max(neg[2], 1e-3), neg[0], neg[1]],
                     dtype=np.float64)
    scale = np.array([max(abs(start[0]), 1.0), 1.0, 1.0, max(abs(start[3]), 1.0), 1.0, 1.0])
    try:
        res = least_squares(residual, start, x_scale=scale, method="trf", max_nfev=200)
    except (ValueError, np.linalg.LinAlgError):
        return failed
    p = res.x
    try:
        jac = np.asarray(res.jac)
        cov = np.linalg.inv(jac.T @ jac)
        err = np.sqrt(np.abs(np.diag(cov)))
    except np.linalg.LinAlgError:
        err = np.full(6, np.nan)
    chi2 = float(np.sum(res.fun**2))
    ok = bool(res.success and np.all(np.isfinite(p)))
    return DipoleFit(float(p[0]), float(err[0]), float(p[3]), float(err[3]), float(p[1]),
                     float(p[2]), float(p[4]), float(p[5]), chi2, float(data.size - 6), ok)
