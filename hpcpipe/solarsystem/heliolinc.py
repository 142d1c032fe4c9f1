"""HelioLinC: linking tracklets across nights by clustering them in heliocentric space.

The method (Holman et al. 2018, AJ 156, 135; Heinze et al. 2022, AJ 163, 18, "HelioLinC3D"):
a tracklet gives two directions at two times but no distance. Under a *hypothesis* on the
heliocentric distance ``r(t) = r_ref + rdot (t - t_ref)`` of the object, each direction
becomes a heliocentric position (the intersection of the line of sight from the observer
with the sphere of radius ``r(t)``), the pair of positions a velocity, and the tracklet a
full heliocentric state, which two-body dynamics carries to a common reference time
``t_ref``. Tracklets of one object, on different nights, land at the same place there if the
hypothesis is near the truth; tracklets of different objects do not. Clusters of propagated
positions (radius ``cluster_radius * r_ref`` au, a KD-tree search around every tracklet)
with tracklets from at least ``min_nights`` nights are candidate linkages; a candidate keeps
one tracklet a night, the closest to the tracklet it was grown from (in a dense field a
cluster also gathers other objects' tracklets). A grid of
hypotheses covers the populations sought; every hypothesis is independent (the unit of
parallel work, see :func:`candidates_for_hypotheses`).

Candidates are then checked by orbit determination (:func:`select_linkages`): the
hypothesis's mean state starts a differential correction
(:func:`hpcpipe.solarsystem.orbit_fit.fit_orbit`); linkages whose fit is accepted are
kept, largest and best first, each detection in at most one linkage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from hpcpipe.solarsystem import kepler
from hpcpipe.solarsystem.orbit_fit import OrbitFit, fit_orbit

__all__ = ["LinkingConfig", "LinkingInput", "Candidate", "Linkage", "hypothesis_grid",
           "tracklet_states", "candidates_for_hypotheses", "merge_candidates",
           "select_linkages", "link"]


@dataclass(frozen=True)
class LinkingConfig:
    """Parameters of HelioLinC and of the checks of its linkages.

    Attributes
    ----------
    r_values : tuple of float
        Heliocentric distances of the hypotheses at ``t_ref`` (au).
    rdot_values : tuple of float
        Radial velocities of the hypotheses (au/day).
    cluster_radius : float
        Clustering radius at ``t_ref`` per au of hypothesis distance (au/au).
    min_nights : int
        Nights a linkage must span.
    min_tracklets : int
        Tracklets a cluster must hold.
    max_reduced_chi2, reject_sigma : float
        Acceptance of the orbit fits (:func:`~hpcpipe.solarsystem.orbit_fit.fit_orbit`).
    """

    r_values: tuple[float, ...] = tuple(np.round(np.geomspace(1.7, 4.2, 24), 4))
    rdot_values: tuple[float, ...] = (-0.006, -0.003, 0.0, 0.003, 0.006)
    cluster_radius: float = 3e-4
    min_nights: int = 3
    min_tracklets: int = 3
    max_reduced_chi2: float = 4.0
    reject_sigma: float = 5.0

    def hypotheses(self) -> np.ndarray:
        """The ``(n, 2)`` grid of ``(r, rdot)`` hypotheses."""
        return hypothesis_grid(self.r_values, self.rdot_values)


def hypothesis_grid(r_values: Sequence[float], rdot_values: Sequence[float]) -> np.ndarray:
    """Every ``(r, rdot)`` pair of the two lists, ``(n, 2)``."""
    r, rdot = np.meshgrid(np.asarray(r_values, float), np.asarray(rdot_values, float),
                          indexing="ij")
    return np.stack([r.ravel(), rdot.ravel()], axis=-1)


@dataclass
class LinkingInput:
    """What every hypothesis needs (broadcast once to the workers).

    Attributes
    ----------
    mjd, ra, dec, ra_err, dec_err : numpy.ndarray
        Detections: MJD TAI, degrees, and astrometric errors (degrees).
    obs_pos : numpy.ndarray
        ``(n, 3)`` heliocentric observer positions at the detections (au).
    i0, i1, night : numpy.ndarray
        Tracklets: first and last detection indices and night.
    t_ref : float
        Reference time (MJD TDB).
    """

    mjd: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    ra_err: np.ndarray
    dec_err: np.ndarray
    obs_pos: np.ndarray
    i0: np.ndarray
    i1: np.ndarray
    night: np.ndarray
    t_ref: float

    @classmethod
    def build(cls, detections: np.ndarray, tracklets: np.ndarray,
              site: kepler.Site | None = kepler.RUBIN_SITE,
              t_ref: float | None = None) -> LinkingInput:
        """From detection rows (``mjd``, ``ra``, ``dec``, ``raErr``, ``decErr``) and
        tracklet rows (:data:`~hpcpipe.solarsystem.tracklets.TRACKLET_DTYPE`); ``t_ref``
        defaults to the middle of the time span (MJD TDB)."""
        mjd = np.asarray(detections["mjd"], float)
        times, inverse = np.unique(mjd, return_inverse=True)
        obs = kepler.observer_position(times, site)[inverse] if len(times) else \
            np.zeros((0, 3))
        if t_ref is None:
            t_ref = float(kepler.tai_to_tdb(0.5 * (mjd.min() + mjd.max()))) if len(mjd) \
                else 0.0
        return cls(mjd, np.asarray(detections["ra"], float),
                   np.asarray(detections["dec"], float),
                   np.asarray(detections["raErr"], float),
                   np.asarray(detections["decErr"], float), obs,
                   np.asarray(tracklets["i0"]), np.asarray(tracklets["i1"]),
                   np.asarray(tracklets["night"]), float(t_ref))


@dataclass
class Candidate:
    """A cluster of tracklets under one hypothesis, with the mean state at ``t_ref``."""

    tracklets: tuple[int, ...]
    r: np.ndarray
    v: np.ndarray
    hypothesis: int
    #: RMS distance of the members from their mean, in clustering radii.
    spread: float = 0.0


@dataclass
class Linkage:
    """A linkage accepted by its orbit fit: the detections and the orbit."""

    detections: np.ndarray
    tracklets: tuple[int, ...]
    fit: OrbitFit


def _sphere_range(obs: np.ndarray, u: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Distance along the unit vectors ``u`` from ``obs`` to the sphere of radius ``r``
    about the Sun (the far root; NaN where the line misses the sphere)."""
    b = np.sum(obs * u, axis=-1)
    disc = b * b - np.sum(obs * obs, axis=-1) + r * r
    with np.errstate(invalid="ignore"):
        rho = -b + np.sqrt(disc)
    return np.where((disc >= 0) & (rho > 0), rho, np.nan)


