"""The joint fit of one galaxy model to the pixels of every epoch (and CModel).

Data
----
Each :class:`Epoch` is a cutout of one calibrated exposure around the object: the
background-subtracted pixels (counts), their inverse variance (0 for masked pixels and for
neighbours' pixels), the PSF as a Gaussian mixture at the object's position, the WCS as an
affine map from the sky-plane offsets ``(u, v)`` (arcsec, ``u`` east, ``v`` north, around the
object's reference position) to pixels, and the photometric calibration (counts per nJy).
The coadd is fitted by the same code as a single epoch.

Model
-----
Parameters ``theta``: the centre offset ``(u0, v0)`` (arcsec) and, for galaxies, the ellipse
``(eta1, eta2, ln r)`` of :mod:`hpcpipe.meas.multifit.profiles`; one flux per band (nJy). On
epoch ``e`` of band ``b`` the model is ``F_b c_e T_e(theta)`` with ``T_e`` the unit-flux
profile convolved with the epoch's PSF mixture, rendered at pixel centres
(:func:`hpcpipe.kernels.gmrender.gm_moments` sums what the fit needs over the pixels).

Fit
---
Levenberg-Marquardt on ``chi^2 = sum w (data - model)**2`` with the analytic Jacobian of all
parameters (shape and fluxes); the fluxes are solved linearly at every trial ``theta``
(variable projection), so a step is only accepted when it lowers the chi^2 at the best
fluxes. Converged when an accepted step moves every shape parameter by less than ``tol``
(or lowers the chi^2 by less than 1e-8 of itself, or no step of damping up to 1e10 lowers
it). Errors: the square roots of the diagonal of ``(J' W J)^-1`` over all parameters at the
solution (fluxes, centre, ``g`` through ``dg/deta``, ``r``).

CModel
------
The exponential and the de Vaucouleurs fits, and the linear combination
``(1 - fracDev) T_exp + fracDev T_dev`` (both at their own best shapes) whose fluxes give the
lowest chi^2 over all epochs (``fracDev`` in [0, 1], one for all bands); its fluxes and their
errors are those of the linear fit with the combined template fixed (LSST's CModel).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hpcpipe.kernels.gmrender import gm_moments, gm_render
from hpcpipe.meas.multifit.profiles import (
    PROFILES,
    Profile,
    eta_from_shear,
    shear_from_eta,
    shear_jacobian,
    unit_covariance,
)
from hpcpipe.meas.multifit.psfgmm import PsfMixture

__all__ = ["Epoch", "EpochSet", "ModelFit", "CModelFit", "fit_model", "fit_cmodel",
           "FLAG_NOT_CONVERGED", "FLAG_NO_DATA", "FLAG_SIZE_LIMIT", "FLAG_NEGATIVE_FLUX",
           "FLAG_EDGE", "FLAG_BITS", "initial_theta"]

#: Flag bits of a fit.
FLAG_NOT_CONVERGED = 1
FLAG_NO_DATA = 2
FLAG_SIZE_LIMIT = 4
FLAG_NEGATIVE_FLUX = 8
FLAG_EDGE = 16
FLAG_BITS = {"not_converged": FLAG_NOT_CONVERGED, "no_data": FLAG_NO_DATA,
             "size_limit": FLAG_SIZE_LIMIT, "negative_flux": FLAG_NEGATIVE_FLUX,
             "edge": FLAG_EDGE}

# bounds of ln r (arcsec) and |eta| (axis ratio exp(-|eta|))
_LNR_MIN = np.log(1e-3)
_LNR_MAX = np.log(30.0)
_ETA_MAX = 4.0


@dataclass
class Epoch:
    """One exposure's cutout around the object.

    Attributes
    ----------
    image, weight : numpy.ndarray
        ``(ny, nx)``: background-subtracted counts and inverse variance (0: not used).
    x0, y0 : int
        Pixel coordinates of the cutout's first pixel.
    center : numpy.ndarray
        ``(x, y)`` pixel position of the object's reference position.
    jacobian : numpy.ndarray
        ``d(x, y)/d(u, v)``, pixels per arcsec (2 x 2).
    psf : PsfMixture
        The PSF at the object's position.
    calib : float
        Counts per nJy.
    band : str
        The filter.
    edge : bool
        The cutout was clipped by the exposure's edge.
    """

    image: np.ndarray
    weight: np.ndarray
    x0: int
    y0: int
    center: np.ndarray
    jacobian: np.ndarray
    psf: PsfMixture
    calib: float
    band: str
    edge: bool = False


class EpochSet:
    """The epochs of one object, packed for :func:`gm_moments` (pixels concatenated)."""

    def __init__(self, epochs: list[Epoch]) -> None:
        self.epochs = list(epochs)
        self.bands = sorted({e.band for e in self.epochs})
        n = len(self.epochs)
        nj = max((e.psf.amp.size for e in self.epochs), default=1)
        self.pamp = np.zeros((n, nj))
        self.pmean = np.zeros((n, nj, 2))
        self.pcov = np.zeros((n, nj, 3))
        self.pcov[:, :, 0] = self.pcov[:, :, 2] = 1.0
        data, w, box, start, npix = [], [], [], [0], []
        for i, e in enumerate(self.epochs):
            j = e.psf.amp.size
            self.pamp[i, :j] = e.psf.amp
            self.pmean[i, :j] = e.psf.mean
            self.pcov[i, :j] = e.psf.cov
            use = (e.weight > 0) & np.isfinite(e.image) & np.isfinite(e.weight)
            ny, nx = e.image.shape
            data.append(np.where(use, e.image, 0.0).astype(np.float64).ravel())
            w.append(np.where(use, e.weight, 0.0).astype(np.float64).ravel())
            box.append((e.x0, e.y0, nx, ny))
            start.append(start[-1] + nx * ny)
            npix.append(int(use.sum()))
        cat = (lambda a: np.concatenate(a) if a else np.zeros(0))  # noqa: E731
        self.data, self.w = cat(data), cat(w)
        self.box = np.array(box, dtype=np.int64).reshape(n, 4)
        self.start = np.array(start, dtype=np.int64)
        self.npix = np.array(npix, dtype=np.int64)
        self.center = np.array([e.center for e in self.epochs]).reshape(n, 2)
        self.jac = np.array([e.jacobian for e in self.epochs]).reshape(n, 2, 2)
        self.calib = np.array([e.calib for e in self.epochs], dtype=np.float64)
        self.band_index = np.array([self.bands.index(e.band) for e in self.epochs], dtype=int)
        self.edge = any(e.edge for e in self.epochs)

    def __len__(self) -> int:
        return len(self.epochs)

    @property
    def has_pixels(self) -> bool:
        """Whether any epoch has a usable pixel."""
        return bool(self.npix.sum() > 0)

    def render(self, profile: Profile, mu: np.ndarray, s: np.ndarray) -> np.ndarray:
        """The unit-flux model on every epoch's stamp (concatenated like ``data``)."""
        out = np.zeros(self.data.size)
        for i in range(len(self.epochs)):
            x0, y0, nx, ny = (int(v) for v in self.box[i])
            if nx * ny == 0:
                continue
            out[self.start[i]:self.start[i + 1]] = gm_render(
                profile.amp, profile.var, self.pamp[i], self.pmean[i], self.pcov[i], s[i],
                mu[i], x0, y0, nx, ny, deriv=False)[0].ravel()
        return out


