"""Calibration (LSST's ``CalibrateTask``): deep detection and measurement, WCS and zero point.

On a characterized exposure: sources are detected down to ``detection.thresholdValue``,
deblended and measured; the brighter, clean ones are matched to the reference catalog
(projected through the exposure's initial WCS) and a TAN-SIP WCS is fitted
(:mod:`hpcpipe.meas.astrometry`); the zero point comes from the PSF fluxes of the matched
stars (:mod:`hpcpipe.meas.photometry`). The exposure gets the new WCS and its PhotoCalib;
every source gets its sky position from the new WCS.

``hpcpipe run calibrate REPO --id visit=... ccd=...`` reads ``icExp``, ``icExpBackground`` and
``icSrc`` (written by ``hpcpipe run characterizeImage``) and the reference stars, and writes
``calexp``, ``calexpBackground``, ``src`` and ``srcMatch``. The reference stars come from the
sharded reference catalogs of the repository (:mod:`hpcpipe.refcat`) named by
``astromRefObjLoader.ref_dataset_name`` and ``photoRefObjLoader.ref_dataset_name`` (default
``sim_ref``), read for the CCD with their proper motions applied to the exposure's date;
``photoRefObjLoader.filterMap`` maps the exposure's band to the catalog's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.wcs.utils import proj_plane_pixel_scales

from hpcpipe.config import Config, ConfigField, ConfigurableField, Field, RangeField
from hpcpipe.meas.astrometry import fit_tan_sip, match_to_reference
from hpcpipe.meas.photometry import fit_zero_point
from hpcpipe.pipe.characterize import characterize_schema
from hpcpipe.pipe.dataset_io import read_input, write_schemas
from hpcpipe.pipe.detection import SourceDetectionTask
from hpcpipe.pipe.measurement import MeasurementTask
from hpcpipe.pipe.sources import measure_detections, source_id_base
from hpcpipe.refcat.loader import LoadReferenceObjectsConfig, ReferenceLoaders
from hpcpipe.table import Catalog, Schema
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import Butler, ButlerDataRef

__all__ = ["CalibrateConfig", "CalibrateTask", "calibrate_schema", "match_schema"]

_UNCLEAN = ("base_PixelFlags_flag_edge", "base_PixelFlags_flag_saturated",
            "base_PixelFlags_flag_interpolated", "base_PixelFlags_flag_cr",
            "base_PixelFlags_flag_bad", "base_SdssCentroid_flag", "base_PsfFlux_flag")


def calibrate_schema(base: Schema) -> Schema:
    """The src schema: icSrc's fields plus the calibration flags."""
    schema = base.copy()
    schema.add_flag("calib_astrometry_used", doc="used in the astrometric fit")
    schema.add_flag("calib_photometry_used", doc="used in the zero point")
    return schema


def match_schema() -> Schema:
    """The srcMatch schema: one row per source-reference pair."""
    schema = Schema()
    schema.add_field("src_id", "L", doc="id of the source")
    schema.add_field("ref_id", "L", doc="id of the reference object")
    schema.add_field("distance", "D", doc="separation after the astrometric fit",
                     units="arcsec")
    schema.add_field("src_x", "D", doc="source centroid x", units="pixel")
    schema.add_field("src_y", "D", doc="source centroid y", units="pixel")
    schema.add_field("ref_ra", "D", doc="reference right ascension", units="deg")
    schema.add_field("ref_dec", "D", doc="reference declination", units="deg")
    schema.add_field("src_instFlux", "D", doc="source PSF flux", units="count")
    schema.add_field("src_instFluxErr", "D", doc="its error", units="count")
    schema.add_field("ref_flux", "D", doc="reference flux in the exposure's band", units="nJy")
    schema.add_field("ref_fluxErr", "D", doc="its error", units="nJy")
    return schema


