"""2-D and masked correlation: compiled kernels against their references and scipy/astropy."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_fields import random_image, star_field
from scipy import ndimage

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels.convolve import (
    correlate_2d,
    correlate_2d_reference,
    correlate_separable,
    correlate_separable_reference,
    gaussian_kernel_1d,
)


def asymmetric_kernel(ny: int = 5, nx: int = 7, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (ny, nx))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_correlate_2d_matches_reference_and_scipy(dtype):
    img = star_field((160, 143)).image.astype(dtype)
    k = asymmetric_kernel().astype(dtype)
    ours = correlate_2d(img, k)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours, correlate_2d_reference(img, k), rtol=rtol)
    peer = ndimage.correlate(img.astype(np.float64), k.astype(np.float64), mode="nearest")
    np.testing.assert_allclose(ours, peer, rtol=rtol)
    assert ours.dtype == dtype


def test_correlate_2d_edges_on_tiny_images():
    """Kernels larger than the image: edges repeat the nearest pixel, as scipy's 'nearest'."""
    rng = np.random.default_rng(1)
    k = asymmetric_kernel(7, 9).astype(np.float32)
    for shape in [(1, 1), (1, 12), (12, 1), (3, 4), (20, 17)]:
        img = rng.normal(size=shape).astype(np.float32)
        peer = ndimage.correlate(img.astype(np.float64), k.astype(np.float64), mode="nearest")
        np.testing.assert_allclose(correlate_2d(img, k), peer, rtol=1e-5, atol=1e-5)


def test_outer_product_kernel_gives_the_separable_result():
    img = random_image()
    kx, ky = gaussian_kernel_1d(1.3), gaussian_kernel_1d(2.1)
    np.testing.assert_allclose(correlate_2d(img, np.outer(ky, kx)),
                               correlate_separable(img, kx, ky), rtol=2e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_correlation_matches_reference(dtype):
    rng = np.random.default_rng(7)
    img = random_image(seed=3).astype(dtype)
    img[rng.random(img.shape) < 0.01] = np.nan
    bad = rng.random(img.shape) < 0.05
    bad[10:40, 20:60] = True  # a hole larger than the kernel: NaN in its middle
    kx, ky = gaussian_kernel_1d(1.5, dtype=dtype), gaussian_kernel_1d(1.0, dtype=dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    sep = correlate_separable(img, kx, ky, bad=bad)
    np.testing.assert_allclose(sep, correlate_separable_reference(img, kx, ky, bad=bad),
                               rtol=rtol, equal_nan=True)
    two = correlate_2d(img, np.outer(ky, kx), bad=bad)
    np.testing.assert_allclose(two, correlate_2d_reference(img, np.outer(ky, kx), bad=bad),
                               rtol=rtol, equal_nan=True)
    np.testing.assert_allclose(two, sep, rtol=1e-4, equal_nan=True)
    assert np.isnan(sep[25, 40]) and np.isfinite(sep[~bad & np.isfinite(img)]).all()


def test_masked_correlation_agrees_with_astropy_convolve():
    """The documented rule: astropy's convolve with NaN interpolation and NaN fill."""
    from astropy.convolution import convolve

    rng = np.random.default_rng(3)
    img = star_field((96, 80), n_stars=20).image.astype(np.float64)
    bad = rng.random(img.shape) < 0.05
    k = np.outer(gaussian_kernel_1d(1.2, dtype=np.float64),
                 gaussian_kernel_1d(1.2, dtype=np.float64))  # symmetric: correlation == convolution
    peer = convolve(np.where(bad, np.nan, img), k, boundary="fill", fill_value=np.nan,
                    nan_treatment="interpolate", normalize_kernel=True)
    np.testing.assert_allclose(correlate_2d(img, k, bad=bad), peer, rtol=1e-10)


def test_correlation_bad_inputs():
    img = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="odd sizes"):
        correlate_2d(img, np.ones((2, 3)))
    with pytest.raises(PixelTypeError, match="uint16"):
        correlate_2d(img.astype(np.uint16), np.ones((3, 3)))
    with pytest.raises(ValueError, match="non-empty 2-D"):
        correlate_2d(np.zeros((0, 3), np.float32), np.ones((3, 3)))
    with pytest.raises(ValueError, match="shape"):
        correlate_2d(img, np.ones((3, 3)), bad=np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="out"):
        correlate_2d(img, np.ones((3, 3)), out=img)  # the input cannot be the output
    out = np.empty_like(img)
    assert correlate_2d(img + 1, np.ones((3, 3)), out=out) is out
    assert np.isnan(correlate_2d(img, np.ones((3, 3)), bad=np.ones(img.shape))).all()


@pytest.mark.parametrize("masked", [False, True])
def test_correlate_separable_in_place(masked):
    """out=image smooths in place with the same values; a partial overlap is refused."""
    img = random_image((57, 43), seed=4)
    kx, ky = gaussian_kernel_1d(1.3), gaussian_kernel_1d(2.1)
    bad = (img > np.percentile(img, 95)) if masked else None
    expected = correlate_separable(img, kx, ky, bad=bad)
    work = img.copy()
    assert correlate_separable(work, kx, ky, out=work, bad=bad) is work
    np.testing.assert_array_equal(work, expected)
    rows = np.zeros((58, 43), img.dtype)
    with pytest.raises(ValueError, match="share memory"):
        correlate_separable(rows[:-1], kx, ky, out=rows[1:], bad=bad)
