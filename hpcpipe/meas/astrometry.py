"""Astrometric calibration: match sources to a reference catalog, fit a TAN-SIP WCS.

Matching follows the simple, robust scheme of LSST's ``MatchPessimisticB`` for a telescope
whose pointing is known to a few arcseconds: the reference stars are projected to pixels with
the exposure's initial WCS; every source-reference pair closer than ``search_radius`` votes for
its offset in a 2-D histogram; the peak (refined by the mean of the votes around it) is the
pointing error; each shifted source then takes its nearest reference star within
``match_radius``, and pairs that are not mutual nearest neighbours are dropped.

The fit is astropy's :func:`astropy.wcs.utils.fit_wcs_from_points` (a TAN projection with SIP
polynomial distortion terms), iterated with outlier rejection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from astropy.wcs.utils import fit_wcs_from_points
from scipy.spatial import cKDTree

from hpcpipe.errors import HpcpipeError

__all__ = ["AstrometryError", "Matches", "match_to_reference", "fit_tan_sip", "WcsFit"]


class AstrometryError(HpcpipeError, RuntimeError):
    """Too few matches to calibrate, or a fit that did not converge."""


@dataclass
class Matches:
    """Pairs of sources and reference objects.

    Attributes
    ----------
    source_index, ref_index : numpy.ndarray
        Row numbers of each pair in the source and the reference catalog.
    distance : numpy.ndarray
        Separation of each pair after the offset, pixels.
    offset : tuple of float
        The shift (x, y, pixels) found between the projected reference and the sources.
    """

    source_index: np.ndarray
    ref_index: np.ndarray
    distance: np.ndarray
    offset: tuple[float, float]

    def __len__(self) -> int:
        return int(self.source_index.size)


def match_to_reference(x: np.ndarray, y: np.ndarray, ref_x: np.ndarray, ref_y: np.ndarray,
                       *, search_radius: float = 50.0, match_radius: float = 3.0,
                       bin_size: float = 1.0) -> Matches:
    """Match sources to reference positions projected on the same pixel grid.

    Parameters
    ----------
    x, y : numpy.ndarray
        Source positions, pixels.
    ref_x, ref_y : numpy.ndarray
        Reference positions through the initial WCS, pixels.
    search_radius : float
        Largest pointing error looked for, pixels.
    match_radius : float
        Largest separation of a pair after the offset, pixels.
    bin_size : float
        Bin of the offset histogram, pixels.

    Returns
    -------
    Matches

    Raises
    ------
    AstrometryError
        No source or no reference position to match.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ref_x, ref_y = np.asarray(ref_x, float), np.asarray(ref_y, float)
    if x.size == 0 or ref_x.size == 0:
        raise AstrometryError(f"nothing to match: {x.size} sources, {ref_x.size} reference "
                              "objects")
    src = np.column_stack([x, y])
    ref = np.column_stack([ref_x, ref_y])
    ref_tree = cKDTree(ref)
    pairs = ref_tree.query_ball_point(src, r=search_radius)
    dx = (np.concatenate([ref[p, 0] - xs for p, xs in zip(pairs, x, strict=True)]) if len(x)
          else np.zeros(0))
    dy = (np.concatenate([ref[p, 1] - ys for p, ys in zip(pairs, y, strict=True)]) if len(y)
          else np.zeros(0))
    dx, dy = np.asarray(dx, float), np.asarray(dy, float)
    offset = (0.0, 0.0)
    if dx.size:
        edges = np.arange(-search_radius, search_radius + bin_size, bin_size)
        hist, xe, ye = np.histogram2d(dx, dy, bins=[edges, edges])
        i, j = np.unravel_index(np.argmax(hist), hist.shape)
        cx, cy = 0.5 * (xe[i] + xe[i + 1]), 0.5 * (ye[j] + ye[j + 1])
        near = np.hypot(dx - cx, dy - cy) < 1.5 * bin_size
        offset = (float(dx[near].mean()), float(dy[near].mean()))
    shifted = src + np.array(offset)
    found = ref_tree.query(shifted, distance_upper_bound=match_radius)
    dist, ref_idx = np.asarray(found[0]), np.asarray(found[1])
    good = np.isfinite(dist)
    src_idx = np.nonzero(good)[0]
    ref_idx = ref_idx[good]
    dist = dist[good]
    # mutual nearest neighbours only
    back_dist, back_idx = cKDTree(shifted).query(ref[ref_idx])
    mutual = back_idx == src_idx
    return Matches(src_idx[mutual], ref_idx[mutual], dist[mutual], offset)


