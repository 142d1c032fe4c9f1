"""Attribution: detections of a visit matched to the predicted positions of known orbits.

Every known orbit (a heliocentric state at an epoch with its 6x6 covariance, as
:func:`~hpcpipe.solarsystem.orbit_fit.fit_orbit` gives it) is propagated to the visit's time
and seen from the observer (two-body, light-time corrected, :func:`kepler.observe`). Its
*uncertainty ellipse* on the sky is the covariance mapped linearly: ``S = J C J^T`` with
``J`` the 2x6 Jacobian of the tangent-plane position (``dRA cos Dec``, ``dDec``) with
respect to the state, by central differences. A detection is attributable to an orbit when
its squared Mahalanobis distance ``d^T (S + E + M) d`` (``E`` the detection's astrometric
errors, ``M`` a model floor ``model_sigma_arcsec`` standing for what two-body dynamics
leaves out) is below ``n_sigma ** 2``. Each detection goes to at most one orbit and each
orbit takes at most one detection per visit, the closest pairs (in sigma) first.

The linearisation holds while the ellipse is small against the distance to the Sun-object
geometry's curvature (arcminutes); orbits whose ellipse is larger than
``max_radius_arcsec`` are not attributed (their ``predictions`` are flagged) and wait for
the linking to find them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from hpcpipe.solarsystem import kepler
from hpcpipe.solarsystem.orbit_fit import OrbitFit

__all__ = ["AttributionConfig", "KnownOrbits", "predict", "attribute_visit", "attribute"]


@dataclass(frozen=True)
class AttributionConfig:
    """Parameters of the attribution.

    Attributes
    ----------
    n_sigma : float
        Gate on the Mahalanobis distance (sigmas).
    model_sigma_arcsec : float
        Error added per axis for the dynamics left out (planetary perturbations).
    max_radius_arcsec : float
        Orbits whose gate (``n_sigma`` times the ellipse's major axis) is wider are skipped.
    """

    n_sigma: float = 5.0
    model_sigma_arcsec: float = 0.2
    max_radius_arcsec: float = 600.0


@dataclass
class KnownOrbits:
    """Orbits of the catalogue, as arrays.

    Attributes
    ----------
    ssObjectId : numpy.ndarray
        ``(n,)`` identifiers.
    epoch : numpy.ndarray
        ``(n,)`` epochs of the states (MJD TDB).
    r, v : numpy.ndarray
        ``(n, 3)`` heliocentric equatorial positions (au) and velocities (au/day).
    covariance : numpy.ndarray
        ``(n, 6, 6)`` covariances of ``(r, v)``.
    """

    ssObjectId: np.ndarray
    epoch: np.ndarray
    r: np.ndarray
    v: np.ndarray
    covariance: np.ndarray

    def __len__(self) -> int:
        return len(self.ssObjectId)

    @classmethod
    def from_fits(cls, ids: Sequence[int], fits: Sequence[OrbitFit]) -> KnownOrbits:
        """From orbit fits and their identifiers."""
        if len(ids) != len(fits):
            raise ValueError(f"KnownOrbits.from_fits: {len(ids)} ids for {len(fits)} fits")
        if not fits:
            return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)),
                       np.zeros((0, 6, 6)))
        return cls(np.asarray(ids, np.int64), np.array([f.epoch for f in fits], float),
                   np.array([f.r for f in fits], float), np.array([f.v for f in fits], float),
                   np.array([f.covariance for f in fits], float))


def _tangent(ra: np.ndarray, dec: np.ndarray, ra0: np.ndarray, dec0: np.ndarray
             ) -> np.ndarray:
    """Offsets (arcsec; ``dRA cos Dec0``, ``dDec``) of positions from reference positions,
    ``(..., 2)`` (small offsets)."""
    dra = (np.asarray(ra) - ra0 + 180.0) % 360.0 - 180.0
    return np.stack([dra * np.cos(np.radians(dec0)), np.asarray(dec) - dec0], axis=-1) * 3600.0


def predict(orbits: KnownOrbits, mjd_tai: float, obs_pos: np.ndarray
            ) -> dict[str, np.ndarray]:
    """Predicted astrometric positions of known orbits at one time, with their ellipses.

    Parameters
    ----------
    orbits : KnownOrbits
        The orbits.
    mjd_tai : float
        The visit's time (MJD TAI).
    obs_pos : array_like
        The observer's heliocentric position then (``(3,)``, au).

    Returns
    -------
    dict
        ``ra``, ``dec`` (degrees), ``cov`` (``(n, 2, 2)`` covariance of the tangent-plane
        position, arcsec^2; NaN where the orbit has no covariance) and ``delta`` (au).
    """
    n = len(orbits)
    obs_pos = np.asarray(obs_pos, float).reshape(1, 3)
    if n == 0:
        return {"ra": np.zeros(0), "dec": np.zeros(0), "cov": np.zeros((0, 2, 2)),
                "delta": np.zeros(0)}
    eph = kepler.observe(orbits.r, orbits.v, orbits.epoch, mjd_tai, obs_pos, iterations=2)
    ra0, dec0 = eph["ra"], eph["dec"]
    state = np.concatenate([orbits.r, orbits.v], axis=1)
    # steps: 1e-7 of the position, 1e-7 of the speed (linear to far better than 1e-3)
    rscale = 1e-7 * np.linalg.norm(orbits.r, axis=1)
    vscale = 1e-7 * np.linalg.norm(orbits.v, axis=1)
    jac = np.empty((n, 2, 6))
    for k in range(6):
        h = rscale if k < 3 else vscale
        plus, minus = state.copy(), state.copy()
        plus[:, k] += h
        minus[:, k] -= h
        ep = kepler.observe(plus[:, :3], plus[:, 3:], orbits.epoch, mjd_tai, obs_pos,
                            iterations=2)
        em = kepler.observe(minus[:, :3], minus[:, 3:], orbits.epoch, mjd_tai, obs_pos,
                            iterations=2)
        jac[:, :, k] = (_tangent(ep["ra"], ep["dec"], ra0, dec0)
                        - _tangent(em["ra"], em["dec"], ra0, dec0)) / (2 * h)[:, None]
    cov = np.einsum("nik,nkl,njl->nij", jac, orbits.covariance, jac)
    return {"ra": ra0, "dec": dec0, "cov": cov, "delta": eph["delta"]}


def attribute_visit(orbits: KnownOrbits, mjd_tai: float, obs_pos: np.ndarray,
                    ra: np.ndarray, dec: np.ndarray, ra_err: np.ndarray, dec_err: np.ndarray,
                    config: AttributionConfig | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Attribute the detections of one visit to known orbits.

    Parameters
    ----------
    orbits : KnownOrbits
        The orbit catalogue.
    mjd_tai : float
        The visit's time (MJD TAI).
    obs_pos : array_like
        The observer's heliocentric position (au).
    ra, dec : array_like
        The visit's detections (degrees).
    ra_err, dec_err : array_like
        Their astrometric errors (degrees; RA error on the sky).
    config : AttributionConfig, optional
        Gates (defaults: :class:`AttributionConfig`).

    Returns
    -------
    ss_object_id : numpy.ndarray
        Per detection, the ``ssObjectId`` it is attributed to, or -1.
    distance : numpy.ndarray
        Per detection, the Mahalanobis distance (sigmas) to that orbit (NaN when none).
    """
    config = config or AttributionConfig()
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    n_det = len(ra)
    out_id = np.full(n_det, -1, np.int64)
    out_d = np.full(n_det, np.nan)
    if n_det == 0 or len(orbits) == 0:
        return out_id, out_d
    pred = predict(orbits, mjd_tai, obs_pos)
    model = config.model_sigma_arcsec ** 2 * np.eye(2)
    cov = pred["cov"] + model
    good = np.all(np.isfinite(cov), axis=(1, 2))
    major = np.sqrt(np.where(good, np.linalg.eigvalsh(np.where(good[:, None, None], cov,
                                                                 model))[:, -1], np.inf))
    err_max = 3600.0 * float(np.max(np.hypot(ra_err, dec_err)))
    radius = config.n_sigma * np.hypot(major, err_max)
    good &= radius <= config.max_radius_arcsec
    if not good.any():
        return out_id, out_d
    tree = cKDTree(kepler.vectors_from_radec(ra, dec))
    which = np.flatnonzero(good)
    centres = kepler.vectors_from_radec(pred["ra"][which], pred["dec"][which])
    chords = 2.0 * np.sin(np.radians(radius[which] / 3600.0) / 2.0)
    pairs_o, pairs_d, chi2 = [], [], []
    for o, near in zip(which, tree.query_ball_point(centres, chords)):
        if not near:
            continue
        near = np.asarray(near)
        d = _tangent(ra[near], dec[near], pred["ra"][o], pred["dec"][o])
        tot = cov[o][None, :, :] + np.stack(
            [np.diag([a, b]) for a, b in zip((3600.0 * np.asarray(ra_err)[near]) ** 2,
                                             (3600.0 * np.asarray(dec_err)[near]) ** 2)])
        m2 = np.einsum("ni,nij,nj->n", d, np.linalg.inv(tot), d)
        ok = m2 <= config.n_sigma ** 2
        pairs_o.extend([o] * int(ok.sum()))
        pairs_d.extend(near[ok].tolist())
        chi2.extend(m2[ok].tolist())
    taken_o: set[int] = set()
    for k in np.argsort(chi2, kind="stable"):
        o, j = pairs_o[k], pairs_d[k]
        if o in taken_o or out_id[j] >= 0:
            continue
        taken_o.add(o)
        out_id[j] = orbits.ssObjectId[o]
        out_d[j] = np.sqrt(chi2[k])
    return out_id, out_d


def attribute(orbits: KnownOrbits, detections: np.ndarray,
              config: AttributionConfig | None = None,
              site: kepler.Site | None = kepler.RUBIN_SITE
              ) -> tuple[np.ndarray, np.ndarray]:
    """Attribute detection rows (``mjd``, ``ra``, ``dec``, ``raErr``, ``decErr``), visit by
    visit (one visit = one ``mjd``); see :func:`attribute_visit`."""
    mjd = np.asarray(detections["mjd"], float)
    out_id = np.full(len(mjd), -1, np.int64)
    out_d = np.full(len(mjd), np.nan)
    if len(mjd) == 0:
        return out_id, out_d
    times, inverse = np.unique(mjd, return_inverse=True)
    obs = kepler.observer_position(times, site)
    for k, t in enumerate(times):
        rows = np.flatnonzero(inverse == k)
        ids, dist = attribute_visit(orbits, float(t), obs[k], detections["ra"][rows],
                                    detections["dec"][rows], detections["raErr"][rows],
                                    detections["decErr"][rows], config)
        out_id[rows], out_d[rows] = ids, dist
    return out_id, out_d
