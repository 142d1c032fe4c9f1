"""Orbit determination: differential correction of a heliocentric state on RA/Dec.

The unknowns are the heliocentric equatorial position and velocity at an epoch (MJD TDB).
The model of an observation is :func:`hpcpipe.solarsystem.kepler.observe`: two-body
propagation to the emission time (light-time iterated) seen from the observer's heliocentric
position. The residuals ``(dRA cos Dec / sigma_RA, dDec / sigma_Dec)`` are minimised with
``scipy.optimize.least_squares`` (Levenberg-Marquardt, Jacobian by finite differences); the
covariance of the state is ``(J^T J)^-1`` of the normalised residuals at the solution.

Planetary perturbations are neglected: over arcs of weeks they move a main-belt asteroid by
well under the arcsecond (a NEO passing close to the Earth excepted), and the fits here are
for linking and attribution over such arcs, not for long-term ephemerides.

A fit is *accepted* when its reduced chi-square is at most ``max_reduced_chi2`` after up to
``max_rejections`` rounds of outlier rejection (the observation with the largest normalised
residual dropped when above ``reject_sigma``), with observations left on at least
``min_nights`` nights.

The initial state comes from the linking (the HelioLinC hypothesis's state, see
:mod:`hpcpipe.solarsystem.heliolinc`) or from Gauss's method on three observations
(:func:`gauss_initial_orbit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from hpcpipe.solarsystem import kepler

__all__ = ["OrbitFit", "fit_orbit", "predict_radec", "gauss_initial_orbit"]

#: Velocities are fitted in units of this many au/day (so that both halves of the state
#: are of order one).
_VSCALE = 0.01


@dataclass
class OrbitFit:
    """A fitted orbit.

    Attributes
    ----------
    epoch : float
        Epoch of the state (MJD TDB).
    r, v : numpy.ndarray
        Heliocentric equatorial position (au) and velocity (au/day) at ``epoch``.
    covariance : numpy.ndarray
        6x6 covariance of ``(r, v)`` (au, au/day).
    chi2 : float
        Sum of squared normalised residuals of the observations kept.
    dof : int
        Degrees of freedom (two per observation kept, minus six).
    rms_arcsec : float
        RMS of the residuals (arcsec, both axes).
    used : numpy.ndarray
        Boolean mask of the observations kept (others rejected as outliers).
    accepted : bool
        Whether the fit met the acceptance criteria.
    success : bool
        Whether the least-squares solver converged.
    """

    epoch: float
    r: np.ndarray
    v: np.ndarray
    covariance: np.ndarray
    chi2: float
    dof: int
    rms_arcsec: float
    used: np.ndarray
    accepted: bool
    success: bool
    elements: dict[str, float] = field(default_factory=dict)

    @property
    def reduced_chi2(self) -> float:
        """chi2 / dof (infinite without degrees of freedom)."""
        return self.chi2 / self.dof if self.dof > 0 else np.inf


def predict_radec(r: np.ndarray, v: np.ndarray, epoch: float, mjd_tai: np.ndarray,
                  obs_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA/Dec (degrees) of one state at observation times, light-time corrected."""
    eph = kepler.observe(np.asarray(r)[None, :], np.asarray(v)[None, :], epoch, mjd_tai,
                         obs_pos, iterations=2)
    return eph["ra"], eph["dec"]


def _residuals(x: np.ndarray, epoch: float, mjd: np.ndarray, obs_pos: np.ndarray,
               ra: np.ndarray, dec: np.ndarray, sig_ra: np.ndarray, sig_dec: np.ndarray
               ) -> np.ndarray:
    """Normalised residuals (RA block then Dec block) of the state ``x`` (sigmas in
    arcsec)."""
    pra, pdec = predict_radec(x[:3], x[3:] * _VSCALE, epoch, mjd, obs_pos)
    dra = ((ra - pra + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec))
    return np.concatenate([dra * 3600.0 / sig_ra, (dec - pdec) * 3600.0 / sig_dec])


