"""Each compiled kernel gives its NumPy reference's answers, and both agree with trusted peers."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import ndimage

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels import kernel_status, load_native
from hpcpipe.kernels._loader import KERNEL_MODULES
from hpcpipe.kernels.convolve import (
    correlate_separable,
    correlate_separable_reference,
    gaussian_kernel_1d,
)
from hpcpipe.kernels.stats import (
    binned_clipped_mean,
    binned_clipped_mean_reference,
    clipped_mean_reference,
    clipped_stats,
)


def sky_image(shape=(300, 257), seed=3, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(1000.0, 10.0, shape)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for _ in range(40):
        x, y, f = rng.uniform(0, shape[1]), rng.uniform(0, shape[0]), rng.uniform(1e3, 1e5)
        img += f / (2 * np.pi * 2.0**2) * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 4.0)
    return img.astype(dtype)


@pytest.mark.skipif(os.environ.get("HPCPIPE_REQUIRE_NATIVE") != "1",
                    reason="set HPCPIPE_REQUIRE_NATIVE=1 to require compiled kernels")
def test_kernels_were_compiled():
    """The install compiles every kernel; CI would hide a silent fallback without this."""
    status = kernel_status()
    assert set(status) == set(KERNEL_MODULES)
    assert [name for name, impl in status.items() if impl != "pythran"] == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_correlate_separable_matches_reference_and_scipy(dtype):
    img = sky_image(dtype=dtype)
    kx = gaussian_kernel_1d(1.7, dtype=dtype)
    ky = gaussian_kernel_1d(2.3, dtype=dtype)
    ours = correlate_separable(img, kx, ky)
    ref = correlate_separable_reference(img, kx, ky)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours, ref, rtol=rtol)
    peer = ndimage.correlate1d(ndimage.correlate1d(img.astype(np.float64), kx, axis=1,
                                                   mode="nearest"), ky, axis=0, mode="nearest")
    np.testing.assert_allclose(ours, peer, rtol=rtol)


def test_correlate_separable_asymmetric_kernel_and_tiny_images():
    rng = np.random.default_rng(0)
    kx = np.array([0.1, 0.2, 0.3, 0.25, 0.15], dtype=np.float32)
    ky = np.array([0.5, 0.3, 0.2], dtype=np.float32)
    for shape in [(1, 1), (1, 17), (17, 1), (2, 3), (40, 33)]:
        img = rng.normal(size=shape).astype(np.float32)
        peer = ndimage.correlate1d(ndimage.correlate1d(img, kx, axis=1, mode="nearest"),
                                   ky, axis=0, mode="nearest")
        np.testing.assert_allclose(correlate_separable(img, kx, ky), peer, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(correlate_separable_reference(img, kx, ky), peer,
                                   rtol=1e-5, atol=1e-6)


def test_correlate_separable_bad_inputs():
    k = gaussian_kernel_1d(1.0)
    with pytest.raises(ValueError, match="non-empty 2-D"):
        correlate_separable(np.zeros((0, 5), np.float32), k, k)
    with pytest.raises(PixelTypeError, match="int16"):
        correlate_separable(np.zeros((5, 5), np.int16), k, k)
    with pytest.raises(ValueError, match="odd number of taps"):
        correlate_separable(np.zeros((5, 5), np.float32), np.ones(4), k)
    nan_img = np.full((6, 6), np.nan, dtype=np.float32)
    assert np.isnan(correlate_separable(nan_img, k, k)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binned_clipped_mean_matches_reference(dtype):
    img = sky_image(dtype=dtype)
    bad = np.zeros(img.shape, np.uint8)
    bad[50:120, 30:60] = 1
    bad[:64, 192:] = 1  # one whole corner cell masked
    ours = binned_clipped_mean(img, bad, 64, 64, 3.0, 3)
    ref = binned_clipped_mean_reference(img, bad, 64, 64, 3.0, 3)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(ours[1], ref[1], rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(ours[2], ref[2])
    assert ours[0].shape == (5, 5)
    assert np.isnan(ours[0][0, 3]) and ours[2][0, 3] == 0
    # the clipped mean finds the sky under the stars
    good = ~np.isnan(ours[0])
    assert np.all(np.abs(ours[0][good] - 1000.0) < 3.0)


def _awkward_cells():
    """Cells that take the kernel's less common paths: ties, constant and bimodal cells,
    large offsets, tiny values, NaN and infinities, masks, small and uneven cells."""
    rng = np.random.default_rng(1)
    sky = rng.normal(1000, 30, (64, 96)).astype(np.float32)
    sky[5:9, 5:9] += 5000
    bad = np.zeros(sky.shape, np.uint8)
    bad[:16, :16] = 1
    bad[20:30, 40:70] = 1
    nan_inf = rng.normal(0, 1, (30, 30)).astype(np.float32)
    nan_inf[::3, ::2] = np.nan
    nan_inf[1, 1] = np.inf
    bimodal = np.concatenate([rng.normal(0, 1, 500), rng.normal(50, 1, 524)])
    return [
        (sky, None, 16, 16), (sky, bad, 16, 16),
        (np.full((20, 20), 7.0, np.float32), None, 10, 10),
        (np.round(rng.normal(100, 2, (40, 40))).astype(np.float32), None, 20, 20),
        (nan_inf, None, 7, 9),
        (np.arange(10, dtype=np.float32)[None, :], None, 5, 5),
        (rng.exponential(10, (50, 50)).astype(np.float32), None, 25, 25),
        ((rng.normal(0, 1, (32, 32)) * 1e-30).astype(np.float32), None, 16, 16),
        (rng.normal(1e6, 0.5, (32, 32)).astype(np.float32), None, 16, 16),
        (bimodal.astype(np.float32).reshape(32, 32), None, 32, 32),
    ]


@pytest.mark.parametrize("nsigma", [0.5, 2.0, 3.0, 5.0])
@pytest.mark.parametrize("niter", [0, 1, 3, 6])
def test_binned_clipped_mean_matches_reference_on_awkward_cells(nsigma, niter):
    """Every path of the compiled kernel keeps exactly the reference's pixels."""
    for image, bad, bin_x, bin_y in _awkward_cells():
        ours = binned_clipped_mean(image, bad, bin_x, bin_y, nsigma, niter)
        ref = binned_clipped_mean_reference(image, bad, bin_x, bin_y, nsigma, niter)
        scale = float(np.nanmax(np.abs(np.r_[ref[0].ravel(), 1e-30])))
        np.testing.assert_allclose(ours[0], ref[0], rtol=1e-9, atol=1e-12 * scale,
                                   equal_nan=True)
        np.testing.assert_allclose(ours[1], ref[1], rtol=1e-6, atol=1e-9 * scale,
                                   equal_nan=True)
        np.testing.assert_array_equal(ours[2], ref[2])


