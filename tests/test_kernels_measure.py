"""Measurement: native against reference, Gaussian stars of known truth, SEP, error calibration."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_sim import gaussian_stars, native_or_skip

from hpcpipe.errors import PixelTypeError
from hpcpipe.image import GaussianPsf
from hpcpipe.kernels.measure import (
    MEASUREMENT_DTYPE,
    PSF_FLUX_DTYPE,
    measure_sources,
    measure_sources_reference,
    measurement_dtype,
    pixel_overlap,
    psf_fluxes,
    psf_fluxes_reference,
)

SIGMA = 2.0


def star_field(n=25, noise=5.0, seed=1, shape=(200, 220)):
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(25, shape[1] - 20, 40), np.arange(25, shape[0] - 20, 40))
    xs = gx.ravel()[:n] + rng.uniform(-0.5, 0.5, gx.size)[:n]
    ys = gy.ravel()[:n] + rng.uniform(-0.5, 0.5, gy.size)[:n]
    fluxes = rng.uniform(2e4, 1e5, xs.size)
    img, var = gaussian_stars(shape, xs, ys, fluxes, SIGMA, noise=noise, seed=seed)
    return img, var, xs, ys, fluxes


def assert_same(a, b):
    for name in a.dtype.names:
        if a.dtype[name].base.kind == "f":
            np.testing.assert_allclose(a[name], b[name], rtol=1e-7, atol=1e-9, equal_nan=True,
                                       err_msg=name)
        else:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_native_matches_reference():
    native_or_skip("measure")
    img, var, xs, ys, _ = star_field(noise=3.0)
    rng = np.random.default_rng(4)
    mask = np.zeros(img.shape, np.int32)
    mask[rng.integers(0, 200, 300), rng.integers(0, 220, 300)] = rng.choice([1, 2, 4, 8, 16], 300)
    seg = np.zeros(img.shape, np.int32)
    seg[60:80, 60:80] = 3
    seg[100:120, 20:60] = 5
    img[10, 10] = np.nan
    nstar = xs.size
    xs = np.concatenate([xs, [1.0, 218.6, np.nan, -3.0, 10.2]])
    ys = np.concatenate([ys, [150.0, 3.0, 5.0, 4.0, 10.1]])
    ids = np.arange(xs.size) + 1
    for kwargs in (dict(psf_sigma=SIGMA), dict(psf_sigma=SIGMA, recentroid=False),
                   dict(psf_sigma=SIGMA, segments=seg, ids=ids, radii=(2.5, 7.3))):
        ours = measure_sources(img, var, mask, xs, ys, **kwargs)
        ref = measure_sources_reference(img, var, mask, xs, ys, **kwargs)
        assert_same(ours, ref)
    psf = GaussianPsf(2.1, 17)
    sel = slice(0, nstar + 2)  # the stars and two near the edges
    stamps, origins = zip(*(psf.compute_image(x, y) for x, y in zip(xs[sel], ys[sel])))
    kwargs = dict(psf_images=np.array(stamps), psf_origins=np.array(origins))
    assert_same(measure_sources(img, var, mask, xs[sel], ys[sel], **kwargs),
                measure_sources_reference(img, var, mask, xs[sel], ys[sel], **kwargs))
    for extra in ({}, dict(segments=seg, ids=ids[sel])):
        assert_same(psf_fluxes(img, var, mask, **kwargs, **extra),
                    psf_fluxes_reference(img, var, mask, **kwargs, **extra))
    # elliptical, blended and edge Kron apertures
    stars, svar = gaussian_stars((90, 90), [30.2, 36.0, 85.0], [40.6, 43.0, 45.0],
                                 [5e4, 2e4, 3e4], 0, sxx=[9.0, 3.0, 4.0], syy=[3.0, 3.0, 4.0],
                                 sxy=[2.0, 0.0, 0.0], noise=2.0, seed=3)
    seg2 = np.zeros(stars.shape, np.int32)
    seg2[38:48, 34:40] = 2
    kw = dict(psf_sigma=1.7, segments=seg2, ids=[1, 2, 3])
    assert_same(measure_sources(stars, svar, None, [30.0, 36.0, 85.0], [41.0, 43.0, 45.0], **kw),
                measure_sources_reference(stars, svar, None, [30.0, 36.0, 85.0],
                                          [41.0, 43.0, 45.0], **kw))


def test_gaussian_stars_centroids_fluxes_and_shapes():
    img, var, xs, ys, fluxes = star_field()
    start_x = xs + np.random.default_rng(0).uniform(-0.7, 0.7, xs.size)
    start_y = ys + np.random.default_rng(1).uniform(-0.7, 0.7, xs.size)
    res = measure_sources(img, var, None, start_x, start_y, psf_sigma=SIGMA)
    assert res.dtype == MEASUREMENT_DTYPE
    assert not res["centroid_flag"].any() and not res["psf_flag"].any()
    assert np.abs(res["x"] - xs).max() < 0.02 and np.abs(res["y"] - ys).max() < 0.02
    pull = (res["psf_flux"] - fluxes) / res["psf_flux_err"]
    assert np.abs(pull).max() < 4.0
    # the largest aperture holds the whole star
    np.testing.assert_allclose(res["ap_flux"][:, -2], fluxes, rtol=0.02)
    assert np.abs(res["ixx"] / SIGMA**2 - 1).max() < 0.03
    assert np.abs(res["iyy"] / SIGMA**2 - 1).max() < 0.03
    assert np.abs(res["ixy"]).max() < 0.05
    assert np.abs(res["x_moment"] - xs).max() < 0.3  # unweighted: noisier and truncated


def test_adaptive_moments_of_elliptical_gaussians():
    sxx, syy, sxy = [3.0, 6.0], [5.0, 2.5], [1.2, -0.8]
    img, var = gaussian_stars((80, 80), [25.3, 55.1], [40.2, 39.7], [1e4, 1e4], 0, sxx=sxx,
                              syy=syy, sxy=sxy)
    res = measure_sources(img, var + 1.0, None, [25.3, 55.1], [40.2, 39.7], psf_sigma=1.5)
    assert not res["shape_flag"].any()
    np.testing.assert_allclose(res["ixx"], sxx, rtol=1e-3)
    np.testing.assert_allclose(res["iyy"], syy, rtol=1e-3)
    np.testing.assert_allclose(res["ixy"], sxy, rtol=1e-3, atol=1e-3)


def test_apertures_agree_with_sep_sum_circle():
    sep = pytest.importorskip("sep")
    img, var, xs, ys, _ = star_field(noise=10.0)
    radii = (3.0, 4.5, 6.0, 9.0, 12.0, 17.0)
    res = measure_sources(img, var, None, xs, ys, psf_sigma=SIGMA, radii=radii,
                          recentroid=False)
    for q, r in enumerate(radii):
        flux, _err, _flag = sep.sum_circle(img.astype(np.float64), xs, ys, r, subpix=0)
        np.testing.assert_allclose(res["ap_flux"][:, q], flux, rtol=1e-9, atol=1e-6)
    # and the exact overlap: a pixel grid tiles the circle's area
    dy, dx = np.mgrid[-12:13, -12:13]
    assert pixel_overlap(dx - 0.3, dy + 0.2, 7.3).sum() == pytest.approx(np.pi * 7.3**2,
                                                                          rel=1e-12)


def test_errors_match_the_scatter_over_noise_realisations():
    native_or_skip("measure")
    truth, _ = gaussian_stars((41, 41), [20.3], [19.8], [5000.0], SIGMA)
    rng = np.random.default_rng(11)
    noise = 4.0
    rows = []
    for _ in range(400):
        img = truth + rng.normal(0, noise, truth.shape).astype(np.float32)
        rows.append(measure_sources(img, np.full(img.shape, noise**2, np.float32), None,
                                    [20.0], [20.0], psf_sigma=SIGMA, radii=(4.5, 9.0))[0])
    res = np.array(rows)
    for value, error in (("x", "x_err"), ("y", "y_err"), ("psf_flux", "psf_flux_err")):
        ratio = np.std(res[value]) / np.mean(res[error])
        assert 0.85 < ratio < 1.15, (value, ratio)
    for q in range(2):
        ratio = np.std(res["ap_flux"][:, q]) / np.mean(res["ap_flux_err"][:, q])
        assert 0.85 < ratio < 1.15, ("ap_flux", q, ratio)
    assert abs(np.mean(res["psf_flux"]) - 5000.0) < 3 * np.std(res["psf_flux"]) / 20


def test_forced_mode_keeps_positions():
    img, var, xs, ys, _ = star_field()
    xs_off, ys_off = xs + 0.4, ys - 0.3
    res = measure_sources(img, var, None, xs_off, ys_off, psf_sigma=SIGMA, recentroid=False)
    np.testing.assert_array_equal(res["x"], xs_off)
    np.testing.assert_array_equal(res["y"], ys_off)
    assert not res["centroid_flag"].any() and np.isnan(res["x_err"]).all()


def test_segments_leave_out_deblended_neighbours():
    img, var = gaussian_stars((60, 60), [25.0, 31.0], [30.0, 30.0], [1e4, 3e4], SIGMA)
    seg = np.zeros(img.shape, np.int32)
    seg[25:35, 28:35] = 2  # the neighbour's footprint, inside source 1's apertures
    seg[25:35, 20:28] = 1
    spoiled = img.copy()
    spoiled[seg == 2] = 1e6  # whatever the neighbour's pixels hold
    kwargs = dict(psf_sigma=SIGMA, radii=(4.5, 6.0), recentroid=False, segments=seg, ids=[1])
    a = measure_sources(img, var + 1, None, [25.0], [30.0], **kwargs)
    b = measure_sources(spoiled, var + 1, None, [25.0], [30.0], **kwargs)
    for name in ("ap_flux", "psf_flux", "ixx", "x_moment"):
        np.testing.assert_array_equal(a[name], b[name])
    assert not a["ap_flag"].any()  # other sources' pixels are no reason for a flag
    blended = measure_sources(spoiled, var + 1, None, [25.0], [30.0], psf_sigma=SIGMA,
                              radii=(4.5, 6.0), recentroid=False)
    assert blended["ap_flux"][0, 0] > 1e6
    # a source's own segment and segment 0 are used
    own = measure_sources(img, var + 1, None, [31.0], [30.0], psf_sigma=SIGMA, radii=(2.0,),
                          recentroid=False, segments=seg, ids=[2])
    plain = measure_sources(img, var + 1, None, [31.0], [30.0], psf_sigma=SIGMA, radii=(2.0,),
                            recentroid=False)
    assert own["ap_flux"][0, 0] == plain["ap_flux"][0, 0]


def test_pixel_flags():
    img, var = gaussian_stars((50, 50), [20.0, 2.0], [20.0, 25.0], [1e4, 1e4], SIGMA)
    mask = np.zeros(img.shape, np.int32)
    mask[21, 20] = 2      # SAT
    mask[19, 19] = 8 | 4  # CR and INTRP
    mask[20, 22] = 1      # BAD: left out, so the aperture and PSF fit are flagged
    res = measure_sources(img, var + 1, mask, [20.0, 2.0], [20.0, 25.0], psf_sigma=SIGMA,
                          recentroid=False)
    assert res["flag_saturated"][0] and res["flag_cr"][0] and res["flag_interpolated"][0]
    assert res["flag_bad"][0] and res["ap_flag"][0].all() and res["psf_flag"][0]
    assert not res["flag_edge"][0]
    assert res["flag_edge"][1] and res["ap_flag"][1, 0] and res["psf_flag"][1]
    assert not res["flag_saturated"][1]


def test_edge_cases_and_bad_inputs():
    img = np.zeros((30, 30), np.float32)
    var = np.ones_like(img)
    empty = measure_sources(img, var, None, [], [], psf_sigma=1.5)
    assert empty.size == 0 and empty.dtype == MEASUREMENT_DTYPE
    nan = measure_sources(np.full_like(img, np.nan), var, None, [15.0], [15.0], psf_sigma=1.5)
    assert nan["centroid_flag"][0] and nan["psf_flag"][0] and np.isnan(nan["psf_flux"][0])
    masked = measure_sources(img, var, np.ones((30, 30), np.int32), [15.0], [15.0],
                             psf_sigma=1.5, radii=(2.0, 3.0))
    assert masked.dtype == measurement_dtype(2) and masked["ap_flag"].all()
    row = measure_sources(np.ones((1, 30), np.float32), np.ones((1, 30), np.float32), None,
                          [10.0], [0.0], psf_sigma=1.0, recentroid=False)
    assert row["flag_edge"][0] and row["ap_flag"][0].all()
    off = measure_sources(img, var, None, [100.0], [5.0], psf_sigma=1.5)
    assert off["centroid_flag"][0] and off["flag_edge"][0] and np.isnan(off["x"][0])
    with pytest.raises(PixelTypeError, match="uint8"):
        measure_sources(img.astype(np.uint8), var, None, [1.0], [1.0], psf_sigma=1.5)
    with pytest.raises(ValueError, match="variance's shape"):
        measure_sources(img, var[:5], None, [1.0], [1.0], psf_sigma=1.5)
    with pytest.raises(ValueError, match="one length"):
        measure_sources(img, var, None, [1.0, 2.0], [1.0], psf_sigma=1.5)
    with pytest.raises(ValueError, match="psf_sigma or psf_images"):
        measure_sources(img, var, None, [1.0], [1.0])
    with pytest.raises(ValueError, match="segments' shape"):
        measure_sources(img, var, None, [1.0], [1.0], psf_sigma=1.0, segments=np.zeros((2, 2)),
                        ids=[1])
    with pytest.raises(ValueError, match="psf_images"):
        measure_sources(img, var, None, [1.0], [1.0], psf_images=np.zeros((2, 5, 5)),
                        psf_origins=np.zeros((2, 2)))


def test_psf_flux_at_the_centroid_is_unbiased_at_any_sub_pixel_position():
    """The PSF model realised at the measured centroid (shifted, not the data): a noiseless
    star's PSF flux is exact wherever its centre falls in the pixel."""
    psf = GaussianPsf(1.6, 25)
    xs = 20.0 + np.array([0.0, 0.25, 0.5, 0.5, -0.37])
    ys = 20.0 + np.array([0.0, 0.0, 0.5, -0.5, 0.41])
    for x, y in zip(xs, ys):
        img, var = gaussian_stars((41, 41), [x], [y], [1e4], 1.6)
        first = measure_sources(img, var + 1.0, None, [np.round(x)], [np.round(y)],
                                psf_sigma=1.6)
        stamp, origin = psf.compute_image(first["x"][0], first["y"][0])
        res = psf_fluxes(img, var + 1.0, None, stamp[None], np.array([origin]))
        assert res.dtype == PSF_FLUX_DTYPE and not res["psf_flag"][0]
        assert res["psf_flux"][0] == pytest.approx(1e4, rel=2e-3), (x, y)
        # the model at the integer peak loses flux at a pixel corner
        stamp0, origin0 = psf.compute_image(np.round(x), np.round(y))
        peak = psf_fluxes(img, var + 1.0, None, stamp0[None], np.array([origin0]))
        if abs(x - np.round(x)) + abs(y - np.round(y)) > 0.9:
            assert peak["psf_flux"][0] < 0.96e4


