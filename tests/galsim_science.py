"""Scoring measured catalogs against a GalSim scene's truth (tests and perf/bench_single_frame).

Every function works on plain arrays so that hpcpipe, Source Extractor and SEP catalogs are
scored the same way: a detection matches the nearest true object within ``radius`` pixels;
isolated objects have no other true object brighter than a hundredth of their flux within
``isolation`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from hpcpipe.image import Exposure

__all__ = ["Match", "exposure_from_scene", "match_to_truth", "isolated", "true_snr",
           "robust_sigma", "psf_noise_area"]


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 times the median absolute deviation from the median."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def exposure_from_scene(scene, image: np.ndarray, *, subtract_sky: bool = False) -> Exposure:
    """An exposure of a rendered scene (electrons, gain 1): the variance plane is the
    Poisson variance of the image with its sky plus the read noise squared (as ISR's)."""
    h, w = image.shape
    exposure = Exposure((h, w))
    with_sky = image if not subtract_sky else image
    exposure.variance.array[:] = np.clip(with_sky, 0.0, None) + scene.read_noise ** 2
    exposure.image.array[:] = image - (scene.sky if subtract_sky else 0.0)
    exposure.wcs = scene.wcs
    return exposure


def psf_noise_area(psf: np.ndarray) -> float:
    """The effective area ``1 / sum(P**2)`` of a pixelised PSF (sum 1), pixels."""
    return float(1.0 / np.sum(np.asarray(psf, float) ** 2))


def true_snr(scene, flux: np.ndarray, area: float) -> np.ndarray:
    """The S/N of an optimal (PSF-weighted) measurement of a point source of ``flux``."""
    flux = np.asarray(flux, float)
    return flux / np.sqrt(flux + area * (scene.sky + scene.read_noise ** 2))


def isolated(truth, isolation: float = 12.0, contrast: float = 0.01) -> np.ndarray:
    """True objects with no other object brighter than ``contrast`` times their flux within
    ``isolation`` pixels."""
    xy = np.column_stack([truth["x"], truth["y"]])
    flux = np.asarray(truth["flux"], float)
    tree = cKDTree(xy)
    out = np.ones(len(truth), bool)
    for i, nbrs in enumerate(tree.query_ball_point(xy, isolation)):
        for j in nbrs:
            if j != i and flux[j] > contrast * flux[i]:
                out[i] = False
                break
    return out


@dataclass
class Match:
    """Detections matched to the truth.

    Attributes
    ----------
    truth_index : numpy.ndarray
        For each detection, the index of its true object (-1: spurious).
    detected : numpy.ndarray
        For each true object, whether a detection matched it.
    distance : numpy.ndarray
        For each detection, the distance to its true object (NaN if spurious).
    """

    truth_index: np.ndarray
    detected: np.ndarray
    distance: np.ndarray

    @property
    def spurious(self) -> np.ndarray:
        return self.truth_index < 0

    def spurious_fraction(self) -> float:
        n = self.truth_index.size
        return float(self.spurious.sum() / n) if n else 0.0


def match_to_truth(truth, x: np.ndarray, y: np.ndarray, radius: float = 2.0) -> Match:
    """Match detections at ``(x, y)`` (0-based) to the nearest true object within
    ``radius`` pixels; several detections may match one object (the nearest counts it as
    detected), and a detection with no object within ``radius`` is spurious."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    txy = np.column_stack([truth["x"], truth["y"]])
    tree = cKDTree(txy)
    ok = np.isfinite(x) & np.isfinite(y)
    dist = np.full(x.size, np.inf)
    idx = np.full(x.size, -1)
    if ok.any():
        d, i = tree.query(np.column_stack([x[ok], y[ok]]), distance_upper_bound=radius)
        dist[ok] = d
        idx[ok] = np.where(np.isfinite(d), i, -1)
    detected = np.zeros(len(truth), bool)
    detected[idx[idx >= 0]] = True
    return Match(idx, detected, np.where(idx >= 0, dist, np.nan))
