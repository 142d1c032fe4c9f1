"""Multifit: the Gaussian-mixture renderer (compiled and NumPy), its derivatives, its agreement
with GalSim, and the quality of the multi-epoch fit on GalSim-simulated galaxies and stars."""

from __future__ import annotations

import numpy as np
import pytest

from hpcpipe.kernels import gmrender
from hpcpipe.kernels._loader import load_native
from hpcpipe.kernels.measure import psf_fluxes
from hpcpipe.meas.multifit import (
    PROFILES,
    Epoch,
    EpochSet,
    PsfMixture,
    fit_cmodel,
    fit_model,
    fit_psf_mixture,
    initial_theta,
)
from hpcpipe.meas.multifit.fit import FLAG_NO_DATA
from hpcpipe.meas.multifit.profiles import (
    eta_from_shear,
    shear_from_eta,
    shear_jacobian,
    unit_covariance,
)

galsim = pytest.importorskip("galsim")
from multifit_sim import PIXEL_SCALE, make_objects  # noqa: E402


def _mixture_args(rng: np.random.Generator, nepochs: int = 3):
    p = PROFILES["dev"]
    pamp = np.array([[0.7, 0.4, -0.1]] * nepochs)  # a negative Gaussian (PSF mixtures have)
    pamp[-1, -1] = 0.0  # an unused Gaussian
    pmean = rng.normal(0, 0.1, (nepochs, 3, 2))
    pcov = np.array([[[2.0, 0.2, 2.4], [5.0, -0.3, 4.0], [15.0, 1.0, 12.0]]] * nepochs)
    s = np.array([[9.0, 2.0, 5.0]] * nepochs) * rng.uniform(0.5, 1.5, (nepochs, 1))
    mu = rng.uniform(8, 12, (nepochs, 2))
    return p.amp, p.var, pamp, pmean, pcov, s, mu


def test_native_kernel_matches_reference():
    if load_native("gmrender") is None:
        pytest.skip("compiled gmrender kernel not built")
    rng = np.random.default_rng(1)
    amp, var, pamp, pmean, pcov, s, mu = _mixture_args(rng)
    for deriv in (True, False):
        a = gmrender.gm_render(amp, var, pamp[0], pmean[0], pcov[0], s[0], mu[0], -3, 2, 25,
                               21, deriv)
        b = gmrender.gm_render_reference(amp, var, pamp[0], pmean[0], pcov[0], s[0], mu[0],
                                         -3, 2, 25, 21, deriv)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15 * np.abs(b).max())
    # three stamps, one empty, the others partly outside the Gaussians' reach
    box = np.array([[0, 0, 17, 12], [3, 4, 0, 0], [-5, 2, 30, 21]])
    start = np.concatenate([[0], np.cumsum(box[:, 2] * box[:, 3])])
    data = rng.normal(0, 1, start[-1])
    w = rng.uniform(0.5, 2, start[-1])
    w[::17] = 0.0  # left out
    mu[2] = (40.0, 30.0)  # the maxima of most rows are off the stamp
    for deriv in (True, False):
        a = gmrender.gm_moments(amp, var, pamp, pmean, pcov, s, mu, box, data, w, start,
                                deriv)
        b = gmrender.gm_moments_reference(amp, var, pamp, pmean, pcov, s, mu, box, data, w,
                                          start, deriv)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.abs(b).max())
        assert np.all(a[1] == 0.0)  # the empty stamp
    with pytest.raises(ValueError, match="inconsistent shapes"):
        gmrender.gm_moments(amp, var, pamp, pmean, pcov, s, mu, box, data[:-1], w[:-1], start)


