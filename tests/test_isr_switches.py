"""ISR for real raws: amplifiers anywhere in the raw, with or without overscan, linearity, every
correction switchable, camera-level defaults, clear errors for missing calibrations."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_sim import native_or_skip

from hpcpipe.butler import NoSuchDatasetError
from hpcpipe.config import UnknownFieldError
from hpcpipe.geom import Box2I
from hpcpipe.image import Amplifier, Detector, Exposure
from hpcpipe.image.visit_info import VisitInfo
from hpcpipe.kernels.isr import run_isr, run_isr_reference
from hpcpipe.pipe.calibrate import CalibrateConfig
from hpcpipe.pipe.isr import IsrConfig, IsrError, IsrTask, MissingCalibrationError
from hpcpipe.pipe.process_ccd import ProcessCcdConfig, ProcessCcdTask
from hpcpipe.task.argparser import apply_camera_defaults

SAT = 1 << 1
HEIGHT, HALF, OVER = 12, 8, 4
GAINS = (1.5, 2.5)
LEVELS = (1000.0, 1200.0)


def detector(overscan: bool = True, linearity: tuple[float, ...] = (),
             saturation: float = 60000.0) -> Detector:
    """Two amplifiers whose raw data lie in the opposite order to the trimmed image: amp A0
    (trimmed left half) is read on the raw's right, with its overscan at the far right; amp A1
    (trimmed right half) is read on the raw's left, with its overscan on the left (a prescan).
    Without overscan, the raw is just the two data boxes side by side and the overscan boxes
    are empty."""
    over = OVER if overscan else 0
    width = HALF + over
    boxes = {  # raw box, raw data box, overscan box
        "A0": (Box2I(width, 0, width, HEIGHT), Box2I(width, 0, HALF, HEIGHT),
               Box2I(width + HALF, 0, over, HEIGHT)),
        "A1": (Box2I(0, 0, width, HEIGHT), Box2I(over, 0, HALF, HEIGHT),
               Box2I(0, 0, over, HEIGHT)),
    }
    amps = []
    for k, name in enumerate(("A0", "A1")):
        raw_box, data, scan = boxes[name]
        amps.append(Amplifier(name, Box2I(k * HALF, 0, HALF, HEIGHT), raw_box, data, scan,
                              gain=GAINS[k], read_noise=3.0, saturation=saturation,
                              linearity_coeffs=linearity))
    return Detector(7, "T07", Box2I(0, 0, 2 * HALF, HEIGHT), tuple(amps))


def raw_frame(det: Detector, truth: np.ndarray, levels=LEVELS,
              dtype=np.float64) -> np.ndarray:
    """The raw ADU of ``truth`` (trimmed ADU above the overscan level) for ``det``."""
    width = sum(a.raw_bbox.width for a in det.amplifiers)
    raw = np.zeros((HEIGHT, width))
    for amp, level in zip(det.amplifiers, levels):
        raw[amp.raw_data_bbox.slices()] = truth[amp.bbox.slices()] + level
        if not amp.raw_serial_overscan_bbox.is_empty():
            raw[amp.raw_serial_overscan_bbox.slices()] = level
    return raw.astype(dtype)


def gain_map(det: Detector) -> np.ndarray:
    out = np.empty((HEIGHT, 2 * HALF))
    for amp in det.amplifiers:
        out[amp.bbox.slices()] = amp.gain
    return out


@pytest.fixture
def truth():
    rng = np.random.default_rng(3)
    return np.round(rng.uniform(50.0, 3000.0, (HEIGHT, 2 * HALF)))


both = pytest.mark.parametrize("isr", [run_isr, run_isr_reference], ids=["native", "numpy"])


@both
def test_overscan_subtraction_and_assembly_of_amplifiers_anywhere(isr, truth):
    det = detector()
    raw = raw_frame(det, truth, dtype=np.uint16)
    res = isr(raw, det)
    np.testing.assert_allclose(res.image, truth * gain_map(det), rtol=1e-6)
    np.testing.assert_allclose(res.variance, truth * gain_map(det) + 9.0, rtol=1e-6)
    assert res.overscan["A0"][0] == LEVELS[0] and res.overscan["A1"][0] == LEVELS[1]
    assert not res.mask.any()
    # off, the overscan level stays in the image
    off = isr(raw, det, do_overscan=False)
    levels = np.where(np.arange(2 * HALF) < HALF, LEVELS[0], LEVELS[1])
    np.testing.assert_allclose(off.image, (truth + levels) * gain_map(det), rtol=1e-6)
    assert not any(off.overscan[name].any() for name in ("A0", "A1"))


@both
def test_camera_without_overscan(isr, truth):
    det = detector(overscan=False)
    raw = raw_frame(det, truth, levels=(0.0, 0.0), dtype=np.float32)
    assert raw.shape == (HEIGHT, 2 * HALF)
    res = isr(raw, det, do_overscan=False)
    np.testing.assert_allclose(res.image, truth * gain_map(det), rtol=1e-6)
    with pytest.raises(ValueError, match="amplifier A0 of detector 'T07' has no overscan pixels"):
        isr(raw, det)


@both
def test_linearity_polynomial_after_overscan_and_bias_before_gain(isr, truth):
    coeffs = (2e-5, -3e-9)
    det = detector(linearity=coeffs)
    bias = np.full((HEIGHT, 2 * HALF), 10.0)
    raw = raw_frame(det, truth + 10.0)
    res = isr(raw, det, bias=bias, linearize=True)
    a = truth
    expected = (a + coeffs[0] * a**2 + coeffs[1] * a**3) * gain_map(det)
    np.testing.assert_allclose(res.image, expected, rtol=1e-6)
    assert np.abs(res.image - truth * gain_map(det)).max() > 100  # the correction matters
    plain = isr(raw, det, bias=bias)  # linearize off: the coefficients are not used
    np.testing.assert_allclose(plain.image, truth * gain_map(det), rtol=1e-6)


@both
def test_saturation_switch(isr, truth):
    det = detector(saturation=3500.0)
    raw = raw_frame(det, truth)
    raw[2, 10] = 60000.0  # amp A1's raw data (x 4..11) go to the trimmed right half
    expected = np.zeros((HEIGHT, 2 * HALF), bool)
    for amp in det.amplifiers:  # the raw level, overscan included, is compared
        expected[amp.bbox.slices()] = raw[amp.raw_data_bbox.slices()] >= 3500.0
    assert expected[2, HALF + 10 - OVER] and 0 < expected.sum() < expected.size
    on = isr(raw, det)
    off = isr(raw, det, do_saturation=False)
    np.testing.assert_array_equal((on.mask & SAT) != 0, expected)
    assert not (off.mask & SAT).any()
    np.testing.assert_array_equal(on.image, off.image)


@pytest.mark.parametrize("options", [
    dict(), dict(do_overscan=False), dict(linearize=True), dict(do_saturation=False),
    dict(linearize=True, do_overscan=False, do_saturation=False), dict(bias=True, dark=True),
    dict(linearize=True, bias=True, dark=True)])
@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.float64])
def test_native_equals_reference_exactly(options, dtype):
    """Without a flat (whose division the kernel makes a product), the compiled kernel and the
    NumPy reference do the same float64 operations in the same order: equal bits."""
    native_or_skip("isr")
    rng = np.random.default_rng(5)
    det = detector(linearity=(3e-6, -1e-10, 2e-15), saturation=20000.0)
    raw = np.clip(rng.normal(8000, 6000, (HEIGHT, 2 * (HALF + OVER))), 0, 65535).astype(dtype)
    kwargs = dict(options)
    shape = (HEIGHT, 2 * HALF)
    if kwargs.pop("bias", False):
        kwargs["bias"] = rng.normal(5, 2, shape)
    if kwargs.pop("dark", False):
        kwargs.update(dark=rng.uniform(0, 0.1, shape), dark_time=30.0)
    ours = run_isr(raw, det, overscan_method="median_per_row", **kwargs)
    ref = run_isr_reference(raw, det, overscan_method="median_per_row", **kwargs)
    np.testing.assert_array_equal(ours.image, ref.image)
    np.testing.assert_array_equal(ours.variance, ref.variance)
    np.testing.assert_array_equal(ours.mask, ref.mask)


def test_amplifier_linearity_round_trip_and_old_dicts():
    amp = detector(linearity=(1e-6, 2e-12)).amplifiers[0]
    assert amp.linearity_coeffs == (1e-6, 2e-12)
    assert Amplifier.from_dict(amp.to_dict()) == amp
    old = amp.to_dict()
    del old["linearity_coeffs"]  # a detector stored before the field existed
    assert Amplifier.from_dict(old).linearity_coeffs == ()
    det = detector(linearity=(1e-6,))
    assert Detector.from_dict(det.to_dict()) == det


# --- the task ---------------------------------------------------------------------------------


def raw_exposure(det: Detector, raw: np.ndarray, exposure_time: float = 30.0) -> Exposure:
    exp = Exposure(Box2I(0, 0, raw.shape[1], raw.shape[0]), detector=det,
                   visit_info=VisitInfo(exposure_time=exposure_time, dark_time=exposure_time))
    exp.image.array[:] = raw
    return exp


def calib(value: float) -> Exposure:
    exp = Exposure(Box2I(0, 0, 2 * HALF, HEIGHT))
    exp.image.array[:] = value
    return exp


def isr_task(**switches) -> IsrTask:
    config = IsrConfig()
    for name, value in switches.items():
        setattr(config, name, value)
    return IsrTask(config=config)


def test_every_correction_switches_off(truth):
    det = detector(linearity=(1e-5,))
    raw = raw_exposure(det, raw_frame(det, truth + 20.0))
    bias, dark, flat = calib(20.0), calib(0.5), calib(2.0)
    g = gain_map(det)
    a = truth
    lin = a + 1e-5 * a**2
    full = isr_task(doInterpolate=False).run(raw, bias, dark, flat).exposure
    np.testing.assert_allclose(full.image.array, (lin * g - 15.0) / 2.0, rtol=1e-5)
    cases = {
        "doBias": ((truth + 20.0) + 1e-5 * (truth + 20.0) ** 2) * g - 15.0,
        "doDark": lin * g,
        "doFlat": lin * g - 15.0,
        "doLinearize": a * g - 15.0,
    }
    for switch, expected in cases.items():
        out = isr_task(doInterpolate=False, **{switch: False}).run(raw, bias, dark, flat)
        divisor = 1.0 if switch == "doFlat" else 2.0
        np.testing.assert_allclose(out.exposure.image.array, expected / divisor, rtol=1e-5,
                                   err_msg=switch)


def test_already_reduced_frame_goes_through_with_everything_off():
    """An archive's calibrated frame: no overscan, nothing to subtract or divide; the pixels
    times the gain, the variance from the signal and the read noise."""
    det = Detector(0, "archive", Box2I(0, 0, 10, 6), (Amplifier(
        "A", Box2I(0, 0, 10, 6), Box2I(0, 0, 10, 6), Box2I(0, 0, 10, 6), Box2I(0, 0, 0, 0),
        gain=2.0, read_noise=5.0),))
    pixels = np.linspace(-5.0, 400.0, 60).reshape(6, 10)
    raw = raw_exposure(det, pixels)
    off = dict(doOverscan=False, doBias=False, doDark=False, doFlat=False, doLinearize=False,
               doSaturation=False, doDefects=False, doInterpolate=False)
    out = isr_task(**off).run(raw).exposure
    np.testing.assert_allclose(out.image.array, pixels * 2.0, rtol=1e-6)
    np.testing.assert_allclose(out.variance.array, np.maximum(pixels * 2.0, 0) + 25.0,
                               rtol=1e-6)
    assert not out.mask.array.any()
    with pytest.raises(MissingCalibrationError, match="^doFlat is on but no flat was given: "
                                                      "pass one or set doFlat=False"):
        isr_task(**dict(off, doFlat=True)).run(raw, flat=None)
    with pytest.raises(IsrError, match="doOverscan is on but amplifier A of detector "
                                       "'archive' has no overscan pixels.*doOverscan=False"):
        isr_task(doBias=False, doDark=False, doFlat=False).run(raw)


class FakeDataRef:
    """A data reference over a dict of datasets (what the butler would hold)."""

    def __init__(self, datasets):
        self.dataId = {"visit": 12, "ccd": 7}
        self.datasets = datasets
        self.asked = []

    def get(self, name):
        self.asked.append(name)
        if name not in self.datasets:
            raise NoSuchDatasetError(name, self.dataId, ["/repo"])
        return self.datasets[name]


def test_missing_calibration_names_it_the_data_id_and_the_switch():
    ref = FakeDataRef({"bias": calib(0.0), "flat": calib(1.0)})
    with pytest.raises(MissingCalibrationError) as info:
        isr_task().read_calibrations(ref)
    message = str(info.value)
    assert message.startswith("doDark is on but no dark was found for visit=12, ccd=7; "
                              "ingest one")
    assert "set doDark=False" in message and "no dark dataset for data id" in message
    assert isinstance(info.value, LookupError)
    # switched off, the calibration is not even looked for
    ref.asked.clear()
    calibs = isr_task(doDark=False).read_calibrations(ref)
    assert ref.asked == ["bias", "flat"] and calibs["dark"] is None
    # inside processCcd the switch is named as -c takes it there
    process = ProcessCcdTask()
    with pytest.raises(MissingCalibrationError, match="^isr.doBias is on but no bias .*"
                                                      "set isr.doBias=False"):
        process.isr.read_calibrations(FakeDataRef({}))


# --- camera-level defaults ---------------------------------------------------------------------


def test_camera_defaults_apply_per_task():
    camera = {"isr.doOverscan": False, "isr.overscanFitType": "mean"}
    process = ProcessCcdConfig()
    assert apply_camera_defaults(process, camera, "processCcd", "camera test") == \
        ["isr.doOverscan", "isr.overscanFitType"]
    assert process.isr.doOverscan is False and process.isr.overscanFitType == "mean"
    assert "camera" in process.format_history("isr.doOverscan")
    isr = IsrConfig()
    assert apply_camera_defaults(isr, camera, "isr", "camera test") == \
        ["doOverscan", "overscanFitType"]
    assert isr.doOverscan is False
    assert apply_camera_defaults(isr, {"doSaturation": False}, "isr", "camera test") == \
        ["doSaturation"]
    calibrate = CalibrateConfig()  # isr.* is another task's
    assert apply_camera_defaults(calibrate, camera, "calibrate", "camera test") == []
    with pytest.raises(UnknownFieldError, match="doOverscn"):
        apply_camera_defaults(IsrConfig(), {"doOverscn": False}, "isr", "c")
    with pytest.raises(UnknownFieldError, match="doOverscn"):
        apply_camera_defaults(ProcessCcdConfig(), {"isr.doOverscn": False}, "processCcd", "c")
    with pytest.raises(Exception, match="doOverscan"):
        apply_camera_defaults(IsrConfig(), {"doOverscan": "maybe"}, "isr", "c")
