"""Image differencing of one CCD (LSST's ``ImageDifferenceTask``): subtraction and diaSources.

``hpcpipe run imageDifference REPO --id visit=... ccd=...`` reads the ``calexp``, its ``src``
(for the kernel's stars), the ``skyMap`` and the ``deepCoadd`` patches covering the CCD through
the butler, and writes

* ``deepDiff_differenceExp``: the difference image, ``calexp - PSF-matched template``, in the
  calexp's counts and PhotoCalib, with its variance and mask and the PSF of the image that
  was not convolved;
* ``deepDiff_diaSrc``: the sources detected on it, positive and negative (see
  :func:`dia_source_schema`), and its ``deepDiff_diaSrc_schema``;
* ``deepDiff_kernelSrc``: the kernel's stamps, with their residuals and whether they were used;
* optionally ``deepDiff_warpedExp`` (the template on the calexp's grid, ``doWriteWarpedExp``)
  and ``deepDiff_matchedExp`` (the PSF-matched template, ``doWriteMatchedExp``).

Steps: the template (:class:`~hpcpipe.diffim.template.GetCoaddAsTemplateTask`); kernel
candidates, bright isolated stars of ``src`` (or, without ``src``, of the template)
(:func:`~hpcpipe.diffim.psf_match.select_kernel_candidates`); PSF matching and subtraction
(:class:`~hpcpipe.diffim.psf_match.ImagePsfMatchTask`); detection; measurement.

Detection
    The difference is smoothed by a Gaussian of its PSF's width and thresholded at
    ``detectionThreshold`` times its noise, positive and negative
    (:func:`hpcpipe.kernels.detect.detect_sources`). The noise per pixel is the square root
    of the variance plane smoothed by the kernel squared, scaled (``doScaleNoise``) by the
    robust standard deviation of the smoothed image over that noise: the convolution of the
    template correlates the difference's noise, which the per-pixel variance does not carry
    (as LSST's variance rescaling). Pixels with ``excludeMaskPlanes`` are not detected.
Measurement
    One diaSource per peak. A positive and a negative peak closer than
    ``dipoleMaxSeparation`` PSF sigmas form one *dipole* diaSource: both lobes are fitted
    jointly (:func:`~hpcpipe.diffim.dipole.fit_dipole`) and the source sits at their midpoint
    (``ip_diffim_DipoleFit_*``; ``ip_diffim_DipoleFit_flag_classification`` when both lobes
    are more significant than ``dipoleMinLobeSnr``). Other peaks are measured on the
    difference (negative ones on its negative, their fluxes then negated; ``is_negative``):
    centroid, adaptive moments, PSF and aperture fluxes and pixel flags
    (:class:`~hpcpipe.pipe.measurement.MeasurementTask`, LSST's ``base_*`` names). At the
    final position, the PSF flux is also measured, forced, on the calexp
    (``ip_diffim_forced_PsfFlux_*``: the source's total flux) and on the PSF-matched template
    (``ip_diffim_forced_template_PsfFlux_*``), so that difference + template = total. Fluxes
    are also given in nJy (``*_flux``, ``*_fluxErr``) with the calexp's PhotoCalib. The errors
    of the PSF fluxes on the difference are multiplied by the detection's noise scale (the
    per-pixel variance misses the covariance of the convolved image's noise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.spatial import cKDTree

from hpcpipe.config import Config, ConfigurableField, Field, ListField, RangeField
from hpcpipe.diffim.dipole import fit_dipole
from hpcpipe.diffim.psf_match import ImagePsfMatchTask, select_kernel_candidates
from hpcpipe.diffim.template import GetCoaddAsTemplateTask
from hpcpipe.image import Exposure
from hpcpipe.kernels.convolve import correlate_separable, gaussian_kernel_1d
from hpcpipe.kernels.detect import Detections, detect_sources
from hpcpipe.pipe.detection import SourceDetectionTask
from hpcpipe.pipe.measurement import MeasurementTask, aperture_name, measurement_schema
from hpcpipe.pipe.sources import measure_detections, source_id_base
from hpcpipe.table import Catalog, Schema
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import ButlerDataRef

__all__ = ["ImageDifferenceConfig", "ImageDifferenceTask", "dia_source_schema",
           "kernel_source_schema"]


def dia_source_schema(radii: list[float] | tuple[float, ...]) -> Schema:
    """The fields of ``deepDiff_diaSrc``: the measurement's and the difference imaging's."""
    s = measurement_schema(radii)
    s.add_field("visit", "L", doc="the visit")
    s.add_field("ccd", "I", doc="the CCD")
    s.add_field("midPointTai", "D", doc="middle of the exposure (MJD, TAI)", units="d")
    s.add_flag("is_negative", doc="detected below the template (a negative source)")
    for corner, doc in (("x0", "first column"), ("y0", "first row"), ("x1", "last column"),
                        ("y1", "last row")):
        s.add_field(f"ip_diffim_footprint_{corner}", "I",
                    doc=f"{doc} of the detection footprint's bounding box (parent pixels)",
                    units="pixel")
    s.add_field("base_PsfFlux_flux", "D", doc="PSF flux on the difference image",
                units="nJy")
    s.add_field("base_PsfFlux_fluxErr", "D", doc="its error", units="nJy")
    for prefix, where in (("ip_diffim_forced_PsfFlux", "the calexp (the total flux)"),
                          ("ip_diffim_forced_template_PsfFlux", "the PSF-matched template")):
        s.add_field(f"{prefix}_instFlux", "D", doc=f"forced PSF flux on {where}",
                    units="count")
        s.add_field(f"{prefix}_instFluxErr", "D", doc="its error", units="count")
        s.add_field(f"{prefix}_flux", "D", doc=f"forced PSF flux on {where}", units="nJy")
        s.add_field(f"{prefix}_fluxErr", "D", doc="its error", units="nJy")
        s.add_flag(f"{prefix}_flag", doc=f"the forced PSF flux on {where} could not be "
                   "measured")
    d = "ip_diffim_DipoleFit"
    for lobe in ("pos", "neg"):
        s.add_field(f"{d}_{lobe}_instFlux", "D", doc=f"flux of the {lobe} lobe (positive)",
                    units="count")
        s.add_field(f"{d}_{lobe}_instFluxErr", "D", doc="its error", units="count")
        s.add_field(f"{d}_{lobe}_flux", "D", doc=f"flux of the {lobe} lobe (positive)",
                    units="nJy")
        s.add_field(f"{d}_{lobe}_fluxErr", "D", doc="its error", units="nJy")
        s.add_field(f"{d}_{lobe}_x", "D", doc=f"{lobe} lobe x", units="pixel")
        s.add_field(f"{d}_{lobe}_y", "D", doc=f"{lobe} lobe y", units="pixel")
    s.add_field(f"{d}_separation", "D", doc="distance between the lobes", units="pixel")
    s.add_field(f"{d}_orientation", "D", doc="angle from +x of the negative-to-positive "
                "vector", units="deg")
    s.add_field(f"{d}_chi2dof", "D", doc="reduced chi-square of the dipole fit")
    s.add_field(f"{d}_nData", "I", doc="pixels used by the dipole fit (0: not fitted)")
    s.add_flag(f"{d}_flag", doc="the dipole fit failed")
    s.add_flag(f"{d}_flag_classification", doc="a dipole: both lobes significant")
    return s


def kernel_source_schema() -> Schema:
    """The fields of ``deepDiff_kernelSrc``: the PSF-matching kernel's stamps."""
    s = Schema()
    s.add_field("x", "D", doc="stamp centre x", units="pixel")
    s.add_field("y", "D", doc="stamp centre y", units="pixel")
    s.add_field("chi2_single", "D", doc="reduced chi-square of the stamp's own kernel fit")
    s.add_field("sum_single", "D", doc="kernel sum of the stamp's own fit")
    s.add_field("chi2_spatial", "D", doc="reduced chi-square under the spatial kernel")
    s.add_flag("used", doc="the stamp was used in the final spatial fit")
    return s