def test_render_derivatives_match_finite_differences():
    rng = np.random.default_rng(2)
    amp, var, pamps, pmeans, pcovs, ss, mus = _mixture_args(rng)
    pamp, pmean, pcov, s, mu = pamps[0], pmeans[0], pcovs[0], ss[0], mus[0]
    args = dict(x0=0, y0=0, nx=21, ny=21)
    out = gmrender.gm_render(amp, var, pamp, pmean, pcov, s, mu, **args)
    h = 1e-5
    for i in range(2):
        d = np.zeros(2)
        d[i] = h
        num = (gmrender.gm_render(amp, var, pamp, pmean, pcov, s, mu + d, deriv=False, **args)
               - gmrender.gm_render(amp, var, pamp, pmean, pcov, s, mu - d, deriv=False,
                                    **args))[0] / (2 * h)
        np.testing.assert_allclose(out[1 + i], num, atol=1e-8 * np.abs(num).max() + 1e-12)
    for i in range(3):
        d = np.zeros(3)
        d[i] = h
        num = (gmrender.gm_render(amp, var, pamp, pmean, pcov, s + d, mu, deriv=False, **args)
               - gmrender.gm_render(amp, var, pamp, pmean, pcov, s - d, mu, deriv=False,
                                    **args))[0] / (2 * h)
        np.testing.assert_allclose(out[3 + i], num, atol=1e-7 * np.abs(num).max() + 1e-12)


@pytest.mark.parametrize("eta", [(0.0, 0.0), (0.3, -0.5), (1e-4, 2e-4), (2.0, 1.0)])
def test_ellipse_parameterisation(eta):
    sigma, d = unit_covariance(eta[0], eta[1], np.log(0.7), deriv=True)
    assert np.linalg.det(sigma) == pytest.approx(0.7 ** 4, rel=1e-12)
    h = 1e-6
    for i in range(3):
        p = np.array([eta[0], eta[1], np.log(0.7)])
        q = p.copy()
        p[i] += h
        q[i] -= h
        num = (unit_covariance(*p) - unit_covariance(*q)) / (2 * h)
        np.testing.assert_allclose(d[i], num, atol=1e-7)
    g = shear_from_eta(*eta)
    assert np.hypot(*g) < 1
    np.testing.assert_allclose(eta_from_shear(*g), eta, atol=1e-12)
    # GalSim's shear of the same ellipse: a/b = (1 + |g|) / (1 - |g|)
    evals = np.linalg.eigvalsh(sigma)
    gm = np.hypot(*g)
    assert np.sqrt(evals[1] / evals[0]) == pytest.approx((1 + gm) / (1 - gm), rel=1e-10)
    num = np.empty((2, 2))
    for i in range(2):
        p = np.array(eta, dtype=float)
        q = p.copy()
        p[i] += h
        q[i] -= h
        num[:, i] = (np.array(shear_from_eta(*p)) - np.array(shear_from_eta(*q))) / (2 * h)
    np.testing.assert_allclose(shear_jacobian(*eta), num, atol=1e-7)
    with pytest.raises(ValueError, match="below 1"):
        eta_from_shear(0.8, 0.7)


def test_profiles_half_light_radius():
    """The mixtures hold half of the untruncated profile's flux within r = 1."""
    for name in ("exp", "dev"):
        p = PROFILES[name]
        inside = np.sum(p.amp * (1 - np.exp(-0.5 / p.var)))
        assert inside == pytest.approx(0.5, abs=0.01), name


