"""Background estimation: compiled against reference, splines against scipy, sky against SEP."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_fields import random_image, star_field

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels.background import (
    estimate_background,
    estimate_background_reference,
    fill_mesh,
    median_filter_mesh,
    spline_coefficients,
)


def evaluate(coef: np.ndarray, knots: np.ndarray, points: np.ndarray) -> np.ndarray:
    k = np.clip(np.searchsorted(knots, points, side="right") - 1, 0, max(knots.size - 2, 0))
    t = (points - knots[k])[:, None]
    return coef[0, k] + t * (coef[1, k] + t * (coef[2, k] + t * coef[3, k]))


@pytest.mark.parametrize("interpolation", ["akima", "natural", "linear"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_background_matches_reference(interpolation, dtype):
    field = star_field((300, 257))
    img = field.image.astype(dtype)
    bad = np.zeros(img.shape, bool)
    bad[:70, :70] = True  # one whole cell masked: filled from its neighbours
    img[200:210, 100:110] = np.nan
    ours = estimate_background(img, bad, bin_size=64, interpolation=interpolation)
    ref = estimate_background_reference(img, bad, bin_size=64, interpolation=interpolation)
    np.testing.assert_array_equal(ours.count, ref.count)
    np.testing.assert_allclose(ours.mesh, ref.mesh, rtol=1e-10)
    rtol = 1e-6 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(ours.image, ref.image, rtol=rtol)
    assert ours.image.dtype == dtype and ours.rms == pytest.approx(ref.rms, rel=1e-6)
    assert ours.count[0, 0] == 0 and np.isfinite(ours.mesh).all()
    # the sky is recovered within a fraction of the noise
    assert np.median(np.abs(ours.image - field.sky)) < 0.2 * field.noise
    assert ours.rms == pytest.approx(field.noise, rel=0.05)


def test_background_non_square_bins_and_random_image():
    img = random_image((211, 190), seed=8)
    ours = estimate_background(img, None, bin_size=(40, 70), niter=2)
    ref = estimate_background_reference(img, None, bin_size=(40, 70), niter=2)
    assert ours.mesh.shape == (6, 3)
    np.testing.assert_allclose(ours.image, ref.image, rtol=1e-6)


def test_splines_agree_with_scipy():
    from scipy.interpolate import Akima1DInterpolator, CubicSpline

    rng = np.random.default_rng(0)
    x = np.cumsum(rng.uniform(0.5, 2.0, 9))
    y = rng.normal(size=(9, 3))
    pts = np.linspace(x[0], x[-1], 200)
    akima = evaluate(spline_coefficients(x, y, "akima"), x, pts)
    np.testing.assert_allclose(akima, Akima1DInterpolator(x, y, axis=0)(pts), atol=1e-12)
    natural = evaluate(spline_coefficients(x, y, "natural"), x, pts)
    np.testing.assert_allclose(natural, CubicSpline(x, y, bc_type="natural")(pts), atol=1e-12)
    linear = evaluate(spline_coefficients(x, y, "linear"), x, pts)
    np.testing.assert_allclose(linear[:, 1], np.interp(pts, x, y[:, 1]), atol=1e-12)


def test_mesh_helpers_agree_with_scipy():
    from scipy import ndimage

    rng = np.random.default_rng(1)
    mesh = rng.normal(size=(7, 9))
    for size in (1, 3, (3, 5)):
        np.testing.assert_array_equal(median_filter_mesh(mesh, size),
                                      ndimage.median_filter(mesh, size, mode="nearest"))
    holes = mesh.copy()
    holes[2:5, 3:6] = np.nan
    filled = fill_mesh(holes)
    assert np.isfinite(filled).all() and (filled[~np.isnan(holes)] == mesh[~np.isnan(holes)]).all()
    assert filled[3, 4] == pytest.approx(np.mean(filled[2:5, 3:6][[0, 0, 0, 1, 1, 2, 2, 2],
                                                                  [0, 1, 2, 0, 2, 0, 1, 2]]))
    with pytest.raises(ValueError, match="odd"):
        median_filter_mesh(mesh, 2)


def test_background_agrees_with_sep():
    """On a field with a smooth sky gradient, SEP's background and ours agree within a
    small fraction of the noise, and both follow the true sky."""
    sep = pytest.importorskip("sep")
    field = star_field((512, 512), n_stars=150, gradient=60.0)
    ours = estimate_background(field.image, None, bin_size=64, filter_size=3)
    peer = sep.Background(field.image.astype(np.float64), bw=64, bh=64, fw=3, fh=3)
    diff = ours.image - peer.back()
    inner = (slice(32, -32), slice(32, -32))  # the outer half-cells are extrapolated
    assert np.median(np.abs(diff[inner])) < 0.1 * field.noise
    assert np.abs(diff[inner]).max() < 0.5 * field.noise
    assert ours.rms == pytest.approx(peer.globalrms, rel=0.05)
    assert np.median(np.abs(ours.image - field.sky)[inner]) < 0.1 * field.noise


def test_background_edge_cases():
    nan_img = np.full((50, 60), np.nan, np.float32)
    bg = estimate_background(nan_img, bin_size=16)
    assert np.isnan(bg.image).all() and np.isnan(bg.rms) and (bg.count == 0).all()
    bg = estimate_background(np.ones((50, 60), np.float32), np.ones((50, 60), bool), bin_size=16)
    assert np.isnan(bg.image).all()
    row = np.linspace(0, 10, 300, dtype=np.float32)[None, :]
    bg = estimate_background(row, bin_size=64)  # one row: a mesh of one row of cells
    assert bg.mesh.shape == (1, 5) and np.isfinite(bg.image).all()
    one = estimate_background(np.full((20, 20), 3.0, np.float32), bin_size=64)
    np.testing.assert_array_equal(one.image, 3.0)  # one cell: a constant
    with pytest.raises(PixelTypeError, match="int16"):
        estimate_background(np.zeros((8, 8), np.int16))
    with pytest.raises(ValueError, match="non-empty"):
        estimate_background(np.zeros((0, 8), np.float32))
    with pytest.raises(ValueError, match="interpolation"):
        estimate_background(np.zeros((8, 8), np.float32), interpolation="cubic")
    with pytest.raises(ValueError, match="bin sizes"):
        estimate_background(np.zeros((8, 8), np.float32), bin_size=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("estimate", [estimate_background, estimate_background_reference])
def test_background_subtract_equals_image_minus_model(estimate, dtype):
    """subtract() (one pass, no model image) gives exactly data - image, before and after the
    model image is made; the model is made only when asked for."""
    field = star_field((190, 233))
    img = field.image.astype(dtype)
    bg = estimate(img, None, bin_size=48)
    fused = bg.subtract(img)
    assert bg._image is None  # the one-pass path kept no model image
    expected = img - bg.image
    assert fused.dtype == dtype and fused.shape == img.shape
    np.testing.assert_array_equal(fused, expected)
    np.testing.assert_array_equal(bg.subtract(img), expected)  # from the kept image
    other = img[::-1].copy()
    np.testing.assert_array_equal(estimate(img, None, bin_size=48).subtract(other),
                                  other - bg.image)
    with pytest.raises(ValueError, match="shape"):
        bg.subtract(img[:-1])
    nan_bg = estimate(np.full((30, 40), np.nan, dtype), None, bin_size=16)
    assert np.isnan(nan_bg.subtract(np.zeros((30, 40), dtype))).all()