class ImageDifferenceConfig(Config):
    """The template, the subtraction, detection and measurement of diaSources."""

    getTemplate = ConfigurableField("the coadd warped onto the calexp", GetCoaddAsTemplateTask)
    subtract = ConfigurableField("PSF matching and subtraction", ImagePsfMatchTask)
    measurement = ConfigurableField("measurement of the diaSources", MeasurementTask)
    detectionThreshold = RangeField("detection threshold, in units of the smoothed "
                                    "difference's noise", float, default=5.0, min=0.0,
                                    inclusive_min=False)
    doScaleNoise = Field("rescale the detection noise by the measured scatter of the smoothed "
                         "difference (correlated noise)", bool, default=True)
    nSigmaToGrow = RangeField("grow footprints by this many PSF sigmas", float, default=2.4,
                              min=0.0)
    minPixels = RangeField("smallest footprint above threshold, pixels", int, default=3, min=1)
    deblendProminence = RangeField("a peak is separate when it rises this many noise units "
                                   "above its saddle with a brighter peak", float, default=3.0,
                                   min=0.0)
    deblendContrast = RangeField("... and by this fraction of its height", float,
                                 default=0.02, min=0.0)
    excludeMaskPlanes = ListField("pixels with these planes are never detected", str,
                                  default=["NO_DATA", "BAD", "EDGE", "SAT"])
    dipoleMaxSeparation = RangeField("a positive and a negative peak closer than this many PSF "
                                     "sigmas form a dipole (the smoothed lobes of a small "
                                     "misregistration are 2.8 sigmas apart)", float,
                                     default=5.0, min=0.0)
    dipoleMinLobeSnr = RangeField("both lobes of a dipole have at least this signal to noise",
                                  float, default=3.0, min=0.0)
    dipoleFitRadius = RangeField("pixels within this many PSF sigmas of a lobe are fitted",
                                 float, default=3.0, min=1.0)
    kernelSourceMinSnr = RangeField("kernel stars: smallest PSF signal to noise", float,
                                    default=30.0, min=1.0)
    maxKernelSources = RangeField("kernel stars: most used", int, default=150, min=1)
    kernelSourceIsolation = RangeField("kernel stars: no other source within this many pixels",
                                       float, default=12.0, min=0.0)
    doWriteWarpedExp = Field("write the template on the calexp's grid (deepDiff_warpedExp)",
                             bool, default=False)
    doWriteMatchedExp = Field("write the PSF-matched template (deepDiff_matchedExp)", bool,
                              default=False)

    def set_defaults(self) -> None:
        """diaSources are measured in small apertures only."""
        self.measurement.apertureRadii = [3.0, 6.0, 12.0]