def test_kron_flux_of_gaussians_and_blendedness():
    sxx, syy, sxy = [4.0, 12.0], [4.0, 5.0], [0.0, 3.0]
    img, var = gaussian_stars((120, 120), [30.3, 80.6], [40.7, 70.2], [1e5, 2e5], 0, sxx=sxx,
                              syy=syy, sxy=sxy)
    res = measure_sources(img, var + 1.0, None, [30.0, 81.0], [41.0, 70.0], psf_sigma=2.0)
    assert not res["kron_flag"].any()
    # a Gaussian's first moment is sqrt(pi / 2) sigma: 2.5 r1 < 3.5 sigma, the minimum radius
    scale = (np.array(sxx) * np.array(syy) - np.array(sxy) ** 2) ** 0.25
    np.testing.assert_allclose(res["kron_radius"], 3.5 * scale, rtol=1e-3)
    # the flux within 3.5 sigma of an elliptical Gaussian: 1 - exp(-3.5**2 / 2)
    np.testing.assert_allclose(res["kron_flux"], np.array([1e5, 2e5]) * (1 - np.exp(-6.125)),
                               rtol=2e-3)
    np.testing.assert_allclose(res["blendedness"], 0.0, atol=1e-12)
    # two sources whose segments split a blend: each loses its neighbour's share
    pair, pvar = gaussian_stars((60, 80), [35.0, 43.0], [30.0, 30.0], [1e4, 1e4], 2.0)
    seg = np.zeros(pair.shape, np.int32)
    seg[:, :39] = 1
    seg[:, 40:] = 2  # the middle column, segment 0, is used by both
    both = measure_sources(pair, pvar + 1.0, None, [35.0, 43.0], [30.0, 30.0], psf_sigma=2.0,
                           segments=seg, ids=[1, 2], recentroid=False)
    assert 0.005 < both["blendedness"][0] < 0.5
    assert both["blendedness"][0] == pytest.approx(both["blendedness"][1], rel=1e-6)
