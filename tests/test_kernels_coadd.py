"""Sigma-clipped coaddition: compiled against reference and against astropy's sigma_clip."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels.coadd import (
    DEFAULT_BAD_BITS,
    clipped_mean_stack,
    clipped_mean_stack_reference,
    inverse_variance_weights,
)

CLIPPED, NO_DATA, BAD, CR, SUSPECT = 1 << 12, 1 << 8, 1 << 0, 1 << 3, 1 << 7


def stack(n=12, shape=(37, 45), seed=0, outliers=0.04):
    """Warps of one sky with different noise levels, plus cosmic-ray-like outliers."""
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.5, 2.0, n)
    truth = rng.normal(100.0, 3.0, shape)
    images = truth + sigma[:, None, None] * rng.normal(size=(n,) + shape)
    hits = rng.random(images.shape) < outliers
    images[hits] += rng.uniform(20.0, 500.0, hits.sum())
    variances = np.broadcast_to(sigma[:, None, None] ** 2, images.shape).copy()
    variances *= rng.uniform(0.9, 1.1, images.shape)
    masks = np.where(rng.random(images.shape) < 0.05, SUSPECT, 0).astype(np.int32)
    return images.astype(np.float32), variances.astype(np.float32), masks, truth


def astropy_coadd(images, variances, masks, weights, nsigma, niter, bad_bits):
    """The same job with astropy: sigma_clip along the stack axis, then a weighted average."""
    from astropy.stats import sigma_clip

    data = np.where((masks & bad_bits) == 0, images.astype(np.float64), np.nan)
    if niter == 0:  # astropy needs maxiters >= 1
        kept = np.isfinite(data)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clipped = sigma_clip(data, sigma=nsigma, maxiters=niter, cenfunc="median",
                                 stdfunc="std", axis=0)
        kept = ~np.ma.getmaskarray(clipped)
    w = np.where(kept, weights[:, None, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w * np.where(kept, images, 0)).sum(0) / w.sum(0)
        var = (w**2 * np.where(kept, variances, 0)).sum(0) / w.sum(0) ** 2
    return mean, var, kept


def assert_same(a, b):
    np.testing.assert_array_equal(a.count, b.count)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.image, b.image, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(a.variance, b.variance, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("niter", [0, 1, 3])
def test_coadd_matches_astropy_sigma_clip(niter):
    images, variances, masks, truth = stack()
    masks[2, 5:9, :] |= BAD  # a bad column band in one warp
    weights = np.random.default_rng(1).uniform(0.2, 3.0, len(images))
    ours = clipped_mean_stack(list(images), list(variances), list(masks), weights,
                              nsigma=2.5, niter=niter)
    mean, var, kept = astropy_coadd(images, variances, masks, weights, 2.5, niter,
                                    DEFAULT_BAD_BITS)
    np.testing.assert_array_equal(ours.count, kept.sum(axis=0))
    np.testing.assert_allclose(ours.image, mean, rtol=1e-6)
    np.testing.assert_allclose(ours.variance, var, rtol=1e-6)
    expected_mask = np.bitwise_or.reduce(np.where(kept, masks, 0), axis=0)
    usable = ((masks & DEFAULT_BAD_BITS) == 0).sum(axis=0)
    expected_mask |= np.where(kept.sum(axis=0) < usable, CLIPPED, 0)
    np.testing.assert_array_equal(ours.mask, expected_mask)
    assert_same(ours, clipped_mean_stack_reference(list(images), list(variances), list(masks),
                                                   weights, nsigma=2.5, niter=niter))
    error = np.abs(ours.image - truth)
    if niter == 3:  # the outliers are gone: the coadd is near the truth
        assert np.percentile(error, 99) < 2.0
    elif niter == 0:  # no clipping: the outliers pull the mean away
        assert np.percentile(error, 99) > 5.0


def test_masked_inputs_all_masked_pixels_and_nans():
    images, variances, masks, _ = stack(n=6, seed=3)
    masks[:, 0, 0] = NO_DATA  # every input masked: no data
    masks[:3, 1, 1] = BAD
    images[3:, 1, 1] = np.nan  # the others not finite: no data either
    variances[:, 2, 2] = np.inf  # infinite variances: left out
    masks[0, 3, 3] = CR  # not a bad bit by default: kept, and its bit is carried
    for fn in (clipped_mean_stack, clipped_mean_stack_reference):
        res = fn(images, variances, masks, np.ones(6), niter=2)
        for y, x in ((0, 0), (1, 1), (2, 2)):
            assert res.count[y, x] == 0 and res.mask[y, x] == NO_DATA
            assert np.isnan(res.image[y, x]) and np.isnan(res.variance[y, x])
        assert res.mask[3, 3] & CR
        assert res.image.dtype == np.float32 and res.mask.dtype == np.int32
    res = clipped_mean_stack(images, variances, masks, np.ones(6), bad_bits=BAD | CR)
    assert not res.mask[3, 3] & CR  # CR is now a bad bit: that input is left out


def test_single_input_and_no_masks():
    images, variances, _, _ = stack(n=1, seed=4)
    res = clipped_mean_stack(images, variances)
    np.testing.assert_array_equal(res.image, images[0])
    np.testing.assert_allclose(res.variance, variances[0], rtol=1e-6)
    assert (res.count == 1).all() and (res.mask == 0).all()


def test_default_weights_are_inverse_mean_variance():
    images, variances, masks, _ = stack(n=5, seed=6)
    w = inverse_variance_weights(list(variances), list(masks))
    good = (masks & DEFAULT_BAD_BITS) == 0
    expected = [1.0 / variances[k][good[k]].mean() for k in range(5)]
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert_same(clipped_mean_stack(images, variances, masks),
                clipped_mean_stack(images, variances, masks, w))


def test_bounded_memory_paths_give_identical_results(tmp_path):
    """h5py datasets, memmaps, float64 inputs and small row blocks: the same coadd."""
    h5py = pytest.importorskip("h5py")
    images, variances, masks, _ = stack(n=7, shape=(53, 31), seed=8)
    full = clipped_mean_stack(images, variances, masks, rows_per_block=1000)
    with h5py.File(tmp_path / "warps.h5", "w") as f:
        for k in range(7):
            f[f"image/{k}"], f[f"variance/{k}"] = images[k], variances[k]
            f[f"mask/{k}"] = masks[k].astype(np.int16)
    with h5py.File(tmp_path / "warps.h5", "r") as f:
        dsets = [[f[f"{name}/{k}"] for k in range(7)] for name in ("image", "variance", "mask")]
        assert isinstance(dsets[0][0], h5py.Dataset)
        assert_same(clipped_mean_stack(*dsets, rows_per_block=5), full)
        assert_same(clipped_mean_stack(*dsets, rows_per_block=1), full)
    mm = np.memmap(tmp_path / "img.dat", np.float32, "w+", shape=images.shape)
    mm[...] = images
    assert_same(clipped_mean_stack(list(mm), variances.astype(np.float64), masks,
                                   rows_per_block=8), full)
    assert_same(clipped_mean_stack_reference(images, variances, masks, rows_per_block=4), full)


def test_coadd_bad_inputs():
    images, variances, masks, _ = stack(n=3)
    with pytest.raises(ValueError, match="at least one"):
        clipped_mean_stack([], [])
    with pytest.raises(ValueError, match="3 images but 2 variances"):
        clipped_mean_stack(images, variances[:2])
    with pytest.raises(ValueError, match=r"variances\[1\] has shape"):
        clipped_mean_stack(images, [variances[0], variances[1][:5], variances[2]])
    with pytest.raises(PixelTypeError, match=r"images\[0\] must be float32 or float64"):
        clipped_mean_stack(images.astype(np.int32), variances)
    with pytest.raises(PixelTypeError, match=r"masks\[0\] must be an integer mask"):
        clipped_mean_stack(images, variances, masks.astype(np.float32))
    with pytest.raises(ValueError, match="weights"):
        clipped_mean_stack(images, variances, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="non-empty 2-D"):
        clipped_mean_stack(np.zeros((2, 0, 5), np.float32), np.zeros((2, 0, 5), np.float32))
    with pytest.raises(ValueError, match="rows_per_block"):
        clipped_mean_stack(images, variances, rows_per_block=0)