def fit_orbit(mjd_tai: np.ndarray, ra: np.ndarray, dec: np.ndarray, sig_ra: np.ndarray,
              sig_dec: np.ndarray, obs_pos: np.ndarray, r0: np.ndarray, v0: np.ndarray,
              epoch: float, nights: np.ndarray | None = None, min_nights: int = 3,
              max_reduced_chi2: float = 4.0, reject_sigma: float = 5.0,
              max_rejections: int = 2, max_nfev: int = 60) -> OrbitFit:
    """Differential correction of a heliocentric state on RA/Dec observations.

    Parameters
    ----------
    mjd_tai, ra, dec : array_like
        Observation times (MJD TAI) and positions (degrees).
    sig_ra, sig_dec : array_like
        Astrometric errors (degrees; RA error on the sky).
    obs_pos : array_like
        ``(n, 3)`` heliocentric observer positions at the times (au).
    r0, v0 : array_like
        Initial state (au, au/day) at ``epoch`` (MJD TDB).
    nights : array_like, optional
        Night of every observation (for ``min_nights``); default: ``floor(mjd)``.
    min_nights, max_reduced_chi2, reject_sigma, max_rejections, max_nfev
        Acceptance and outlier rejection (see the module's documentation), and the
        solver's budget of function evaluations per round.

    Returns
    -------
    OrbitFit
    """
    mjd = np.asarray(mjd_tai, dtype=float)
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    sig_ra = np.asarray(sig_ra, dtype=float) * 3600.0
    sig_dec = np.asarray(sig_dec, dtype=float) * 3600.0
    obs_pos = np.asarray(obs_pos, dtype=float)
    nights = np.floor(mjd).astype(int) if nights is None else np.asarray(nights)
    used = np.ones(len(mjd), bool)
    x = np.concatenate([np.asarray(r0, float), np.asarray(v0, float) / _VSCALE])
    success = False
    res = None
    for _ in range(max_rejections + 1):
        idx = np.flatnonzero(used)
        if len(np.unique(nights[idx])) < min_nights or 2 * len(idx) <= 6:
            break

        def fun(p: np.ndarray, idx: np.ndarray = idx) -> np.ndarray:
            return _residuals(p, epoch, mjd[idx], obs_pos[idx], ra[idx], dec[idx],
                              sig_ra[idx], sig_dec[idx])

        try:
            res = least_squares(fun, x, method="lm", x_scale="jac", max_nfev=max_nfev)
        except (ValueError, FloatingPointError):
            res = None
            break
        x = res.x
        success = bool(res.success) and bool(np.all(np.isfinite(res.fun)))
        norm = np.hypot(res.fun[: len(idx)], res.fun[len(idx):])
        worst = int(np.argmax(norm))
        chi2 = float(np.sum(res.fun ** 2))
        if chi2 / max(2 * len(idx) - 6, 1) <= max_reduced_chi2 or norm[worst] < reject_sigma:
            break
        used[idx[worst]] = False
    idx = np.flatnonzero(used)
    r, v = x[:3], x[3:] * _VSCALE
    if res is None or 2 * len(idx) <= 6:
        return OrbitFit(epoch, r, v, np.full((6, 6), np.nan), np.inf, 0, np.inf, used,
                        False, False)
    fun_final = _residuals(x, epoch, mjd[idx], obs_pos[idx], ra[idx], dec[idx],
                           sig_ra[idx], sig_dec[idx])
    chi2 = float(np.sum(fun_final ** 2))
    dof = 2 * len(idx) - 6
    jac = np.asarray(res.jac) if res.jac.shape[0] == 2 * len(idx) else None
    cov = np.full((6, 6), np.nan)
    if jac is not None:
        try:
            cov = np.linalg.pinv(jac.T @ jac)
            scale = np.array([1, 1, 1, _VSCALE, _VSCALE, _VSCALE])
            cov = cov * np.outer(scale, scale)
        except np.linalg.LinAlgError:
            pass
    resid_arcsec = np.concatenate([fun_final[: len(idx)] * sig_ra[idx],
                                   fun_final[len(idx):] * sig_dec[idx]])
    rms = float(np.sqrt(np.mean(resid_arcsec ** 2)))
    enough = len(np.unique(nights[idx])) >= min_nights
    el = kepler.state_to_elements(r, v)
    elements = {k: float(val[0]) for k, val in el.items()}
    accepted = (success and enough and dof > 0 and chi2 / dof <= max_reduced_chi2
                and bool(np.all(np.isfinite(cov))) and 0 < elements["q"]
                and np.isfinite(elements["a"]))
    return OrbitFit(epoch, r, v, cov, chi2, dof, rms, used, bool(accepted), success,
                    elements)