class ImageDifferenceTask(CmdLineTask):
    """Subtract the template from one calexp and detect and measure its diaSources."""

    ConfigClass = ImageDifferenceConfig
    _DefaultName = "imageDifference"
    # subtasks, set by make_subtask in __init__ (the config's ConfigurableFields; a
    # retargeted field gives a subclass or a task with the same run signature)
    getTemplate: GetCoaddAsTemplateTask
    subtract: ImagePsfMatchTask
    measurement: MeasurementTask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.make_subtask("getTemplate")
        self.make_subtask("subtract")
        self.make_subtask("measurement")
        self.schema = dia_source_schema(list(self.config.measurement.apertureRadii))

    # --- the kernel's stars ------------------------------------------------------------------
    def kernel_candidates(self, exposure: Exposure, template: Exposure,
                          sources: Catalog | None) -> tuple[np.ndarray, np.ndarray]:
        """Kernel stars from ``sources`` (the calexp's src), or detected on the template."""
        c = self.config
        if sources is None or len(sources) == 0:
            self.log.info("no src catalog: kernel stars are detected on the template")
            work = template.clone()
            finite = np.isfinite(work.image.array)
            work.image.array[~finite] = 0.0
            work.variance.array[~np.isfinite(work.variance.array)] = np.inf
            det = SourceDetectionTask().run(work).detections
            measurement = MeasurementTask()
            schema = measurement.schema.copy()
            schema.add_flag("detect_isPrimary", doc="isolated or deblended child")
            sources = measure_detections(measurement, work, det, 0, schema)
            reference = template
        else:
            reference = exposure
        return select_kernel_candidates(sources, reference, min_snr=c.kernelSourceMinSnr,
                                        max_candidates=c.maxKernelSources,
                                        isolation=c.kernelSourceIsolation)

    # --- detection -----------------------------------------------------------------------------
    def _bad_pixels(self, exposure: Exposure) -> np.ndarray:
        mask = exposure.mask
        planes = [p for p in self.config.excludeMaskPlanes if p in mask.planes]
        bad = (mask.array & mask.get_plane_bitmask(planes)) != 0 if planes else np.zeros(
            mask.array.shape, bool)
        return bad | ~np.isfinite(exposure.image.array) | ~(exposure.variance.array > 0)

    @timed_method
    def detect(self, difference: Exposure) -> Struct:
        """Detect positive and negative sources on the difference image.

        Returns
        -------
        Struct
            ``detections``, ``psf_sigma``, ``noise_scale`` (the measured scatter of the
            smoothed difference over its nominal noise).
        """
        c = self.config
        x0, y0 = difference.xy0
        assert difference.psf is not None  # the difference has the science PSF
        sigma = float(difference.psf.sigma_at(x0 + difference.width / 2,
                                              y0 + difference.height / 2))
        bad = self._bad_pixels(difference)
        image = difference.image.array.astype(np.float64)
        image[bad] = 0.0
        var = difference.variance.array.astype(np.float64)
        var[bad] = 0.0
        g = gaussian_kernel_1d(sigma, dtype=np.float64)
        smoothed = correlate_separable(image, g, g)
        svar = correlate_separable(var, g * g, g * g)
        with np.errstate(invalid="ignore"):
            noise = np.sqrt(np.clip(svar, 0.0, None, out=svar), out=svar)
        usable = ~bad & (noise > 0)
        scale = 1.0
        if c.doScaleNoise and usable.sum() > 100:
            z = smoothed[usable] / noise[usable]
            z -= np.median(z)
            scale = float(1.4826 * np.median(np.abs(z, out=z), overwrite_input=True))
            if not np.isfinite(scale) or scale <= 0:
                scale = 1.0
        noise *= scale
        noise[~usable] = 1e30
        noise = noise.astype(np.float32)
        det: Detections = detect_sources(
            smoothed.astype(np.float32), noise, threshold=c.detectionThreshold,
            polarity="both", grow=int(round(c.nSigmaToGrow * sigma)), min_pixels=c.minPixels,
            bad=bad, smooth_sigma=None, prominence=c.deblendProminence,
            contrast=c.deblendContrast)
        mask = difference.mask
        for plane, sign in (("DETECTED", 1), ("DETECTED_NEGATIVE", -1)):
            if plane in mask.planes:
                mask.clear_plane(plane)
                mask.set_plane(plane, det.labels * sign > 0)
        n_pos = int((det.peaks["sign"] > 0).sum())
        n_neg = int((det.peaks["sign"] < 0).sum())
        self.metadata["nPositive"] = n_pos
        self.metadata["nNegative"] = n_neg
        self.metadata["noiseScale"] = scale
        self.log.info("detected %d positive and %d negative peaks at %.1f sigma (noise scaled "
                      "by %.3f)", n_pos, n_neg, c.detectionThreshold, scale)
        return Struct(detections=det, psf_sigma=sigma, noise_scale=scale)

    # --- measurement ---------------------------------------------------------------------------
    def _pairs(self, peaks: np.ndarray, max_sep: float) -> list[tuple[int, int]]:
        """Greedy pairs (positive row, negative row) of peaks closer than ``max_sep``,
        the most significant positive peaks first."""
        pos = np.nonzero(peaks["sign"] > 0)[0]
        neg = np.nonzero(peaks["sign"] < 0)[0]
        if not len(pos) or not len(neg) or max_sep <= 0:
            return []
        tree = cKDTree(np.column_stack([peaks["x"][neg], peaks["y"][neg]]).astype(float))
        taken: set[int] = set()
        pairs = []
        for p in pos[np.argsort(-np.abs(peaks["significance"][pos]))]:
            near = tree.query_ball_point([float(peaks["x"][p]), float(peaks["y"][p])], max_sep)
            near = [neg[k] for k in near if neg[k] not in taken]
            if not near:
                continue
            d = [np.hypot(peaks["x"][p] - peaks["x"][k], peaks["y"][p] - peaks["y"][k])
                 for k in near]
            best = int(near[int(np.argmin(d))])
            taken.add(best)
            pairs.append((int(p), best))
        return pairs

    @timed_method
    def measure(self, difference: Exposure, science: Exposure, matched_template: Exposure,
                detections: Detections, psf_sigma: float, id_base: int = 0,
                noise_scale: float = 1.0) -> Catalog:
        """Measure the diaSources (see the module's documentation).

        ``noise_scale`` (the detection's measured noise over the nominal one) multiplies the
        errors of the PSF fluxes on the difference.

        Returns
        -------
        Catalog
            With :func:`dia_source_schema`'s fields; ``visit``, ``ccd`` and ``midPointTai``
            are left for the caller.
        """
        c = self.config
        schema = self.schema
        peaks = detections.peaks
        x0, y0 = difference.xy0
        fp_npix = {int(f["id"]): int(f["npix"]) for f in detections.footprints}
        fp_box = {int(f["id"]): (int(f["x0"]) + x0, int(f["y0"]) + y0, int(f["x1"]) + x0,
                                 int(f["y1"]) + y0) for f in detections.footprints}
        pairs = self._pairs(peaks, c.dipoleMaxSeparation * psf_sigma)
        paired = {k for pair in pairs for k in pair}
        single_pos = [k for k in np.nonzero(peaks["sign"] > 0)[0] if k not in paired]
        single_neg = [k for k in np.nonzero(peaks["sign"] < 0)[0] if k not in paired]
        parts: list[Catalog] = []

        def extra(rows: list[Any]) -> dict[str, np.ndarray]:
            boxes = np.array([fp_box.get(int(peaks["footprint"][k]), (-1, -1, -2, -2))
                              for k in rows], np.int32).reshape(-1, 4)
            return {**{f"ip_diffim_footprint_{corner}": boxes[:, i]
                       for i, corner in enumerate(("x0", "y0", "x1", "y1"))},
                    "parent": np.zeros(len(rows), np.int64),
                    "deblend_nChild": np.zeros(len(rows), np.int32),
                    "footprint_npix": np.array([fp_npix.get(int(peaks["footprint"][k]), 0)
                                                for k in rows], np.int32),
                    "detect_peakSignificance": np.abs(peaks["significance"][rows]).astype(
                        np.float32)}

        if single_pos:
            parts.append(self.measurement.run(
                difference, peaks["x"][single_pos] + x0, peaks["y"][single_pos] + y0,
                ids=peaks["id"][single_pos], segments=detections.segments,
                extra=extra(single_pos), schema=schema).catalog)
        if single_neg:
            negative = Exposure(difference.masked_image.clone(), **difference.info())
            negative.image.array *= -1
            cat = self.measurement.run(
                negative, peaks["x"][single_neg] + x0, peaks["y"][single_neg] + y0,
                ids=-peaks["id"][single_neg], segments=-detections.segments,
                extra=extra(single_neg), schema=schema).catalog
            for name in ["base_PsfFlux_instFlux"] + [
                    f"{aperture_name(r)}_instFlux" for r in c.measurement.apertureRadii]:
                cat[name] = -cat[name]
            cat["is_negative"] = True
            parts.append(cat)
        if pairs:
            parts.append(self._measure_dipoles(difference, peaks, pairs, psf_sigma, extra))
        catalog = Catalog.concatenate(parts) if len(parts) > 1 else (
            parts[0] if parts else Catalog(schema))
        n = len(catalog)
        catalog["id"] = id_base + 1 + np.arange(n)
        if n:
            self._forced(catalog, science, "ip_diffim_forced_PsfFlux")
            # the matched template has the science's PSF: the science's aperture corrections
            # put its flux on the scale of the difference's (and of the zero point's)
            matched_template.ap_corr_map = science.ap_corr_map
            self._forced(catalog, matched_template, "ip_diffim_forced_template_PsfFlux")
            # the difference's noise is correlated (one image was convolved): the PSF-flux
            # error from the per-pixel variance is short by the detection's noise scale
            catalog["base_PsfFlux_instFluxErr"] = catalog["base_PsfFlux_instFluxErr"] * \
                noise_scale
            calib = science.photo_calib
            if calib is not None:
                for src, dst in (("base_PsfFlux_instFlux", "base_PsfFlux_flux"),
                                 ("ip_diffim_DipoleFit_pos_instFlux",
                                  "ip_diffim_DipoleFit_pos_flux"),
                                 ("ip_diffim_DipoleFit_neg_instFlux",
                                  "ip_diffim_DipoleFit_neg_flux")):
                    flux, err = calib.instflux_to_nanojansky(catalog[src], catalog[src + "Err"])
                    catalog[dst] = flux
                    catalog[dst.replace("_flux", "_fluxErr")] = err
        self.metadata["nDiaSources"] = n
        self.metadata["nDipoles"] = int(np.sum(catalog["ip_diffim_DipoleFit_flag_classification"]))
        return catalog

    def _measure_dipoles(self, difference: Exposure, peaks: np.ndarray,
                         pairs: list[tuple[int, int]], psf_sigma: float, extra: Any
                         ) -> Catalog:
        """Fit each pair's two lobes; measure the difference (forced) at their midpoint."""
        c = self.config
        x0, y0 = difference.xy0
        usable = ~self._bad_pixels(difference)
        # a smoothed peak of height h is a point source of flux h * 4 pi sigma**2
        to_flux = 4 * np.pi * psf_sigma**2
        fits = []
        assert difference.psf is not None
        for p, n in pairs:
            xp, yp = float(peaks["x"][p] + x0), float(peaks["y"][p] + y0)
            xn, yn = float(peaks["x"][n] + x0), float(peaks["y"][n] + y0)
            psf = difference.psf.compute_kernel_image(0.5 * (xp + xn), 0.5 * (yp + yn))
            fits.append(fit_dipole(difference.image.array, difference.variance.array, usable,
                                   psf, (x0, y0),
                                   (xp, yp, abs(float(peaks["value"][p])) * to_flux),
                                   (xn, yn, abs(float(peaks["value"][n])) * to_flux),
                                   c.dipoleFitRadius * psf_sigma))
        rows = [p for p, _ in pairs]
        cx = np.array([f.centroid[0] if f.success else 0.5 * (peaks["x"][p] + peaks["x"][n]) + x0
                       for f, (p, n) in zip(fits, pairs, strict=True)])
        cy = np.array([f.centroid[1] if f.success else 0.5 * (peaks["y"][p] + peaks["y"][n]) + y0
                       for f, (p, n) in zip(fits, pairs, strict=True)])
        cat = self.measurement.run(difference, cx, cy, extra=extra(rows), schema=self.schema,
                                   recentroid=False).catalog
        d = "ip_diffim_DipoleFit"
        columns = {
            f"{d}_pos_instFlux": [f.pos_flux for f in fits],
            f"{d}_pos_instFluxErr": [f.pos_flux_err for f in fits],
            f"{d}_neg_instFlux": [f.neg_flux for f in fits],
            f"{d}_neg_instFluxErr": [f.neg_flux_err for f in fits],
            f"{d}_pos_x": [f.pos_x for f in fits], f"{d}_pos_y": [f.pos_y for f in fits],
            f"{d}_neg_x": [f.neg_x for f in fits], f"{d}_neg_y": [f.neg_y for f in fits],
            f"{d}_separation": [f.separation for f in fits],
            f"{d}_orientation": [f.orientation for f in fits],
            f"{d}_chi2dof": [f.chi2 / max(f.dof, 1.0) for f in fits],
            f"{d}_nData": [int(f.dof) + 6 if np.isfinite(f.dof) else 0 for f in fits],
            f"{d}_flag": [not f.success for f in fits],
        }
        for name, values in columns.items():
            cat[name] = np.asarray(values)
        with np.errstate(invalid="ignore", divide="ignore"):
            snr_pos = np.array([f.pos_flux / f.pos_flux_err for f in fits])
            snr_neg = np.array([f.neg_flux / f.neg_flux_err for f in fits])
        cat[f"{d}_flag_classification"] = (np.array([f.success for f in fits])
                                           & (snr_pos > c.dipoleMinLobeSnr)
                                           & (snr_neg > c.dipoleMinLobeSnr))
        return cat

    def _forced(self, catalog: Catalog, exposure: Exposure, prefix: str) -> None:
        """Forced PSF flux of every diaSource on ``exposure`` into ``prefix``'s fields."""
        res = self.measurement.run(exposure, catalog["base_SdssCentroid_x"],
                                   catalog["base_SdssCentroid_y"], recentroid=False).catalog
        catalog[f"{prefix}_instFlux"] = res["base_PsfFlux_instFlux"]
        catalog[f"{prefix}_instFluxErr"] = res["base_PsfFlux_instFluxErr"]
        catalog[f"{prefix}_flag"] = res["base_PsfFlux_flag"]
        if exposure.photo_calib is not None:
            flux, err = exposure.photo_calib.instflux_to_nanojansky(
                res["base_PsfFlux_instFlux"], res["base_PsfFlux_instFluxErr"])
            catalog[f"{prefix}_flux"] = flux
            catalog[f"{prefix}_fluxErr"] = err

    # --- the whole CCD -------------------------------------------------------------------------
    @timed_method
    def run(self, exposure: Exposure, template: Exposure, sources: Catalog | None = None,
            id_base: int = 0, visit: int = 0, ccd: int = 0) -> Struct:
        """Subtract ``template`` from ``exposure`` and detect and measure the diaSources.

        Parameters
        ----------
        exposure : Exposure
            The calexp (background-subtracted, with PSF, WCS and PhotoCalib).
        template : Exposure
            The template on the calexp's grid and scale (:class:`GetCoaddAsTemplateTask`).
        sources : Catalog, optional
            The calexp's ``src`` (kernel stars); without it they come from the template.
        id_base : int
            The diaSources' ids are ``id_base + 1, 2, ...``.
        visit, ccd : int
            Copied into the catalog.

        Returns
        -------
        Struct
            ``subtractedExposure``, ``diaSources``, ``matchedTemplate``, ``warpedTemplate``,
            ``kernelSources`` (Catalog of the stamps), ``solution`` and ``mode``.
        """
        x, y = self.kernel_candidates(exposure, template, sources)
        sub = self.subtract.subtract_exposures(template, exposure, x, y)
        difference = sub.difference
        det = self.detect(difference)
        catalog = self.measure(difference, exposure, sub.matched_template, det.detections,
                               det.psf_sigma, id_base=id_base, noise_scale=det.noise_scale)
        catalog["visit"] = visit
        catalog["ccd"] = ccd
        date = exposure.visit_info.date if exposure.visit_info is not None else None
        catalog["midPointTai"] = float(date.tai.mjd) if date is not None else np.nan
        stamps = Catalog.from_columns(kernel_source_schema(), sub.stamps)
        difference.metadata["NDIASRC"] = len(catalog)
        difference.metadata["NOISESCL"] = det.noise_scale
        return Struct(subtractedExposure=difference, diaSources=catalog,
                      matchedTemplate=sub.matched_template, warpedTemplate=template,
                      kernelSources=stamps, solution=sub.solution, mode=sub.mode)

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read the calexp, its src, the sky map and the coadds; write the deepDiff datasets."""
        butler = data_ref.butler
        d = data_ref.dataId
        visit, ccd = int(d["visit"]), int(d["ccd"])
        if not butler.datasetExists("calexp", visit=visit, ccd=ccd):
            raise ValueError(f"no calexp for visit={visit} ccd={ccd}: run processCcd first")
        calexp = butler.get("calexp", visit=visit, ccd=ccd)
        sources = butler.get("src", visit=visit, ccd=ccd) if butler.datasetExists(
            "src", visit=visit, ccd=ccd) else None
        band = calexp.filter.band if calexp.filter is not None else d["filter"]
        try:
            template = self.getTemplate.run_butler(butler, calexp, band).template
        except ValueError as exc:
            raise ValueError(f"visit={visit} ccd={ccd}: {exc}") from exc
        try:
            result = self.run(calexp, template, sources, id_base=source_id_base(visit, ccd),
                              visit=visit, ccd=ccd)
        except ValueError as exc:
            raise ValueError(f"visit={visit} ccd={ccd}: {exc}") from exc
        key = {"visit": visit, "ccd": ccd, "filter": band}
        butler.put(result.subtractedExposure, "deepDiff_differenceExp", **key)
        butler.put(result.diaSources, "deepDiff_diaSrc", **key)
        butler.put(result.kernelSources, "deepDiff_kernelSrc", **key)
        if self.config.doWriteWarpedExp:
            butler.put(result.warpedTemplate, "deepDiff_warpedExp", **key)
        if self.config.doWriteMatchedExp:
            butler.put(result.matchedTemplate, "deepDiff_matchedExp", **key)
        for name, catalog in (("deepDiff_diaSrc", result.diaSources),
                              ("deepDiff_kernelSrc", result.kernelSources)):
            if not butler.datasetExists(f"{name}_schema"):
                butler.put(Catalog(catalog.schema), f"{name}_schema")
        self.metadata["nDiaSources"] = len(result.diaSources)
        self.metadata["mode"] = result.mode
        return result
