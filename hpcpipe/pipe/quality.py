"""Science quality against a truth catalog: completeness, astrometry, photometry, depth.

These are the checks the demo prints and the tests assert on the simulated camera, whose
truth catalog (``truth_cat``: ``ra``, ``dec`` in degrees, ``mag_<band>``, ``is_star``) is
known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["TruthMatch", "match_truth", "astrometric_offsets_mas", "photometric_residuals",
           "robust_scatter", "depth_5sigma", "expected_psf_snr"]


@dataclass
class TruthMatch:
    """Nearest truth object of each source within the match radius.

    Attributes
    ----------
    source_index, truth_index : numpy.ndarray
        Row numbers of the matched pairs.
    separation_mas : numpy.ndarray
        Their separations, milliarcseconds.
    """

    source_index: np.ndarray
    truth_index: np.ndarray
    separation_mas: np.ndarray


def _unit(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def match_truth(ra_deg: np.ndarray, dec_deg: np.ndarray, truth: Any, radius_arcsec: float = 0.5,
                truth_rows: np.ndarray | None = None) -> TruthMatch:
    """Match sources (degrees) to the truth catalog's nearest object within ``radius_arcsec``.

    ``truth_rows`` restricts the candidates (for example to stars).
    """
    rows = np.arange(len(truth)) if truth_rows is None else np.asarray(truth_rows)
    if len(rows) == 0 or len(ra_deg) == 0:
        empty = np.zeros(0, int)
        return TruthMatch(empty, empty, np.zeros(0))
    tree = cKDTree(_unit(truth["ra"][rows], truth["dec"][rows]))
    chord = 2 * np.sin(np.radians(radius_arcsec / 3600.0) / 2)
    found = tree.query(_unit(np.asarray(ra_deg), np.asarray(dec_deg)),
                       distance_upper_bound=chord)
    dist, idx = np.asarray(found[0]), np.asarray(found[1])
    ok = np.isfinite(dist)
    sep = 2 * np.arcsin(np.clip(dist[ok] / 2, 0, 1))
    return TruthMatch(np.nonzero(ok)[0], rows[idx[ok]], np.degrees(sep) * 3600e3)


def astrometric_offsets_mas(ra_deg: np.ndarray, dec_deg: np.ndarray, truth: Any,
                            radius_arcsec: float = 0.5) -> np.ndarray:
    """Separations (mas) of sources from their matched truth stars."""
    stars = np.nonzero(truth["is_star"])[0]
    return match_truth(ra_deg, dec_deg, truth, radius_arcsec, stars).separation_mas


def photometric_residuals(ra_deg: np.ndarray, dec_deg: np.ndarray, mag: np.ndarray,
                          truth: Any, band: str, radius_arcsec: float = 0.5) -> np.ndarray:
    """Measured minus true magnitude of the sources matched to truth stars."""
    stars = np.nonzero(truth["is_star"])[0]
    m = match_truth(ra_deg, dec_deg, truth, radius_arcsec, stars)
    return np.asarray(mag)[m.source_index] - truth[f"mag_{band}"][m.truth_index]


def robust_scatter(values: np.ndarray) -> float:
    """1.4826 times the median absolute deviation (a standard deviation robust to outliers)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def expected_psf_snr(flux: np.ndarray, psf_sigma: float, noise_per_pixel: float) -> np.ndarray:
    """PSF-fit signal to noise of point sources of ``flux`` on a sky of ``noise_per_pixel``.

    For a Gaussian PSF of width ``sigma`` the optimal (PSF-weighted) noise is
    ``noise * sqrt(4 pi) * sigma``.
    """
    return np.asarray(flux, float) / (noise_per_pixel * np.sqrt(4 * np.pi) * psf_sigma)


def depth_5sigma(psf_sigma: float, noise_per_pixel: float, zero_point: float) -> float:
    """The magnitude of a point source at PSF signal to noise 5."""
    flux = 5.0 * noise_per_pixel * np.sqrt(4 * np.pi) * psf_sigma
    return float(zero_point - 2.5 * np.log10(flux))
