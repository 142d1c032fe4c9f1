"""Detection on coadds and its merging across filters (LSST's ``DetectCoaddSourcesTask``,
``MergeDetectionsTask`` and, with the watershed deblender of the detection kernel, the role of
``DeblendCoaddSourcesTask``).

* detectCoaddSources, per (tract, patch, filter): background subtraction and detection on the
  coadd: ``deepCoadd_calexp`` (DETECTED set) and ``deepCoadd_det`` (one row per peak).
* mergeCoaddDetections, per (tract, patch): the peaks of every filter merged into one list
  (peaks closer than ``matchRadius`` are one), each flagged with the filters that saw it:
  ``deepCoadd_mergeDet``.
* deblendCoaddSources, per (tract, patch): the filters' coadds summed in signal to noise
  into one detection image, which is thresholded and deblended (footprints split into
  children at their saddles): ``deepCoadd_deblend`` (parents and children, with the merged
  peaks' filter flags) and ``deepCoadd_segments`` (the child each pixel belongs to).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.spatial import cKDTree

from hpcpipe.config import Config, ConfigurableField, RangeField
from hpcpipe.image import Exposure
from hpcpipe.image.psf import GaussianPsf
from hpcpipe.pipe.background import SubtractBackgroundTask
from hpcpipe.pipe.coadd_warp import get_per_filter, patch_key, patch_of
from hpcpipe.pipe.detection import SourceDetectionTask, exposure_noise
from hpcpipe.pipe.sources import source_id_base
from hpcpipe.table import Catalog, Schema
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import ButlerDataRef

__all__ = ["DetectCoaddSourcesConfig", "DetectCoaddSourcesTask", "MergeDetectionsConfig",
           "MergeDetectionsTask", "DeblendCoaddSourcesConfig", "DeblendCoaddSourcesTask",
           "peak_schema", "deblend_schema"]


def peak_schema() -> Schema:
    """deepCoadd_det: one row per peak of a coadd's detections."""
    s = Schema.minimal()
    s.add_field("peak_x", "I", doc="peak column (tract pixels)", units="pixel")
    s.add_field("peak_y", "I", doc="peak row (tract pixels)", units="pixel")
    s.add_field("peak_significance", "F", doc="peak height over the smoothed noise")
    s.add_field("footprint", "I", doc="footprint number within the patch")
    return s


def _peaks_catalog(det: Any, exposure: Exposure) -> Catalog:
    peaks = det.peaks[det.peaks["sign"] > 0]
    x0, y0 = exposure.xy0
    px = peaks["x"].astype(np.int64) + x0
    py = peaks["y"].astype(np.int64) + y0
    assert exposure.wcs is not None  # a coadd has a WCS
    ra, dec = exposure.wcs.all_pix2world(px, py, 0) if len(peaks) else (np.zeros(0),) * 2
    return Catalog.from_columns(peak_schema(), {
        "id": np.arange(1, len(peaks) + 1), "coord_ra": np.radians(ra),
        "coord_dec": np.radians(dec), "peak_x": px, "peak_y": py,
        "peak_significance": peaks["significance"], "footprint": peaks["footprint"]})


class DetectCoaddSourcesConfig(Config):
    """Background and detection on a coadd."""

    background = ConfigurableField("subtract the coadd's residual sky", SubtractBackgroundTask)
    detection = ConfigurableField("detect sources", SourceDetectionTask)

    def set_defaults(self) -> None:
        """Coadds are already sky-subtracted: a coarse residual background."""
        self.background.binSize = 256


