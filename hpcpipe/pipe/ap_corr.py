"""Aperture corrections (LSST's ``MeasureApCorrTask`` and ``ApplyApCorrTask``).

A PSF flux is the amplitude of a PSF model whose wings are cut off (the model is a finite
stamp, renormalised), a Kron or small-aperture flux misses the light beyond its aperture: each
is a fixed fraction of the total flux for a point source, a fraction that varies slowly over
the CCD with the PSF. From the PSF stars, the ratio of a large reference aperture's flux to
each other flux is fitted as a smooth field over the CCD (a low-order Chebyshev series,
:class:`~hpcpipe.image.apcorr.ChebyshevBoundedField`, as LSST's) and stored with the exposure
(``Exposure.ap_corr_map``, persisted with the calexp). The measurement multiplies every
corrected flux and its error by the field at the source's position; ``<flux>_apCorr``,
``<flux>_apCorrErr`` and ``<flux>_flag_apCorr`` record it.

Reference flux: LSST's, the catalog's 12-pixel aperture (``refFluxName``), fitted over the
CCD; then, with ``doTotalCorrection``, every field is scaled by one number, the ratio of a
35-pixel aperture (``refRadius``), less a local background (the clipped median of an annulus,
``refAnnulus``, 45-65 pixels, without DETECTED pixels), to the 12-pixel one on the same stars:
the corrected fluxes are then total fluxes. On a Kolmogorov plus optical PSF of 0.75" FWHM at
0.2"/pixel the 12-pixel aperture holds 98.5% of the light, the 25-pixel one 99.6% and the
35-pixel one 99.8%. A large aperture cannot serve for the fit over the CCD directly: on the
global background model it is biased by the faint sources' light in that model (a few tenths
of an electron per pixel varying over the CCD: several percent of a 25-pixel aperture's flux
for a star of S/N 100), and a local annulus doubles its noise; one number over the CCD,
dominated by the brightest stars, has the precision the fit over the CCD would lack. Stars
with a neighbour inside an aperture are far above their errors: the fits start from the
weighted median and clip on the formal errors.

The error of the correction (``<flux>_instFluxErr`` field of the map) is the uncertainty of
the fitted mean correction: ``sqrt(1 / sum(w))`` times the square root of the fit's reduced
chi-square when above 1. As LSST's ``ApplyApCorrTask`` it is recorded but not added to the
flux errors (it is common to all sources of the exposure, a calibration error).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from hpcpipe.config import Config, Field, ListField, RangeField
from hpcpipe.image.apcorr import ApCorrMap, ChebyshevBoundedField
from hpcpipe.kernels.measure import measure_sources
from hpcpipe.task import Struct, Task, timed_method

__all__ = ["AP_CORR_FIELDS", "ApplyApCorrError", "MeasureApCorrConfig", "MeasureApCorrTask",
           "apply_ap_corr", "corrected_flux_names"]

#: The fields a corrected flux ``<flux>`` gets: suffix, type, doc.
AP_CORR_FIELDS = (
    ("_apCorr", "D", "aperture correction applied to the flux and its error"),
    ("_apCorrErr", "D", "uncertainty of the aperture correction (not in the flux error)"),
    ("_flag_apCorr", "Flag", "no aperture correction could be applied"),
)


class ApplyApCorrError(ValueError):
    """A catalog lacks the fields an aperture correction needs."""


def _local_background(values: np.ndarray) -> tuple[float, float]:
    """The clipped median of an annulus's pixels (three 3-sigma passes about the median, the
    width from the MAD) and its error."""
    for _ in range(3):
        med = np.median(values)
        sig = 1.4826 * np.median(np.abs(values - med))
        values = values[np.abs(values - med) <= 3.0 * sig]
    return float(np.median(values)), 1.2533 * float(np.std(values)) / np.sqrt(values.size)


#: The radius in an aperture flux's name (``base_CircularApertureFlux_12_0``: 12.0).
re_radius = re.compile(r"_(\d+)_(\d+)$")


def _aperture_name(radius: float) -> str:
    return "base_CircularApertureFlux_" + f"{radius:.1f}".replace(".", "_")


def corrected_flux_names(radii: list[float] | tuple[float, ...]) -> list[str]:
    """The fluxes that get aperture corrections: PSF, Kron and every circular aperture."""
    return ["base_PsfFlux", "ext_photometryKron_KronFlux"] + [_aperture_name(r) for r in radii]


def apply_ap_corr(catalog: Any, ap_corr_map: ApCorrMap, names: list[str]) -> int:
    """Multiply each flux ``<name>_instFlux`` (and its error) by its correction, in place.

    The correction is the map's ``<name>_instFlux`` field at the source's centroid
    (``base_SdssCentroid_x/y``); ``<name>_apCorr``, ``<name>_apCorrErr`` are set and
    ``<name>_flag_apCorr`` where the map has no correction for the flux (the flux is then left
    as it is and the correction is NaN) or the correction is not a positive number (the flux
    becomes NaN). Fields of ``names`` the catalog lacks are skipped.

    Returns
    -------
    int
        The number of fluxes corrected.
    """
    if len(catalog) == 0:
        return 0
    schema = catalog.schema
    x = np.asarray(catalog["base_SdssCentroid_x"], dtype=np.float64)
    y = np.asarray(catalog["base_SdssCentroid_y"], dtype=np.float64)
    done = 0
    for name in names:
        if f"{name}_instFlux" not in schema or f"{name}_apCorr" not in schema:
            continue
        field = ap_corr_map.get(f"{name}_instFlux")
        if field is None:
            catalog[f"{name}_apCorr"] = np.nan
            catalog[f"{name}_apCorrErr"] = np.nan
            catalog[f"{name}_flag_apCorr"] = True
            continue
        corr = field.evaluate(x, y)
        err_field = ap_corr_map.get(f"{name}_instFluxErr")
        corr_err = err_field.evaluate(x, y) if err_field is not None else np.zeros_like(corr)
        bad = ~(np.isfinite(corr) & (corr > 0))
        corr = np.where(bad, np.nan, corr)
        catalog[f"{name}_instFlux"] = catalog[f"{name}_instFlux"] * corr
        catalog[f"{name}_instFluxErr"] = catalog[f"{name}_instFluxErr"] * corr
        catalog[f"{name}_apCorr"] = corr
        catalog[f"{name}_apCorrErr"] = corr_err
        catalog[f"{name}_flag_apCorr"] = bad
        done += 1
    return done


class MeasureApCorrConfig(Config):
    """The reference flux, the stars and the fit."""

    refFluxName = Field("the catalog flux the others are brought to, over the CCD (LSST's "
                        "base_CircularApertureFlux_12_0); empty: the refRadius aperture itself",
                        str, default="base_CircularApertureFlux_12_0")
    doTotalCorrection = Field("scale every correction by refFluxName's flux ratio to the "
                              "refRadius aperture (with a local background) on the stars: "
                              "fluxes become total fluxes", bool, default=True)
    refRadius = RangeField("radius of the total-flux aperture, pixels", float, default=35.0,
                           min=1.0)
    refAnnulus = ListField("inner and outer radii of the reference's local background "
                           "annulus, pixels", float, default=[45.0, 65.0],
                           length=2, list_check=lambda radii: 0 < radii[0] < radii[1])
    fitOrder = RangeField("order of the Chebyshev field (triangular: x^i y^j, i + j <= order)",
                          int, default=1, min=0, max=4, inclusive_max=True)
    minDegreesOfFreedom = RangeField("the order is lowered until the stars leave this many "
                                     "degrees of freedom", int, default=1, min=0)
    numIter = RangeField("sigma-clipping iterations", int, default=4, min=1)
    numSigmaClip = RangeField("clip stars this many robust widths from the fit", float,
                              default=3.0, min=0.0, inclusive_min=False)
    minRefSnr = RangeField("faintest usable star: signal to noise of the reference flux",
                           float, default=10.0, min=0.0)
    minStars = RangeField("fewer usable stars: no correction for that flux", int, default=3,
                          min=1)


class MeasureApCorrTask(Task):
    """Fit the aperture corrections of an exposure from its PSF stars."""

    ConfigClass = MeasureApCorrConfig
    _DefaultName = "measureApCorr"

    def _fit_one(self, bbox: tuple[float, float, float, float], x: np.ndarray, y: np.ndarray,
                 ratio: np.ndarray, err: np.ndarray, fit_order: int | None = None
                 ) -> tuple[ChebyshevBoundedField, ChebyshevBoundedField, int] | None:
        c = self.config
        w = 1.0 / err**2
        # start from the weighted median: a star with a neighbour in the reference aperture
        # has a ratio too high by many of its errors, and a weighted mean would follow it
        order_idx = np.argsort(ratio)
        cum = np.cumsum(w[order_idx])
        centre0 = ratio[order_idx][np.searchsorted(cum, 0.5 * cum[-1])]
        keep = np.abs(ratio - centre0) <= c.numSigmaClip * err
        if keep.sum() < c.minStars:
            keep = np.zeros(ratio.size, bool)
            keep[np.argsort(np.abs(ratio - centre0) / err)[:c.minStars]] = True
        field = None
        for _ in range(c.numIter):
            n = int(keep.sum())
            order = c.fitOrder if fit_order is None else fit_order
            while order > 0 and n < (order + 1) * (order + 2) // 2 + c.minDegreesOfFreedom:
                order -= 1
            if n < max(c.minStars, 1 + c.minDegreesOfFreedom):
                return None
            field = ChebyshevBoundedField.fit(bbox, x[keep], y[keep], ratio[keep], w[keep],
                                              order=order)
            chi = (ratio - field.evaluate(x, y)) / err
            width = max(1.4826 * float(np.median(np.abs(chi[keep]))), 1.0)
            new = np.abs(chi) <= c.numSigmaClip * width
            if np.array_equal(new, keep) or new.sum() < c.minStars:
                break
            keep = new
        assert field is not None
        chi = (ratio - field.evaluate(x, y)) / err
        n = int(keep.sum())
        nterms = int(np.count_nonzero(field.coefficients)) or 1
        red = float(np.sum(chi[keep] ** 2) / max(n - nterms, 1))
        sigma = float(np.sqrt(1.0 / w[keep].sum()) * np.sqrt(max(red, 1.0)))
        err_field = ChebyshevBoundedField(bbox, np.array([[sigma]]))
        return field, err_field, n

    def reference_flux(self, exposure: Any, catalog: Any, stars: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``refRadius`` aperture flux of the ``stars`` less their local background.

        Returns
        -------
        tuple of numpy.ndarray
            Flux, error and flag for every catalog row (NaN and flagged for non-stars).
        """
        c = self.config
        n = len(catalog)
        flux = np.full(n, np.nan)
        err = np.full(n, np.nan)
        flag = np.ones(n, bool)
        index = np.nonzero(stars)[0]
        if index.size == 0:
            return flux, err, flag
        x0, y0 = exposure.xy0
        xs = np.asarray(catalog["base_SdssCentroid_x"], float)[index] - x0
        ys = np.asarray(catalog["base_SdssCentroid_y"], float)[index] - y0
        mask = exposure.mask
        image = exposure.image.array
        planes = [p for p in ("BAD", "NO_DATA") if p in mask.planes]
        exclude = mask.get_plane_bitmask(planes) if planes else 0
        res = measure_sources(image, exposure.variance.array, mask.array, xs, ys,
                              radii=(c.refRadius,), recentroid=False, psf_sigma=2.0,
                              exclude_bits=exclude, edge_bits=exclude)
        skip = [p for p in ("BAD", "NO_DATA", "SAT", "DETECTED", "DETECTED_NEGATIVE")
                if p in mask.planes]
        skip_bits = mask.get_plane_bitmask(skip) if skip else 0
        r_in, r_out = c.refAnnulus
        half = int(np.ceil(r_out))
        h, w = image.shape
        area = np.pi * c.refRadius ** 2
        for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
            cx, cy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
            i0, i1 = max(cy - half, 0), min(cy + half + 1, h)
            j0, j1 = max(cx - half, 0), min(cx + half + 1, w)
            rr = np.hypot(np.arange(j0, j1)[None, :] - x, np.arange(i0, i1)[:, None] - y)
            sel = (rr >= r_in) & (rr <= r_out) & ((mask.array[i0:i1, j0:j1] & skip_bits) == 0)
            vals = image[i0:i1, j0:j1][sel].astype(np.float64)
            vals = vals[np.isfinite(vals)]
            if vals.size < 50 or res["ap_flag"][k, 0]:
                continue
            local, local_err = _local_background(vals)
            flux[index[k]] = res["ap_flux"][k, 0] - local * area
            err[index[k]] = np.hypot(res["ap_flux_err"][k, 0], local_err * area)
            flag[index[k]] = False
        return flux, err, flag

    def wing_total(self, exposure: Any, catalog: Any, stars: np.ndarray, rf: np.ndarray,
                   re: np.ndarray, labels: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each star's flux within ``refRadius``, its neighbours left out.

        The reference flux (``refFluxName``, a ``r0``-pixel aperture) less the local
        background over its area, plus the star's wings from ``r0`` to ``refRadius``: in
        rings about 2 pixels wide, the median of the pixels that belong to no other
        footprint, less the local background, times the ring's area. A neighbour inside the
        35-pixel aperture (about one per star in a field of a thousand objects on a 2k x 2k
        CCD) would otherwise add its light to the correction; the median also resists the
        faint ones below the detection threshold.

        Returns
        -------
        tuple of numpy.ndarray
            Flux, error and flag for every catalog row (NaN and flagged for non-stars).
        """
        c = self.config
        match = re_radius.search(c.refFluxName)
        n = len(catalog)
        flux, err, flag = np.full(n, np.nan), np.full(n, np.nan), np.ones(n, bool)
        index = np.nonzero(stars)[0]
        if match is None or index.size == 0:
            return flux, err, flag
        r0 = float(f"{match.group(1)}.{match.group(2)}")
        edges = np.linspace(r0, c.refRadius, max(int(round((c.refRadius - r0) / 2.0)), 1) + 1)
        x0, y0 = exposure.xy0
        xs = np.asarray(catalog["base_SdssCentroid_x"], float)[index] - x0
        ys = np.asarray(catalog["base_SdssCentroid_y"], float)[index] - y0
        mask = exposure.mask
        image = exposure.image.array
        bad = [p for p in ("BAD", "NO_DATA", "SAT") if p in mask.planes]
        bad_bits = mask.get_plane_bitmask(bad) if bad else 0
        r_in, r_out = c.refAnnulus
        half = int(np.ceil(max(r_out, c.refRadius)))
        h, w = image.shape
        for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
            cx, cy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
            if not (0 <= cx < w and 0 <= cy < h) or not np.isfinite(rf[index[k]]):
                continue
            i0, i1 = max(cy - half, 0), min(cy + half + 1, h)
            j0, j1 = max(cx - half, 0), min(cx + half + 1, w)
            rr = np.hypot(np.arange(j0, j1)[None, :] - x, np.arange(i0, i1)[:, None] - y)
            lab = labels[i0:i1, j0:j1]
            own = labels[cy, cx]
            pix = image[i0:i1, j0:j1]
            usable = ((mask.array[i0:i1, j0:j1] & bad_bits) == 0) & np.isfinite(pix)
            # the local background: the annulus outside every footprint, clipped
            ring = usable & (lab == 0) & (rr >= r_in) & (rr <= r_out)
            vals = pix[ring].astype(np.float64)
            if vals.size < 50:
                continue
            local, local_err = _local_background(vals)
            mine = usable & ((lab == 0) | (lab == own))
            total = rf[index[k]] - local * np.pi * r0 ** 2
            var = re[index[k]] ** 2
            complete = True
            for a, b in zip(edges[:-1], edges[1:], strict=True):
                inside = (rr >= a) & (rr < b)
                values = pix[inside & mine]
                if values.size < 0.5 * inside.sum() or values.size < 8:
                    complete = False  # half the ring under neighbours: not this star
                    break
                area = np.pi * (b * b - a * a)
                total += (float(np.median(values)) - local) * area
                var += (1.2533 * float(np.std(values)) * area) ** 2 / values.size
            if not complete:
                continue
            flux[index[k]] = total
            err[index[k]] = np.sqrt(var + (local_err * np.pi * c.refRadius ** 2) ** 2)
            flag[index[k]] = False
        return flux, err, flag

    def total_correction(self, exposure: Any, catalog: Any, good: np.ndarray,
                         rf: np.ndarray, re: np.ndarray, bbox: tuple[float, float, float, float],
                         xs: np.ndarray, ys: np.ndarray, labels: np.ndarray | None = None
                         ) -> tuple[float, float] | None:
        """The ratio of the ``refRadius`` aperture (local background) to the reference flux,
        one number for the CCD (the weighted median start and clipping of the fits), and its
        uncertainty; None with too few stars. With the footprint ``labels``, the stars'
        fluxes within ``refRadius`` leave their neighbours out (:meth:`wing_total`)."""
        if labels is not None:
            tf, te, tflag = self.wing_total(exposure, catalog, good, rf, re, labels)
        else:
            tf, te, tflag = self.reference_flux(exposure, catalog, good)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = tf / rf
            err = ratio * np.hypot(te / tf, re / rf)
        use = good & ~tflag & (tf > 0) & np.isfinite(ratio) & np.isfinite(err) & (err > 0)
        if not use.any():
            return None
        fit = self._fit_one(bbox, xs[use], ys[use], ratio[use], err[use], fit_order=0)
        if fit is None:
            return None
        field, err_field, n = fit
        self.log.info("total-flux correction %.4f +- %.4f from %d stars",
                      field.coefficients[0, 0], err_field.coefficients[0, 0], n)
        return float(field.coefficients[0, 0]), float(err_field.coefficients[0, 0])

    @timed_method
    def run(self, exposure: Any, catalog: Any, stars: np.ndarray,
            flux_names: list[str], labels: np.ndarray | None = None) -> Struct:
        """Measure the corrections of ``flux_names`` from the sources selected by ``stars``.

        Parameters
        ----------
        exposure : Exposure
            Its bounding box bounds the fields.
        catalog : Catalog
            Measured sources (uncorrected fluxes).
        stars : numpy.ndarray
            Boolean selection of the PSF stars.
        flux_names : list of str
            Flux prefixes to correct (a catalog reference flux itself is skipped).
        labels : numpy.ndarray, optional
            The detection's footprint labels (0: none): the total-flux correction then
            leaves the other sources' footprints out of each star's wings
            (:meth:`wing_total`).

        Returns
        -------
        Struct
            ``ap_corr_map`` (:class:`ApCorrMap`) and ``n_stars`` (per flux name).

        Raises
        ------
        ApplyApCorrError
            The catalog lacks the reference flux.
        """
        c = self.config
        ref = c.refFluxName
        if ref and f"{ref}_instFlux" not in catalog.schema:
            raise ApplyApCorrError(f"measureApCorr.refFluxName: the catalog has no "
                                   f"{ref}_instFlux field")
        x0, y0 = exposure.xy0
        bbox = (float(x0) - 0.5, float(y0) - 0.5, float(x0 + exposure.width) - 0.5,
                float(y0 + exposure.height) - 0.5)
        stars = np.asarray(stars, bool)
        if ref:
            rf = np.asarray(catalog[f"{ref}_instFlux"], float)
            re = np.asarray(catalog[f"{ref}_instFluxErr"], float)
            rflag = np.asarray(catalog[f"{ref}_flag"], bool)
        else:
            rf, re, rflag = self.reference_flux(exposure, catalog, stars)
        with np.errstate(divide="ignore", invalid="ignore"):
            good = stars & ~rflag & (rf > 0) & (re > 0) & (rf / re > c.minRefSnr)
        xs = np.asarray(catalog["base_SdssCentroid_x"], float)
        ys = np.asarray(catalog["base_SdssCentroid_y"], float)
        good &= np.isfinite(xs) & np.isfinite(ys)
        ap_corr_map = ApCorrMap()
        counts: dict[str, int] = {}
        for name in flux_names:
            if name == ref or f"{name}_instFlux" not in catalog.schema:
                continue
            f = np.asarray(catalog[f"{name}_instFlux"], float)
            fe = np.asarray(catalog[f"{name}_instFluxErr"], float)
            flag = np.asarray(catalog[f"{name}_flag"], bool)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = rf / f
                err = ratio * np.hypot(re / rf, fe / f)
            use = good & ~flag & (f > 0) & np.isfinite(ratio) & np.isfinite(err) & (err > 0)
            fit = self._fit_one(bbox, xs[use], ys[use], ratio[use], err[use]) if use.any() \
                else None
            if fit is None:
                self.log.warning("no aperture correction for %s: %d usable stars", name,
                                 int(use.sum()))
                continue
            ap_corr_map[f"{name}_instFlux"], ap_corr_map[f"{name}_instFluxErr"], n = fit
            counts[name] = n
            self.log.debug("aperture correction of %s: %.4f from %d stars", name,
                           ap_corr_map[f"{name}_instFlux"].mean(), n)
        if c.doTotalCorrection and ref and len(ap_corr_map):
            total = self.total_correction(exposure, catalog, good, rf, re, bbox, xs, ys,
                                          labels)
            if total is None:
                self.log.warning("no total-flux correction: too few usable stars")
            else:
                scale, scale_err = total
                for name in list(ap_corr_map.flux_names()):
                    value = ap_corr_map[f"{name}_instFlux"]
                    error = ap_corr_map[f"{name}_instFluxErr"]
                    ap_corr_map[f"{name}_instFlux"] = ChebyshevBoundedField(
                        bbox, value.coefficients * scale)
                    ap_corr_map[f"{name}_instFluxErr"] = ChebyshevBoundedField(
                        bbox, [[float(np.hypot(error.coefficients[0, 0] * scale,
                                               value.mean() * scale_err))]])
                self.metadata["totalCorrection"] = scale
        self.metadata["nApCorrStars"] = max(counts.values(), default=0)
        if "base_PsfFlux" in counts:
            self.metadata["psfApCorr"] = ap_corr_map["base_PsfFlux_instFlux"].mean()
        return Struct(ap_corr_map=ap_corr_map, n_stars=counts)
