"""Instrument signature removal: native against reference, and against the simulation's truth."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_sim import native_or_skip, simulated_ccd
from scipy import ndimage

from hpcpipe.errors import PixelTypeError
from hpcpipe.geom import Box2I
from hpcpipe.image import Amplifier, Detector
from hpcpipe.kernels.isr import fit_overscan, run_isr, run_isr_reference
from hpcpipe.sim.raw import calibration_truth

SAT, BAD, SUSPECT, NO_DATA = 1 << 1, 1 << 0, 1 << 7, 1 << 8


def isr_inputs():
    sim = simulated_ccd()
    calibs = sim["calibs"]
    flat = calibs["flat_r"].image.array
    return sim, dict(bias=calibs["bias"].image.array, dark=calibs["dark"].image.array,
                     dark_time=30.0, flat=flat, defects=flat < 0.2)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("method", ["mean", "median", "median_per_row", "poly"])
def test_native_matches_reference(dtype, method):
    native_or_skip("isr")
    sim, calibs = isr_inputs()
    raw = sim["raw"].image.array.astype(dtype)
    det = sim["raw"].detector
    ours = run_isr(raw, det, overscan_method=method, **calibs)
    ref = run_isr_reference(raw, det, overscan_method=method, **calibs)
    np.testing.assert_allclose(ours.image, ref.image, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(ours.variance, ref.variance, rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(ours.mask, ref.mask)
    for name in ours.overscan:
        np.testing.assert_array_equal(ours.overscan[name], ref.overscan[name])


def test_native_matches_reference_on_random_pixels_with_nans():
    native_or_skip("isr")
    rng = np.random.default_rng(1)
    det = two_amp_detector(40, 30, 5)
    raw = rng.normal(1000, 300, (40, 70))
    raw[3, 4] = np.nan
    flat = rng.uniform(-0.2, 1.5, (40, 60))
    flat[5, 5] = np.inf
    bias = rng.normal(0, 2, (40, 60))
    ours = run_isr(raw, det, bias=bias, flat=flat)
    ref = run_isr_reference(raw, det, bias=bias, flat=flat)
    np.testing.assert_allclose(ours.image, ref.image, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(ours.mask, ref.mask)
    assert ours.mask[3, 4] & BAD and ours.mask[5, 5] & BAD
    assert np.all(ours.mask[flat <= 0] & BAD)


def two_amp_detector(height, half, over, sat=1e9):
    amps = []
    for k in range(2):
        x0 = k * (half + over)
        amps.append(Amplifier(f"A{k}", Box2I(k * half, 0, half, height),
                              Box2I(x0, 0, half + over, height), Box2I(x0, 0, half, height),
                              Box2I(x0 + half, 0, over, height), gain=1.5 + k, read_noise=4.0,
                              saturation=sat, suspect_level=sat))
    return Detector(0, "T", Box2I(0, 0, 2 * half, height), tuple(amps))


def test_isr_recovers_the_truth_electrons():
    sim, calibs = isr_inputs()
    res = run_isr(sim["raw"].image.array, sim["raw"].detector, **calibs)
    assert res.image.dtype == np.float32 and res.variance.dtype == np.float32
    assert res.mask.dtype == np.int32
    truth = sim["electrons"]
    cal = calibration_truth(sim["camera"], 0, "r", seed=5)
    # pixels next to saturated ones hold charge bled from them, which the truth leaves out
    near_sat = ndimage.binary_dilation(res.mask & SAT != 0, iterations=2)
    clean = (res.mask == 0) & ~near_sat & ~sim["truth"]["cosmic_rays"] & (cal["dark"] < 1.0)
    chi = (res.image - truth)[clean] / np.sqrt(res.variance[clean])
    assert abs(np.mean(chi)) < 0.05
    assert 0.9 < np.std(chi) < 1.1
    # the overscan levels are the bias level the electronics added
    for levels in res.overscan.values():
        assert np.all(np.abs(levels - sim["camera"].config.bias_level) < 1.0)


def test_saturation_bleed_trails_and_dead_column_are_masked():
    sim, calibs = isr_inputs()
    raw = sim["raw"].image.array
    det = sim["raw"].detector
    res = run_isr(raw, det, **calibs)
    expected_e = sim["electrons"] * calibration_truth(sim["camera"], 0, "r", seed=5)["flat"]
    full = sim["camera"].config.full_well
    cores = expected_e > full
    assert cores.any(), "the simulation should saturate some stars"
    assert np.all(res.mask[cores] & SAT)
    sat = (res.mask & SAT) != 0
    assert sat.sum() > 1.5 * cores.sum()  # the bleed trails, up and down the columns
    trail_cols = np.unique(np.nonzero(sat)[1])
    assert all(sat[:, c].sum() >= np.count_nonzero(cores[:, c]) for c in trail_cols)
    assert np.all(res.mask[sat] & SUSPECT)
    dead = int(calibration_truth(sim["camera"], 0, "r", seed=5)["dead_column"])
    assert np.all(res.mask[:, dead] & BAD)
    assert np.count_nonzero(res.mask & BAD) == res.mask.shape[0]  # the dead column only


def test_fit_overscan_methods():
    rng = np.random.default_rng(4)
    rows = np.arange(200)
    level = 1000 + 0.05 * rows
    over = level[:, None] + rng.normal(0, 2.0, (200, 20))
    over[50, 3] = 60000  # an outlier
    poly = fit_overscan(over, "poly", order=1)
    np.testing.assert_allclose(poly, level, atol=0.3)
    per_row = fit_overscan(over, "median_per_row")
    assert np.abs(per_row - level).max() < 3.0
    mean = fit_overscan(over, "mean")
    assert mean.shape == (200,) and np.ptp(mean) == 0 and abs(mean[0] - level.mean()) < 0.5
    assert fit_overscan(over, "median")[0] == pytest.approx(np.median(over))
    over[7, :] = np.nan  # a row with no finite pixel takes the overall median
    assert fit_overscan(over, "median_per_row")[7] == pytest.approx(np.nanmedian(over))


def test_bad_inputs_give_clear_errors():
    det = two_amp_detector(10, 8, 2)
    raw = np.zeros((10, 20), np.float32)
    with pytest.raises(PixelTypeError, match="int8"):
        run_isr(raw.astype(np.int8), det)
    with pytest.raises(ValueError, match="bias's shape"):
        run_isr(raw, det, bias=np.zeros((5, 5)))
    with pytest.raises(ValueError, match="does not fit"):
        run_isr(raw[:, :12], det)
    with pytest.raises(ValueError, match="non-empty"):
        run_isr(np.zeros((0, 20), np.float32), det)
    with pytest.raises(ValueError, match="overscan_method"):
        run_isr(raw, det, overscan_method="spline")
    with pytest.raises(ValueError, match="no finite"):
        fit_overscan(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="non-empty"):
        fit_overscan(np.zeros((0, 3)))


def test_single_row_and_uncovered_pixels():
    det = two_amp_detector(1, 8, 2, sat=100)
    raw = np.full((1, 20), 50.0)
    raw[0, 1] = 150.0
    res = run_isr(raw, det)
    assert res.image.shape == (1, 16)
    assert res.mask[0, 1] & SAT
    # a detector wider than its amplifiers: the rest is NaN and NO_DATA
    wide = Detector(1, "W", Box2I(0, 0, 20, 1), det.amplifiers)
    res = run_isr(raw, wide)
    assert np.all(np.isnan(res.image[0, 16:])) and np.all(res.mask[0, 16:] == NO_DATA)
    assert np.all(res.mask[0, :16] & NO_DATA == 0)


@pytest.mark.parametrize("isr", [run_isr, run_isr_reference])
def test_isr_writes_into_given_planes(isr):
    """out=(image, variance, mask): the same values, in the caller's arrays; planes left from
    an earlier CCD are overwritten everywhere, the uncovered pixels included."""
    sim, calibs = isr_inputs()
    raw, det = sim["raw"].image.array, sim["raw"].detector
    fresh = isr(raw, det, **calibs)
    planes = (np.full(fresh.image.shape, -7.0, np.float32),
              np.full(fresh.image.shape, -7.0, np.float32),
              np.full(fresh.image.shape, 12345, np.int32))
    res = isr(raw, det, out=planes, **calibs)
    assert res.image is planes[0] and res.variance is planes[1] and res.mask is planes[2]
    np.testing.assert_array_equal(res.image, fresh.image)
    np.testing.assert_array_equal(res.variance, fresh.variance)
    np.testing.assert_array_equal(res.mask, fresh.mask)
    det1 = two_amp_detector(1, 8, 2, sat=100)
    wide = Detector(1, "W", Box2I(0, 0, 20, 1), det1.amplifiers)
    used = (np.zeros((1, 20), np.float32), np.zeros((1, 20), np.float32),
            np.zeros((1, 20), np.int32))
    res = isr(np.full((1, 20), 50.0), wide, out=used)
    assert np.all(np.isnan(res.image[0, 16:])) and np.all(res.mask[0, 16:] == NO_DATA)
    with pytest.raises(ValueError, match="out's mask"):
        isr(raw, det, out=(planes[0], planes[1], planes[2].astype(np.int64)), **calibs)
    with pytest.raises(ValueError, match="out's image"):
        isr(raw, det, out=(planes[0][:, :-1], planes[1], planes[2]), **calibs)
    with pytest.raises(TypeError, match="tuple"):
        isr(raw, det, out=planes[0], **calibs)