def gauss_initial_orbit(mjd_tai: np.ndarray, ra: np.ndarray, dec: np.ndarray,
                        obs_pos: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Gauss's method on three observations: the candidate states at the middle one.

    The range ``rho2`` at the middle time solves the eighth-degree polynomial of Gauss
    (Curtis, *Orbital Mechanics for Engineering Students*, algorithm 5.5, with the
    heliocentric observer in place of the geocentric site); every real positive root gives
    a candidate, refined by one light-time correction of the times.

    Returns
    -------
    list of (r, v, epoch)
        Heliocentric equatorial states (au, au/day) at the middle observation's emission
        time (MJD TDB); possibly empty.
    """
    t = kepler.tai_to_tdb(np.asarray(mjd_tai, dtype=float))
    rhat = kepler.vectors_from_radec(ra, dec)
    big_r = np.asarray(obs_pos, dtype=float)
    mu = kepler.GM_SUN
    out: list[Any] = []
    tau1, tau3 = t[0] - t[1], t[2] - t[1]
    tau = tau3 - tau1
    p1, p2, p3 = np.cross(rhat[1], rhat[2]), np.cross(rhat[0], rhat[2]), \
        np.cross(rhat[0], rhat[1])
    d0 = rhat[0] @ p1
    if abs(d0) < 1e-14:
        return out
    d = np.array([[big_r[i] @ p for p in (p1, p2, p3)] for i in range(3)])
    a_ = (-d[0, 1] * tau3 / tau + d[1, 1] + d[2, 1] * tau1 / tau) / d0
    b_ = (d[0, 1] * (tau3 ** 2 - tau ** 2) * tau3 / tau
          + d[2, 1] * (tau ** 2 - tau1 ** 2) * tau1 / tau) / (6 * d0)
    e_ = big_r[1] @ rhat[1]
    r2sq = big_r[1] @ big_r[1]
    coeffs = [1.0, 0.0, -(a_ ** 2 + 2 * a_ * e_ + r2sq), 0.0, 0.0,
              -2 * mu * b_ * (a_ + e_), 0.0, 0.0, -(mu ** 2) * b_ ** 2]
    roots = np.roots(coeffs)
    for root in roots:
        if abs(root.imag) > 1e-9 or root.real <= 0:
            continue
        x = root.real
        f1 = 1 - 0.5 * mu * tau1 ** 2 / x ** 3
        f3 = 1 - 0.5 * mu * tau3 ** 2 / x ** 3
        g1 = tau1 - mu * tau1 ** 3 / (6 * x ** 3)
        g3 = tau3 - mu * tau3 ** 3 / (6 * x ** 3)
        rho2 = a_ + mu * b_ / x ** 3
        if rho2 <= 0:
            continue
        rho1 = ((6 * (d[2, 0] * tau1 / tau3 + d[1, 0] * tau / tau3) * x ** 3
                 + mu * d[2, 0] * (tau ** 2 - tau1 ** 2) * tau1 / tau3)
                / (6 * x ** 3 + mu * (tau ** 2 - tau3 ** 2)) - d[0, 0]) / d0
        rho3 = ((6 * (d[0, 2] * tau3 / tau1 - d[1, 2] * tau / tau1) * x ** 3
                 + mu * d[0, 2] * (tau ** 2 - tau3 ** 2) * tau3 / tau1)
                / (6 * x ** 3 + mu * (tau ** 2 - tau1 ** 2)) - d[2, 2]) / d0
        r1 = big_r[0] + rho1 * rhat[0]
        r2 = big_r[1] + rho2 * rhat[1]
        r3 = big_r[2] + rho3 * rhat[2]
        v2 = (-f3 * r1 + f1 * r3) / (f1 * g3 - f3 * g1)
        if np.all(np.isfinite(v2)):
            out.append((r2, v2, float(t[1] - rho2 / kepler.C_AU_PER_DAY)))
    return out
