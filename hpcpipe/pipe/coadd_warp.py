"""Warps (LSST's ``MakeCoaddTempExpTask``, ``deepCoadd_directWarp``): one visit on a patch grid.

Every calexp of the visit that overlaps the patch is resampled onto the patch's outer pixel
grid (the tract's TAN projection) with a Lanczos-3 kernel (:mod:`hpcpipe.kernels.warp`; the
WCS is evaluated exactly every ``interpLength`` pixels and interpolated between) and scaled
to nanojanskys with its PhotoCalib, so that all warps share one photometric scale (a zero
point of 31.4). Pixels no CCD reaches are NaN with NO_DATA set. The warp's PSF is the
calexp's PSF at the patch centre (as a fixed pixel image).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.config import ChoiceField, Config, RangeField
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure, PhotoCalib
from hpcpipe.image.calib import AB_NANOJANSKY_ZERO_POINT
from hpcpipe.image.psf import PixelPsf
from hpcpipe.kernels.warp import transform_grid, warp_image, wcs_transform
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import Butler, ButlerDataRef



def patch_of(butler: Butler, data_id: Any) -> Any:
    """The :class:`~hpcpipe.skymap.PatchInfo` of a data id's tract and patch."""
    sky_map = butler.get("skyMap")
    tract = sky_map[int(data_id["tract"])]
    index = tuple(int(v) for v in str(data_id["patch"]).split(","))
    return tract.get_patch_info(index)


def patch_key(data_id: Any) -> dict[str, Any]:
    """The ``tract`` and ``patch`` of a data id: the key of a patch's datasets."""
    return {"tract": data_id["tract"], "patch": data_id["patch"]}


def get_per_filter(butler: Any, data_id: Any, dataset_type: str) -> dict[str, Any]:
    """Read the patch's ``dataset_type`` in every filter of the repository that has one.

    Parameters
    ----------
    butler : Butler
        The repository.
    data_id : mapping
        Names the patch (``tract``, ``patch``; other keys are ignored).
    dataset_type : str
        A per-filter patch dataset (``deepCoadd_calexp``, ``deepCoadd_det``...).

    Returns
    -------
    by_filter : dict
        Filter name to dataset, in the repository's filter order; empty when no filter has it.
    """
    key = patch_key(data_id)
    return {f: butler.get(dataset_type, filter=f, **key)
            for f in butler.queryMetadata("raw", "filter")
            if butler.datasetExists(dataset_type, filter=f, **key)}


class MakeCoaddTempExpConfig(Config):
    """Resampling kernel and WCS interpolation."""

    warpingKernelName = ChoiceField("resampling kernel", str,
                                    {"lanczos3": "Lanczos, 3 lobes (6x6 taps)",
                                     "bilinear": "bilinear (2x2)"}, default="lanczos3")
    interpLength = RangeField("the WCS is evaluated exactly every this many pixels", int,
                              default=10, min=1)
    minOverlap = RangeField("fewest overlapping pixels for a CCD to be warped", int,
                            default=100, min=1)


def ccd_box_on_patch(calexp: Exposure, patch_wcs: Any, patch_box: Box2I, margin: int = 4
                     ) -> Box2I | None:
    """The part of ``patch_box`` (tract pixels) a calexp covers, or None."""
    h, w = calexp.image.array.shape
    x0, y0 = calexp.xy0
    t = np.linspace(0, 1, 9)
    xs = np.concatenate([x0 - 0.5 + w * t, np.full(9, x0 + w - 0.5), x0 - 0.5 + w * t,
                         np.full(9, x0 - 0.5)])
    ys = np.concatenate([np.full(9, y0 - 0.5), y0 - 0.5 + h * t, np.full(9, y0 + h - 0.5),
                         y0 - 0.5 + h * t])
    assert calexp.wcs is not None  # a calexp has a WCS
    ra, dec = calexp.wcs.all_pix2world(xs, ys, 0)
    px, py = patch_wcs.all_world2pix(ra, dec, 0)
    bx0 = max(int(np.floor(px.min())) - margin, patch_box.x0)
    by0 = max(int(np.floor(py.min())) - margin, patch_box.y0)
    bx1 = min(int(np.ceil(px.max())) + margin + 1, patch_box.x0 + patch_box.width)
    by1 = min(int(np.ceil(py.max())) + margin + 1, patch_box.y0 + patch_box.height)
    if bx1 <= bx0 or by1 <= by0:
        return None
    return Box2I(bx0, by0, bx1 - bx0, by1 - by0)


