"""Measurement on coadds (LSST's ``MeasureMergedCoaddSourcesTask`` and
``MergeMeasurementsTask``).

* measureCoaddSources, per (tract, patch, filter): every deblended source of
  ``deepCoadd_deblend`` measured on the filter's ``deepCoadd_calexp`` (children with their
  neighbours' segments left out, parents over their whole footprint): ``deepCoadd_meas``, one
  row per source with the same ids in every filter. The coadd's own aperture corrections are
  measured on its stars (unblended, clean, high signal to noise, on the stellar locus of the
  adaptive-moment sizes), applied to the catalog and stored with ``deepCoadd_calexp`` (for
  forced photometry on the coadd).
* mergeCoaddMeasurements, per (tract, patch): for each object the reference filter is the
  first of ``priorityList`` in which it is measured cleanly at high enough signal to noise
  (else the filter where its signal to noise is highest); its row there becomes the object's
  row in ``deepCoadd_ref``, the positions forced photometry uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.config import Config, ConfigurableField, Field, ListField, RangeField
from hpcpipe.image import Exposure
from hpcpipe.image.apcorr import ApCorrMap
from hpcpipe.meas.psf_model import select_stars
from hpcpipe.pipe.ap_corr import MeasureApCorrTask, apply_ap_corr, corrected_flux_names
from hpcpipe.pipe.coadd_warp import get_per_filter, patch_key
from hpcpipe.pipe.measurement import MeasurementTask, measurement_schema
from hpcpipe.table import Catalog, Schema
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import ButlerDataRef

__all__ = ["MeasureCoaddSourcesConfig", "MeasureCoaddSourcesTask", "MergeMeasurementsConfig",
           "MergeMeasurementsTask", "coadd_meas_schema", "ref_schema"]

_CLEAN = ("base_PixelFlags_flag_edge", "base_PixelFlags_flag_saturated",
          "base_SdssCentroid_flag", "base_PsfFlux_flag")


def coadd_meas_schema(radii: list[float]) -> Schema:
    """deepCoadd_meas: the measurement fields plus the deblend and primary columns."""
    s = measurement_schema(radii)
    s.add_flag("detect_isPrimary", doc="isolated source or child, in the patch's inner region")
    return s


def ref_schema(radii: list[float], filters: list[str]) -> Schema:
    """deepCoadd_ref: the reference filter's measurement plus the merge columns."""
    s = coadd_meas_schema(radii)
    s.add_field("merge_measurement_filter", "I", doc="index in the filter list of the "
                "reference filter (see the catalog's REFFILTS metadata)")
    for f in filters:
        s.add_flag(f"merge_measurement_{f}", doc=f"{f} is the reference filter")
    return s


class MeasureCoaddSourcesConfig(Config):
    """The measurement of coadd sources."""

    measurement = ConfigurableField("measure the deblended sources", MeasurementTask)
    measureApCorr = ConfigurableField("the coadd's aperture corrections from its stars",
                                      MeasureApCorrTask)
    doApCorr = Field("measure and apply the coadd's aperture corrections", bool, default=True)
    starMinSnr = RangeField("faintest star used for the aperture corrections, PSF S/N", float,
                            default=50.0, min=0.0)


class MeasureCoaddSourcesTask(CmdLineTask):
    """Measure the deblended sources of a patch on one filter's coadd."""

    ConfigClass = MeasureCoaddSourcesConfig
    _DefaultName = "measureCoaddSources"
    # subtasks, set by make_subtask in __init__ (the config's ConfigurableFields; a
    # retargeted field gives a subclass or a task with the same run signature)
    measurement: MeasurementTask
    measureApCorr: MeasureApCorrTask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.make_subtask("measurement")
        self.make_subtask("measureApCorr")
        self.schema = coadd_meas_schema(list(self.config.measurement.apertureRadii))

    def measure_ap_corr(self, exposure: Exposure, catalog: Catalog) -> None:
        """Measure the coadd's aperture corrections on its stars; set them on ``exposure``
        and apply them to ``catalog`` (nothing when too few stars)."""
        size = np.sqrt(0.5 * (catalog["base_SdssShape_xx"] + catalog["base_SdssShape_yy"]))
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = catalog["base_PsfFlux_instFlux"] / catalog["base_PsfFlux_instFluxErr"]
        flagged = (catalog["parent"] != 0) | (catalog["deblend_nChild"] > 0) | \
            catalog["base_SdssShape_flag"] | catalog["base_PixelFlags_flag_interpolated"]
        for name in _CLEAN:
            flagged |= catalog[name]
        stars = select_stars(size, snr, flagged, min_snr=self.config.starMinSnr)
        names = corrected_flux_names(list(self.config.measurement.apertureRadii))
        ap_corr = self.measureApCorr.run(exposure, catalog, stars, names).ap_corr_map
        if len(ap_corr):
            exposure.ap_corr_map = ap_corr
            apply_ap_corr(catalog, ap_corr, names)
        self.metadata["nApCorrStars"] = int(stars.sum())

    @timed_method
    def run(self, exposure: Exposure, deblend: Catalog, segments: np.ndarray) -> Struct:
        """Returns ``catalog`` (deepCoadd_meas)."""
        copy_cols = ("id", "parent", "deblend_nChild", "footprint_npix", "detect_isPrimary")
        if self.config.doApCorr:
            exposure.ap_corr_map = None  # measured again below, on uncorrected fluxes
        parts = []
        for is_parent in (True, False):
            rows = deblend.where(deblend["deblend_nChild"] > 0 if is_parent
                                 else deblend["deblend_nChild"] == 0)
            if not len(rows):
                continue
            extra = {k: rows[k] for k in copy_cols}
            extra["detect_peakSignificance"] = rows["peak_significance"]
            kwargs: dict[str, Any] = {}
            if not is_parent:
                kwargs = {"ids": rows["segment"], "segments": segments}
            parts.append(self.measurement.run(
                exposure, rows["peak_x"].astype(float), rows["peak_y"].astype(float),
                extra=extra, schema=self.schema, **kwargs).catalog)
        catalog = (Catalog.concatenate(parts) if len(parts) > 1 else parts[0]) if parts \
            else Catalog(self.schema)
        if self.config.doApCorr and len(catalog):
            self.measure_ap_corr(exposure, catalog)
        self.metadata["nMeasured"] = len(catalog)
        return Struct(catalog=catalog)

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read deepCoadd_calexp and the patch's deblend; write deepCoadd_meas."""
        butler = data_ref.butler
        d = data_ref.dataId
        key = patch_key(d)
        if not (data_ref.datasetExists("deepCoadd_calexp")
                and butler.datasetExists("deepCoadd_deblend", **key)):
            self.log.info("no coadd or no deblended sources for %s: nothing to measure", d)
            return Struct(catalog=None)
        coadd = data_ref.get("deepCoadd_calexp")
        had_ap_corr = None if coadd.ap_corr_map is None else ApCorrMap(coadd.ap_corr_map)
        result = self.run(coadd, butler.get("deepCoadd_deblend", **key),
                          butler.get("deepCoadd_segments", **key).image.array.astype(np.int32))
        data_ref.put(result.catalog, "deepCoadd_meas")
        if coadd.ap_corr_map is not None and coadd.ap_corr_map != had_ap_corr:
            data_ref.put(coadd, "deepCoadd_calexp")  # with its aperture corrections
        return result


