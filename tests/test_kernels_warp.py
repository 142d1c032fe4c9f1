"""Warping: native against reference, exact shifts, band-limited signals, flux, scipy, WCSs."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from kernel_sim import gaussian_stars, native_or_skip
from scipy import ndimage

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels.warp import (
    transform_grid,
    warp_image,
    warp_image_reference,
    wcs_transform,
)

NO_DATA = 1 << 8


def smooth_image(shape=(120, 140)):
    """A band-limited image: a few sinusoids of periods well above 6 pixels."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return smooth(xx, yy)


def smooth(x, y):
    return (100 + 10 * np.sin(2 * np.pi * x / 23.0 + 0.3) * np.cos(2 * np.pi * y / 19.0)
            + 5 * np.cos(2 * np.pi * (x + y) / 31.0))


def affine(shape, a, b, c, d, ox, oy):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return a * xx + b * yy + ox, c * xx + d * yy + oy


@pytest.mark.parametrize("method", ["lanczos3", "bilinear"])
def test_native_matches_reference(method):
    native_or_skip("warp")
    rng = np.random.default_rng(2)
    img = rng.normal(10, 3, (60, 70)).astype(np.float32)
    var = rng.uniform(1, 2, img.shape).astype(np.float32)
    mask = rng.integers(0, 4, img.shape).astype(np.int32) * (rng.uniform(size=img.shape) < 0.1)
    sx, sy = affine((50, 80), 0.9, 0.1, -0.05, 1.1, -3.3, 1.7)
    sx[4, 5] = np.nan
    sx[10, :10] = np.round(sx[10, :10])  # sources exactly on pixel centres
    ours = warp_image(img, var, mask, sx, sy, method=method)
    ref = warp_image_reference(img, var, mask, sx, sy, method=method)
    np.testing.assert_allclose(ours.image, ref.image, rtol=1e-5, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(ours.variance, ref.variance, rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(ours.mask, ref.mask)
    assert ours.mask[4, 5] == NO_DATA and np.isnan(ours.image[4, 5])


@pytest.mark.parametrize("warp", [warp_image, warp_image_reference])
@pytest.mark.parametrize("method", ["lanczos3", "bilinear"])
def test_integer_shift_is_exact(warp, method):
    rng = np.random.default_rng(3)
    img = rng.normal(0, 1, (40, 50)).astype(np.float32)
    var = rng.uniform(1, 2, img.shape).astype(np.float32)
    mask = (rng.uniform(size=img.shape) < 0.05).astype(np.int32) * 8
    sx, sy = affine(img.shape, 1, 0, 0, 1, 3, -2)
    out = warp(img, var, mask, sx, sy, method=method)
    inner = (slice(4, 35), slice(3, 44))
    shifted = (slice(2, 33), slice(6, 47))
    np.testing.assert_array_equal(out.image[inner], img[shifted])
    np.testing.assert_array_equal(out.variance[inner], var[shifted])
    np.testing.assert_array_equal(out.mask[inner], mask[shifted])
    # outside the source: NaN and NO_DATA only
    assert np.all(np.isnan(out.image[:, -3:])) and np.all(out.mask[:, -3:] == NO_DATA)
    assert np.all(np.isnan(out.variance[:2]))


def test_subpixel_shift_of_a_band_limited_image():
    img = smooth_image()
    sx, sy = affine(img.shape, 1, 0, 0, 1, 0.37, -0.61)
    out = warp_image(img.astype(np.float32), None, None, sx, sy)
    good = ~np.isnan(out.image)
    assert good.sum() > 0.8 * img.size
    exact = smooth(sx, sy)
    assert np.abs(out.image - exact)[good].max() < 0.1  # of a 30 peak-to-peak signal
    bil = warp_image(img.astype(np.float32), None, None, sx, sy, method="bilinear")
    # Lanczos-3 is far closer than bilinear interpolation
    assert np.abs(out.image - exact)[good].max() < 0.3 * np.nanmax(np.abs(bil.image - exact))


def test_flux_is_conserved_under_rotation_and_scale():
    img, var = gaussian_stars((101, 101), [50.3], [49.6], [1e4], 2.0)
    theta, scale = np.radians(7.0), 1.04
    a, b = scale * np.cos(theta), -scale * np.sin(theta)
    c, d = scale * np.sin(theta), scale * np.cos(theta)
    # destination pixel (x, y) -> source, rotating about the centre
    sx, sy = affine((101, 101), a, b, c, d, 50 - 50 * a - 50 * b, 50 - 50 * c - 50 * d)
    out = warp_image(img, var, None, sx, sy)
    jac = abs(a * d - b * c)
    # interpolation (not drizzling): under a scale change the flux of a compact source
    # varies with its sub-pixel phase by up to about 1%
    assert np.nansum(out.image) * jac == pytest.approx(1e4, rel=1e-2)
    # a sub-pixel shift conserves it exactly: the normalised weights sum to 1
    sx, sy = affine((101, 101), 1, 0, 0, 1, 0.37, -0.21)
    out = warp_image(img, var, None, sx, sy)
    assert np.nansum(out.image) == pytest.approx(1e4, rel=1e-5)


def test_bilinear_agrees_with_scipy_map_coordinates():
    rng = np.random.default_rng(5)
    img = rng.normal(0, 1, (50, 60)).astype(np.float32)
    sx = rng.uniform(0, 59, (30, 40))
    sy = rng.uniform(0, 49, (30, 40))
    out = warp_image(img, None, None, sx, sy, method="bilinear")
    peer = ndimage.map_coordinates(img.astype(np.float64), [sy, sx], order=1)
    np.testing.assert_allclose(out.image, peer, rtol=1e-6, atol=1e-6)


def tan_wcs(crval, rot_deg, scale_arcsec, crpix):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = crval
    wcs.wcs.crpix = crpix
    s = scale_arcsec / 3600.0
    t = np.radians(rot_deg)
    wcs.wcs.cd = [[-s * np.cos(t), s * np.sin(t)], [s * np.sin(t), s * np.cos(t)]]
    return wcs


def test_round_trip_through_another_wcs():
    img = smooth_image((150, 150)).astype(np.float32)
    wa = tan_wcs([150.0, 2.0], 0.0, 0.2, [75.0, 75.0])
    wb = tan_wcs([150.0001, 2.0001], 5.0, 0.21, [80.0, 70.0])
    to_b = transform_grid(wcs_transform(wa, wb), (150, 150), step=10)
    in_b = warp_image(img, None, None, *to_b)
    back = transform_grid(wcs_transform(wb, wa), (150, 150), step=10)
    again = warp_image(in_b.image, None, in_b.mask, *back)
    good = ~np.isnan(again.image)
    assert good.sum() > 0.5 * img.size
    assert np.abs(again.image - img)[good].max() < 0.15  # of a 30 peak-to-peak signal
    assert np.all(again.mask[~good] & NO_DATA)


def test_transform_grid_interpolates_and_hits_the_exact_nodes():
    def transform(x, y):
        return 1.0 + 1.01 * x + 1e-4 * y**2, 2.0 - 0.02 * x + 0.99 * y

    sx, sy = transform_grid(transform, (53, 47), step=10)
    yy, xx = np.mgrid[0:53, 0:47].astype(np.float64)
    ex, ey = transform(xx, yy)
    assert np.abs(sx - ex).max() < 0.01 and np.abs(sy - ey).max() < 1e-12
    np.testing.assert_allclose(sx[::10, ::10], ex[::10, ::10], rtol=1e-14)
    np.testing.assert_allclose(sx[-1, -1], ex[-1, -1], rtol=1e-14)
    fx, _ = transform_grid(transform, (53, 47), step=1)
    np.testing.assert_array_equal(fx, ex)
    one = transform_grid(transform, (1, 1), step=10)
    assert one[0].shape == (1, 1) and one[0][0, 0] == 1.0


def test_bad_inputs_and_edge_cases():
    img = np.zeros((10, 10), np.float32)
    sx, sy = affine((5, 5), 1, 0, 0, 1, 2, 2)
    with pytest.raises(PixelTypeError, match="int16"):
        warp_image(img.astype(np.int16), None, None, sx, sy)
    with pytest.raises(ValueError, match="variance's shape"):
        warp_image(img, np.zeros((3, 3), np.float32), None, sx, sy)
    with pytest.raises(ValueError, match="one shape"):
        warp_image(img, None, None, sx, sy[:2])
    with pytest.raises(ValueError, match="method"):
        warp_image(img, None, None, sx, sy, method="cubic")
    with pytest.raises(ValueError, match="non-empty"):
        warp_image(np.zeros((0, 3), np.float32), None, None, sx, sy)
    # an empty destination, a single-row source, all-NaN positions
    assert warp_image(img, None, None, sx[:0], sy[:0]).image.shape == (0, 5)
    row = warp_image(img[:1], None, None, sx, sy)
    assert np.all(row.mask == NO_DATA)
    nan = warp_image(img, None, None, np.full((3, 3), np.nan), np.full((3, 3), np.nan))
    assert np.all(nan.mask == NO_DATA) and np.isnan(nan.image).all()


def test_interpolated_wcs_grid_of_a_tan_sip_ccd_is_within_1e4_pixel():
    """interpLength = 10 (the default of makeCoaddTempExp and getTemplate): the bilinear
    interpolation of the exact TAN-SIP -> TAN map is within 1e-4 pixel of it everywhere on a
    2048^2 CCD (measured: 8e-6); at 50 pixels still within 1e-3 (measured: 2e-4)."""
    scale = 0.2 / 3600
    src = WCS(naxis=2)
    src.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    src.wcs.crval = [150.05, 2.03]
    src.wcs.crpix = [1025.0, 1025.0]
    c, s = np.cos(0.01), np.sin(0.01)
    src.wcs.cd = np.array([[-scale * c, scale * s], [scale * s, scale * c]])
    header = src.to_header(relax=True)
    header["A_ORDER"] = header["B_ORDER"] = 3
    header["A_2_0"], header["A_0_2"], header["B_1_1"], header["B_0_2"] = 1e-7, -5e-8, 8e-8, 1e-7
    header["A_3_0"], header["B_0_3"] = 2e-11, -3e-11
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    src = WCS(header, relax=True)
    dest = WCS(naxis=2)
    dest.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    dest.wcs.crval = [150.0, 2.0]
    dest.wcs.crpix = [2000.0, 2000.0]
    dest.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]])
    transform = wcs_transform(src, dest)
    exact = transform_grid(transform, (2100, 2100), step=1)
    for step, tolerance in ((10, 1e-4), (50, 1e-3)):
        approx = transform_grid(transform, (2100, 2100), step=step)
        assert max(np.abs(approx[0] - exact[0]).max(), np.abs(approx[1] - exact[1]).max()) \
            < tolerance