class CalibrateConfig(Config):
    """Detection depth, matching and fitting."""

    detection = ConfigurableField("detect sources", SourceDetectionTask)
    measurement = ConfigurableField("measure them", MeasurementTask)
    doAstrometry = Field("fit the WCS to the reference catalog", bool, default=True)
    doPhotoCal = Field("fit the zero point to the reference catalog", bool, default=True)
    astromRefObjLoader = ConfigField("the astrometric reference catalog (ref_dataset_name), "
                                     "margin and band map", LoadReferenceObjectsConfig)
    photoRefObjLoader = ConfigField("the photometric reference catalog (ref_dataset_name), "
                                    "margin and band map (filterMap)",
                                    LoadReferenceObjectsConfig)
    matchSearchRadius = RangeField("largest pointing error looked for, arcsec", float,
                                   default=10.0, min=0.0, inclusive_min=False)
    matchRadius = RangeField("largest separation of a match after the offset, arcsec", float,
                             default=0.6, min=0.0, inclusive_min=False)
    matchMinSnr = RangeField("faintest source used for matching (PSF flux S/N)", float,
                             default=20.0, min=0.0)
    wcsSipOrder = RangeField("order of the SIP distortion fitted", int, default=3, min=0,
                             max=6, inclusive_max=True)
    wcsRejectNSigma = RangeField("astrometric outlier rejection, sigma", float, default=3.0,
                                 min=1.0)
    minMatches = RangeField("fewer matches is a failure", int, default=10, min=3)
    photoRejectNSigma = RangeField("photometric outlier rejection, sigma", float, default=3.0,
                                   min=1.0)
    doWrite = Field("write calexp, calexpBackground, src and srcMatch (and the schemas)",
                    bool, default=True)

    def set_defaults(self) -> None:
        """Detect below LSST's 5 sigma and split blends more readily, so that nearly every
        star of PSF signal to noise above 5 is found (on the simulated camera: 95.8% of them,
        with 0.6% of the detections not matching any object; at 5 sigma, 93%)."""
        self.detection.thresholdValue = 4.3
        self.detection.deblendProminence = 2.0