@pytest.mark.parametrize("n,model", [(1.0, "exp"), (4.0, "dev")])
@pytest.mark.parametrize("psf_kind", ["gaussian", "moffat"])
def test_render_matches_galsim(n, model, psf_kind):
    """A sheared Sersic profile convolved with a PSF, drawn by GalSim on a rotated and
    sheared pixel grid, against the mixture convolved with the PSF's mixture."""
    hlr, g, flux = 0.5, (0.25, -0.15), 1.0
    offset = (0.3, -0.2)
    size = 45
    # world (u, v) arcsec = M (x, y): pixels of 0.2 arcsec, rotated by 20 deg, a little skew
    th = np.radians(20)
    m = PIXEL_SCALE * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) @ \
        np.array([[1.0, 0.05], [0.0, 1.02]])
    wcs = galsim.JacobianWCS(m[0, 0], m[0, 1], m[1, 0], m[1, 1])
    gal = galsim.Sersic(n=n, half_light_radius=hlr, flux=flux).shear(g1=g[0], g2=g[1])
    if psf_kind == "gaussian":
        psf_obj = galsim.Gaussian(fwhm=0.7)
        sig = 0.7 / 2.3548
        cov_world = np.eye(2) * sig ** 2
        minv = np.linalg.inv(m)
        cp = minv @ cov_world @ minv.T
        psf = PsfMixture(np.ones(1), np.zeros((1, 2)), np.array([[cp[0, 0], cp[0, 1],
                                                                   cp[1, 1]]]))
        method = "no_pixel"
    else:
        psf_obj = galsim.Moffat(beta=3.5, fwhm=0.7).shear(g1=0.03, g2=0.02)
        psf_img = psf_obj.drawImage(nx=41, ny=41, wcs=wcs).array
        psf = fit_psf_mixture(psf_img / psf_img.sum(), 3)
        method = "auto"
    gs = galsim.Convolve([gal, psf_obj]).drawImage(nx=size, ny=size, wcs=wcs, offset=offset,
                                                   method=method).array
    centre = np.array([(size - 1) / 2 + offset[0], (size - 1) / 2 + offset[1]])
    jac = np.linalg.inv(m)
    p = PROFILES[model]
    sigma = unit_covariance(*eta_from_shear(*g), np.log(hlr))
    sp = jac @ sigma @ jac.T
    ours = gmrender.gm_render(p.amp, p.var, psf.amp, psf.mean, psf.cov,
                              np.array([sp[0, 0], sp[0, 1], sp[1, 1]]), centre, 0, 0, size,
                              size, deriv=False)[0]
    diff = np.abs(ours - gs).max() / flux
    # the pixels' residual: a few 1e-3 of the flux at most (the peak pixel holds ~5%)
    limit = 3e-3 if model == "exp" else 6e-3
    assert diff < limit, (diff, gs.max())
    # the mixture's flux is its share of the untruncated profile's
    assert ours.sum() == pytest.approx(p.amp.sum(), rel=5e-3)


def test_psf_mixture_fits_kolmogorov():
    img = galsim.Kolmogorov(fwhm=0.8).drawImage(nx=41, ny=41, scale=PIXEL_SCALE,
                                                offset=(0.2, -0.3)).array
    mix = fit_psf_mixture(img, 3)
    assert mix.amp.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(mix.mean[0], [0.2, -0.3], atol=2e-3)
    model = mix.render(img.shape, 20.0, 20.0)
    # the mixture approximates the PSF stamp normalised to a sum of 1 (hpcpipe's convention)
    # to 0.5% of the peak with 3 Gaussians (the Kolmogorov's wings are not Gaussian)
    target = img / img.sum()
    assert np.abs(model - target).max() < 5e-3 * target.max()
    assert mix.residual < 1e-3
    with pytest.raises(ValueError, match="no flux"):
        fit_psf_mixture(np.zeros((5, 5)))


@pytest.fixture(scope="module")
def galaxies():
    """60 exponential galaxies, 8 epochs of seeing 0.6-1.2 arcsec, S/N 50-2000."""
    objects = make_objects(60, seed=11, n_epochs=8, snr_range=(50.0, 2000.0))
    rows = []
    for o in objects:
        me = fit_model(o.epochs, "exp", initial_theta("exp", 0.5))
        co = fit_model([o.coadd], "exp", initial_theta("exp", 0.5))
        rows.append((o, me, co))
    return rows