@dataclass
class ModelFit:
    """The result of one model's fit (see the module's docstring)."""

    model: str
    theta: np.ndarray
    flux: dict[str, float]
    flux_err: dict[str, float]
    covariance: np.ndarray
    chi2: np.ndarray
    npix: np.ndarray
    niter: int
    flags: int
    g: tuple[float, float] = (0.0, 0.0)
    g_err: tuple[float, float] = (np.nan, np.nan)
    r: float = 0.0
    r_err: float = np.nan
    center_err: tuple[float, float] = (np.nan, np.nan)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def chi2_total(self) -> float:
        """The chi^2 summed over the epochs."""
        return float(np.sum(self.chi2))


@dataclass
class CModelFit:
    """CModel: the exponential and de Vaucouleurs fits and their best combination."""

    exp: ModelFit
    dev: ModelFit
    frac_dev: float
    flux: dict[str, float]
    flux_err: dict[str, float]
    chi2: np.ndarray
    flags: int


def _maps(es: EpochSet, theta: np.ndarray, shaped: bool
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per epoch: the pixel centre ``mu``, unit covariance ``S`` (xx, xy, yy) and the map
    ``L`` (E, 5, ntheta) from theta to (mu_x, mu_y, Sxx, Sxy, Syy)."""
    n = len(es)
    jac = es.jac
    mu = es.center + jac @ theta[:2]
    nt = theta.size
    lmap = np.zeros((n, 5, nt))
    lmap[:, 0:2, 0:2] = jac
    s = np.zeros((n, 3))
    if shaped:
        sigma, dsig = unit_covariance(theta[2], theta[3], theta[4], deriv=True)
        sp = jac @ sigma @ jac.transpose(0, 2, 1)
        s[:] = np.stack([sp[:, 0, 0], sp[:, 0, 1], sp[:, 1, 1]], axis=1)
        for i in range(3):
            dsp = jac @ dsig[i] @ jac.transpose(0, 2, 1)
            lmap[:, 2, 2 + i] = dsp[:, 0, 0]
            lmap[:, 3, 2 + i] = dsp[:, 0, 1]
            lmap[:, 4, 2 + i] = dsp[:, 1, 1]
    return mu, s, lmap


def _moments(profile: Profile, es: EpochSet, theta: np.ndarray, deriv: bool
             ) -> tuple[np.ndarray, np.ndarray]:
    mu, s, lmap = _maps(es, theta, profile.has_shape)
    m = gm_moments(profile.amp, profile.var, es.pamp, es.pmean, es.pcov, s, mu, es.box,
                   es.data, es.w, es.start, deriv)
    return m, lmap


def _fluxes(es: EpochSet, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best fluxes per band, their template-fixed errors, and chi^2 per epoch."""
    nb = len(es.bands)
    c = es.calib
    num = np.bincount(es.band_index, c * m[:, 0, 6], minlength=nb)
    den = np.bincount(es.band_index, c * c * m[:, 0, 0], minlength=nb)
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = np.where(den > 0, num / den, 0.0)
        err = np.where(den > 0, 1.0 / np.sqrt(den), np.nan)
    fe = flux[es.band_index] * c
    chi2 = m[:, 6, 6] - 2.0 * fe * m[:, 0, 6] + fe * fe * m[:, 0, 0]
    return flux, err, chi2


def _normal_equations(es: EpochSet, m: np.ndarray, lmap: np.ndarray, flux: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``J' W J`` and ``J' W r`` over (theta, fluxes) at the given fluxes."""
    nt = lmap.shape[2]
    nb = len(es.bands)
    c = es.calib
    fe = flux[es.band_index] * c
    dd = np.einsum("eai,eab,ebj->eij", lmap, m[:, 1:6, 1:6], lmap)
    dt = np.einsum("eai,ea->ei", lmap, m[:, 1:6, 0])
    dy = np.einsum("eai,ea->ei", lmap, m[:, 1:6, 6])
    h = np.zeros((nt + nb, nt + nb))
    g = np.zeros(nt + nb)
    h[:nt, :nt] = np.einsum("e,eij->ij", fe * fe, dd)
    g[:nt] = np.einsum("e,ei->i", fe, dy - fe[:, None] * dt)
    for b in range(nb):
        sel = es.band_index == b
        cb = c[sel]
        h[:nt, nt + b] = h[nt + b, :nt] = np.einsum("e,ei->i", fe[sel] * cb, dt[sel])
        h[nt + b, nt + b] = np.sum(cb * cb * m[sel, 0, 0])
        g[nt + b] = np.sum(cb * (m[sel, 0, 6] - fe[sel] * m[sel, 0, 0]))
    return h, g


def _clamp(theta: np.ndarray, shaped: bool) -> tuple[np.ndarray, bool]:
    if not shaped:
        return theta, False
    t = theta.copy()
    eta = np.hypot(t[2], t[3])
    if eta > _ETA_MAX:
        t[2:4] *= _ETA_MAX / eta
    hit = not (_LNR_MIN < t[4] < _LNR_MAX)
    t[4] = np.clip(t[4], _LNR_MIN, _LNR_MAX)
    return t, hit


def initial_theta(model: str, r: float = 0.5, g: tuple[float, float] = (0.0, 0.0),
                  center: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Starting parameters: centre offset (arcsec), reduced shear ``g`` and radius ``r``."""
    if not PROFILES[model].has_shape:
        return np.array(center, dtype=np.float64)
    e1, e2 = eta_from_shear(*g)
    return np.array([center[0], center[1], e1, e2, np.log(max(r, 1e-3))])


def fit_model(epochs: EpochSet | list[Epoch], model: str = "exp",
              theta0: np.ndarray | None = None, max_iter: int = 50, tol: float = 1e-4
              ) -> ModelFit:
    """Fit ``model`` (``point``, ``exp`` or ``dev``) to the epochs; see the module docstring.

    Parameters
    ----------
    epochs : EpochSet or list of Epoch
        The object's data.
    model : str
        The profile.
    theta0 : numpy.ndarray, optional
        Starting parameters (:func:`initial_theta`; default: centred, r = 0.5 arcsec, round).
    max_iter : int
        Most Levenberg-Marquardt steps.
    tol : float
        Convergence: the largest accepted change of a shape parameter.

    Returns
    -------
    ModelFit
    """
    if model not in PROFILES:
        raise ValueError(f"unknown model {model!r}; known: {sorted(PROFILES)}")
    es = epochs if isinstance(epochs, EpochSet) else EpochSet(epochs)
    profile = PROFILES[model]
    shaped = profile.has_shape
    theta = np.array(initial_theta(model) if theta0 is None else theta0, dtype=np.float64)
    if theta.size != (5 if shaped else 2) or not np.all(np.isfinite(theta)):
        theta = initial_theta(model)
    nt = theta.size
    nb = len(es.bands)
    if len(es) == 0 or not es.has_pixels:
        return ModelFit(model, theta, dict.fromkeys(es.bands, np.nan),
                        dict.fromkeys(es.bands, np.nan), np.full((nt + nb,) * 2, np.nan),
                        np.zeros(len(es)), es.npix, 0, FLAG_NO_DATA)
    flags = FLAG_EDGE if es.edge else 0
    theta, hit = _clamp(theta, shaped)
    m, lmap = _moments(profile, es, theta, True)
    flux, _, chi2 = _fluxes(es, m)
    total = float(chi2.sum())
    lam = 1e-3
    converged = False
    niter = 0
    for niter in range(1, max_iter + 1):  # noqa: B007 - niter is reported
        h, g = _normal_equations(es, m, lmap, flux)
        diag = np.diag(h).copy()
        diag[diag <= 0] = 1.0
        accepted = False
        while lam < 1e10:
            try:
                step = np.linalg.solve(h + lam * np.diag(diag), g)
            except np.linalg.LinAlgError:
                lam *= 10.0
                continue
            if not np.all(np.isfinite(step)):
                lam *= 10.0
                continue
            trial, trial_hit = _clamp(theta + step[:nt], shaped)
            m_t, lmap_t = _moments(profile, es, trial, True)
            flux_t, _, chi2_t = _fluxes(es, m_t)
            total_t = float(chi2_t.sum())
            if np.isfinite(total_t) and total_t <= total:
                moved = np.max(np.abs(trial - theta))
                gain = total - total_t
                theta, m, lmap, flux, chi2, hit = trial, m_t, lmap_t, flux_t, chi2_t, trial_hit
                total = total_t
                lam = max(lam * 0.1, 1e-9)
                accepted = True
                converged = moved < tol or gain < 1e-8 * max(total, 1.0)
                break
            lam *= 10.0
        if not accepted:
            converged = True  # no step lowers the chi^2: at the minimum (to rounding)
        if converged:
            break
    if not converged:
        flags |= FLAG_NOT_CONVERGED
    if hit:
        flags |= FLAG_SIZE_LIMIT
    if np.all(flux <= 0):
        flags |= FLAG_NEGATIVE_FLUX
    h, _ = _normal_equations(es, m, lmap, flux)
    try:
        cov = np.linalg.inv(h)
    except np.linalg.LinAlgError:
        cov = np.full_like(h, np.nan)
    err = np.sqrt(np.where(np.diag(cov) >= 0, np.diag(cov), np.nan))
    result = ModelFit(model, theta, dict(zip(es.bands, flux.tolist())),
                      dict(zip(es.bands, err[nt:].tolist())), cov, chi2, es.npix, niter,
                      flags, center_err=(float(err[0]), float(err[1])))
    if shaped:
        result.g = shear_from_eta(theta[2], theta[3])
        dg = shear_jacobian(theta[2], theta[3])
        gcov = dg @ cov[2:4, 2:4] @ dg.T
        result.g_err = (float(np.sqrt(max(gcov[0, 0], 0))), float(np.sqrt(max(gcov[1, 1], 0))))
        result.r = float(np.exp(theta[4]))
        result.r_err = float(result.r * err[4])
    return result


def fit_cmodel(epochs: EpochSet | list[Epoch], theta0: np.ndarray | None = None,
               max_iter: int = 50, exp_fit: ModelFit | None = None) -> CModelFit:
    """CModel: fit ``exp`` and ``dev`` (``dev`` from the ``exp`` solution), then combine.

    ``exp_fit``, when given, is used instead of fitting the exponential again.
    """
    es = epochs if isinstance(epochs, EpochSet) else EpochSet(epochs)
    exp = exp_fit if exp_fit is not None else fit_model(es, "exp", theta0, max_iter)
    dev_start = exp.theta.copy()
    if not exp.flags & (FLAG_NO_DATA | FLAG_NOT_CONVERGED):
        dev_start[4] += np.log(1.5)  # a de Vaucouleurs fit is larger than the exponential
    else:
        dev_start = theta0 if theta0 is not None else initial_theta("dev")
    dev = fit_model(es, "dev", dev_start, max_iter)
    nb = len(es.bands)
    if len(es) == 0 or not es.has_pixels:
        return CModelFit(exp, dev, np.nan, dict.fromkeys(es.bands, np.nan),
                         dict.fromkeys(es.bands, np.nan), np.zeros(len(es)), FLAG_NO_DATA)
    # the two templates (each at its own best shape) and the data: their weighted products
    te = es.render(PROFILES["exp"], *_maps(es, exp.theta, True)[:2])
    td = es.render(PROFILES["dev"], *_maps(es, dev.theta, True)[:2])
    seg = np.repeat(np.arange(len(es)), np.diff(es.start))

    def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.bincount(seg, es.w * a * b, minlength=len(es))

    ee, ed, dd = dot(te, te), dot(te, td), dot(td, td)
    ey, dy, yy = dot(te, es.data), dot(td, es.data), dot(es.data, es.data)
    c = es.calib
    fracs = np.linspace(0.0, 1.0, 201)
    best = (np.inf, 0.0)
    for f in fracs:
        tt = (1 - f) ** 2 * ee + 2 * f * (1 - f) * ed + f * f * dd
        ty = (1 - f) * ey + f * dy
        num = np.bincount(es.band_index, c * ty, minlength=nb)
        den = np.bincount(es.band_index, c * c * tt, minlength=nb)
        chi2 = float(np.sum(yy) - np.sum(np.where(den > 0, num * num / np.where(
            den > 0, den, 1.0), 0.0)))
        if chi2 < best[0]:
            best = (chi2, f)
    f = best[1]
    tt = (1 - f) ** 2 * ee + 2 * f * (1 - f) * ed + f * f * dd
    ty = (1 - f) * ey + f * dy
    num = np.bincount(es.band_index, c * ty, minlength=nb)
    den = np.bincount(es.band_index, c * c * tt, minlength=nb)
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = np.where(den > 0, num / den, np.nan)
        err = np.where(den > 0, 1.0 / np.sqrt(den), np.nan)
    fe = np.nan_to_num(flux)[es.band_index] * c
    chi2 = yy - 2 * fe * ty + fe * fe * tt
    flags = (exp.flags | dev.flags) & (FLAG_NO_DATA | FLAG_EDGE)
    if (exp.flags & FLAG_NOT_CONVERGED) and (dev.flags & FLAG_NOT_CONVERGED):
        flags |= FLAG_NOT_CONVERGED
    return CModelFit(exp, dev, float(f), dict(zip(es.bands, flux.tolist())),
                     dict(zip(es.bands, err.tolist())), chi2, flags)
