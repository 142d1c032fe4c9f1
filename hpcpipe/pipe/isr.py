"""Instrument signature removal (LSST's ``IsrTask``): raw ADU to electrons with mask and variance.

Per amplifier: the overscan level is fitted and subtracted, the master bias subtracted, the
pixels converted to electrons by the gain, the dark current (master dark times the dark time)
subtracted and the result divided by the flat; saturated and suspect pixels are masked from
the raw values, bad pixels from the calibrations (a flat far below 1: dead columns; a dark far
above the mean: hot pixels), and the variance computed from the signal and the read noise
(:func:`hpcpipe.kernels.isr.run_isr` does all this in one pass). Saturated and bad pixels are
then interpolated over (INTRP) so that detection does not see them as holes or spikes.

Every correction has its switch (``doOverscan``, ``doBias``, ``doDark``, ``doFlat``,
``doLinearize``, ``doSaturation``, ``doDefects``, ``doInterpolate``); a camera sets its own
defaults through its mapper's ``config_overrides`` (a camera without overscan turns
``doOverscan`` off). A frame already reduced elsewhere (an archive's calibrated image) goes
through with every correction off: its pixels times the gain, the variance from the gain and
the read noise. A correction that is on but whose calibration is missing is an error naming
the calibration, the data id and the switch.

The output is a trimmed ``postISRCCD`` exposure with the raw's WCS, filter, detector and
visit information.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpcpipe.butler import NoSuchDatasetError
from hpcpipe.config import ChoiceField, Config, Field, RangeField
from hpcpipe.errors import HpcpipeError
from hpcpipe.image import Exposure
from hpcpipe.kernels.cosmic import interpolate_over
from hpcpipe.kernels.isr import run_isr
from hpcpipe.pipe.dataset_io import format_data_id
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import ButlerDataRef

__all__ = ["IsrConfig", "IsrTask", "IsrError", "MissingCalibrationError"]

#: The calibrations ISR reads, with the switch that asks for each.
CALIBRATIONS = (("bias", "doBias"), ("dark", "doDark"), ("flat", "doFlat"))


class IsrError(HpcpipeError, RuntimeError):
    """A raw frame that cannot be processed: no detector, calibrations of the wrong size."""


class MissingCalibrationError(IsrError, LookupError):
    """A correction is switched on but its calibration is not in the repository."""


class IsrConfig(Config):
    """Which corrections are applied, and how."""

    doOverscan = Field("fit and subtract each amplifier's overscan (off for a camera "
                       "without overscan pixels)", bool, default=True)
    overscanFitType = ChoiceField(
        "the overscan model", str,
        {"mean": "one clipped mean per amplifier", "median": "one median per amplifier",
         "median_per_row": "a median per row", "poly": "a polynomial along the rows"},
        default="median")
    overscanOrder = RangeField("order of the 'poly' overscan model", int, default=1, min=0,
                               max=10, inclusive_max=True)
    doLinearize = Field("apply each amplifier's linearity polynomial (its linearity_coeffs; "
                        "amplifiers without coefficients are left as they are)", bool,
                        default=True)
    doSaturation = Field("mask SAT the raw pixels at or above the amplifier's saturation "
                         "level", bool, default=True)
    doBias = Field("subtract the master bias", bool, default=True)
    doDark = Field("subtract the master dark scaled by the dark time", bool, default=True)
    doFlat = Field("divide by the master flat", bool, default=True)
    doDefects = Field("mask bad pixels found in the calibrations (BAD)", bool, default=True)
    flatBadThreshold = RangeField("flat pixels below this fraction of 1 are BAD", float,
                                  default=0.5, min=0.0)
    darkHotThreshold = RangeField("dark pixels above this many electrons per second are BAD",
                                  float, default=1.0, min=0.0)
    doInterpolate = Field("interpolate over saturated and bad pixels (INTRP)", bool,
                          default=True)
    doWrite = Field("write postISRCCD", bool, default=True)


class IsrTask(CmdLineTask):
    """Remove the instrument signature from a raw CCD."""

    ConfigClass = IsrConfig
    _DefaultName = "isr"

    def defects(self, dark: Exposure | None, flat: Exposure | None, shape: tuple[int, ...]
                ) -> np.ndarray | None:
        """Bad pixels found in the master calibrations (None if there are none to look at)."""
        c = self.config
        if not c.doDefects or (dark is None and flat is None):
            return None
        bad = np.zeros(shape, bool)
        if flat is not None:
            bad |= ~(flat.image.array > c.flatBadThreshold)
        if dark is not None:
            bad |= dark.image.array > c.darkHotThreshold
        return bad

    @timed_method
    def run(self, raw: Exposure, bias: Exposure | None = None, dark: Exposure | None = None,
            flat: Exposure | None = None) -> Struct:
        """Process one raw exposure.

        Parameters
        ----------
        raw : Exposure
            The raw frame (ADU, untrimmed) with its detector.
        bias, dark, flat : Exposure, optional
            The master calibrations (trimmed); each is needed when its switch is on and
            ignored when it is off.

        Returns
        -------
        Struct
            ``exposure`` (the postISRCCD) and ``overscan`` (per-amplifier levels).

        Raises
        ------
        MissingCalibrationError
            A correction is on and its calibration is None.
        IsrError
            No detector; ``doOverscan`` on and an amplifier without overscan pixels; a
            calibration of the wrong size; a dark without an exposure time.
        """
        c = self.config
        detector = raw.detector
        if detector is None:
            raise IsrError("the raw exposure has no detector: cannot find its amplifiers")
        if c.doOverscan:
            for amp in detector.amplifiers:
                if amp.raw_serial_overscan_bbox.is_empty():
                    raise IsrError(
                        f"{self._option('doOverscan')} is on but amplifier {amp.name} of "
                        f"detector {detector.name!r} has no overscan pixels (an empty "
                        f"overscan box): set {self._option('doOverscan')}=False for this "
                        "camera")
        shape = detector.bbox.shape
        calibs = {"bias": bias if c.doBias else None, "dark": dark if c.doDark else None,
                  "flat": flat if c.doFlat else None}
        for name, switch in CALIBRATIONS:
            if getattr(c, switch) and calibs[name] is None:
                option = self._option(switch)
                raise MissingCalibrationError(f"{option} is on but no {name} was given: pass "
                                              f"one or set {option}=False")
        for name, calib in calibs.items():
            if calib is not None and calib.image.array.shape != tuple(shape):
                raise IsrError(f"the {name} frame is {calib.image.array.shape}, the CCD "
                               f"{tuple(shape)}")
        visit_info = raw.visit_info
        dark_time = 0.0
        if visit_info is not None:
            dark_time = visit_info.dark_time
            if not np.isfinite(dark_time):
                dark_time = visit_info.exposure_time
        if calibs["dark"] is not None and not np.isfinite(dark_time):
            raise IsrError("the raw exposure has no exposure time: cannot scale the dark")
        mask_planes = Exposure(detector.bbox).mask
        res = run_isr(
            raw.image.array, detector,
            bias=None if calibs["bias"] is None else calibs["bias"].image.array,
            dark=None if calibs["dark"] is None else calibs["dark"].image.array,
            dark_time=float(dark_time) if np.isfinite(dark_time) else 0.0,
            flat=None if calibs["flat"] is None else calibs["flat"].image.array,
            defects=self.defects(calibs["dark"], calibs["flat"], tuple(shape)),
            overscan_method=c.overscanFitType,
            overscan_order=c.overscanOrder,
            saturated_bit=mask_planes.get_plane_bitmask("SAT"),
            bad_bit=mask_planes.get_plane_bitmask("BAD"),
            suspect_bit=mask_planes.get_plane_bitmask("SUSPECT"),
            no_data_bit=mask_planes.get_plane_bitmask("NO_DATA"),
            do_overscan=c.doOverscan, linearize=c.doLinearize,
            do_saturation=c.doSaturation)
        exposure = Exposure(detector.bbox, wcs=raw.wcs, filter=raw.filter, detector=detector,
                            visit_info=visit_info, metadata=dict(raw.metadata))
        exposure.image.array[:] = res.image
        exposure.variance.array[:] = res.variance
        exposure.mask.array[:] = res.mask
        if c.doInterpolate:
            fix = exposure.mask.any_of(["SAT", "BAD"])
            if fix.any():
                image, variance = interpolate_over(exposure.image.array, fix,
                                                   variance=exposure.variance.array)
                exposure.image.array[:] = image
                exposure.variance.array[:] = variance
                exposure.mask.set_plane("INTRP", fix)
        n_sat = int(np.count_nonzero(exposure.mask.plane("SAT")))
        n_bad = int(np.count_nonzero(exposure.mask.plane("BAD")))
        self.metadata["nSaturated"] = n_sat
        self.metadata["nBad"] = n_bad
        self.log.info("ISR done: %d saturated and %d bad pixels", n_sat, n_bad)
        return Struct(exposure=exposure, overscan=res.overscan)

    def _option(self, field: str) -> str:
        """The command-line name of one of this task's config fields (``isr.doBias`` in
        processCcd, ``doBias`` when isr is run alone)."""
        return self.config._full_name(field)

    def read_calibrations(self, data_ref: ButlerDataRef) -> dict[str, Exposure | None]:
        """The calibrations the switched-on corrections need, read through ``data_ref``.

        Returns
        -------
        dict
            ``bias``, ``dark`` and ``flat`` (None for a correction switched off).

        Raises
        ------
        MissingCalibrationError
            A correction is on and its calibration is not in the repository; the message
            names the calibration, the data id and the switch that turns it off.
        """
        calibs: dict[str, Exposure | None] = {}
        for name, switch in CALIBRATIONS:
            if not getattr(self.config, switch):
                calibs[name] = None
                continue
            try:
                calibs[name] = data_ref.get(name)
            except NoSuchDatasetError as exc:
                option = self._option(switch)
                raise MissingCalibrationError(
                    f"{option} is on but no {name} was found for "
                    f"{format_data_id(data_ref.dataId)}; ingest one (hpcpipe ingest REPO FILE) or "
                    f"set {option}=False ({exc})") from exc
        return calibs

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read the raw and its calibrations through the butler, write postISRCCD."""
        c = self.config
        raw = data_ref.get("raw")
        calibs = self.read_calibrations(data_ref)
        result = self.run(raw, **calibs)
        if c.doWrite:
            data_ref.put(result.exposure, "postISRCCD")
        return result
