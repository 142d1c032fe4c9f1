"""Alard-Lupton PSF matching on synthetic images of Gaussian stars with known kernels."""

from __future__ import annotations

import numpy as np
import pytest

from hpcpipe.diffim.psf_match import (
    ImagePsfMatchTask,
    SpatialKernelSolution,
    alard_lupton_basis,
    grow_mask,
    n_spatial_terms,
    spatial_terms,
)
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure, GaussianPsf
from hpcpipe.kernels.measure import measure_sources

SIZE = 400
SKY_VAR = 100.0


def _stars(rng, n=160, size=SIZE, margin=25):
    x = rng.uniform(margin, size - margin, n)
    y = rng.uniform(margin, size - margin, n)
    flux = 10 ** rng.uniform(3.3, 5.0, n)
    return x, y, flux


def _render(x, y, flux, sigma_of, size=SIZE):
    """Gaussian stars sampled at pixel centres; ``sigma_of(x, y)`` the PSF width there."""
    img = np.zeros((size, size))
    for xi, yi, fi in zip(x, y, flux, strict=True):
        s = sigma_of(xi, yi)
        half = int(np.ceil(6 * s))
        cx, cy = int(round(xi)), int(round(yi))
        ys, xs = np.mgrid[cy - half:cy + half + 1, cx - half:cx + half + 1]
        ok = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
        g = fi * np.exp(-0.5 * ((xs - xi) ** 2 + (ys - yi) ** 2) / s**2) / (2 * np.pi * s**2)
        img[ys[ok], xs[ok]] += g[ok]
    return img


def _exposure(rng, truth, sigma, noise_scale=1.0, psf_sigma=None, scale=1.0):
    """An exposure of ``truth`` stars (counts times ``scale``) with sky and Poisson noise."""
    x, y, flux = truth
    sigma_of = sigma if callable(sigma) else (lambda _x, _y, s=sigma: s)
    model = _render(x, y, flux * scale, sigma_of)
    var = (SKY_VAR + np.clip(model, 0, None)) * noise_scale
    exp = Exposure(Box2I(0, 0, SIZE, SIZE), dtype=np.float32)
    exp.image.array[:] = model + rng.normal(0, 1, model.shape) * np.sqrt(var)
    exp.variance.array[:] = var
    centre = sigma_of(SIZE / 2, SIZE / 2)
    exp.psf = GaussianPsf(psf_sigma or centre)
    return exp


def _moments(kernel):
    k = kernel / kernel.sum()
    h = k.shape[0] // 2
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    return (k * xx).sum(), (k * yy).sum(), (k * (xx**2 + yy**2)).sum() / 2


def _task(**overrides):
    task = ImagePsfMatchTask()
    for key, value in overrides.items():
        setattr(task.config, key, value)
    return task


def test_the_differential_basis_has_one_unit_sum_function_and_zero_sum_others():
    basis = alard_lupton_basis([0.7, 1.5, 3.0], [4, 2, 2], 9)
    images = basis.images()
    assert images.shape == (15 + 6 + 6, 19, 19)
    assert images[0].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(images[1:].sum(axis=(1, 2)), 0.0, atol=1e-12)
    # the separable convolution of raw functions is the 2-D convolution by their images
    rng = np.random.default_rng(0)
    img = rng.normal(size=(40, 40))
    from scipy.signal import convolve2d
    for j in (0, 7, 20):
        raw = basis.raw_images()[j]
        ref = convolve2d(img, raw, mode="same")
        np.testing.assert_allclose(basis.convolve_raw(img, j)[10:-10, 10:-10],
                                   ref[10:-10, 10:-10], atol=1e-10)


@pytest.mark.parametrize("shape, orders, bg_order", [((150, 97), (0, 2), 1),
                                                     ((64, 80), (1, 1), -1),
                                                     ((7, 30), (0, 0), 0)])