class MakeCoaddTempExpTask(CmdLineTask):
    """Warp the calexps of one visit onto one patch."""

    ConfigClass = MakeCoaddTempExpConfig
    _DefaultName = "makeCoaddTempExp"

    @timed_method
    def run(self, calexps: Iterable[Exposure], patch_info: Any) -> Struct:
        """Warp ``calexps`` (one visit) onto ``patch_info``'s outer box.

        ``calexps`` may be a generator: each calexp is used once and not kept, so that
        one calexp at a time is in memory beside the warp.

        Returns
        -------
        Struct
            ``exposure`` (the warp, or None if no CCD overlaps) and ``n_ccds``.
        """
        c = self.config
        outer = patch_info.outer_bbox
        wcs = patch_info.wcs
        warp = Exposure(outer, wcs=wcs, photo_calib=PhotoCalib(AB_NANOJANSKY_ZERO_POINT))
        warp.image.array[:] = np.nan
        warp.variance.array[:] = np.nan
        warp.mask.set_plane("NO_DATA")
        covered = np.zeros(warp.image.array.shape, bool)
        best, best_pixels = None, 0
        n_ccds = 0
        spent = {"wcsTime": 0.0, "resampleTime": 0.0, "assignTime": 0.0}
        for calexp in calexps:
            t0 = time.perf_counter()
            box = ccd_box_on_patch(calexp, wcs, outer)
            if box is None or box.width * box.height < c.minOverlap:
                continue
            transform = wcs_transform(calexp.wcs, wcs, dest_origin=(box.x0, box.y0))
            src_x, src_y = transform_grid(transform, (box.height, box.width),
                                          step=c.interpLength)
            cx0, cy0 = calexp.xy0
            src_x -= cx0
            src_y -= cy0
            t1 = time.perf_counter()
            res = warp_image(calexp.image.array, calexp.variance.array, calexp.mask.array,
                             src_x, src_y, method=c.warpingKernelName,
                             no_data_bit=warp.mask.get_plane_bitmask("NO_DATA"))
            t2 = time.perf_counter()
            spent["wcsTime"] += t1 - t0
            spent["resampleTime"] += t2 - t1
            good = np.isfinite(res.image) & ((res.mask & warp.mask.get_plane_bitmask(
                "NO_DATA")) == 0)
            if good.sum() < c.minOverlap:
                continue
            if calexp.photo_calib is None:
                raise ValueError("a calexp without a PhotoCalib cannot be warped to nJy")
            scale = calexp.photo_calib.calibration_mean
            sl = (slice(box.y0 - outer.y0, box.y0 - outer.y0 + box.height),
                  slice(box.x0 - outer.x0, box.x0 - outer.x0 + box.width))
            take = good & ~covered[sl]
            res.image *= np.float32(scale)  # (as image * scale: float32 arithmetic)
            res.variance *= np.float32(scale)
            res.variance *= np.float32(scale)
            np.copyto(warp.image.array[sl], res.image, where=take)
            np.copyto(warp.variance.array[sl], res.variance, where=take)
            np.copyto(warp.mask.array[sl], res.mask, where=take)
            covered[sl] |= take
            n_ccds += 1
            if take.sum() > best_pixels:
                best, best_pixels = self._psf_and_info(calexp, wcs, outer), int(take.sum())
            spent["assignTime"] += time.perf_counter() - t2
            del calexp, res, src_x, src_y, good, take  # before the next calexp is read
        # where the time went: WCS on the grid; resampling of image, variance and mask
        # (one pass); scaling to nJy and placing in the patch
        self.metadata.update(spent)
        if best is None:
            return Struct(exposure=None, n_ccds=0)
        warp.psf, warp.filter, warp.visit_info = best
        warp.metadata["NCCDS"] = n_ccds
        warp.metadata["COVERAGE"] = float(covered.mean())
        self.metadata["nCcds"] = n_ccds
        self.log.info("warped %d CCDs onto patch %s, %.0f%% covered", n_ccds,
                      patch_info.index, 100 * covered.mean())
        return Struct(exposure=warp, n_ccds=n_ccds)

    @staticmethod
    def _psf_and_info(calexp: Exposure, wcs: Any, outer: Box2I) -> tuple[Any, Any, Any]:
        """The calexp's PSF at the patch centre (a PixelPsf), its filter and visit info."""
        centre = outer.x0 + outer.width / 2, outer.y0 + outer.height / 2
        ra, dec = wcs.all_pix2world([centre[0]], [centre[1]], 0)
        assert calexp.wcs is not None and calexp.psf is not None  # a calexp has both
        bx, by = calexp.wcs.all_world2pix(ra, dec, 0)
        h, w = calexp.image.array.shape
        bx = float(np.clip(bx[0], 0, w - 1))
        by = float(np.clip(by[0], 0, h - 1))
        return (PixelPsf(calexp.psf.compute_kernel_image(bx, by)), calexp.filter,
                calexp.visit_info)

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Warp the visit's calexps onto the patch (read one at a time); write
        deepCoadd_directWarp if any overlap."""
        butler = data_ref.butler
        data_id = data_ref.dataId
        patch_info = patch_of(butler, data_id)
        visit = int(data_id["visit"])
        calexps = (butler.get("calexp", visit=visit, ccd=ccd)
                   for ccd in butler.queryMetadata("raw", "ccd", {"visit": visit})
                   if butler.datasetExists("calexp", visit=visit, ccd=ccd))
        result = self.run(calexps, patch_info)
        if result.exposure is not None:
            band = result.exposure.filter.band
            butler.put(result.exposure, "deepCoadd_directWarp", tract=data_id["tract"],
                       patch=data_id["patch"], visit=visit, filter=band)
        return result
