"""Templates (LSST's ``GetCoaddAsTemplateTask``): the deep coadd warped onto a calexp.

The coadd patches (``deepCoadd``, nJy on the tract's TAN grid) that overlap a calexp are
resampled onto the calexp's pixel grid, the reverse of :mod:`hpcpipe.pipe.coadd_warp`: each
calexp pixel is mapped through the sky into the tract's pixels (the WCS evaluated exactly every
``interpLength`` pixels) and the coadd is resampled there with a Lanczos-3 kernel
(:func:`hpcpipe.kernels.warp.warp_image`). Where patches overlap, a pixel comes from the patch
whose *inner* box holds it (as the coadd's own primary region); pixels that no patch covers
are NaN with NO_DATA set. The template is then put on the calexp's photometric scale (counts:
divided by the calexp's ``calibrationMean``), so that the template and the calexp can be
subtracted; its PSF is the coadd PSF of the patch covering the calexp's centre (the pixel
scales of the two grids are the same).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.config import ChoiceField, Config, Field, RangeField
from hpcpipe.image import Exposure
from hpcpipe.kernels.warp import transform_grid, warp_image, wcs_transform
from hpcpipe.task import Struct, Task, timed_method

if TYPE_CHECKING:
    from hpcpipe.butler import Butler

__all__ = ["GetCoaddAsTemplateConfig", "GetCoaddAsTemplateTask", "overlapping_patches"]


class GetCoaddAsTemplateConfig(Config):
    """Which coadd, and how it is resampled."""

    coaddName = Field("the coadd used as the template (<coaddName>Coadd)", str, default="deep")
    warpingKernelName = ChoiceField("resampling kernel", str,
                                    {"lanczos3": "Lanczos, 3 lobes (6x6 taps)",
                                     "bilinear": "bilinear (2x2)"}, default="lanczos3")
    interpLength = RangeField("the WCS is evaluated exactly every this many pixels", int,
                              default=10, min=1)
    minCoverage = RangeField("the smallest fraction of the calexp the template must cover",
                             float, default=0.2, min=0.0, max=1.0)


def overlapping_patches(sky_map: Any, exposure: Exposure) -> list[tuple[Any, Any]]:
    """``(tract, patch)`` of every patch whose outer box overlaps the exposure."""
    found = []
    for tract, patches in sky_map.find_overlapping(exposure.wcs, exposure.bbox):
        found += [(tract, patch) for patch in patches]
    return found


class GetCoaddAsTemplateTask(Task):
    """Warp the coadd patches that cover a calexp onto its pixel grid."""

    ConfigClass = GetCoaddAsTemplateConfig
    _DefaultName = "getTemplate"

    @timed_method
    def run(self, exposure: Exposure, coadds: list[tuple[Exposure, Any]]) -> Struct:
        """The template of ``exposure`` from ``coadds``.

        Parameters
        ----------
        exposure : Exposure
            The calexp: its WCS, bbox and PhotoCalib define the template's grid and scale.
        coadds : list of tuple
            ``(coadd, inner_bbox)``: each coadd patch (nJy, with WCS and PSF) and the inner
            box of its patch (tract pixels), the region where it is preferred.

        Returns
        -------
        Struct
            ``template`` (Exposure on the calexp's bbox, in its counts), ``coverage`` (the
            fraction of pixels with data) and ``n_patches`` (those that contributed).

        Raises
        ------
        ValueError
            If the calexp has no PhotoCalib or WCS, or the coadds cover less than
            ``minCoverage`` of it.
        """
        c = self.config
        if exposure.photo_calib is None or exposure.wcs is None:
            raise ValueError("a template needs the calexp's WCS and PhotoCalib")
        if not coadds:
            raise ValueError("no coadd patch overlaps the calexp: no template")
        shape = exposure.image.array.shape
        template = Exposure(exposure.bbox, wcs=exposure.wcs, filter=exposure.filter,
                            photo_calib=exposure.photo_calib, detector=exposure.detector)
        template.image.array[:] = np.nan
        template.variance.array[:] = np.nan
        nodata = template.mask.get_plane_bitmask("NO_DATA")
        template.mask.array[:] = nodata
        filled = np.zeros(shape, bool)
        # pixel priority: inside the patch's inner box first, then anywhere in its outer box
        results: list[tuple[Exposure, Any, Any, Any, Any]] = []
        grids: list[tuple[Any, np.ndarray, np.ndarray]] = []
        for coadd, inner in coadds:
            # the patches of a tract share its WCS: the source positions are computed once
            known = [(gx, gy) for wcs, gx, gy in grids if _same_wcs(wcs, coadd.wcs)]
            if known:
                src_x, src_y = known[0]
            else:
                transform = wcs_transform(coadd.wcs, exposure.wcs, dest_origin=exposure.xy0)
                src_x, src_y = transform_grid(transform, shape, step=c.interpLength)
                grids.append((coadd.wcs, src_x, src_y))
            part, box = self._warp_patch(coadd, src_x, src_y, nodata)
            if box is None:
                results.append((coadd, None, None, None, None))
                continue
            sx, sy = src_x[box], src_y[box]
            good = np.isfinite(part.image) & np.isfinite(part.variance) & (
                (part.mask & nodata) == 0)
            in_inner = ((sx >= inner.x0 - 0.5) & (sx < inner.x0 + inner.width - 0.5)
                        & (sy >= inner.y0 - 0.5) & (sy < inner.y0 + inner.height - 0.5))
            results.append((coadd, part, box, good, in_inner))
        used: set[Any] = set()
        for pass_inner in (True, False):
            for k, (coadd, part, box, good, in_inner) in enumerate(results):
                if box is None:
                    continue
                take = good & ~filled[box] & (in_inner if pass_inner else True)
                if not take.any():
                    continue
                template.image.array[box][take] = part.image[take]
                template.variance.array[box][take] = part.variance[take]
                template.mask.array[box][take] = template.mask.translate_bits(
                    part.mask[take], coadd.mask.planes)
                filled[box] |= take
                used.add(k)
        coverage = float(filled.mean())
        if coverage < c.minCoverage:
            raise ValueError(f"the coadds cover {100 * coverage:.0f}% of the calexp, less than "
                             f"getTemplate.minCoverage ({100 * c.minCoverage:.0f}%)")
        # nJy to the calexp's counts
        scale = exposure.photo_calib.calibration_mean
        template.image.array[:] /= scale
        template.variance.array[:] /= scale * scale
        centre = (exposure.xy0[0] + (exposure.width - 1) / 2,
                  exposure.xy0[1] + (exposure.height - 1) / 2)
        template.psf = self._psf_at(results, centre, exposure)
        template.metadata["COVERAGE"] = coverage
        template.metadata["NPATCHES"] = len(used)
        self.metadata["coverage"] = coverage
        self.metadata["nPatches"] = len(used)
        self.log.info("template from %d patch(es), %.0f%% of the calexp covered", len(used),
                      100 * coverage)
        return Struct(template=template, coverage=coverage, n_patches=len(used))

    def _warp_patch(self, coadd: Exposure, src_x: np.ndarray, src_y: np.ndarray, nodata: int
                    ) -> tuple[Any, tuple[slice, slice] | None]:
        """``coadd`` warped to the source positions (tract pixels) over the box of the calexp
        where it may have data, and that box (None: nowhere).

        The box holds every calexp pixel whose source position falls within a pixel of the
        patch: outside it the warp could only give NO_DATA.
        """
        ny, nx = coadd.image.array.shape
        x0, y0 = coadd.xy0
        # (a margin of a pixel: the warp needs its taps inside, at least the pixel itself)
        with np.errstate(invalid="ignore"):
            inside = ((src_x >= x0 - 1.0) & (src_x <= x0 + nx) & (src_y >= y0 - 1.0)
                      & (src_y <= y0 + ny))
        rows = np.nonzero(inside.any(axis=1))[0]
        cols = np.nonzero(inside.any(axis=0))[0]
        if not rows.size:
            return None, None
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        part = warp_image(coadd.image.array, coadd.variance.array, coadd.mask.array,
                          src_x[box] - x0, src_y[box] - y0,
                          method=self.config.warpingKernelName, no_data_bit=nodata)
        return part, box

    @staticmethod
    def _psf_at(results: list[tuple[Any, Any, Any, Any, Any]], centre: tuple[float, float],
                exposure: Exposure) -> Any:
        """The PSF of the patch that holds the calexp's centre (in its inner box, if any)."""
        ix = int(np.clip(round(centre[0] - exposure.xy0[0]), 0, exposure.width - 1))
        iy = int(np.clip(round(centre[1] - exposure.xy0[1]), 0, exposure.height - 1))
        best = None
        for coadd, _part, box, good, in_inner in results:
            if coadd.psf is None:
                continue
            r, c = (iy - box[0].start, ix - box[1].start) if box is not None else (-1, -1)
            if 0 <= r < good.shape[0] and 0 <= c < good.shape[1]:
                score = 2 * bool(in_inner[r, c]) + bool(good[r, c])
            else:
                score = 0
            if best is None or score > best[0]:
                best = (score, coadd.psf)
        if best is None:
            raise ValueError("the coadds used for the template have no PSF")
        return best[1]

    def run_butler(self, butler: Butler, calexp: Exposure, band: str) -> Struct:
        """The template of ``calexp`` from the ``<coaddName>Coadd`` patches in ``band``.

        Raises
        ------
        ValueError
            If no coadd patch in ``band`` overlaps the calexp.
        """
        name = f"{self.config.coaddName}Coadd"
        sky_map = butler.get("skyMap")
        coadds = []
        for tract, patch in overlapping_patches(sky_map, calexp):
            key = {"tract": tract.tract_id, "patch": "{},{}".format(*patch.index),
                   "filter": band}
            if butler.datasetExists(name, **key):
                coadds.append((butler.get(name, **key), patch.inner_bbox))
        if not coadds:
            raise ValueError(f"no {name} in filter {band} overlaps the calexp: make the "
                             "coadds first (hpcpipe drp --steps ...,assembleCoadd)")
        return self.run(calexp, coadds)


def _same_wcs(a: Any, b: Any) -> bool:
    """Whether two WCSs map pixels to the sky identically (exactly the same parameters)."""
    if a is b:
        return True
    if a is None or b is None or not a.wcs.compare(b.wcs):
        return False
    for name in ("cpdis1", "cpdis2", "det2im1", "det2im2"):
        if getattr(a, name) is not None or getattr(b, name) is not None:
            return False
    sa, sb = a.sip, b.sip
    if sa is None or sb is None:
        return sa is None and sb is None
    return all(np.array_equal(getattr(sa, k), getattr(sb, k)) if getattr(sa, k) is not None
               else getattr(sb, k) is None for k in ("a", "b", "ap", "bp", "crpix"))