@dataclass
class WcsFit:
    """The result of :func:`fit_tan_sip`.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        The fitted WCS (parent pixel coordinates, 0-based).
    used : numpy.ndarray
        Boolean: which input pairs the final fit used.
    residual_rms : float
        Root mean square separation of the used pairs after the fit, arcsec.
    residual_median : float
        Median separation of the used pairs, arcsec.
    """

    wcs: WCS
    used: np.ndarray
    residual_rms: float
    residual_median: float


def fit_tan_sip(x: np.ndarray, y: np.ndarray, ra: np.ndarray, dec: np.ndarray, *,
                sip_degree: int | None = 3, nsigma: float = 3.0, niter: int = 3,
                min_matches: int = 10) -> WcsFit:
    """Fit a TAN WCS with SIP distortion of ``sip_degree`` to matched pixel/sky positions.

    Parameters
    ----------
    x, y : numpy.ndarray
        Pixel positions (0-based).
    ra, dec : numpy.ndarray
        Sky positions, degrees.
    sip_degree : int or None
        Degree of the SIP polynomials (None or 0: a plain TAN). Lowered automatically when
        there are too few matches to constrain it.
    nsigma, niter : float, int
        Outlier rejection: pairs farther than ``nsigma`` times the rms are dropped and the
        fit repeated, up to ``niter`` times.
    min_matches : int
        Fewer usable pairs is an error.

    Raises
    ------
    AstrometryError
        Too few pairs.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    used = np.isfinite(x) & np.isfinite(y) & np.isfinite(ra) & np.isfinite(dec)
    if used.sum() < min_matches:
        raise AstrometryError(f"only {int(used.sum())} matched stars; the astrometric fit "
                              f"needs at least {min_matches}")
    degree = sip_degree or 0
    # a SIP of degree d has (d+1)(d+2)/2 - 3 terms per axis (no constant/linear terms) plus
    # the 6 of the linear TAN: keep at least three pairs per free parameter
    while degree > 1 and used.sum() < 3 * ((degree + 1) * (degree + 2) - 6 + 6) // 2:
        degree -= 1
    wcs = None
    sep = np.zeros_like(x)
    for _ in range(max(niter, 1)):
        world = SkyCoord(ra[used], dec[used], unit="deg")
        wcs = fit_wcs_from_points((x[used], y[used]), world, proj_point="center",
                                  projection="TAN", sip_degree=degree if degree >= 2 else None)
        sep = _separation_arcsec(wcs, x, y, ra, dec)
        rms = float(np.sqrt(np.mean(sep[used] ** 2)))
        keep = used & (sep < max(nsigma * rms, 1e-6))
        if keep.sum() < min_matches or keep.sum() == used.sum():
            break
        used = keep
    assert wcs is not None
    return WcsFit(wcs, used, float(np.sqrt(np.mean(sep[used] ** 2))),
                  float(np.median(sep[used])))


def _separation_arcsec(wcs: WCS, x: np.ndarray, y: np.ndarray, ra: np.ndarray,
                       dec: np.ndarray) -> np.ndarray:
    fit_ra, fit_dec = wcs.all_pix2world(x, y, 0)
    dra = (fit_ra - ra) * np.cos(np.radians(dec))
    return np.hypot(dra, fit_dec - dec) * 3600.0