def test_the_fft_convolution_is_the_direct_spatially_varying_sum(shape, orders, bg_order):
    """SpatialKernelSolution.convolve (FFT, per spatial term) gives convolve_reference's
    direct per-raw-function sum to float rounding, edges and non-finite pixels included."""
    rng = np.random.default_rng(11)
    basis = alard_lupton_basis([0.9, 1.8, 3.6], [4, 2, 2], 9)
    kernel_orders = [orders[0]] + [orders[1]] * (basis.n_basis - 1)
    coeffs = [rng.normal(0, 1, n_spatial_terms(o)) for o in kernel_orders]
    coeffs[0][0] = 1.0
    xy0 = (1000, 2000)
    box = (float(xy0[0]), float(xy0[1]), float(xy0[0] + shape[1]), float(xy0[1] + shape[0]))
    sol = SpatialKernelSolution(basis, kernel_orders, coeffs, bg_order,
                                np.zeros(max(n_spatial_terms(bg_order), 0)), box)
    image = rng.normal(100.0, 10.0, shape)
    image[shape[0] // 2, shape[1] // 3] = 5e4
    image[1, 2] = np.nan
    fast = sol.convolve(image.astype(np.float32), xy0)
    direct = sol.convolve_reference(image.astype(np.float32), xy0)
    assert fast.shape == direct.shape == shape
    np.testing.assert_allclose(fast, direct, rtol=0, atol=1e-11 * np.abs(direct).max())


def test_the_normal_equations_solve_as_the_svd_least_squares():
    """The spatial fit's Cholesky solution of the normal equations is _solve's (SVD) to float
    rounding; a rank-deficient design falls back (None)."""
    rng = np.random.default_rng(4)
    design = rng.normal(size=(3000, 40)) * np.logspace(-3, 3, 40)
    data = design @ rng.normal(size=40) + rng.normal(size=3000)
    weight = rng.uniform(0.5, 2.0, 3000)
    a = design * np.sqrt(weight)[:, None]
    normal, rhs = a.T @ a, a.T @ (data * np.sqrt(weight))
    fast = ImagePsfMatchTask._solve_normal(normal, rhs)
    np.testing.assert_allclose(fast, ImagePsfMatchTask._solve(design, data, weight),
                               rtol=1e-9)
    design[:, 5] = design[:, 4] * 2.0
    a = design * np.sqrt(weight)[:, None]
    assert ImagePsfMatchTask._solve_normal(a.T @ a, a.T @ (data * np.sqrt(weight))) is None


def test_a_gaussian_to_gaussian_kernel_is_recovered():
    rng = np.random.default_rng(1)
    truth = _stars(rng)
    template = _exposure(rng, truth, 1.5, noise_scale=0.01)
    science = _exposure(rng, truth, 2.5, noise_scale=0.01, scale=1.1)
    task = _task(mode="convolveTemplate")
    res = task.subtract_exposures(template, science, truth[0], truth[1])
    kernel = res.solution.kernel_image(SIZE / 2, SIZE / 2)
    # the matching kernel of two Gaussians: a Gaussian of sqrt(2.5**2 - 1.5**2) = 2, sum 1.1
    assert kernel.sum() == pytest.approx(1.1, rel=0.005)
    mx, my, s2 = _moments(kernel)
    assert abs(mx) < 0.02 and abs(my) < 0.02
    assert np.sqrt(s2) == pytest.approx(2.0, rel=0.02)
    h = kernel.shape[0] // 2
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    expected = 1.1 * np.exp(-0.5 * (xx**2 + yy**2) / 4.0) / (2 * np.pi * 4.0)
    assert np.abs(kernel - expected).max() < 0.03 * expected.max()


def test_a_spatially_varying_kernel_is_recovered():
    rng = np.random.default_rng(2)
    truth = _stars(rng, n=260)

    def science_sigma(x, _y):
        return 2.1 + 0.5 * x / SIZE        # 2.1 on the left, 2.6 on the right

    template = _exposure(rng, truth, 1.5, noise_scale=0.01)
    science = _exposure(rng, truth, science_sigma, noise_scale=0.01)
    res = _task(mode="convolveTemplate").subtract_exposures(template, science, truth[0],
                                                             truth[1])
    for x in (60.0, SIZE / 2, SIZE - 60.0):
        _, _, s2 = _moments(res.solution.kernel_image(x, SIZE / 2))
        assert np.sqrt(s2) == pytest.approx(np.sqrt(science_sigma(x, 0) ** 2 - 1.5**2),
                                            rel=0.03), x
    # a constant kernel cannot do it: the residuals of the spatial fit are much smaller
    const = _task(mode="convolveTemplate", spatialKernelOrder=0).subtract_exposures(
        template, science, truth[0], truth[1])
    inner = (slice(30, -30), slice(30, -30))
    rms_spatial = np.std(res.difference.image.array[inner])
    rms_const = np.std(const.difference.image.array[inner])
    assert rms_spatial < 0.6 * rms_const


@pytest.mark.parametrize("science_sigma, mode", [(2.3, "convolveTemplate"),
                                                 (1.4, "convolveScience")])
def test_the_difference_of_one_sky_is_consistent_with_the_noise(science_sigma, mode):
    rng = np.random.default_rng(3)
    truth = _stars(rng)
    template = _exposure(rng, truth, 1.8, noise_scale=1.0 / 3.0)   # a 3-visit coadd
    science = _exposure(rng, truth, science_sigma)
    task = _task()
    res = task.subtract_exposures(template, science, truth[0], truth[1])
    assert res.mode == mode
    diff = res.difference
    good = (diff.mask.array == 0) & np.isfinite(diff.image.array)
    assert good.mean() > 0.8
    z = diff.image.array[good] / np.sqrt(diff.variance.array[good])
    assert np.std(z) == pytest.approx(1.0, abs=0.03)
    assert abs(np.mean(z)) < 0.02
    assert diff.metadata["DIFFMODE"] == mode
    # the difference's PSF is the broader of the two
    assert diff.psf.sigma_at() == pytest.approx(max(science_sigma, 1.8))


@pytest.mark.parametrize("science_sigma", [2.4, 1.4])
def test_a_new_point_source_keeps_its_flux_in_the_difference(science_sigma):
    rng = np.random.default_rng(4)
    truth = _stars(rng)
    template = _exposure(rng, truth, 1.8, noise_scale=1.0 / 3.0)
    new = (np.array([200.3]), np.array([170.6]), np.array([20000.0]))
    both = tuple(np.concatenate([a, b]) for a, b in zip(truth, new, strict=True))
    science = _exposure(rng, both, science_sigma)
    res = _task().subtract_exposures(template, science, truth[0], truth[1])
    diff = res.difference
    m = measure_sources(diff.image.array, diff.variance.array, diff.mask.array, new[0],
                        new[1], psf_sigma=diff.psf.sigma_at())
    assert abs(m["x"][0] - 200.3) < 0.1 and abs(m["y"][0] - 170.6) < 0.1
    assert m["psf_flux"][0] == pytest.approx(20000.0, abs=4 * m["psf_flux_err"][0])


def test_variable_stars_are_rejected_from_the_kernel_fit():
    rng = np.random.default_rng(5)
    x, y, flux = _stars(rng, n=120)
    template = _exposure(rng, (x, y, flux), 1.5, noise_scale=0.1)
    varied = flux.copy()
    varied[:6] *= 2.5            # six variable stars among the candidates
    science = _exposure(rng, (x, y, varied), 2.2, noise_scale=0.1)
    task = _task(mode="convolveTemplate")
    fit = task.fit(template, science, x, y, task.make_basis(2.2, 1.5))
    stamps = fit.stamps
    index = {(round(a, 6), round(b, 6)): k for k, (a, b) in enumerate(zip(x, y, strict=True))}
    rejected = [index[(round(a, 6), round(b, 6))]
                for a, b, u in zip(stamps["x"], stamps["y"], stamps["used"], strict=True)
                if not u]
    usable = {index[(round(a, 6), round(b, 6))] for a, b in zip(stamps["x"], stamps["y"],
                                                                strict=True)}
    assert {k for k in range(6) if k in usable} <= set(rejected)
    assert fit.n_used >= len(usable) - 15
    assert fit.solution.kernel_sum(SIZE / 2, SIZE / 2) == pytest.approx(1.0, rel=0.01)


def test_too_few_stamps_is_an_error_naming_the_option():
    rng = np.random.default_rng(6)
    truth = _stars(rng, n=3)
    template = _exposure(rng, truth, 1.5)
    science = _exposure(rng, truth, 2.0)
    with pytest.raises(ValueError, match="minStamps"):
        _task().subtract_exposures(template, science, truth[0], truth[1])


@pytest.mark.parametrize("shape", [(61, 47), (3, 90), (1, 1)])
def test_grow_mask_is_a_maximum_filter_of_each_plane(shape):
    from scipy.ndimage import maximum_filter

    rng = np.random.default_rng(5)
    mask = np.where(rng.random(shape) < 0.02, rng.integers(0, 1 << 12, shape), 0).astype(
        np.int32)
    for radius in (0, 1, 2, 7, 9, 40):
        for bits in (0b101101, (1 << 12) - 1):
            expected = (mask & bits).astype(np.int32) if radius < 1 else np.zeros(shape,
                                                                                  np.int32)
            for bit in range(12) if radius >= 1 else ():
                if bits & (1 << bit):
                    plane = (mask & (1 << bit)) != 0
                    expected[maximum_filter(plane, size=2 * radius + 1, mode="constant",
                                            cval=False)] |= 1 << bit
            grown = grow_mask(mask, bits, radius)
            assert grown.dtype == np.int32
            np.testing.assert_array_equal(grown, expected)


def test_masks_grow_by_the_kernel_and_the_border_is_edge():
    mask = np.zeros((30, 30), np.int32)
    mask[10, 12] = 1 << 1
    grown = grow_mask(mask, 1 << 1, 2)
    assert grown[8:13, 10:15].all() and grown.sum() == 25 * 2
    rng = np.random.default_rng(7)
    truth = _stars(rng)
    template = _exposure(rng, truth, 1.5, noise_scale=0.3)
    template.image.array[100, 100] = np.nan
    science = _exposure(rng, truth, 2.2)
    res = _task().subtract_exposures(template, science, truth[0], truth[1])
    diff = res.difference
    hw = res.solution.basis.half_width
    edge = diff.mask.get_plane_bitmask("EDGE")
    nodata = diff.mask.get_plane_bitmask("NO_DATA")
    assert (diff.mask.array[:hw] & edge).all() and not (diff.mask.array[hw + 1, hw + 1] & edge)
    assert (diff.mask.array[100 - hw:100 + hw + 1, 100 - hw:100 + hw + 1] & nodata).all()
    assert np.isnan(diff.image.array[100, 100])


def test_spatial_terms_follow_the_pixel_psf_order():
    from hpcpipe.image.psf import PixelPsf

    np.testing.assert_allclose(spatial_terms(0.3, -0.2, 3), PixelPsf.monomials(0.3, -0.2, 3))