def test_multi_epoch_fit_quality(galaxies):
    flux = np.array([o.flux for o, _, _ in galaxies])
    g_true = np.array([o.g for o, _, _ in galaxies])
    res = {}
    for k, name in ((1, "multi"), (2, "coadd")):
        fits = [row[k] for row in galaxies]
        assert all(f.flags == 0 for f in fits), [f.flags for f in fits]
        f = np.array([x.flux["r"] for x in fits])
        fe = np.array([x.flux_err["r"] for x in fits])
        g = np.array([x.g for x in fits])
        ge = np.array([x.g_err for x in fits])
        snr = f / fe
        res[name] = dict(f=f, fe=fe, g=g, ge=ge, snr=snr)
    snr = res["multi"]["snr"]
    hi = snr > 50
    assert hi.sum() >= 40
    for name in ("multi", "coadd"):
        r = res[name]
        bias = np.median((r["f"][hi] - flux[hi]) / flux[hi])
        de = np.median(np.hypot(*(r["g"][hi] - g_true[hi]).T))
        r["bias"], r["de"] = bias, de
    assert abs(res["multi"]["bias"]) < 0.01, res["multi"]["bias"]
    assert res["multi"]["de"] < 0.01, res["multi"]["de"]
    # at least as good as the coadd fit. This coadd is the ideal one (no warping: the noise is
    # not correlated; its PSF is exactly the weighted mean of the epochs'), so the two differ
    # by little: the errors are compared object by object, the shape scatter (one noise
    # realisation of 60 objects) within its sampling noise
    assert abs(res["multi"]["bias"]) <= abs(res["coadd"]["bias"]) + 1e-3
    assert res["multi"]["de"] <= res["coadd"]["de"] * 1.15
    assert np.median(res["multi"]["fe"] / res["coadd"]["fe"]) <= 1.0
    assert np.median(np.hypot(*res["multi"]["ge"].T) / np.hypot(*res["coadd"]["ge"].T)) <= 1.0


def test_errors_match_the_scatter():
    """(fit - truth) / error has a spread within 0.9-1.2 for flux, g1 and g2, on 100 galaxies
    of S/N 50-150 (where the noise dominates the model's systematic errors)."""
    objects = make_objects(100, seed=3, n_epochs=6, half=15, snr_range=(50.0, 150.0))
    pulls = []
    for o in objects:
        fit = fit_model(o.epochs, "exp", initial_theta("exp", 0.5))
        assert fit.flags == 0
        pulls.append(((fit.flux["r"] - o.flux) / fit.flux_err["r"],
                      (fit.g[0] - o.g[0]) / fit.g_err[0], (fit.g[1] - o.g[1]) / fit.g_err[1]))
    for name, pull in zip(("flux", "g1", "g2"), np.array(pulls).T):
        assert np.all(np.abs(pull) < 5), name
        assert 0.9 < np.std(pull) < 1.2, (name, np.std(pull))


def test_sizes_and_centres(galaxies):
    r = np.array([me.r for _, me, _ in galaxies])
    hlr = np.array([o.hlr for o, _, _ in galaxies])
    snr = np.array([me.flux["r"] / me.flux_err["r"] for _, me, _ in galaxies])
    hi = snr > 100
    assert abs(np.median(r[hi] / hlr[hi]) - 1) < 0.02
    off = np.array([me.theta[:2] for _, me, _ in galaxies])
    assert np.median(np.abs(off[hi])) < 0.01  # arcsec: the true centre is the reference


def test_stars_point_source_agrees_with_psf_flux():
    stars = make_objects(20, seed=5, n_epochs=6, star_fraction=1.0, snr_range=(50.0, 500.0))
    diffs, ratios = [], []
    for o in stars:
        fit = fit_model(o.epochs, "point")
        assert fit.flags == 0
        # forced PSF photometry (hpcpipe.kernels.measure.psf_fluxes) on every epoch, with the
        # true PSF image at the star's position, calibrated and averaged with its weights
        fl, wt = [], []
        for e, fwhm in zip(o.epochs, np.linspace(0.6, 1.2, 6)):
            psf = galsim.Kolmogorov(fwhm=float(fwhm)).drawImage(
                nx=e.image.shape[1], ny=e.image.shape[0], scale=PIXEL_SCALE,
                offset=o.offset).array
            out = psf_fluxes(e.image.astype(np.float32),
                             (1.0 / e.weight).astype(np.float32), None,
                             (psf / psf.sum())[None], np.array([[0, 0]]))
            fl.append(out["psf_flux"][0] / e.calib)
            wt.append((e.calib / out["psf_flux_err"][0]) ** 2)
        forced = np.average(fl, weights=wt)
        forced_err = 1.0 / np.sqrt(np.sum(wt))
        diffs.append((fit.flux["r"] - forced) / forced_err)
        ratios.append(fit.flux["r"] / o.flux)
        assert fit.flux_err["r"] == pytest.approx(forced_err, rel=0.05)
    assert np.median(np.abs(diffs)) < 0.5
    assert abs(np.median(ratios) - 1) < 0.01