def test_binned_clipped_mean_agrees_with_astropy_on_gaussian_noise():
    from astropy.stats import sigma_clipped_stats

    rng = np.random.default_rng(9)
    img = rng.normal(50.0, 4.0, (128, 128)).astype(np.float32)
    img[10, 10] = 1e6  # an outlier both must clip
    mean, std, count = binned_clipped_mean(img, None, 128, 128, 3.0, 5)
    a_mean, _a_median, a_std = sigma_clipped_stats(img, sigma=3.0, maxiters=10,
                                                   cenfunc="mean", stdfunc="std")
    assert abs(mean[0, 0] - a_mean) < 0.02 and abs(std[0, 0] - a_std) < 0.02
    assert count[0, 0] < img.size


def test_binned_clipped_mean_edge_cases():
    nan_img = np.full((10, 10), np.nan, np.float32)
    mean, std, count = binned_clipped_mean(nan_img, None, 4, 4)
    assert np.isnan(mean).all() and (count == 0).all() and mean.shape == (3, 3)
    row = np.arange(10, dtype=np.float64)[None, :]
    mean, _std, count = binned_clipped_mean(row, None, 5, 5, 3.0, 0)
    np.testing.assert_allclose(mean, [[2.0, 7.0]])  # niter=0: the median
    with pytest.raises(ValueError, match="shape"):
        binned_clipped_mean(row, np.zeros((2, 2)), 5, 5)
    with pytest.raises(ValueError, match="non-empty"):
        binned_clipped_mean(np.zeros((0, 4), np.float32), None, 5, 5)
    with pytest.raises(PixelTypeError, match="int32"):
        binned_clipped_mean(np.zeros((4, 4), np.int32), None, 2, 2)
    with pytest.raises(ValueError, match="nsigma"):
        binned_clipped_mean(row, None, 5, 5, nsigma=0.0)
    with pytest.raises(ValueError, match="bin sizes"):
        binned_clipped_mean(row, None, 0, 5)