class CalibrateTask(CmdLineTask):
    """Detect and measure sources, calibrate the WCS and the photometry of one exposure."""

    ConfigClass = CalibrateConfig
    _DefaultName = "calibrate"
    # subtasks, set by make_subtask in __init__ (the config's ConfigurableFields; a
    # retargeted field gives a subclass or a task with the same run signature)
    detection: SourceDetectionTask
    measurement: MeasurementTask

    def __init__(self, *args: Any, icSrc_schema: Schema | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.make_subtask("detection")
        self.make_subtask("measurement")
        base = icSrc_schema or characterize_schema(list(self.config.measurement.apertureRadii))
        self.schema = calibrate_schema(base)

    def make_reference_loaders(self, butler: Butler) -> ReferenceLoaders:
        """The loaders of the reference catalogs named by ``astromRefObjLoader`` and
        ``photoRefObjLoader``, from ``butler``'s repositories (pass them to :meth:`run`)."""
        return ReferenceLoaders(butler, self.config.astromRefObjLoader,
                                self.config.photoRefObjLoader)

    @timed_method
    def run(self, exposure: Any, ref_cat: Catalog | ReferenceLoaders | None,
            id_base: int = 0) -> Struct:
        """Calibrate ``exposure`` in place.

        Parameters
        ----------
        exposure : Exposure
            Characterized (background-subtracted, with a PSF and an initial WCS).
        ref_cat : Catalog, ReferenceLoaders or None
            Reference loaders (:meth:`make_reference_loaders`: the stars of this exposure
            from the configured catalogs, at its date), or one reference catalog used for both
            (``coord_ra``, ``coord_dec`` in radians, ``<band>_flux`` in nJy).
        id_base : int
            First source id (see :func:`hpcpipe.pipe.sources.source_id_base`).

        Returns
        -------
        Struct
            ``exposure``, ``sourceCat`` (src), ``matches`` (srcMatch), ``astrom_rms``
            (arcsec) and ``zero_point``.
        """
        c = self.config
        det = self.detection.run(exposure)
        cat = measure_detections(self.measurement, exposure, det.detections, id_base,
                                 self.schema)
        matches = Catalog(match_schema())
        astrom_rms = float("nan")
        if (c.doAstrometry or c.doPhotoCal) and ref_cat is None:
            raise ValueError("calibrate needs a reference catalog (or doAstrometry and "
                             "doPhotoCal off)")
        if c.doAstrometry or c.doPhotoCal:
            if isinstance(ref_cat, ReferenceLoaders):
                astrom_ref, photo_ref = ref_cat.load(exposure)
            else:
                assert ref_cat is not None  # checked above
                astrom_ref = photo_ref = ref_cat
            self.metadata["nRefAstrom"] = len(astrom_ref)
            matches, astrom_rms = self._calibrate(exposure, cat, astrom_ref, photo_ref)
        self.metadata["nSrc"] = len(cat)
        self.metadata["nMatches"] = len(matches)
        zp = exposure.photo_calib.zero_point if exposure.photo_calib is not None else float("nan")
        self.metadata["zeroPoint"] = float(zp)
        self.metadata["astromRms"] = astrom_rms
        self.log.info("%d sources, %d matches, WCS rms %.1f mas, zero point %.3f", len(cat),
                      len(matches), astrom_rms * 1e3, zp)
        return Struct(exposure=exposure, sourceCat=cat, matches=matches,
                      astrom_rms=astrom_rms, zero_point=zp)

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read ``icExp``, ``icExpBackground``, ``icSrc`` and the reference catalog,
        calibrate, write ``calexp``, ``calexpBackground``, ``src`` and ``srcMatch``."""
        c = self.config
        exposure = read_input(data_ref, "icExp", self.name, "characterizeImage")
        background = read_input(data_ref, "icExpBackground", self.name, "characterizeImage")
        ic_src = read_input(data_ref, "icSrc", self.name, "characterizeImage")
        missing = [name for name in ic_src.schema.names if name not in self.schema]
        if missing:
            raise ValueError(f"the icSrc of {dict(data_ref.dataId)} has fields that src would "
                             f"not carry ({', '.join(missing[:5])}): characterizeImage and "
                             "calibrate were run with different measurement configs")
        ref_cat = (self.make_reference_loaders(data_ref.butler)
                   if (c.doAstrometry or c.doPhotoCal) else None)
        data_id = data_ref.dataId
        result = self.run(exposure, ref_cat,
                          id_base=source_id_base(int(data_id["visit"]), int(data_id["ccd"])))
        if c.doWrite:
            data_ref.put(result.exposure, "calexp")
            data_ref.put(background, "calexpBackground")
            data_ref.put(result.sourceCat, "src")
            data_ref.put(result.matches, "srcMatch")
            write_schemas(data_ref.butler, {"src": result.sourceCat,
                                            "srcMatch": result.matches})
        return result

    def _usable(self, cat: Catalog) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = cat["base_PsfFlux_instFlux"] / cat["base_PsfFlux_instFluxErr"]
        ok = cat["detect_isPrimary"] & (snr > self.config.matchMinSnr)
        for name in _UNCLEAN:
            ok &= ~cat[name]
        return ok & (cat["parent"] == 0)

    def _calibrate(self, exposure: Any, cat: Catalog, ref_cat: Catalog, photo_ref: Catalog
                   ) -> tuple[Catalog, float]:
        c = self.config
        usable = np.nonzero(self._usable(cat))[0]
        x = cat["base_SdssCentroid_x"][usable]
        y = cat["base_SdssCentroid_y"][usable]
        ref_ra = np.degrees(ref_cat["coord_ra"])
        ref_dec = np.degrees(ref_cat["coord_dec"])
        rx, ry = exposure.wcs.all_world2pix(ref_ra, ref_dec, 0)
        x0, y0 = exposure.xy0
        margin = c.matchSearchRadius / _pixel_scale(exposure.wcs)
        inside = ((rx > x0 - margin) & (rx < x0 + exposure.width + margin)
                  & (ry > y0 - margin) & (ry < y0 + exposure.height + margin))
        ref_index = np.nonzero(inside)[0]
        scale = _pixel_scale(exposure.wcs)
        m = match_to_reference(x, y, rx[ref_index], ry[ref_index],
                               search_radius=c.matchSearchRadius / scale,
                               match_radius=c.matchRadius / scale)
        src_rows = usable[m.source_index]
        ref_rows = ref_index[m.ref_index]
        rms = float("nan")
        if c.doAstrometry:
            fit = fit_tan_sip(cat["base_SdssCentroid_x"][src_rows],
                              cat["base_SdssCentroid_y"][src_rows], ref_ra[ref_rows],
                              ref_dec[ref_rows], sip_degree=c.wcsSipOrder,
                              nsigma=c.wcsRejectNSigma, min_matches=c.minMatches)
            exposure.wcs = fit.wcs
            rms = fit.residual_rms
            used = np.zeros(len(cat), bool)
            used[src_rows[fit.used]] = True
            cat["calib_astrometry_used"] = used
            ra, dec = fit.wcs.all_pix2world(cat["base_SdssCentroid_x"],
                                            cat["base_SdssCentroid_y"], 0)
            cat["coord_ra"] = np.radians(ra)
            cat["coord_dec"] = np.radians(dec)
        band = exposure.filter.band if exposure.filter is not None else None
        band = c.photoRefObjLoader.filterMap.get(band, band) if band is not None else None
        ref_flux = np.full(len(ref_rows), np.nan)
        ref_err = np.full(len(ref_rows), np.nan)
        photo_src, photo_rows = src_rows, ref_rows
        if photo_ref is not ref_cat:
            # another catalog for the photometry: its stars matched through the fitted WCS
            px, py = exposure.wcs.all_world2pix(np.degrees(photo_ref["coord_ra"]),
                                                np.degrees(photo_ref["coord_dec"]), 0)
            pm = match_to_reference(cat["base_SdssCentroid_x"][usable],
                                    cat["base_SdssCentroid_y"][usable], px, py,
                                    search_radius=c.matchRadius / scale,
                                    match_radius=c.matchRadius / scale)
            photo_src, photo_rows = usable[pm.source_index], pm.ref_index
        has_band = band is not None and f"{band}_flux" in photo_ref.schema
        if has_band:
            by_src = dict(zip(photo_src.tolist(), photo_rows.tolist(), strict=True))
            rows = np.array([by_src.get(s, -1) for s in src_rows.tolist()], dtype=np.int64)
            found = rows >= 0
            ref_flux[found] = photo_ref[f"{band}_flux"][rows[found]]
            ref_err[found] = photo_ref[f"{band}_fluxErr"][rows[found]]
        if c.doPhotoCal:
            if not has_band:
                raise ValueError(f"the reference catalog {photo_ref.metadata.get('REFCAT', '')!r}"
                                 f" has no flux in band {band!r} (photoRefObjLoader.filterMap "
                                 "maps the exposure's band to the catalog's)")
            phot_flux = photo_ref[f"{band}_flux"][photo_rows]
            # an unknown reference error (NaN) counts as none: the measurement's error remains
            phot_err = np.nan_to_num(photo_ref[f"{band}_fluxErr"][photo_rows], nan=0.0)
            zp = fit_zero_point(cat["base_PsfFlux_instFlux"][photo_src],
                                cat["base_PsfFlux_instFluxErr"][photo_src], phot_flux, phot_err,
                                nsigma=c.photoRejectNSigma)
            exposure.photo_calib = zp.photo_calib
            used = np.zeros(len(cat), bool)
            used[photo_src[zp.used]] = True
            cat["calib_photometry_used"] = used
        sra, sdec = np.degrees(cat["coord_ra"][src_rows]), np.degrees(cat["coord_dec"][src_rows])
        dist = np.hypot((sra - ref_ra[ref_rows]) * np.cos(np.radians(sdec)),
                        sdec - ref_dec[ref_rows]) * 3600.0
        matches = Catalog.from_columns(match_schema(), {
            "src_id": cat["id"][src_rows], "ref_id": ref_cat["id"][ref_rows],
            "distance": dist, "src_x": cat["base_SdssCentroid_x"][src_rows],
            "src_y": cat["base_SdssCentroid_y"][src_rows], "ref_ra": ref_ra[ref_rows],
            "ref_dec": ref_dec[ref_rows],
            "src_instFlux": cat["base_PsfFlux_instFlux"][src_rows],
            "src_instFluxErr": cat["base_PsfFlux_instFluxErr"][src_rows],
            "ref_flux": ref_flux, "ref_fluxErr": ref_err})
        return matches, rms


def _pixel_scale(wcs: Any) -> float:
    """Arcseconds per pixel at the reference pixel."""
    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)
