"""Each compiled kernel gives its NumPy reference's answers, and both agree with trusted peers."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import ndimage

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels import kernel_status, load_native
from hpcpipe.kernels.convolve import (
    correlate_separable,
    correlate_separable_reference,
    gaussian_kernel_1d,
)
from hpcpipe.kernels.stats import binned_clipped_mean, binned_clipped_mean_reference


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
    assert kernel_status() == {"convolve": "pythran", "stats": "pythran"}


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
    with pytest.raises(ValueError, match="bin sizes"):
        binned_clipped_mean(row, None, 0, 5)


def test_numpy_fallback_when_forced(monkeypatch):
    """HPCPIPE_KERNELS=numpy makes every kernel use its reference (the same answers)."""
    monkeypatch.setenv("HPCPIPE_KERNELS", "numpy")
    assert load_native("convolve") is None
    assert kernel_status() == {"convolve": "numpy", "stats": "numpy"}
    img = sky_image((40, 50))
    k = gaussian_kernel_1d(1.2)
    np.testing.assert_allclose(correlate_separable(img, k, k),
                               correlate_separable_reference(img, k, k))
