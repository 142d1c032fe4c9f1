"""Cosmic rays and interpolation: native against reference, and the simulation's known hits."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from kernel_sim import PLAN, gaussian_stars, native_or_skip, simulated_ccd

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels.cosmic import (
    find_cosmic_rays,
    find_cosmic_rays_reference,
    interpolate_over,
    interpolate_over_reference,
)
from hpcpipe.kernels.isr import run_isr


@functools.lru_cache(maxsize=1)
def calibrated():
    """The simulated CCD after ISR, with its truth."""
    sim = simulated_ccd()
    calibs = sim["calibs"]
    flat = calibs["flat_r"].image.array
    res = run_isr(sim["raw"].image.array, sim["raw"].detector, bias=calibs["bias"].image.array,
                  dark=calibs["dark"].image.array, dark_time=30.0, flat=flat,
                  defects=flat < 0.2)
    return sim, res


def test_native_matches_reference_on_the_simulation():
    native_or_skip("cosmic")
    sim, res = calibrated()
    kwargs = dict(psf_sigma=PLAN.psf_sigma, background=float(np.median(res.image)))
    ours = find_cosmic_rays(res.image, res.variance, res.mask, **kwargs)
    ref = find_cosmic_rays_reference(res.image, res.variance, res.mask, **kwargs)
    np.testing.assert_array_equal(ours, ref)
    a = interpolate_over(res.image, ours, variance=res.variance, max_width=5)
    b = interpolate_over_reference(res.image, ours, variance=res.variance, max_width=5)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)


def test_native_matches_reference_on_random_pixels():
    native_or_skip("cosmic")
    rng = np.random.default_rng(7)
    img = rng.normal(0, 1, (70, 90)).astype(np.float32)
    img[rng.integers(0, 70, 80), rng.integers(0, 90, 80)] += rng.uniform(5, 100, 80)
    img[3, 3] = np.nan
    var = np.ones_like(img)
    mask = (rng.uniform(size=img.shape) < 0.02).astype(np.int32)
    for niter, grow in ((1, 0), (2, 1)):
        ours = find_cosmic_rays(img, var, mask, psf_sigma=1.5, nsigma=4, niter=niter, grow=grow)
        ref = find_cosmic_rays_reference(img, var, mask, psf_sigma=1.5, nsigma=4, niter=niter,
                                         grow=grow)
        np.testing.assert_array_equal(ours, ref)
    bad = rng.uniform(size=img.shape) < 0.3
    bad[:, 40] = True
    bad[10, :] = True
    for width in (None, 2, 7):
        a = interpolate_over(img, bad, max_width=width, variance=var)
        b = interpolate_over_reference(img, bad, max_width=width, variance=var)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6)


def test_finds_the_simulated_cosmic_rays_and_no_star_cores():
    sim, res = calibrated()
    truth = sim["truth"]
    sky = float(truth["sky_electrons"])
    found = find_cosmic_rays(res.image, res.variance, res.mask, psf_sigma=PLAN.psf_sigma,
                             background=sky)
    hits = truth["cosmic_rays"] & (res.mask == 0)
    assert hits.sum() > 30
    assert found[hits].mean() >= 0.9
    # no object's core (within 1.5 pixels of its centre) is flagged, unless a cosmic ray
    # fell near it
    yy, xx = np.mgrid[0:res.image.shape[0], 0:res.image.shape[1]]
    near_hit = np.zeros_like(found)
    for y, x in zip(*np.nonzero(truth["cosmic_rays"])):
        near_hit[max(y - 3, 0):y + 4, max(x - 3, 0):x + 4] = True
    checked = 0
    for x, y in zip(truth["x"], truth["y"]):
        core = (xx - x) ** 2 + (yy - y) ** 2 <= 1.5**2
        if near_hit[core].any():
            continue
        checked += 1
        assert not found[core].any(), f"object core at ({x:.1f}, {y:.1f}) flagged"
    assert checked > 40
    # interpolated cosmic-ray pixels are near the truth (most are on the sky)
    fixed, var = interpolate_over(res.image, found, variance=res.variance)
    chi = (fixed - sim["electrons"])[hits] / np.sqrt(res.variance[hits])
    assert np.median(np.abs(chi)) < 2.0
    assert np.abs(res.image - sim["electrons"])[hits].min() > 1000  # they were hit
    assert var.dtype == np.float32 and fixed.dtype == np.float32


def test_sharp_but_undersampled_stars_are_left_alone():
    rng = np.random.default_rng(3)
    n = 40
    xs, ys = rng.uniform(8, 192, n), rng.uniform(8, 192, n)
    img, var = gaussian_stars((200, 200), xs, ys, rng.uniform(1e3, 1e6, n), 1.2, noise=5.0)
    var += np.clip(img, 0, None)  # Poisson noise of the stars in the variance
    assert not find_cosmic_rays(img, var, psf_sigma=1.2).any()
    img[50, 60] += 500.0  # a one-pixel hit is found, and grown by one pixel
    found = find_cosmic_rays(img, var, psf_sigma=1.2)
    assert found[50, 60] and found[49:52, 59:62].all() and found.sum() >= 9


def test_interpolation_rule():
    ramp = np.add.outer(np.arange(6.0) * 10, np.arange(8.0)).astype(np.float32)
    bad = np.zeros(ramp.shape, bool)
    bad[2, 3:5] = True   # bridged along the row
    bad[:, 0] = True     # touches the left edge: from the column? all bad: one-sided row
    bad[4, 7] = True     # right edge: the column
    fixed, var = interpolate_over(ramp, bad, variance=np.ones_like(ramp))
    np.testing.assert_allclose(fixed[2, 3:5], ramp[2, 3:5])
    np.testing.assert_allclose(fixed[4, 7], ramp[4, 7])
    np.testing.assert_allclose(fixed[:, 0], ramp[:, 1])
    np.testing.assert_allclose(var[2, 3], (2 / 3) ** 2 + (1 / 3) ** 2)
    assert var[0, 0] == 1.0
    # runs longer than max_width are left alone when the column cannot help
    block = np.zeros((5, 10), bool)
    block[:, 2:8] = True
    img = np.arange(50, dtype=np.float32).reshape(5, 10)
    out, none = interpolate_over(img, block, max_width=3)
    assert none is None
    np.testing.assert_array_equal(out[:, 2:8], img[:, 2:8])
    out, _ = interpolate_over(img, block)
    np.testing.assert_allclose(out[:, 2:8], img[:, 2:8])  # linear rows: exact on a ramp
    # all bad: no good pixel anywhere, the values are kept
    out, _ = interpolate_over(img, np.ones(img.shape, bool))
    np.testing.assert_array_equal(out, img)
    # the input is not modified
    assert ramp[2, 3] == 23.0


def test_edge_cases_and_bad_inputs():
    nan = np.full((20, 20), np.nan, np.float32)
    assert not find_cosmic_rays(nan, np.ones_like(nan), psf_sigma=1.5).any()
    masked = np.zeros((20, 20), np.float32)
    masked[5, 5] = 1e6
    assert not find_cosmic_rays(masked, np.ones_like(masked), np.ones((20, 20), np.int32),
                                psf_sigma=1.5).any()
    row = np.zeros((1, 30), np.float32)
    row[0, 10] = 1e4
    assert find_cosmic_rays(row, np.ones_like(row), psf_sigma=1.5, grow=0)[0, 10]
    with pytest.raises(PixelTypeError, match="int16"):
        find_cosmic_rays(np.zeros((5, 5), np.int16), np.ones((5, 5)), psf_sigma=1.5)
    with pytest.raises(ValueError, match="variance's shape"):
        find_cosmic_rays(np.zeros((5, 5)), np.ones((4, 5)), psf_sigma=1.5)
    with pytest.raises(ValueError, match="non-empty"):
        find_cosmic_rays(np.zeros((0, 5)), np.ones((0, 5)), psf_sigma=1.5)
    with pytest.raises(ValueError, match="psf_sigma"):
        find_cosmic_rays(np.zeros((5, 5)), np.ones((5, 5)), psf_sigma=0)
    with pytest.raises(ValueError, match="bad's shape"):
        interpolate_over(np.zeros((5, 5)), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="max_width"):
        interpolate_over(np.zeros((5, 5)), np.zeros((5, 5), bool), max_width=0)
