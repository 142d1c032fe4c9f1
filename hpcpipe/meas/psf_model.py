"""PSF estimation from the stars of an exposure: star selection and a pixel PSF model.

Star selection follows LSST's second-moment ("objectSize") star selector: among bright,
unflagged sources, stars are the tight cluster of the smallest sizes (galaxies are larger and
spread out, cosmic rays were already repaired). The size is ``sqrt((Ixx + Iyy) / 2)`` from the
adaptive moments; the cluster is found as the mode of the size histogram of the bright sources,
and stars are the sources within ``size_tolerance`` of it.

The model is a :class:`~hpcpipe.image.psf.PixelPsf` whose pixels vary as a polynomial over the
CCD (LSST's ``PcaPsf``/PSFEx idea, with the polynomial fitted directly per pixel): each star is
cut out, shifted to its exact centre by cubic-spline interpolation and scaled to unit
flux (its amplitude against the model); a weighted linear least-squares fit of every pixel's
value against the polynomial terms of the star's position (the weights: that pixel's noise in
each scaled stamp, as PSFEx's chi-square) gives the basis images. Stars whose chi-square is
far above the others' are rejected and the fit repeated. Beyond the radius where the mean
star falls below a thousandth of its peak the model is set to zero (those pixels hold only
noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import shift as nd_shift

from hpcpipe.errors import HpcpipeError
from hpcpipe.image.psf import PixelPsf

__all__ = ["PsfFitError", "PsfFit", "select_stars", "cut_star_stamps", "fit_pixel_psf"]


class PsfFitError(HpcpipeError, RuntimeError):
    """Too few usable stars to model the PSF."""


def select_stars(size: np.ndarray, snr: np.ndarray, flagged: np.ndarray, *,
                 min_snr: float = 50.0, size_tolerance: float = 0.12,
                 min_size: float = 0.6, bin_width: float = 0.05) -> np.ndarray:
    """Boolean selection of the point sources among measured sources.

    Parameters
    ----------
    size : numpy.ndarray
        ``sqrt((Ixx + Iyy) / 2)`` of each source, pixels (NaN where unmeasured).
    snr : numpy.ndarray
        Signal-to-noise ratio of each source.
    flagged : numpy.ndarray
        True where a source must not be used (saturated, edge, bad shape, blended).
    min_snr : float
        Faintest usable source.
    size_tolerance : float
        Largest fractional distance from the stellar size.
    min_size : float
        Smaller sources (hot pixels, left-over cosmic rays) are never stars, pixels.
    bin_width : float
        Width of the size histogram's bins, pixels.
    """
    size = np.asarray(size, float)
    candidates = (np.asarray(snr, float) > min_snr) & ~np.asarray(flagged, bool) & np.isfinite(
        size) & (size > min_size)
    if candidates.sum() == 0:
        return candidates
    sizes = size[candidates]
    edges = np.arange(sizes.min(), sizes.max() + 2 * bin_width, bin_width)
    hist, edges = np.histogram(sizes, bins=edges)
    # smooth over three bins so that a single noisy bin does not win
    smooth = np.convolve(hist, np.ones(3), mode="same")
    k = int(np.argmax(smooth))
    mode = 0.5 * (edges[k] + edges[k + 1])
    near = np.abs(sizes - mode) < size_tolerance * mode
    stellar = float(np.median(sizes[near])) if near.any() else mode
    return candidates & (np.abs(size - stellar) < size_tolerance * stellar)


def cut_star_stamps(image: np.ndarray, x: np.ndarray, y: np.ndarray, stamp_size: int,
                    bad: np.ndarray | None = None, *, normalise: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Cut-outs of each star, shifted to its exact centre and (``normalise``) scaled to unit
    sum.

    Returns
    -------
    stamps : numpy.ndarray
        ``(n, stamp_size, stamp_size)`` float64 (NaN rows for unusable stars).
    ok : numpy.ndarray
        Which stars were fully inside the image, free of bad pixels and of positive flux.
    """
    if stamp_size % 2 == 0:
        raise ValueError(f"PSF stamp size must be odd; got {stamp_size}")
    half = stamp_size // 2
    pad = 3
    h, w = image.shape
    stamps = np.full((len(x), stamp_size, stamp_size), np.nan)
    ok = np.zeros(len(x), bool)
    for k, (xs, ys) in enumerate(zip(x, y, strict=True)):
        cx, cy = int(np.floor(xs + 0.5)), int(np.floor(ys + 0.5))
        x0, y0 = cx - half - pad, cy - half - pad
        x1, y1 = cx + half + pad + 1, cy + half + pad + 1
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            continue
        if bad is not None and bad[y0 + pad:y1 - pad, x0 + pad:x1 - pad].any():
            continue
        cut = np.asarray(image[y0:y1, x0:x1], dtype=np.float64)
        if not np.isfinite(cut).all():
            continue
        moved = nd_shift(cut, (cy - ys, cx - xs), order=3, mode="nearest")[pad:-pad, pad:-pad]
        total = moved.sum()
        if total <= 0:
            continue
        stamps[k] = moved / total if normalise else moved
        ok[k] = True
    return stamps, ok


