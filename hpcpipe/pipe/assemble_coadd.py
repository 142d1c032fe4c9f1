"""Coadd assembly (LSST's ``AssembleCoaddTask``): a sigma-clipped weighted mean of warps.

Each warp is weighted by the inverse of the clipped mean of its variance plane; the stack is
combined pixel by pixel with iterative sigma clipping (:func:`hpcpipe.kernels.coadd.
clipped_mean_stack`, in blocks of rows so that memory stays bounded), giving the coadd's
image, variance and mask (CLIPPED where an input was rejected, NO_DATA where none was left).
The coadd's PSF is the weighted mean of the warps' PSF images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.config import Config, ListField, RangeField
from hpcpipe.image import Exposure, PhotoCalib
from hpcpipe.image.calib import AB_NANOJANSKY_ZERO_POINT
from hpcpipe.image.psf import PixelPsf
from hpcpipe.kernels.coadd import clipped_mean_stack
from hpcpipe.kernels.stats import clipped_mean_reference
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

__all__ = ["AssembleCoaddConfig", "AssembleCoaddTask", "warp_weight"]


class AssembleCoaddConfig(Config):
    """Clipping and masking of the stack."""

    sigmaClip = RangeField("clip inputs this many standard deviations from the median",
                           float, default=3.0, min=0.5)
    clipIter = RangeField("clipping passes", int, default=2, min=1)
    badMaskPlanes = ListField("inputs with these planes are left out", str,
                              default=["NO_DATA", "BAD", "SAT", "CR"])
    rowsPerBlock = RangeField("rows of the stack combined at a time (memory bound)", int,
                              default=256, min=1)


def warp_weight(warp: Exposure, bad_bits: int) -> float:
    """1 / clipped mean variance of a warp's good pixels (0 if it has none)."""
    var = warp.variance.array
    good = np.isfinite(var) & (var > 0) & ((warp.mask.array & bad_bits) == 0)
    if good.sum() < 10:
        return 0.0
    values = var[good].astype(np.float64)
    if values.size > 200_000:
        values = values[:: values.size // 200_000]
    mean, _, _ = clipped_mean_reference(values, 3.0, 2)
    return float(1.0 / mean) if mean > 0 else 0.0


class AssembleCoaddTask(CmdLineTask):
    """Combine the warps of one patch and filter into a coadd."""

    ConfigClass = AssembleCoaddConfig
    _DefaultName = "assembleCoadd"

    @timed_method
    def run(self, warps: list[Exposure]) -> Struct:
        """Coadd ``warps`` (same patch grid, same filter, in nJy).

        Returns
        -------
        Struct
            ``coadd`` (Exposure), ``weights`` and ``n_inputs``.
        """
        if not warps:
            raise ValueError("assembleCoadd needs at least one warp")
        c = self.config
        first = warps[0]
        bad_bits = first.mask.get_plane_bitmask([p for p in c.badMaskPlanes
                                                 if p in first.mask.planes])
        weights = np.array([warp_weight(w, bad_bits) for w in warps])
        use = [k for k, wt in enumerate(weights) if wt > 0]
        if not use:
            raise ValueError("none of the warps has a pixel with a valid variance")
        res = clipped_mean_stack(
            [warps[k].image.array for k in use], [warps[k].variance.array for k in use],
            [warps[k].mask.array for k in use], [float(weights[k]) for k in use],
            nsigma=c.sigmaClip, niter=c.clipIter, bad_bits=bad_bits,
            clipped_bit=first.mask.get_plane_bitmask("CLIPPED"),
            no_data_bit=first.mask.get_plane_bitmask("NO_DATA"),
            rows_per_block=c.rowsPerBlock)
        coadd = Exposure(first.bbox, wcs=first.wcs, filter=first.filter,
                         photo_calib=PhotoCalib(AB_NANOJANSKY_ZERO_POINT))
        coadd.image.array[:] = res.image
        coadd.variance.array[:] = res.variance
        coadd.mask.array[:] = res.mask
        psfs = [warps[k].psf.compute_kernel_image() for k in use if warps[k].psf is not None]
        if psfs:
            size = max(p.shape[0] for p in psfs)
            stack = np.zeros((size, size))
            for k, p in zip(use, psfs, strict=False):
                pad = (size - p.shape[0]) // 2
                stack[pad:pad + p.shape[0], pad:pad + p.shape[1]] += weights[k] * p
            coadd.psf = PixelPsf(stack / stack.sum())
        coadd.metadata["NINPUTS"] = len(use)
        self.metadata["nInputs"] = len(use)
        self.log.info("coadded %d warps", len(use))
        return Struct(coadd=coadd, weights=weights, n_inputs=len(use), count=res.count)

    def run_data_ref(self, data_ref: Any) -> Struct:
        """Coadd every warp of the patch in the filter; write deepCoadd."""
        butler = data_ref.butler
        d = data_ref.dataId
        key = {"tract": d["tract"], "patch": d["patch"], "filter": d["filter"]}
        warps = [butler.get("deepCoadd_directWarp", visit=v, **key)
                 for v in butler.queryMetadata("raw", "visit", {"filter": d["filter"]})
                 if butler.datasetExists("deepCoadd_directWarp", visit=v, **key)]
        if not warps:
            # the visits planned for this patch did not reach it after all: nothing to coadd
            self.log.info("no warp of %s: no coadd", key)
            self.metadata["nInputs"] = 0
            return Struct(coadd=None, weights=None, n_inputs=0, count=None)
        result = self.run(warps)
        butler.put(result.coadd, "deepCoadd", **key)
        return result
