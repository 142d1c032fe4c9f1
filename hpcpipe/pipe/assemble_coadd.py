"""Coadd assembly (LSST's ``AssembleCoaddTask``): a sigma-clipped weighted mean of warps.

Each warp is weighted by the inverse of the clipped mean of its variance plane (LSST's rule;
see docs/coadd.md for why the warp's *resampled* variance is the right one); the stack is
combined pixel by pixel with iterative sigma clipping (:func:`hpcpipe.kernels.coadd.
clipped_mean_stack`), giving the coadd's image, variance and mask (CLIPPED where an input was
rejected, NO_DATA where none was left). The coadd's PSF is the weighted mean of the warps'
PSF images.

Memory does not grow with the number of visits: the patch is coadded sub-region by
sub-region (LSST's ``subregionSize``), and only that box of every warp is read
(``butler.get("deepCoadd_directWarp_sub", bbox=...)``: FITS sections, HDF5 hyperslabs). A
sub-region is made shorter when the stack is deep, so that the input pixels held at once stay
under ``maxInputMemory`` megabytes whatever the number of warps; the weights are computed
first, one warp at a time, in row bands under the same bound. Every output pixel depends on
its own column of the stack only, so the result is the same, bit for bit, whatever the
sub-regions (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.config import Config, Field, ListField, RangeField
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure, PhotoCalib
from hpcpipe.image.calib import AB_NANOJANSKY_ZERO_POINT
from hpcpipe.image.psf import PixelPsf
from hpcpipe.kernels.coadd import clipped_mean_stack
from hpcpipe.kernels.stats import clipped_mean_reference
from hpcpipe.pipe.coadd_warp import patch_key
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import Butler, ButlerDataRef

__all__ = ["AssembleCoaddConfig", "AssembleCoaddTask", "WarpReader", "subregions",
           "warp_weight"]

#: Bytes of input held per pixel of a warp: float32 image and variance, int32 mask.
BYTES_PER_PIXEL = 12

#: Reads a box (parent pixels) of one warp: an Exposure covering exactly that box.
WarpReader = Callable[[Box2I], Exposure]


class AssembleCoaddConfig(Config):
    """Clipping and masking of the stack, and the sub-regions it is combined in."""

    sigmaClip = RangeField("clip inputs this many standard deviations from the median",
                           float, default=3.0, min=0.5)
    clipIter = RangeField("clipping passes", int, default=2, min=1)
    badMaskPlanes = ListField("inputs with these planes are left out", str,
                              default=["NO_DATA", "BAD", "SAT", "CR"])
    rowsPerBlock = RangeField("rows of a sub-region the kernel combines at a time", int,
                              default=256, min=1)
    subregionSize = ListField("width and height (pixels) of the largest sub-region combined "
                              "at a time (LSST's 2000 x 2000; wide by default: full-width "
                              "row bands are contiguous in the warp files)", int,
                              default=[10000, 2000], length=2,
                              item_check=lambda v: v >= 1)
    maxInputMemory = RangeField("megabytes of warp pixels held at once: a sub-region is made "
                                "shorter so that n_warps x width x height x 12 bytes fits",
                                float, default=256.0, min=0.01)
    doSubregionRead = Field("read each sub-region of each warp from the butler "
                            "(<warp>_sub with bbox) rather than whole warps", bool, default=True)


def subregions(bbox: Box2I, size: tuple[int, int], n_inputs: int, max_bytes: float
               ) -> Iterator[Box2I]:
    """The sub-regions of ``bbox`` to combine, row band by row band, left to right.

    Each is at most ``size`` (width, height) and holds at most ``max_bytes`` of input pixels
    over ``n_inputs`` warps (never less than one row).
    """
    width = max(1, min(int(size[0]), bbox.width))
    fit = int(max_bytes // (max(n_inputs, 1) * width * BYTES_PER_PIXEL))
    height = max(1, min(int(size[1]), bbox.height, fit))
    for y0 in range(bbox.y0, bbox.y0 + bbox.height, height):
        h = min(height, bbox.y0 + bbox.height - y0)
        for x0 in range(bbox.x0, bbox.x0 + bbox.width, width):
            yield Box2I(x0, y0, min(width, bbox.x0 + bbox.width - x0), h)


def _good_variances(var: np.ndarray, mask: np.ndarray, bad_bits: int) -> np.ndarray:
    good = np.isfinite(var) & (var > 0) & ((mask & bad_bits) == 0)
    return var[good]


def _weight_of(values: list[np.ndarray]) -> float:
    """1 / the clipped mean of the good variances (in row-major order), or 0 if too few."""
    n = sum(v.size for v in values)
    if n < 10:
        return 0.0
    flat = np.concatenate(values) if len(values) > 1 else values[0]
    if flat.size > 200_000:
        flat = flat[:: flat.size // 200_000]
    mean, _, _ = clipped_mean_reference(flat.astype(np.float64), 3.0, 2)
    return float(1.0 / mean) if mean > 0 else 0.0


def warp_weight(warp: Exposure, bad_bits: int) -> float:
    """1 / clipped mean variance of a warp's good pixels (0 if it has none).

    LSST's rule: the variance plane of the *warp* (the resampled variance), not the
    calexp's; see docs/coadd.md.
    """
    return _weight_of([_good_variances(warp.variance.array, warp.mask.array, bad_bits)])


def _streamed_weight(read: WarpReader, bbox: Box2I, bad_bits: int, max_bytes: float
                     ) -> tuple[float, Exposure]:
    """:func:`warp_weight` of a warp read in full-width row bands, and the warp's WCS, PSF
    and filter (an Exposure of one pixel)."""
    values, first = [], None
    for box in subregions(bbox, (bbox.width, bbox.height), 1, max_bytes):
        part = read(box)
        if first is None:  # everything but the pixels (a copy of one pixel)
            first = part[Box2I(box.x0, box.y0, 1, 1)].clone()
        values.append(_good_variances(part.variance.array, part.mask.array, bad_bits))
        del part
    assert first is not None
    return _weight_of(values), first


class AssembleCoaddTask(CmdLineTask):
    """Combine the warps of one patch and filter into a coadd."""

    ConfigClass = AssembleCoaddConfig
    _DefaultName = "assembleCoadd"

    @timed_method
    def run(self, warps: list[Exposure]) -> Struct:
        """Coadd ``warps`` (same patch grid, same filter, in nJy), held in memory.

        Returns
        -------
        Struct
            ``coadd`` (Exposure), ``weights``, ``n_inputs`` and ``count`` (inputs kept per
            pixel).
        """
        if not warps:
            raise ValueError("assembleCoadd needs at least one warp")
        readers: list[WarpReader] = [w.__getitem__ for w in warps]
        return self.run_readers(readers, warps[0].bbox)

    def run_readers(self, readers: list[WarpReader], bbox: Box2I) -> Struct:
        """Coadd the warps that ``readers`` read a box of, sub-region by sub-region.

        Parameters
        ----------
        readers : list of callable
            One per warp: ``reader(box)`` returns the warp's Exposure over ``box`` (parent
            pixels of the patch grid), with its WCS, PSF and filter.
        bbox : Box2I
            The patch's box (every warp's).

        Returns
        -------
        Struct
            As :meth:`run`.
        """
        if not readers:
            raise ValueError("assembleCoadd needs at least one warp")
        c = self.config
        max_bytes = c.maxInputMemory * 2**20
        weights = np.zeros(len(readers))
        heads: list[Exposure] = []
        bad_bits = -1
        for k, read in enumerate(readers):
            if bad_bits < 0:
                probe = read(Box2I(bbox.x0, bbox.y0, 1, 1))
                bad_bits = probe.mask.get_plane_bitmask([p for p in c.badMaskPlanes
                                                         if p in probe.mask.planes])
            weights[k], head = _streamed_weight(read, bbox, bad_bits, max_bytes)
            heads.append(head)
        use = [k for k, wt in enumerate(weights) if wt > 0]
        if not use:
            raise ValueError("none of the warps has a pixel with a valid variance")
        first = heads[use[0]]
        coadd = Exposure(bbox, wcs=first.wcs, filter=first.filter,
                         photo_calib=PhotoCalib(AB_NANOJANSKY_ZERO_POINT))
        count = np.zeros(bbox.shape, np.int32)
        clipped_bit = first.mask.get_plane_bitmask("CLIPPED")
        no_data_bit = first.mask.get_plane_bitmask("NO_DATA")
        boxes = list(subregions(bbox, tuple(c.subregionSize), len(use), max_bytes))
        for box in boxes:
            parts = [readers[k](box) for k in use]
            res = clipped_mean_stack(
                [p.image.array for p in parts], [p.variance.array for p in parts],
                [p.mask.array for p in parts], [float(weights[k]) for k in use],
                nsigma=c.sigmaClip, niter=c.clipIter, bad_bits=bad_bits,
                clipped_bit=clipped_bit, no_data_bit=no_data_bit,
                rows_per_block=c.rowsPerBlock)
            del parts
            sl = box.slices(bbox.xy0)
            coadd.image.array[sl] = res.image
            coadd.variance.array[sl] = res.variance
            coadd.mask.array[sl] = res.mask
            count[sl] = res.count
            del res
        psfs = [(weights[k], psf.compute_kernel_image()) for k in use
                if (psf := heads[k].psf) is not None]
        if psfs:
            size = max(p.shape[0] for _, p in psfs)
            stack = np.zeros((size, size))
            for wt, p in psfs:
                pad = (size - p.shape[0]) // 2
                stack[pad:pad + p.shape[0], pad:pad + p.shape[1]] += wt * p
            coadd.psf = PixelPsf(stack / stack.sum())
        coadd.metadata["NINPUTS"] = len(use)
        self.metadata["nInputs"] = len(use)
        self.metadata["nSubregions"] = len(boxes)
        self.log.info("coadded %d warps in %d sub-region(s)", len(use), len(boxes))
        return Struct(coadd=coadd, weights=weights, n_inputs=len(use), count=count)

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Coadd every warp of the patch in the filter; write deepCoadd.

        With ``doSubregionRead`` (the default) each warp is read a sub-region at a time
        (``deepCoadd_directWarp_sub``), so the memory in use does not grow with the number
        of visits.
        """
        butler = data_ref.butler
        d = data_ref.dataId
        key = {**patch_key(d), "filter": d["filter"]}
        visits = [v for v in butler.queryMetadata("raw", "visit", {"filter": d["filter"]})
                  if butler.datasetExists("deepCoadd_directWarp", visit=v, **key)]
        if not visits:
            # the visits planned for this patch did not reach it after all: nothing to coadd
            self.log.info("no warp of %s: no coadd", key)
            self.metadata["nInputs"] = 0
            return Struct(coadd=None, weights=None, n_inputs=0, count=None)
        if self.config.doSubregionRead:
            readers = [self._reader(butler, v, key) for v in visits]
            bbox = self._patch_bbox(butler, key)
            result = self.run_readers(readers, bbox)
        else:
            result = self.run([butler.get("deepCoadd_directWarp", visit=v, **key)
                               for v in visits])
        butler.put(result.coadd, "deepCoadd", **key)
        return result

    @staticmethod
    def _reader(butler: Butler, visit: int, key: dict[str, Any]) -> WarpReader:
        def read(box: Box2I) -> Exposure:
            return butler.get("deepCoadd_directWarp_sub", bbox=box, visit=visit, **key)
        return read

    @staticmethod
    def _patch_bbox(butler: Butler, key: dict[str, Any]) -> Box2I:
        """The outer box of the patch (the warps' box)."""
        sky_map = butler.get("skyMap")
        index = tuple(int(v) for v in str(key["patch"]).split(","))
        return sky_map[int(key["tract"])].get_patch_info(index).outer_bbox
