"""Photometric calibration: a zero point from stars matched to a reference catalog.

The zero point is the inverse-variance weighted mean, with iterative sigma clipping, of
``ref_mag + 2.5 log10(instFlux)`` over the matched stars (LSST's ``PhotoCalTask`` without
colour terms: the simulated camera's bands are the reference catalog's). Its error is the
clipped scatter divided by the square root of the number of stars, plus nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcpipe.errors import HpcpipeError
from hpcpipe.image.calib import AB_NANOJANSKY_ZERO_POINT, PhotoCalib

__all__ = ["PhotoCalError", "ZeroPointFit", "fit_zero_point"]


class PhotoCalError(HpcpipeError, RuntimeError):
    """Too few usable stars to compute a zero point."""


@dataclass
class ZeroPointFit:
    """The result of :func:`fit_zero_point`.

    Attributes
    ----------
    photo_calib : PhotoCalib
        Zero point and its error.
    used : numpy.ndarray
        Which stars the final mean used.
    scatter : float
        Clipped standard deviation of the stars' zero points, mag.
    """

    photo_calib: PhotoCalib
    used: np.ndarray
    scatter: float


def fit_zero_point(instflux: np.ndarray, instflux_err: np.ndarray, ref_flux_njy: np.ndarray,
                   ref_flux_err_njy: np.ndarray, *, nsigma: float = 3.0, niter: int = 5,
                   min_stars: int = 3, min_snr: float = 10.0) -> ZeroPointFit:
    """Zero point of an exposure from its matched stars.

    Parameters
    ----------
    instflux, instflux_err : numpy.ndarray
        Measured fluxes (counts) and errors.
    ref_flux_njy, ref_flux_err_njy : numpy.ndarray
        Reference fluxes (nJy) and errors in the same band.
    nsigma, niter : float, int
        Clipping of outliers.
    min_stars : int
        Fewer usable stars is an error.
    min_snr : float
        Fainter measurements are left out.

    Raises
    ------
    PhotoCalError
    """
    flux = np.asarray(instflux, float)
    err = np.asarray(instflux_err, float)
    ref = np.asarray(ref_flux_njy, float)
    ref_err = np.asarray(ref_flux_err_njy, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        good = (flux > 0) & (ref > 0) & (flux / err > min_snr) & np.isfinite(err)
        zp = AB_NANOJANSKY_ZERO_POINT - 2.5 * np.log10(ref) + 2.5 * np.log10(flux)
        sigma = 2.5 / np.log(10.0) * np.hypot(err / flux, ref_err / ref)
    used = good & np.isfinite(zp) & np.isfinite(sigma) & (sigma > 0)
    if used.sum() < min_stars:
        raise PhotoCalError(f"only {int(used.sum())} stars usable for the zero point; "
                            f"at least {min_stars} are needed")
    mean, scatter = 0.0, 0.0
    for _ in range(max(niter, 1)):
        w = 1.0 / sigma[used] ** 2
        mean = float(np.sum(w * zp[used]) / np.sum(w))
        scatter = float(np.std(zp[used]))
        centre = float(np.median(zp[used]))
        keep = used & (np.abs(zp - centre) < nsigma * max(scatter, 1e-4))
        if keep.sum() < min_stars or keep.sum() == used.sum():
            break
        used = keep
    error = scatter / np.sqrt(used.sum())
    return ZeroPointFit(PhotoCalib(mean, float(error)), used, scatter)