def test_cmodel_picks_the_profile():
    exp_gals = make_objects(4, seed=21, n_epochs=4, snr_range=(800.0, 1000.0),
                            hlr_range=(0.6, 0.9))
    dev_gals = make_objects(4, seed=22, n_epochs=4, snr_range=(800.0, 1000.0), sersic_n=4.0,
                            hlr_range=(0.6, 0.9))
    for objs, want in ((exp_gals, 0.0), (dev_gals, 1.0)):
        for o in objs:
            cm = fit_cmodel(o.epochs, initial_theta("exp", 0.5))
            assert abs(cm.frac_dev - want) < 0.35, (cm.frac_dev, want)
            assert cm.flux["r"] == pytest.approx(o.flux, rel=0.05)
            assert cm.chi2.sum() <= min(cm.exp.chi2_total, cm.dev.chi2_total) + 1e-6


def test_no_data_and_bad_input():
    psf = PsfMixture.gaussian(2.0)
    img = np.zeros((9, 9))
    e = Epoch(img, np.zeros_like(img), 0, 0, np.array([4.0, 4.0]), np.eye(2) * 5, psf, 1.0,
              "g")
    fit = fit_model(EpochSet([e]), "exp")
    assert fit.flags & FLAG_NO_DATA
    assert np.isnan(fit.flux["g"])
    with pytest.raises(ValueError, match="unknown model"):
        fit_model([e], "sersic")
    with pytest.raises(ValueError, match="inconsistent shapes"):
        gmrender.gm_render(np.ones(2), np.ones(3), np.ones(1), np.zeros((1, 2)),
                           np.ones((1, 3)), np.ones(3), np.zeros(2), 0, 0, 3, 3)


