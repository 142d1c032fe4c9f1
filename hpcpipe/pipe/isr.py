"""Instrument signature removal (LSST's ``IsrTask``): raw ADU to electrons with mask and variance.

Per amplifier: the overscan level is fitted and subtracted, the master bias subtracted, the
pixels converted to electrons by the gain, the dark current (master dark times the dark time)
subtracted and the result divided by the flat; saturated and suspect pixels are masked from
the raw values, bad pixels from the calibrations (a flat far below 1: dead columns; a dark far
above the mean: hot pixels), and the variance computed from the signal and the read noise
(:func:`hpcpipe.kernels.isr.run_isr` does all this in one pass). Saturated and bad pixels are
then interpolated over (INTRP) so that detection does not see them as holes or spikes.

The output is a trimmed ``postISRCCD`` exposure with the raw's WCS, filter, detector and
visit information.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.config import ChoiceField, Config, Field, RangeField
from hpcpipe.errors import HpcpipeError
from hpcpipe.image import Exposure
from hpcpipe.kernels.cosmic import interpolate_over
from hpcpipe.kernels.isr import run_isr
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

__all__ = ["IsrConfig", "IsrTask", "IsrError"]


class IsrError(HpcpipeError, RuntimeError):
    """A raw frame that cannot be processed: no detector, calibrations of the wrong size."""


class IsrConfig(Config):
    """Which corrections are applied, and how."""

    overscanFitType = ChoiceField(
        "the overscan model", str,
        {"mean": "one clipped mean per amplifier", "median": "one median per amplifier",
         "median_per_row": "a median per row", "poly": "a polynomial along the rows"},
        default="median")
    overscanOrder = RangeField("order of the 'poly' overscan model", int, default=1, min=0,
                               max=10, inclusive_max=True)
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

    def defects(self, dark: Exposure | None, flat: Exposure | None, shape: tuple[int, int]
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

        Returns
        -------
        Struct
            ``exposure`` (the postISRCCD) and ``overscan`` (per-amplifier levels).
        """
        c = self.config
        detector = raw.detector
        if detector is None:
            raise IsrError("the raw exposure has no detector: cannot find its amplifiers")
        shape = detector.bbox.shape
        calibs = {"bias": bias if c.doBias else None, "dark": dark if c.doDark else None,
                  "flat": flat if c.doFlat else None}
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
            no_data_bit=mask_planes.get_plane_bitmask("NO_DATA"))
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

    def run_data_ref(self, data_ref: Any) -> Struct:
        """Read the raw and its calibrations through the butler, write postISRCCD."""
        c = self.config
        raw = data_ref.get("raw")
        calibs = {name: data_ref.get(name) if flag else None
                  for name, flag in (("bias", c.doBias), ("dark", c.doDark),
                                     ("flat", c.doFlat))}
        result = self.run(raw, **calibs)
        if c.doWrite:
            data_ref.put(result.exposure, "postISRCCD")
        return result