class MergeMeasurementsConfig(Config):
    """The choice of each object's reference filter."""

    priorityList = ListField("filters in order of preference for the reference", str,
                             default=["i", "r", "g"])
    minSN = RangeField("least PSF signal to noise in the preferred filter", float, default=10.0,
                       min=0.0)


class MergeMeasurementsTask(CmdLineTask):
    """Choose each object's reference filter and build the patch's reference catalog."""

    ConfigClass = MergeMeasurementsConfig
    _DefaultName = "mergeCoaddMeasurements"

    @timed_method
    def run(self, catalogs: dict[str, Catalog], all_filters: list[str] | None = None
            ) -> Struct:
        """Returns ``catalog`` (deepCoadd_ref).

        ``all_filters`` are the survey's filters (default: those of ``catalogs``): every
        patch's reference catalog gets the same columns, whichever filters reached it.
        """
        known = sorted(set(all_filters or []) | set(catalogs))
        order = [f for f in self.config.priorityList if f in known]
        order += [f for f in known if f not in order]
        filters = [f for f in order if f in catalogs]
        first = catalogs[filters[0]]
        n = len(first)
        for f in filters:
            if len(catalogs[f]) != n or not np.array_equal(catalogs[f]["id"], first["id"]):
                raise ValueError(f"deepCoadd_meas of filter {f} does not have the same sources "
                                 f"as {filters[0]}")
        snr = {}
        clean = {}
        for f in filters:
            cat = catalogs[f]
            with np.errstate(divide="ignore", invalid="ignore"):
                snr[f] = np.nan_to_num(cat["base_PsfFlux_instFlux"] / cat[
                    "base_PsfFlux_instFluxErr"], nan=-np.inf)
            ok = np.ones(n, bool)
            for name in _CLEAN:
                ok &= ~cat[name]
            clean[f] = ok
        choice = np.full(n, -1)
        for k, f in enumerate(filters):
            pick = (choice < 0) & clean[f] & (snr[f] >= self.config.minSN)
            choice[pick] = k
        best = np.argmax(np.vstack([snr[f] for f in filters]), axis=0)
        choice[choice < 0] = best[choice < 0]
        radii = _radii(first.schema)
        schema = ref_schema(radii, order)
        columns: dict[str, Any] = {}
        for field in first.schema:
            stack = np.stack([catalogs[f][field.name] for f in filters])
            columns[field.name] = stack[choice, np.arange(n)]
        chosen = np.array([order.index(f) for f in filters])[choice] if n else choice
        columns["merge_measurement_filter"] = np.asarray(chosen, np.int32)
        for k, f in enumerate(order):
            columns[f"merge_measurement_{f}"] = chosen == k
        ref = Catalog.from_columns(schema, columns, metadata={"REFFILTS": ",".join(order)})
        self.metadata["nObjects"] = n
        return Struct(catalog=ref)

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read every filter's deepCoadd_meas of the patch; write deepCoadd_ref."""
        butler = data_ref.butler
        key = patch_key(data_ref.dataId)
        catalogs = get_per_filter(butler, data_ref.dataId, "deepCoadd_meas")
        if not catalogs:
            self.log.info("no measurement of %s: no reference catalog", key)
            return Struct(catalog=None)
        result = self.run(catalogs, [str(f) for f in butler.queryMetadata("raw", "filter")])
        butler.put(result.catalog, "deepCoadd_ref", **key)
        return result


def _radii(schema: Schema) -> list[float]:
    prefix = "base_CircularApertureFlux_"
    radii = []
    for name in schema.names:
        if name.startswith(prefix) and name.endswith("_instFlux"):
            radii.append(float(name[len(prefix):-len("_instFlux")].replace("_", ".")))
    return radii
