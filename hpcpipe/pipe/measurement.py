"""Source measurement (LSST's ``SingleFrameMeasurementTask`` and ``ForcedMeasurementTask``).

One call of the measurement kernel (:func:`hpcpipe.kernels.measure.measure_sources`) gives,
for every source: a Gaussian-weighted centroid, adaptive second moments, aperture and Kron
fluxes with errors, blendedness and pixel flags. The PSF flux is then fitted with the PSF
model realised at each source's measured (sub-pixel) centroid
(:func:`hpcpipe.kernels.measure.psf_fluxes`): the model is shifted, not the data. With an
aperture-correction map on the exposure (:class:`~hpcpipe.image.apcorr.ApCorrMap`, measured
by :class:`~hpcpipe.pipe.ap_corr.MeasureApCorrTask`), every corrected flux and its error are
multiplied by the correction at the source's position (LSST's ``ApplyApCorrTask``).

This task turns those columns into a :class:`~hpcpipe.table.Catalog` whose field names follow
LSST's plugins (``base_SdssCentroid_x``, ``base_SdssShape_xx``, ``base_PsfFlux_instFlux``,
``base_CircularApertureFlux_<r>_instFlux``, ``ext_photometryKron_KronFlux_instFlux``,
``base_Blendedness_abs``, ``base_PixelFlags_flag_edge``, ``<flux>_apCorr``...) and adds sky
coordinates from the exposure's WCS.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.config import Config, Field, ListField, RangeField
from hpcpipe.kernels.measure import measure_sources, psf_fluxes
from hpcpipe.pipe.ap_corr import AP_CORR_FIELDS, apply_ap_corr, corrected_flux_names
from hpcpipe.table import Catalog, Schema, fill_value
from hpcpipe.task import Struct, Task, timed_method

__all__ = ["MeasurementConfig", "MeasurementTask", "measurement_schema", "aperture_name",
           "psf_stamps", "KRON_NAME"]

#: LSST's field prefix of the Kron flux.
KRON_NAME = "ext_photometryKron_KronFlux"


def aperture_name(radius: float) -> str:
    """LSST's field prefix of an aperture: ``base_CircularApertureFlux_4_5``."""
    return "base_CircularApertureFlux_" + f"{radius:.1f}".replace(".", "_")


def measurement_schema(radii: list[float] | tuple[float, ...]) -> Schema:
    """The fields a measured source catalog has (besides those the caller adds first)."""
    s = Schema.minimal()
    s.add_field("parent", "L", doc="id of the parent of a deblended child (0: not blended)")
    s.add_field("deblend_nChild", "I", doc="number of children of a blended parent")
    s.add_field("footprint_npix", "I", doc="pixels in the source's footprint")
    s.add_field("detect_peakSignificance", "F", doc="peak value over the noise, smoothed")
    for axis in ("x", "y"):
        s.add_field(f"base_SdssCentroid_{axis}", "D", doc=f"Gaussian-weighted centroid {axis}",
                    units="pixel")
    for axis in ("x", "y"):
        s.add_field(f"base_SdssCentroid_{axis}Err", "F", doc=f"centroid {axis} error",
                    units="pixel")
    s.add_flag("base_SdssCentroid_flag", doc="the centroid did not converge")
    for axis in ("x", "y"):
        s.add_field(f"base_NaiveCentroid_{axis}", "D", doc=f"first moment {axis}",
                    units="pixel")
    for term in ("xx", "yy", "xy"):
        s.add_field(f"base_SdssShape_{term}", "D", doc=f"adaptive second moment I{term}",
                    units="pixel2")
    s.add_flag("base_SdssShape_flag", doc="the adaptive moments did not converge")
    s.add_field("base_PsfFlux_instFlux", "D", doc="PSF flux", units="count")
    s.add_field("base_PsfFlux_instFluxErr", "D", doc="PSF flux error", units="count")
    s.add_flag("base_PsfFlux_flag", doc="the PSF flux could not be measured")
    s.add_flag("base_PsfFlux_flag_badCentroid",
               doc="the centroid failed or moved more than a pixel from the peak")
    s.add_field(f"{KRON_NAME}_instFlux", "D", doc="Kron flux (2.5 Kron radii)", units="count")
    s.add_field(f"{KRON_NAME}_instFluxErr", "D", doc="Kron flux error", units="count")
    s.add_field(f"{KRON_NAME}_radius", "F", doc="Kron aperture radius (2.5 r1, elliptical)",
                units="pixel")
    s.add_flag(f"{KRON_NAME}_flag", doc="the Kron flux could not be measured, or its "
               "aperture is off the image or masked")
    s.add_field("base_Blendedness_abs", "F",
                doc="1 - own flux / all flux within the source's Gaussian weight")
    for r in radii:
        name = aperture_name(r)
        s.add_field(f"{name}_instFlux", "D", doc=f"flux within {r} pixels", units="count")
        s.add_field(f"{name}_instFluxErr", "D", doc=f"flux error within {r} pixels",
                    units="count")
        s.add_flag(f"{name}_flag", doc=f"the {r}-pixel aperture is off the image or masked")
    for name in corrected_flux_names(radii):
        for suffix, dtype, doc in AP_CORR_FIELDS:
            if dtype == "Flag":
                s.add_flag(f"{name}{suffix}", doc=doc)
            else:
                s.add_field(f"{name}{suffix}", dtype, doc=doc)
    for flag, doc in (("edge", "source is near the image's edge"),
                      ("saturated", "a saturated pixel is in the source's centre"),
                      ("interpolated", "an interpolated pixel is in the source's centre"),
                      ("cr", "a cosmic-ray pixel is in the source's centre"),
                      ("bad", "a bad pixel is in the source's centre")):
        s.add_flag(f"base_PixelFlags_flag_{flag}", doc=doc)
    return s


