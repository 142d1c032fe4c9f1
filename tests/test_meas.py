"""PSF modelling, astrometric and photometric calibration on data with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from hpcpipe.meas.astrometry import AstrometryError, fit_tan_sip, match_to_reference
from hpcpipe.meas.photometry import PhotoCalError, fit_zero_point
from hpcpipe.meas.psf_model import PsfFitError, fit_pixel_psf, select_stars
from hpcpipe.sim.camera import CameraConfig, SimCamera
from hpcpipe.sim.raw import VisitPlan, ccd_header_wcs, ccd_true_wcs


def _plan(pointing=(2.0, -1.5)):
    return VisitPlan(visit=1, band="r", date="2026-01-10T03:00:00", ra=150.0, dec=2.0,
                     pointing_error=pointing)


def test_match_and_fit_recover_the_true_wcs():
    camera = SimCamera(CameraConfig())
    plan = _plan()
    ccd = 0  # a corner CCD: the largest distortion
    truth = ccd_true_wcs(camera, plan, ccd)
    rng = np.random.default_rng(3)
    n = 300
    x = rng.uniform(0, 2048, n)
    y = rng.uniform(0, 2048, n)
    ra, dec = truth.all_pix2world(x, y, 0)
    xm = x + rng.normal(0, 0.02, n)
    ym = y + rng.normal(0, 0.02, n)
    # a reference catalog with 20% extra stars not detected, and 20% sources without match
    extra = rng.uniform(0, 2048, (60, 2))
    ra_x, dec_x = truth.all_pix2world(extra[:, 0], extra[:, 1], 0)
    ref_ra = np.concatenate([ra[:240], ra_x])
    ref_dec = np.concatenate([dec[:240], dec_x])
    header = ccd_header_wcs(camera, plan, ccd)
    ref_x, ref_y = header.all_world2pix(ref_ra, ref_dec, 0)
    matches = match_to_reference(xm, ym, ref_x, ref_y)
    assert len(matches) >= 230
    assert np.all(matches.source_index == matches.ref_index)  # the first 240 are the same
    fit = fit_tan_sip(xm[matches.source_index], ym[matches.source_index],
                      ref_ra[matches.ref_index], ref_dec[matches.ref_index])
    gx, gy = np.meshgrid(np.linspace(0, 2047, 9), np.linspace(0, 2047, 9))
    fra, fdec = fit.wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
    tra, tdec = truth.all_pix2world(gx.ravel(), gy.ravel(), 0)
    err = np.hypot((fra - tra) * np.cos(np.radians(tdec)), fdec - tdec) * 3600e3
    assert np.max(err) < 10.0  # mas
    assert fit.residual_rms < 0.01  # arcsec: 0.02 px of noise at 0.2 arcsec/px


def test_match_refuses_empty_input():
    with pytest.raises(AstrometryError, match="nothing to match"):
        match_to_reference(np.array([]), np.array([]), np.array([1.0]), np.array([1.0]))


def test_fit_needs_enough_matches():
    with pytest.raises(AstrometryError, match="only 3 matched stars"):
        fit_tan_sip(np.arange(3.0), np.arange(3.0), np.full(3, 150.0), np.full(3, 2.0))


def _gaussian_field(shape, xs, ys, fluxes, sigmas, rng, noise=5.0):
    img = rng.normal(0, noise, shape)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for x, y, f, s in zip(xs, ys, fluxes, sigmas, strict=True):
        x0, x1 = int(max(x - 6 * s, 0)), int(min(x + 6 * s + 1, shape[1]))
        y0, y1 = int(max(y - 6 * s, 0)), int(min(y + 6 * s + 1, shape[0]))
        dx, dy = xx[y0:y1, x0:x1] - x, yy[y0:y1, x0:x1] - y
        img[y0:y1, x0:x1] += f / (2 * np.pi * s * s) * np.exp(-(dx * dx + dy * dy) / (2 * s * s))
    return img


def test_psf_fit_follows_a_width_varying_across_the_ccd():
    rng = np.random.default_rng(5)
    size = 512
    grid = np.arange(24, size - 20, 52.0)  # isolated stars, jittered sub-pixel positions
    gx, gy = np.meshgrid(grid, grid)
    n = gx.size
    xs = gx.ravel() + rng.uniform(-3, 3, n)
    ys = gy.ravel() + rng.uniform(-3, 3, n)

    def true_sigma(x, y):
        return 1.6 + 0.4 * x / size + 0.2 * y / size

    sig = true_sigma(xs, ys)
    img = _gaussian_field((size, size), xs, ys, np.full(n, 2e5), sig, rng)
    fit = fit_pixel_psf(img, xs, ys, (0, 0, size, size), stamp_size=21, order=2)
    assert fit.used.sum() >= 0.9 * n
    for x, y in [(30, 30), (256, 256), (480, 100), (100, 480)]:
        assert fit.psf.sigma_at(x, y) == pytest.approx(true_sigma(x, y), rel=0.02)


def test_psf_fit_needs_stars():
    img = np.zeros((64, 64))
    with pytest.raises(PsfFitError, match="only 0 usable PSF stars"):
        fit_pixel_psf(img, np.array([1.0]), np.array([1.0]), (0, 0, 64, 64))


def test_star_selection_keeps_the_stellar_locus():
    rng = np.random.default_rng(1)
    stars = 1.8 + rng.normal(0, 0.03, 100)
    galaxies = rng.uniform(2.2, 6.0, 150)
    size = np.concatenate([stars, galaxies])
    snr = np.full(size.size, 100.0)
    snr[:10] = 5.0  # too faint
    flagged = np.zeros(size.size, bool)
    flagged[10:15] = True
    chosen = select_stars(size, snr, flagged)
    assert chosen[15:100].all()
    assert not chosen[:15].any()
    assert chosen[100:].sum() <= 3  # galaxies at the stellar size only


def test_zero_point_with_outliers():
    rng = np.random.default_rng(2)
    zp = 28.4
    n = 200
    mag = rng.uniform(16, 21, n)
    ref = 10 ** (-0.4 * (mag - 31.4))
    counts = 10 ** (-0.4 * (mag - zp))
    err = 0.005 * counts
    counts = counts + rng.normal(0, 1, n) * err
    counts[:10] *= 3.0  # blends and variables
    fit = fit_zero_point(counts, err, ref, 0.005 * ref)
    assert fit.photo_calib.zero_point == pytest.approx(zp, abs=0.002)
    assert not fit.used[:10].any()
    with pytest.raises(PhotoCalError, match="only 0 stars"):
        fit_zero_point(-counts, err, ref, 0.005 * ref)