def tracklet_states(data: LinkingInput, r_ref: float, rdot: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heliocentric states at ``t_ref`` of every tracklet under one hypothesis.

    Returns
    -------
    r, v : numpy.ndarray
        ``(n, 3)`` propagated positions and velocities (NaN where the hypothesis is
        impossible for the tracklet).
    ok : numpy.ndarray
        Tracklets with a state.
    """
    t = kepler.tai_to_tdb(data.mjd)
    ends = []
    for idx in (data.i0, data.i1):
        u = kepler.vectors_from_radec(data.ra[idx], data.dec[idx])
        obs = data.obs_pos[idx]
        rr = r_ref + rdot * (t[idx] - data.t_ref)
        rho = _sphere_range(obs, u, rr)
        # the hypothesis is at the emission time; one light-time step is enough here
        rr = r_ref + rdot * (t[idx] - rho / kepler.C_AU_PER_DAY - data.t_ref)
        rho = _sphere_range(obs, u, rr)
        ends.append((obs + rho[:, None] * u, t[idx] - rho / kepler.C_AU_PER_DAY))
    (p0, te0), (p1, te1) = ends
    vel = (p1 - p0) / (te1 - te0)[:, None]
    mid = 0.5 * (p0 + p1)
    ok = np.all(np.isfinite(mid), axis=1) & np.all(np.isfinite(vel), axis=1)
    r = np.full_like(mid, np.nan)
    v = np.full_like(mid, np.nan)
    if np.any(ok):
        r[ok], v[ok] = kepler.propagate(mid[ok], vel[ok],
                                        data.t_ref - 0.5 * (te0[ok] + te1[ok]))
        ok &= np.all(np.isfinite(r), axis=1)
    return r, v, ok


def candidates_for_hypotheses(data: LinkingInput, hypotheses: np.ndarray,
                              config: LinkingConfig, first_index: int = 0
                              ) -> list[Candidate]:
    """Candidate linkages of a set of hypotheses (one unit of parallel work).

    For every tracklet, its neighbours within the clustering radius at ``t_ref`` form a
    cluster; clusters with at least ``min_tracklets`` tracklets on ``min_nights`` nights
    are returned (duplicates within a hypothesis removed).
    """
    out: list[Candidate] = []
    for k, (r_ref, rdot) in enumerate(np.atleast_2d(hypotheses)):
        r, v, ok = tracklet_states(data, float(r_ref), float(rdot))
        index = np.flatnonzero(ok)
        if len(index) < config.min_tracklets:
            continue
        tree = cKDTree(r[index])
        radius = config.cluster_radius * float(r_ref)
        counts = tree.query_ball_point(r[index], radius, return_length=True)
        seeds = np.flatnonzero(counts >= config.min_tracklets)
        if not len(seeds):
            continue
        seen: set[tuple[int, ...]] = set()
        for seed, members in zip(index[seeds], tree.query_ball_point(r[index[seeds]], radius)):
            members = index[np.asarray(members)]
            if len(np.unique(data.night[members])) < config.min_nights:
                continue
            # one tracklet a night, the closest to the seed: in a dense field a cluster
            # gathers other objects' tracklets, and an object leaves one tracklet a night
            # (more only with more than two visits, which the refits take back)
            dist = np.linalg.norm(r[members] - r[seed], axis=1)
            order = np.lexsort((dist, data.night[members]))
            nights = data.night[members][order]
            first = np.ones(len(order), bool)
            first[1:] = nights[1:] != nights[:-1]
            members = np.sort(members[order][first])
            key = tuple(int(m) for m in members)
            if key in seen:
                continue
            seen.add(key)
            spread = float(np.sqrt(np.mean(np.sum((r[members] - r[members].mean(axis=0)) ** 2,
                                                  axis=1))) / radius)
            out.append(Candidate(key, r[members].mean(axis=0), v[members].mean(axis=0),
                                 first_index + k, spread))
    return out


def merge_candidates(parts: Sequence[Sequence[Candidate]]) -> list[Candidate]:
    """Candidates of several hypotheses with duplicates (same tracklets) removed, the
    tightest kept; ordered by size (largest first), then tightness (the spread), then
    hypothesis (a deterministic order whatever the split of the hypotheses)."""
    best: dict[tuple[int, ...], Candidate] = {}
    for part in parts:
        for cand in part:
            old = best.get(cand.tracklets)
            if old is None or (cand.spread, cand.hypothesis) < (old.spread, old.hypothesis):
                best[cand.tracklets] = cand
    return sorted(best.values(), key=lambda c: (-len(c.tracklets), c.spread, c.hypothesis,
                                                c.tracklets))


def _detections_of(data: LinkingInput, tracklets: Sequence[int]) -> np.ndarray:
    idx = np.asarray(tracklets)
    return np.unique(np.concatenate([data.i0[idx], data.i1[idx]]))


def select_linkages(data: LinkingInput, candidates: Sequence[Candidate],
                    config: LinkingConfig) -> list[Linkage]:
    """Fit an orbit to every candidate, largest first; keep accepted fits whose detections
    are not in a linkage kept before (detections rejected by a fit are left free)."""
    claimed = np.zeros(len(data.mjd), bool)
    nights_of_det = np.full(len(data.mjd), -1, np.int64)
    nights_of_det[data.i0] = data.night
    nights_of_det[data.i1] = data.night
    out: list[Linkage] = []
    for cand in candidates:
        det = _detections_of(data, cand.tracklets)
        det = det[~claimed[det]]
        if len(np.unique(nights_of_det[det])) < config.min_nights:
            continue
        fit = fit_orbit(data.mjd[det], data.ra[det], data.dec[det], data.ra_err[det],
                        data.dec_err[det], data.obs_pos[det], cand.r, cand.v, data.t_ref,
                        nights=nights_of_det[det], min_nights=config.min_nights,
                        max_reduced_chi2=config.max_reduced_chi2,
                        reject_sigma=config.reject_sigma)
        if not fit.accepted:
            continue
        kept = det[fit.used]
        claimed[kept] = True
        tr = tuple(int(t) for t in cand.tracklets
                   if claimed[data.i0[t]] and claimed[data.i1[t]]
                   and data.i0[t] in kept and data.i1[t] in kept)
        out.append(Linkage(kept, tr, fit))
    return out


def link(data: LinkingInput, config: LinkingConfig | None = None) -> list[Linkage]:
    """HelioLinC over the whole hypothesis grid in this process, then the orbit checks."""
    config = config or LinkingConfig()
    cands = candidates_for_hypotheses(data, config.hypotheses(), config)
    return select_linkages(data, merge_candidates([cands]), config)