class DetectCoaddSourcesTask(CmdLineTask):
    """Subtract the residual background of a coadd and detect its sources."""

    ConfigClass = DetectCoaddSourcesConfig
    _DefaultName = "detectCoaddSources"
    # subtasks, set by make_subtask in __init__ (the config's ConfigurableFields; a
    # retargeted field gives a subclass or a task with the same run signature)
    background: SubtractBackgroundTask
    detection: SourceDetectionTask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.make_subtask("background")
        self.make_subtask("detection")

    @timed_method
    def run(self, coadd: Exposure) -> Struct:
        """Returns ``exposure`` (deepCoadd_calexp) and ``peaks`` (deepCoadd_det)."""
        exposure = coadd.clone()
        nan = ~np.isfinite(exposure.image.array)
        exposure.image.array[nan] = 0.0
        # pixels no warp reached: zero signal and variance, NO_DATA (left out everywhere)
        exposure.variance.array[nan | ~np.isfinite(exposure.variance.array)] = 0.0
        exposure.mask.set_plane("NO_DATA", nan)
        self.background.run(exposure)
        det = self.detection.run(exposure).detections
        peaks = _peaks_catalog(det, exposure)
        self.metadata["nPeaks"] = len(peaks)
        return Struct(exposure=exposure, peaks=peaks)

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read deepCoadd; write deepCoadd_calexp and deepCoadd_det."""
        if not data_ref.datasetExists("deepCoadd"):
            self.log.info("no coadd of %s: nothing to detect", data_ref.dataId)
            return Struct(exposure=None, peaks=None)
        result = self.run(data_ref.get("deepCoadd"))
        data_ref.put(result.exposure, "deepCoadd_calexp")
        data_ref.put(result.peaks, "deepCoadd_det")
        return result


class MergeDetectionsConfig(Config):
    """How peaks of different filters are merged."""

    matchRadius = RangeField("peaks closer than this are one, arcsec", float, default=0.5,
                             min=0.0, inclusive_min=False)


class MergeDetectionsTask(CmdLineTask):
    """Merge the peaks of a patch's filters into one list."""

    ConfigClass = MergeDetectionsConfig
    _DefaultName = "mergeCoaddDetections"

    @timed_method
    def run(self, peaks_by_filter: dict[str, Catalog], all_filters: list[str] | None = None
            ) -> Struct:
        """Returns ``merged`` (deepCoadd_mergeDet), with a flag for each of ``all_filters``
        (default: those of ``peaks_by_filter``)."""
        filters = sorted(peaks_by_filter)
        flagged = sorted(set(all_filters or []) | set(filters))
        schema = Schema.minimal()
        schema.add_field("peak_significance", "F", doc="largest significance over filters")
        for f in flagged:
            schema.add_flag(f"merge_peak_{f}", doc=f"detected in {f}")
        ra_all: list[float] = []
        dec_all: list[float] = []
        sig_all: list[float] = []
        seen: list[set[str]] = []
        radius = np.radians(self.config.matchRadius / 3600.0)
        for f in filters:
            cat = peaks_by_filter[f]
            ra, dec = cat["coord_ra"], cat["coord_dec"]
            if ra_all:
                tree = cKDTree(_unit(np.array(ra_all), np.array(dec_all)))
                found = tree.query(_unit(ra, dec), distance_upper_bound=radius)
                dist, idx = np.asarray(found[0]), np.asarray(found[1])
            else:
                dist = np.full(len(ra), np.inf)
                idx = np.zeros(len(ra), int)
            for k in range(len(ra)):
                if np.isfinite(dist[k]):
                    seen[idx[k]].add(f)
                    sig_all[idx[k]] = max(sig_all[idx[k]], float(cat["peak_significance"][k]))
                else:
                    ra_all.append(float(ra[k]))
                    dec_all.append(float(dec[k]))
                    sig_all.append(float(cat["peak_significance"][k]))
                    seen.append({f})
        columns: dict[str, Any] = {"id": np.arange(1, len(ra_all) + 1),
                                   "coord_ra": np.array(ra_all, float),
                                   "coord_dec": np.array(dec_all, float),
                                   "peak_significance": np.array(sig_all, np.float32)}
        for f in flagged:
            columns[f"merge_peak_{f}"] = np.array([f in s for s in seen], bool)
        merged = Catalog.from_columns(schema, columns)
        self.metadata["nMerged"] = len(merged)
        self.log.info("%d peaks merged from %s", len(merged), ", ".join(
            f"{f}: {len(peaks_by_filter[f])}" for f in filters))
        return Struct(merged=merged)

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read every filter's deepCoadd_det of the patch; write deepCoadd_mergeDet."""
        butler = data_ref.butler
        peaks = get_per_filter(butler, data_ref.dataId, "deepCoadd_det")
        result = self.run(peaks, [str(f) for f in butler.queryMetadata("raw", "filter")])
        butler.put(result.merged, "deepCoadd_mergeDet", **patch_key(data_ref.dataId))
        return result


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def deblend_schema(filters: list[str]) -> Schema:
    """deepCoadd_deblend: parents and children of a patch, in tract pixels."""
    s = Schema.minimal()
    s.add_field("parent", "L", doc="id of the parent of a deblended child (0: not blended)")
    s.add_field("deblend_nChild", "I", doc="number of children of a blended parent")
    s.add_field("segment", "I", doc="segment id of a child in deepCoadd_segments")
    s.add_field("footprint_npix", "I", doc="pixels in the footprint")
    s.add_field("peak_x", "I", doc="peak column (tract pixels)", units="pixel")
    s.add_field("peak_y", "I", doc="peak row (tract pixels)", units="pixel")
    s.add_field("peak_significance", "F", doc="peak height over the noise")
    s.add_flag("detect_isPrimary", doc="isolated source or child, in the patch's inner region")
    for f in filters:
        s.add_flag(f"merge_peak_{f}", doc=f"a merged peak of {f} lies on this source")
    return s