def test_multifit_task_on_calexps():
    """The production task on four small calexps (two filters, rotated WCSs, different
    seeing and zero points) with a galaxy and a star drawn by GalSim at known sky positions."""
    from galsim_sky import make_wcs

    from hpcpipe.image import Exposure
    from hpcpipe.image.calib import FilterLabel, PhotoCalib
    from hpcpipe.image.psf import GaussianPsf
    from hpcpipe.meas.multifit.epochs import local_jacobian
    from hpcpipe.pipe.multifit import MultifitTask
    from hpcpipe.table import Catalog

    rng = np.random.default_rng(4)
    truth = [  # ra, dec offsets (arcsec) from the field centre, flux g, r (nJy), star, g1, g2
        (-4.0, 2.0, 40000.0, 60000.0, False, 0.2, -0.1),
        (5.0, -3.0, 30000.0, 20000.0, True, 0.0, 0.0)]
    ra0, dec0 = 150.0, 2.0
    calexps = []
    noise = 5.0
    for i, (band, rot, sigma, zp) in enumerate((("g", 0.0, 1.6, 31.0), ("g", 30.0, 2.6, 31.3),
                                                ("r", 75.0, 1.9, 30.8), ("r", 140.0, 3.0,
                                                                         31.1))):
        wcs = make_wcs((120, 120), ra0, dec0, 0.2, rot)
        calib = PhotoCalib(zp)
        counts_per_njy = 1.0 / calib.calibration_mean
        img = rng.normal(0.0, noise, (120, 120))
        for dra, ddec, fg, fr, star, g1, g2 in truth:
            ra = ra0 + dra / 3600.0 / np.cos(np.radians(dec0))
            dec = dec0 + ddec / 3600.0
            pos, jac = local_jacobian(wcs, ra, dec)
            m = np.linalg.inv(jac[0])  # d(u, v)/d(x, y), arcsec per pixel
            gwcs = galsim.JacobianWCS(m[0, 0], m[0, 1], m[1, 0], m[1, 1])
            psf = galsim.Gaussian(sigma=sigma * 0.2)
            flux = (fg if band == "g" else fr) * counts_per_njy
            obj = psf if star else galsim.Convolve([galsim.Exponential(
                half_light_radius=0.6).shear(g1=g1, g2=g2), psf])
            ix, iy = int(np.floor(pos[0, 0] + 0.5)), int(np.floor(pos[0, 1] + 0.5))
            stamp = obj.withFlux(flux).drawImage(nx=51, ny=51, wcs=gwcs, offset=(
                pos[0, 0] - ix, pos[0, 1] - iy)).array
            img[iy - 25:iy + 26, ix - 25:ix + 26] += stamp
        exposure = Exposure((120, 120), wcs=wcs, psf=GaussianPsf(sigma), filter=FilterLabel(
            band=band), photo_calib=calib)
        exposure.image.array[:] = img
        exposure.variance.array[:] = noise ** 2
        calexps.append(({"visit": 100 + i, "ccd": 0}, exposure))
    n = len(truth)
    ras = np.array([ra0 + t[0] / 3600.0 / np.cos(np.radians(dec0)) for t in truth])
    decs = np.array([dec0 + t[1] / 3600.0 for t in truth])
    refs = Catalog.from_columns(None, {
        "id": np.arange(1, n + 1, dtype=np.int64), "coord_ra": np.radians(ras),
        "coord_dec": np.radians(decs), "base_PsfFlux_instFlux": np.full(n, 1000.0),
        "base_PsfFlux_instFluxErr": np.ones(n), "base_SdssShape_xx": np.full(n, np.nan),
        "base_SdssShape_yy": np.full(n, np.nan), "base_SdssShape_xy": np.full(n, np.nan),
        "detect_isPrimary": np.ones(n, bool), "deblend_nChild": np.zeros(n, np.int32)})
    task = MultifitTask()
    result = task.run(refs, calexps, {}, None, {}, ["g", "r"])
    cat, epochs = result.catalog, result.epochs
    assert len(cat) == 2 and len(epochs) == 8
    assert list(cat["multifit_nEpochs"]) == [4, 4]
    gal, star = 0, 1
    for b, k in (("g", 2), ("r", 3)):
        assert cat[f"multifit_exp_{b}_flux"][gal] == pytest.approx(truth[gal][k], rel=0.03)
        assert cat[f"multifit_cmodel_{b}_flux"][gal] == pytest.approx(truth[gal][k], rel=0.03)
        assert cat[f"multifit_point_{b}_flux"][star] == pytest.approx(truth[star][k], rel=0.02)
    assert cat["multifit_exp_e1"][gal] == pytest.approx(0.2, abs=0.03)
    assert cat["multifit_exp_e2"][gal] == pytest.approx(-0.1, abs=0.03)
    assert cat["multifit_exp_r"][gal] == pytest.approx(0.6, rel=0.05)
    assert cat["multifit_exp_flags"][gal] == 0 and cat["multifit_point_flags"][star] == 0
    assert cat["multifit_cmodel_fracDev"][gal] < 0.5
    # the fitted position is the truth's (the references are exact here)
    np.testing.assert_allclose(np.degrees(cat["coord_ra"]), ras, atol=0.02 / 3600)
    np.testing.assert_allclose(np.degrees(cat["coord_dec"]), decs, atol=0.02 / 3600)
    red = epochs["exp_chi2"][epochs["objectId"] == 1] / epochs["nPix"][epochs["objectId"] == 1]
    assert np.all((red > 0.7) & (red < 1.4))
    assert set(epochs["visit"]) == {100, 101, 102, 103}
    # the coadd comparison has no coadd here
    assert np.all(cat["multifit_coadd_exp_flags"] & 2)