def test_numpy_fallback_when_forced(monkeypatch):
    """HPCPIPE_KERNELS=numpy makes every kernel use its reference (the same answers)."""
    monkeypatch.setenv("HPCPIPE_KERNELS", "numpy")
    assert load_native("convolve") is None
    assert set(kernel_status().values()) == {"numpy"}
    img = sky_image((40, 50))
    k = gaussian_kernel_1d(1.2)
    np.testing.assert_allclose(correlate_separable(img, k, k),
                               correlate_separable_reference(img, k, k))


def _cells_agree(ours, ref):
    np.testing.assert_array_equal(ours[2], ref[2])
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-10, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(ours[1], ref[1], rtol=1e-6, atol=1e-8, equal_nan=True)


@pytest.mark.parametrize("bins", [(64, 64), (50, 37), (7, 5), (300, 1)])
def test_binned_clipped_mean_matches_reference_on_odd_data(bins):
    """Outliers, integer-valued (tied) data, tiny cells, NaNs and masks: the same kept sets."""
    rng = np.random.default_rng(4)
    img = sky_image((150, 130), seed=5)
    img[rng.random(img.shape) < 0.02] = np.nan
    img[40:60, :] = np.round(img[40:60, :] / 8.0)  # a band of quantised values: many ties
    img[90:100, 10:20] = 5.0  # constant patch
    img[0, 0] = 1e30  # a far outlier
    bad = (rng.random(img.shape) < 0.1).astype(np.uint8)
    for dtype in (np.float32, np.float64):
        x = img.astype(dtype)
        for niter in (0, 1, 3):
            _cells_agree(binned_clipped_mean(x, bad, *bins, 2.5, niter),
                         binned_clipped_mean_reference(x, bad, *bins, 2.5, niter))


def test_binned_clipped_mean_single_row_and_int_mask():
    """A one-row image works; an int32 mask bit above 255 still leaves the pixel out."""
    img = np.linspace(0.0, 1.0, 64, dtype=np.float32)[None, :]
    mask = np.zeros(img.shape, np.int32)
    mask[0, :32] = 1 << 8
    mean, _std, count = binned_clipped_mean(img, mask, 64, 4, 3.0, 0)
    assert count[0, 0] == 32 and mean[0, 0] == pytest.approx(np.median(img[0, 32:]))


def test_clipped_stats_agrees_with_astropy():
    """Gaussian sky with sources: our rule and astropy's sigma_clipped_stats find the same
    sky level and width (their first passes differ; both converge on the Gaussian core)."""
    from astropy.stats import sigma_clipped_stats

    img = sky_image((256, 256), seed=11)
    mean, std, count = clipped_stats(img, nsigma=3.0, niter=10)
    a_mean, _a_median, a_std = sigma_clipped_stats(img, sigma=3.0, maxiters=10,
                                                   cenfunc="mean", stdfunc="std")
    assert abs(mean - a_mean) < 0.02 * a_std
    assert abs(std - a_std) < 0.02 * a_std
    assert abs(mean - 1000.0) < 0.5 and abs(std - 10.0) < 0.3
    ref = clipped_mean_reference(img[np.isfinite(img)], 3.0, 10)
    assert (mean, count) == (pytest.approx(ref[0], rel=1e-12), ref[2])
    nan_mean, nan_std, nan_count = clipped_stats(np.full(10, np.nan, np.float32))
    assert np.isnan(nan_mean) and np.isnan(nan_std) and nan_count == 0


def test_binned_clipped_mean_large_offset_small_spread():
    """Values far from zero with a spread of a few float32 steps: the reference's kept sets."""
    rng = np.random.default_rng(12)
    img = 1e6 + rng.normal(0.0, 0.2, (64, 64))
    img[rng.random(img.shape) < 0.03] += 5.0
    _cells_agree(binned_clipped_mean(img, None, 32, 32, 2.0, 3),
                 binned_clipped_mean_reference(img, None, 32, 32, 2.0, 3))
