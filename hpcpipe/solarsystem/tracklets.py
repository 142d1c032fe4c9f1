"""Tracklets: detections of one night paired into candidate moving objects.

Two detections at times ``t1 < t2`` of the same night make a tracklet when
``min_dt <= t2 - t1 <= max_dt`` and their angular rate lies between ``min_rate`` (slower is
a static source or noise) and ``max_rate`` (faster than the fastest objects sought)
degrees per day. Candidates are found with a KD-tree of unit vectors per visit time
(``scipy.spatial.cKDTree.sparse_distance_matrix`` between the two times, with the chord of
``max_rate * dt``), so the cost grows with the number of pairs within reach, not with the
square of the number of detections.

Every pair within bounds is kept: a detection may be in several tracklets (ambiguities are
resolved by the linking and the orbit fits, as in Rubin's pipeline, whose ``makeTracklet``
also keeps them).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from hpcpipe.solarsystem import kepler

__all__ = ["TRACKLET_DTYPE", "night_of", "make_tracklets"]

#: A tracklet: indices of its first and last detection in the detection table, their
#: times, the night, and the angular rate (deg/day).
TRACKLET_DTYPE = np.dtype([("i0", "i8"), ("i1", "i8"), ("t0", "f8"), ("t1", "f8"),
                           ("night", "i8"), ("rate", "f8")])


def night_of(mjd: np.ndarray | float, lon_deg: float = kepler.RUBIN_SITE.lon_deg
             ) -> np.ndarray:
    """The observing night of times MJD: the MJD of the local noon that starts it."""
    noon = 0.5 - lon_deg / 360.0
    return np.floor(np.asarray(mjd, dtype=float) - noon).astype(np.int64)


def make_tracklets(mjd: np.ndarray, ra: np.ndarray, dec: np.ndarray,
                   min_rate: float = 0.02, max_rate: float = 2.0,
                   min_dt: float = 5.0 / 1440.0, max_dt: float = 0.25) -> np.ndarray:
    """Pair detections of the same night into tracklets.

    Parameters
    ----------
    mjd, ra, dec : array_like
        Detection times (MJD) and positions (degrees).
    min_rate, max_rate : float
        Bounds on the angular rate (deg/day; 0.02 deg/day is 3 arcsec/hour, the slowest
        main-belt rates at the stationary points are below it; 2 deg/day is a fast NEO).
    min_dt, max_dt : float
        Bounds on the time between the two detections (days).

    Returns
    -------
    numpy.ndarray
        Rows of :data:`TRACKLET_DTYPE`, ordered by (``i0``, ``i1``).
    """
    mjd = np.asarray(mjd, dtype=float)
    if not (min_rate >= 0 and max_rate > min_rate and max_dt > min_dt > 0):
        raise ValueError(f"make_tracklets: bad bounds min_rate={min_rate}, "
                         f"max_rate={max_rate}, min_dt={min_dt}, max_dt={max_dt}")
    units = kepler.vectors_from_radec(ra, dec)
    nights = night_of(mjd)
    times, inverse = np.unique(mjd, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(times))]
    trees = [cKDTree(units[m]) for m in members]
    out_i, out_j = [], []
    for a in range(len(times)):
        for b in range(a + 1, len(times)):
            dt = times[b] - times[a]
            if dt > max_dt:
                break
            if dt < min_dt or nights[members[a][0]] != nights[members[b][0]]:
                continue
            chord = 2.0 * np.sin(min(np.radians(max_rate * dt), np.pi) / 2.0)
            pairs = trees[a].sparse_distance_matrix(trees[b], chord, output_type="ndarray")
            if len(pairs):
                out_i.append(members[a][pairs["i"]])
                out_j.append(members[b][pairs["j"]])
    if not out_i:
        return np.zeros(0, TRACKLET_DTYPE)
    i0 = np.concatenate(out_i)
    i1 = np.concatenate(out_j)
    sep = np.degrees(2.0 * np.arcsin(np.clip(
        np.linalg.norm(units[i0] - units[i1], axis=1) / 2.0, 0, 1)))
    rate = sep / (mjd[i1] - mjd[i0])
    keep = (rate >= min_rate) & (rate <= max_rate)
    out = np.zeros(int(keep.sum()), TRACKLET_DTYPE)
    out["i0"], out["i1"] = i0[keep], i1[keep]
    out["t0"], out["t1"] = mjd[out["i0"]], mjd[out["i1"]]
    out["night"] = nights[out["i0"]]
    out["rate"] = rate[keep]
    return np.sort(out, order=("i0", "i1"))