@dataclass
class PsfFit:
    """The result of :func:`fit_pixel_psf`.

    Attributes
    ----------
    psf : PixelPsf
        The model.
    used : numpy.ndarray
        Which of the candidate stars the final fit used.
    residual : numpy.ndarray
        Each candidate's rms residual against the model, relative to the model's peak (NaN
        for stars that could not be cut out).
    """

    psf: PixelPsf
    used: np.ndarray
    residual: np.ndarray


def _robust_var(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return np.nan
    return float((1.4826 * np.median(np.abs(v - np.median(v)))) ** 2)


def fit_pixel_psf(image: np.ndarray, x: np.ndarray, y: np.ndarray,
                  bbox: tuple[float, float, float, float], *, stamp_size: int = 25,
                  order: int = 2, bad: np.ndarray | None = None, nsigma: float = 4.0,
                  niter: int = 3, min_stars: int = 5,
                  variance: np.ndarray | None = None) -> PsfFit:
    """Fit a spatially varying pixel PSF to the stars at ``(x, y)``.

    Each star's stamp is scaled by its flux, fitted as the amplitude of the current model at
    its position (the sum of a whole stamp would add the sky noise of every pixel to each
    star's scale: 9% for a star of S/N 50 on a 25-pixel stamp), and every pixel of the model is
    a weighted least-squares fit over the stars with the weights of that pixel's noise in each
    scaled stamp (PSFEx's chi-square): bright stars count for more, as their signal to noise
    says. Without a variance plane the noise is the sky's, measured on each stamp's border.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted pixels.
    x, y : numpy.ndarray
        The stars' centroids (array coordinates).
    bbox : tuple of float
        ``(xmin, ymin, xmax, ymax)`` of the CCD, for the polynomial's scaling.
    stamp_size : int
        Odd width of the model image, pixels.
    order : int
        Polynomial order of the variation over the CCD; lowered automatically when there are
        fewer than three stars per term.
    bad : numpy.ndarray, optional
        True where pixels must not be used.
    nsigma, niter : float, int
        Stars whose chi-square against the model exceeds the median by ``nsigma`` robust
        widths are rejected, up to ``niter`` times.
    min_stars : int
        Fewer usable stars is an error.
    variance : numpy.ndarray, optional
        The variance plane (same shape as ``image``): the weights.

    Raises
    ------
    PsfFitError
        Fewer than ``min_stars`` usable stars.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    raw, ok = cut_star_stamps(image, x, y, stamp_size, bad, normalise=False)
    if ok.sum() < min_stars:
        raise PsfFitError(f"only {int(ok.sum())} usable PSF stars (of {len(x)} candidates); "
                          f"at least {min_stars} are needed")
    while order > 0 and ok.sum() < 3 * (order + 1) * (order + 2) // 2:
        order -= 1
    scaler = PixelPsf(np.zeros((1, 3, 3)) + 1, 0, bbox)
    u, v = scaler.scaled_position(x, y)
    terms = PixelPsf.monomials(u, v, order).T  # (n, n_terms)
    n, half = len(x), stamp_size // 2
    flat = raw.reshape(n, -1)
    yy, xx = np.mgrid[0:stamp_size, 0:stamp_size] - half
    radius = np.hypot(xx, yy)
    # each star's pixel noise: the variance plane (cut at the star's pixel: it varies slowly)
    # or the sky's, from the stamp's border
    noise = np.full(flat.shape, np.nan)
    border = (radius >= half - 1.5).ravel()
    for k in np.nonzero(ok)[0]:
        if variance is not None:
            cx, cy = int(np.floor(x[k] + 0.5)), int(np.floor(y[k] + 0.5))
            noise[k] = np.asarray(variance[cy - half:cy + half + 1, cx - half:cx + half + 1],
                                  dtype=np.float64).ravel()
        else:
            noise[k] = _robust_var(flat[k, border])
    ok &= np.all(np.isfinite(noise) & (noise > 0), axis=1)
    if ok.sum() < min_stars:
        raise PsfFitError(f"only {int(ok.sum())} PSF stars with a usable noise (of {len(x)} "
                          f"candidates); at least {min_stars} are needed")
    flat = np.where(ok[:, None], flat, 0.0)  # the unusable stars take no part
    noise = np.where(ok[:, None], noise, 1.0)
    sums = flat.sum(axis=1)
    model = np.zeros_like(flat)
    model[ok] = np.median(flat[ok] / sums[ok, None], axis=0)  # first guess: one profile
    used = ok.copy()
    residual = np.full(n, np.nan)
    basis = None
    stamps = flat
    for iteration in range(max(niter, 1) + 2):
        # each star's flux against the current model; its stamp scaled to unit flux
        with np.errstate(invalid="ignore", divide="ignore"):
            amp = np.einsum("kp,kp->k", model, flat) / np.einsum("kp,kp->k", model, model)
        good = ok & (amp > 0)
        stamps = flat / np.where(good, amp, 1.0)[:, None]
        weight = np.where(good[:, None] & used[:, None],
                          amp[:, None] ** 2 / np.where(good[:, None], noise, 1.0), 0.0)
        lhs = np.einsum("kp,ki,kj->pij", weight, terms, terms)
        rhs = np.einsum("kp,ki,kp->pi", weight, terms, stamps)
        coeffs = np.linalg.solve(lhs + 1e-12 * np.eye(terms.shape[1]), rhs[..., None])[..., 0]
        basis = coeffs.T  # (n_terms, n_pixels)
        model = terms @ basis
        model /= np.where(good, model.sum(axis=1), 1.0)[:, None]
        peak = np.max(np.abs(model), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            residual = np.sqrt(np.mean((stamps - model) ** 2, axis=1)) / peak
            chi2 = np.mean((stamps - model) ** 2 * amp[:, None] ** 2 / noise, axis=1)
        if iteration == 0:
            continue  # the first pass only gave the stars' model at their position
        r = chi2[used & good]
        centre = np.median(r)
        width = 1.4826 * np.median(np.abs(r - centre))
        keep = used & good & (chi2 < centre + nsigma * max(width, 1e-3 * centre))
        if keep.sum() == used.sum() or keep.sum() < min_stars:
            used &= good
            break
        used = keep
    assert basis is not None
    basis = basis.reshape(-1, stamp_size, stamp_size)
    # the wings far from the core are noise: keep the model where the mean star's profile
    # is above a thousandth of its peak (a disc around the centre), zero beyond
    mean = np.nanmean(stamps[used], axis=0).reshape(stamp_size, stamp_size)
    faint = radius[mean < 1e-3 * mean.max()]
    cut = float(faint.min()) if faint.size else float(stamp_size)
    basis[:, radius >= cut] = 0.0
    psf = PixelPsf(basis, order, bbox)
    residual[~ok] = np.nan
    return PsfFit(psf, used, residual)