class DeblendCoaddSourcesConfig(Config):
    """The multi-band detection image and its deblending."""

    detection = ConfigurableField("threshold and deblend the multi-band detection image",
                                  SourceDetectionTask)
    matchRadius = RangeField("a merged peak belongs to a child within this, arcsec", float,
                             default=0.6, min=0.0, inclusive_min=False)


class DeblendCoaddSourcesTask(CmdLineTask):
    """Deblend a patch from the signal-to-noise sum of its filters' coadds."""

    ConfigClass = DeblendCoaddSourcesConfig
    _DefaultName = "deblendCoaddSources"
    # subtasks, set by make_subtask in __init__ (the config's ConfigurableFields; a
    # retargeted field gives a subclass or a task with the same run signature)
    detection: SourceDetectionTask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.make_subtask("detection")

    @timed_method
    def run(self, coadds: dict[str, Exposure], merged: Catalog, patch_info: Any,
            id_base: int = 0, all_filters: list[str] | None = None) -> Struct:
        """Returns ``catalog`` (deepCoadd_deblend) and ``segments`` (an Exposure whose image
        holds the segment ids, exact in float32)."""
        filters = sorted(coadds)
        first = coadds[filters[0]]
        snr = np.zeros(first.image.array.shape, np.float64)
        psf_sigmas = []
        for f in filters:
            exp = coadds[f]
            noise = exposure_noise(exp)
            snr += np.where(np.isfinite(exp.image.array), exp.image.array, 0.0) / noise
            if exp.psf is not None:
                psf_sigmas.append(exp.psf.sigma_at())
        snr /= np.sqrt(len(filters))
        detect_image = Exposure(first.bbox, wcs=first.wcs)
        detect_image.image.array[:] = snr
        detect_image.variance.array[:] = 1.0
        detect_image.mask.array[:] = first.mask.array & first.mask.get_plane_bitmask(
            ["NO_DATA"])
        if psf_sigmas:
            detect_image.psf = GaussianPsf(float(np.mean(psf_sigmas)))
        det = self.detection.run(detect_image).detections
        flagged = sorted(set(all_filters or []) | set(filters))
        catalog = self._catalog(det, first, merged, flagged, patch_info, id_base)
        # segment ids are small integers, exact in float32 (below 2**24)
        segments = Exposure(first.bbox, wcs=first.wcs)
        segments.image.array[:] = np.where(det.segments > 0, det.segments, 0)
        self.metadata["nSources"] = len(catalog)
        return Struct(catalog=catalog, segments=segments)

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read the patch's deepCoadd_calexps and deepCoadd_mergeDet; write the deblend."""
        butler = data_ref.butler
        d = data_ref.dataId
        key = patch_key(d)
        coadds = get_per_filter(butler, d, "deepCoadd_calexp")
        if not coadds:
            self.log.info("no coadd of %s: nothing to deblend", key)
            return Struct(catalog=None, segments=None)
        merged = butler.get("deepCoadd_mergeDet", **key)
        patch_info = patch_of(butler, d)
        px, py = patch_info.index
        result = self.run(coadds, merged, patch_info,
                          id_base=source_id_base(int(d["tract"]), px, py),
                          all_filters=[str(f) for f in butler.queryMetadata("raw", "filter")])
        butler.put(result.catalog, "deepCoadd_deblend", **key)
        butler.put(result.segments, "deepCoadd_segments", **key)
        return result

    def _catalog(self, det: Any, exposure: Exposure, merged: Catalog, filters: list[str],
                 patch_info: Any, id_base: int) -> Catalog:
        x0, y0 = exposure.xy0
        fps = det.footprints[det.footprints["sign"] > 0]
        peaks = det.peaks[det.peaks["sign"] > 0]
        blended = fps[fps["n_peaks"] > 1]
        parent_id = {int(f): id_base + 1 + k for k, f in enumerate(blended["id"])}
        n_par, n_ch = len(blended), len(peaks)
        first_peak = peaks[:0] if not n_par else det.peaks[blended["first_peak"]]
        npix = dict(zip(fps["id"].tolist(), fps["npix"].tolist(), strict=True))
        px = np.concatenate([first_peak["x"], peaks["x"]]).astype(np.int64) + x0
        py = np.concatenate([first_peak["y"], peaks["y"]]).astype(np.int64) + y0
        n = n_par + n_ch
        assert exposure.wcs is not None  # a coadd has a WCS
        ra, dec = exposure.wcs.all_pix2world(px, py, 0) if n else (np.zeros(0),) * 2
        inner = patch_info.inner_bbox
        in_inner = ((px >= inner.x0) & (px < inner.x0 + inner.width)
                    & (py >= inner.y0) & (py < inner.y0 + inner.height))
        columns: dict[str, Any] = {
            "id": id_base + 1 + np.arange(n),
            "coord_ra": np.radians(ra), "coord_dec": np.radians(dec),
            "parent": np.concatenate([np.zeros(n_par, np.int64), np.array(
                [parent_id.get(int(f), 0) for f in peaks["footprint"]], np.int64)]),
            "deblend_nChild": np.concatenate([blended["n_peaks"], np.zeros(n_ch, np.int32)]),
            "segment": np.concatenate([np.zeros(n_par, np.int32), peaks["id"]]),
            "footprint_npix": np.concatenate([blended["npix"], np.array(
                [npix.get(int(f), 0) for f in peaks["footprint"]], np.int64)]),
            "peak_x": px, "peak_y": py,
            "peak_significance": np.concatenate([first_peak["significance"],
                                                 peaks["significance"]]),
            "detect_isPrimary": np.concatenate([np.zeros(n_par, bool), np.ones(n_ch, bool)])
            & in_inner,
        }
        radius = np.radians(self.config.matchRadius / 3600.0)
        for f in filters:
            flag = np.zeros(n, bool)
            if len(merged) and n_ch:
                sel = merged[f"merge_peak_{f}"] if f"merge_peak_{f}" in merged.schema else \
                    np.zeros(len(merged), bool)
                if sel.any():
                    tree = cKDTree(_unit(merged["coord_ra"][sel], merged["coord_dec"][sel]))
                    dist, _ = tree.query(_unit(columns["coord_ra"], columns["coord_dec"]),
                                         distance_upper_bound=radius)
                    flag = np.isfinite(dist)
            columns[f"merge_peak_{f}"] = flag
        return Catalog.from_columns(deblend_schema(filters), columns)