def psf_stamps(psf: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The PSF model centred on each source: ``(n, k, k)`` images and ``(n, 2)`` origins."""
    n = len(x)
    if n == 0:
        return np.zeros((0, 1, 1), np.float32), np.zeros((0, 2), np.int64)
    first, _ = psf.compute_image(float(x[0]), float(y[0]))
    k = first.shape[0]
    stamps = np.empty((n, k, k), np.float32)
    origins = np.empty((n, 2), np.int64)
    for i in range(n):
        img, xy0 = psf.compute_image(float(x[i]), float(y[i]))
        stamps[i] = img
        origins[i] = xy0
    return stamps, origins


class MeasurementConfig(Config):
    """Which measurements are made, and the pixel flags."""

    apertureRadii = ListField("radii of the circular aperture fluxes, pixels", float,
                              default=[3.0, 4.5, 6.0, 9.0, 12.0, 17.0, 25.0])
    edgeMaskPlanes = ListField("planes that set the edge flag", str,
                               default=["EDGE", "NO_DATA"])
    badMaskPlanes = ListField("planes that set the bad flag", str, default=["BAD"])
    doRecentroid = Field("measure the centroid (else keep the given positions: forced mode)",
                         bool, default=True)
    psfSigma = RangeField("Gaussian PSF sigma (pixels) used when the exposure has no PSF",
                          float, default=2.0, min=0.1)
    doApplyApCorr = Field("apply the exposure's aperture corrections (when it has them)",
                          bool, default=True)
    maxCentroidShift = RangeField("PSF flux flagged badCentroid when the centroid moved more "
                                  "than this from the input position (the peak), pixels",
                                  float, default=1.0, min=0.0)


class MeasurementTask(Task):
    """Measure sources at given positions on an exposure."""

    ConfigClass = MeasurementConfig
    _DefaultName = "measurement"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schema = measurement_schema(self.config.apertureRadii)

    def _bits(self, mask: Any, planes: list[str]) -> int:
        present = [p for p in planes if p in mask.planes]
        return mask.get_plane_bitmask(present) if present else 0

    @timed_method
    def run(self, exposure: Any, x: np.ndarray, y: np.ndarray, *,
            ids: np.ndarray | None = None, segments: np.ndarray | None = None,
            extra: dict[str, np.ndarray] | None = None, schema: Schema | None = None,
            recentroid: bool | None = None) -> Struct:
        """Measure sources at ``(x, y)`` (parent pixel coordinates).

        Parameters
        ----------
        exposure : Exposure
            Background-subtracted, with a PSF (else a Gaussian of ``psfSigma``) and a WCS.
        x, y : numpy.ndarray
            Initial (or, in forced mode, final) positions.
        ids : numpy.ndarray, optional
            The sources' segment ids in ``segments`` (deblended neighbours are left out).
        segments : numpy.ndarray, optional
            int32 image of segment ids (0: unassigned).
        extra : dict of numpy.ndarray, optional
            Columns to copy into the catalog (``id``, ``parent``...); every field of
            ``schema`` not measured here must be in it.
        schema : Schema, optional
            The catalog's schema (default: :func:`measurement_schema`); it may have more
            fields than the measured ones.
        recentroid : bool, optional
            Override of ``doRecentroid``.

        Returns
        -------
        Struct
            ``catalog``.
        """
        c = self.config
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        x0, y0 = exposure.xy0
        mask = exposure.mask
        psf = exposure.psf
        if psf is not None:
            sigma = psf.adaptive_sigma_at(x0 + exposure.width / 2, y0 + exposure.height / 2)
        else:
            sigma = c.psfSigma
        kwargs: dict[str, Any] = {}
        if segments is not None:
            kwargs.update(segments=segments, ids=ids)
        do_centroid = c.doRecentroid if recentroid is None else recentroid
        res = measure_sources(
            exposure.image.array, exposure.variance.array, mask.array, x - x0, y - y0,
            radii=tuple(c.apertureRadii), recentroid=do_centroid, psf_sigma=sigma,
            edge_bits=self._bits(mask, list(c.edgeMaskPlanes)),
            saturated_bits=self._bits(mask, ["SAT"]),
            interpolated_bits=self._bits(mask, ["INTRP"]),
            cr_bits=self._bits(mask, ["CR"]),
            bad_bits=self._bits(mask, list(c.badMaskPlanes)),
            **kwargs)
        cx, cy = res["x"] + x0, res["y"] + y0
        moved = np.hypot(cx - x, cy - y) > c.maxCentroidShift
        if psf is not None:
            # the PSF model realised at the measured centroid (not at the integer peak)
            px = np.where(np.isfinite(cx), cx, x)
            py = np.where(np.isfinite(cy), cy, y)
            valid = np.isfinite(px) & np.isfinite(py)
            stamps, origins = psf_stamps(psf, np.where(valid, px, x0), np.where(valid, py, y0))
            pf = psf_fluxes(exposure.image.array, exposure.variance.array, mask.array, stamps,
                            origins - np.array([x0, y0]), **kwargs)
            res["psf_flux"] = np.where(valid, pf["psf_flux"], np.nan)
            res["psf_flux_err"] = np.where(valid, pf["psf_flux_err"], np.nan)
            res["psf_flag"] = pf["psf_flag"] | ~valid
        schema = schema or self.schema
        columns: dict[str, Any] = {}
        n = len(x)
        columns["base_SdssCentroid_x"] = cx
        columns["base_SdssCentroid_y"] = cy
        columns["base_SdssCentroid_xErr"] = res["x_err"]
        columns["base_SdssCentroid_yErr"] = res["y_err"]
        columns["base_SdssCentroid_flag"] = res["centroid_flag"]
        columns["base_NaiveCentroid_x"] = res["x_moment"] + x0
        columns["base_NaiveCentroid_y"] = res["y_moment"] + y0
        columns["base_SdssShape_xx"] = res["ixx"]
        columns["base_SdssShape_yy"] = res["iyy"]
        columns["base_SdssShape_xy"] = res["ixy"]
        columns["base_SdssShape_flag"] = res["shape_flag"]
        columns["base_PsfFlux_instFlux"] = res["psf_flux"]
        columns["base_PsfFlux_instFluxErr"] = res["psf_flux_err"]
        columns["base_PsfFlux_flag"] = res["psf_flag"]
        columns["base_PsfFlux_flag_badCentroid"] = res["centroid_flag"] | moved
        columns[f"{KRON_NAME}_instFlux"] = res["kron_flux"]
        columns[f"{KRON_NAME}_instFluxErr"] = res["kron_flux_err"]
        columns[f"{KRON_NAME}_radius"] = res["kron_radius"]
        columns[f"{KRON_NAME}_flag"] = res["kron_flag"]
        columns["base_Blendedness_abs"] = res["blendedness"]
        for k, r in enumerate(c.apertureRadii):
            name = aperture_name(r)
            columns[f"{name}_instFlux"] = res["ap_flux"][:, k]
            columns[f"{name}_instFluxErr"] = res["ap_flux_err"][:, k]
            columns[f"{name}_flag"] = res["ap_flag"][:, k]
        for flag in ("edge", "saturated", "interpolated", "cr", "bad"):
            columns[f"base_PixelFlags_flag_{flag}"] = res[f"flag_{flag}"]
        if exposure.wcs is not None and n:
            ra, dec = exposure.wcs.all_pix2world(cx, cy, 0)
            columns["coord_ra"] = np.radians(ra)
            columns["coord_dec"] = np.radians(dec)
        else:
            columns["coord_ra"] = np.full(n, np.nan)
            columns["coord_dec"] = np.full(n, np.nan)
        for name, values in (extra or {}).items():
            columns[name] = values
        for f in schema:
            if f.name not in columns:
                columns[f.name] = (np.arange(1, n + 1) if f.name == "id" else
                                   np.full((n, *f.shape), fill_value(f.dtype), dtype=f.dtype))
        catalog = Catalog.from_columns(schema, {f.name: columns[f.name] for f in schema})
        if c.doApplyApCorr and exposure.ap_corr_map is not None:
            apply_ap_corr(catalog, exposure.ap_corr_map,
                          corrected_flux_names(list(c.apertureRadii)))
        self.metadata["nMeasured"] = n
        return Struct(catalog=catalog)
