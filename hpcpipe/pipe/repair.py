"""Cosmic-ray repair (LSST's ``RepairTask``): find cosmic rays, mask them CR, interpolate."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.config import Config, Field, RangeField
from hpcpipe.kernels.cosmic import find_cosmic_rays, interpolate_over
from hpcpipe.task import Struct, Task, timed_method

__all__ = ["RepairConfig", "RepairTask"]


class RepairConfig(Config):
    """Cosmic-ray detection limits."""

    doCosmicRay = Field("find and repair cosmic rays", bool, default=True)
    doInterpolate = Field("interpolate over the cosmic rays found", bool, default=True)
    minSigma = RangeField("a cosmic-ray pixel is at least this many sigma above the sky",
                          float, default=6.0, min=0.0, inclusive_min=False)
    cond3Fac = RangeField("LSST's cond3_fac: how much sharper than the PSF a cosmic ray is",
                          float, default=2.5, min=0.0)
    cond3Fac2 = RangeField("LSST's cond3_fac2: the same, along the diagonals", float,
                           default=0.4, min=0.0)
    grow = RangeField("grow each cosmic ray by this many pixels", int, default=1, min=0)


class RepairTask(Task):
    """Find the cosmic rays of an exposure, set CR and INTRP, and interpolate over them."""

    ConfigClass = RepairConfig
    _DefaultName = "repair"

    @timed_method
    def run(self, exposure: Any, psf_sigma: float) -> Struct:
        """Repair ``exposure`` in place; returns ``n_cr`` (pixels) and ``cosmic_rays``."""
        c = self.config
        if not c.doCosmicRay:
            return Struct(n_cr=0, cosmic_rays=None)
        mask = exposure.mask
        bad_planes = [p for p in ("BAD", "SAT", "NO_DATA") if p in mask.planes]
        crs = find_cosmic_rays(exposure.image.array, exposure.variance.array, mask.array,
                               psf_sigma=psf_sigma, nsigma=c.minSigma, cond3_fac=c.cond3Fac,
                               cond3_fac2=c.cond3Fac2, grow=c.grow,
                               bad_bits=mask.get_plane_bitmask(bad_planes) if bad_planes else 0)
        n_cr = int(np.count_nonzero(crs))
        mask.set_plane("CR", crs)
        if c.doInterpolate and n_cr:
            image, variance = interpolate_over(exposure.image.array, crs,
                                               variance=exposure.variance.array)
            exposure.image.array[:] = image
            exposure.variance.array[:] = variance
            mask.set_plane("INTRP", crs)
        self.metadata["nCrPixels"] = n_cr
        self.log.info("%d cosmic-ray pixels", n_cr)
        return Struct(n_cr=n_cr, cosmic_rays=crs)
