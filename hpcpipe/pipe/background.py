"""Sky background estimation and subtraction (LSST's ``SubtractBackgroundTask``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.config import ChoiceField, Config, Field, ListField, RangeField
from hpcpipe.kernels.background import estimate_background
from hpcpipe.task import Struct, Task, timed_method

__all__ = ["SubtractBackgroundConfig", "SubtractBackgroundTask"]


class SubtractBackgroundConfig(Config):
    """How the background mesh is made and interpolated."""

    binSize = RangeField("size of the background cells, pixels", int, default=128, min=8)
    statisticNSigma = RangeField("clipping limit in each cell, in standard deviations",
                                 float, default=3.0, min=1.0)
    statisticNIter = RangeField("clipping passes in each cell", int, default=3, min=1)
    filterSize = RangeField("odd size of the median filter over the cells (1: none)", int,
                            default=3, min=1, check=lambda size: size % 2 == 1)
    interpolation = ChoiceField(
        "interpolation of the mesh back to every pixel", str,
        {"akima": "Akima spline (LSST's default)", "natural": "natural cubic spline",
         "linear": "piecewise linear"}, default="akima")
    ignoredPixelMask = ListField("mask planes whose pixels are left out of the statistics",
                                 str, default=["BAD", "EDGE", "DETECTED", "DETECTED_NEGATIVE",
                                               "NO_DATA", "SAT", "CR"])
    useApprox = Field("unused: kept for LSST config compatibility", bool, default=False)


class SubtractBackgroundTask(Task):
    """Estimate the sky of an exposure and subtract it in place."""

    ConfigClass = SubtractBackgroundConfig
    _DefaultName = "background"

    @timed_method
    def run(self, exposure: Any) -> Struct:
        """Subtract the background from ``exposure`` (in place).

        Returns
        -------
        Struct
            ``background`` (float32 image of the model), ``rms`` (the clipped per-pixel
            noise of the sky) and ``mesh``.
        """
        c = self.config
        mask = exposure.mask
        planes = [p for p in c.ignoredPixelMask if p in mask.planes]
        bad = (mask.array & mask.get_plane_bitmask(planes)) != 0 if planes else None
        image = exposure.image.array
        est = estimate_background(image, bad, bin_size=c.binSize, nsigma=c.statisticNSigma,
                                  niter=c.statisticNIter, filter_size=c.filterSize,
                                  interpolation=c.interpolation)
        model = np.asarray(est.image, dtype=np.float32)
        if not np.isfinite(model).all():
            model = np.where(np.isfinite(model), model, np.float32(np.nanmedian(model)
                             if np.isfinite(model).any() else 0.0)).astype(np.float32)
        image -= model.astype(image.dtype)
        self.metadata["BGMEAN"] = float(np.mean(model))
        self.metadata["BGVAR"] = float(est.rms) ** 2 if np.isfinite(est.rms) else float("nan")
        self.log.info("background mean %.1f, rms %.2f", float(np.mean(model)), est.rms)
        return Struct(background=model, rms=float(est.rms), mesh=est.mesh)
