"""Multifit (the production step ``multifit``): galaxy models fitted to every calexp of a patch.

For each object of ``deepCoadd_ref`` (primary, not a deblended parent, PSF S/N in its
reference filter at least ``minSnr``), the point source, exponential and de Vaucouleurs
models and CModel are fitted jointly to the object's pixels in every calexp that covers it
(:mod:`hpcpipe.meas.multifit`: each epoch with its own PSF mixture, local WCS and photometric
calibration; one flux per filter, shared centre and shape), neighbours' pixels (the
deblender's segments) left out. The same exponential fit on the coadds of every filter is the
comparison (``multifit_coadd_exp_*``). Each calexp of the patch is read once.

Outputs, per (tract, patch):

``deepCoadd_multifit``
    One row per fitted object (``id`` = the object's id): the fitted position
    (``coord_ra``, ``coord_dec``), per model ``point``/``exp``/``dev`` the fluxes per filter
    (``multifit_<model>_<filter>_flux`` and ``_fluxErr``, nJy), for ``exp`` and ``dev`` the
    shape (``_e1``, ``_e2``: reduced shear in the east-north frame, ``_r``: half-light radius
    of the circle of equal area, arcsec, and their errors), ``_chi2``, ``_nPix``,
    ``_nIter`` and ``_flags`` (bits of :data:`hpcpipe.meas.multifit.FLAG_BITS`) with
    ``_flag`` set when any is; CModel's ``multifit_cmodel_fracDev``, fluxes and flag; the
    coadd fit's ``multifit_coadd_exp_*``; ``multifit_nEpochs``.
``deepCoadd_multifitEpoch``
    One row per (object, epoch): ``objectId``, ``visit``, ``ccd``, ``filter`` index (into the
    catalog's FILTERS metadata), ``nPix``, ``edge`` and the chi^2 of the point, exponential
    and CModel fits on that epoch.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.config import Config, Field, ListField, RangeField
from hpcpipe.image import Exposure
from hpcpipe.meas.multifit import FLAG_BITS, EpochSet, fit_cmodel, fit_model, initial_theta
from hpcpipe.meas.multifit.epochs import ExposureEpochs, Segmentation, local_jacobian
from hpcpipe.meas.multifit.fit import Epoch, ModelFit
from hpcpipe.pipe.coadd_warp import ccd_box_on_patch, get_per_filter, patch_key, patch_of
from hpcpipe.table import Catalog, Schema
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import ButlerDataRef

__all__ = ["MultifitConfig", "MultifitTask", "multifit_schema", "multifit_epoch_schema"]

_GALAXY_MODELS = ("exp", "dev")


def multifit_schema(filters: list[str]) -> Schema:
    """The columns of ``deepCoadd_multifit`` for the survey's ``filters``."""
    s = Schema()
    s.add_field("id", "L", doc="the object's id in deepCoadd_ref")
    s.add_field("coord_ra", "Angle", doc="fitted centre (exponential model)")
    s.add_field("coord_dec", "Angle", doc="fitted centre (exponential model)")
    s.add_field("multifit_nEpochs", "I", doc="calexps with pixels of the object")
    for model in ("point", "exp", "dev"):
        for f in filters:
            s.add_field(f"multifit_{model}_{f}_flux", "D", doc=f"{model} model flux", units="nJy")
            s.add_field(f"multifit_{model}_{f}_fluxErr", "D", doc="its error", units="nJy")
        if model in _GALAXY_MODELS:
            for name, doc, units in (("e1", "reduced shear, east-north frame", ""),
                                     ("e2", "reduced shear, east-north frame", ""),
                                     ("r", "half-light radius (circle of equal area)",
                                      "arcsec")):
                s.add_field(f"multifit_{model}_{name}", "D", doc=doc, units=units)
                s.add_field(f"multifit_{model}_{name}Err", "D", doc="its error", units=units)
        s.add_field(f"multifit_{model}_chi2", "D", doc="chi^2 over all epochs")
        s.add_field(f"multifit_{model}_nPix", "I", doc="pixels fitted")
        s.add_field(f"multifit_{model}_nIter", "I", doc="Levenberg-Marquardt steps")
        s.add_field(f"multifit_{model}_flags", "I", doc="flag bits: " + ", ".join(
            f"{v}={k}" for k, v in FLAG_BITS.items()))
        s.add_flag(f"multifit_{model}_flag", doc="any flag bit set")
    s.add_field("multifit_cmodel_fracDev", "D", doc="de Vaucouleurs fraction of CModel")
    for f in filters:
        s.add_field(f"multifit_cmodel_{f}_flux", "D", doc="CModel flux", units="nJy")
        s.add_field(f"multifit_cmodel_{f}_fluxErr", "D", doc="its error", units="nJy")
    s.add_field("multifit_cmodel_chi2", "D", doc="chi^2 over all epochs")
    s.add_flag("multifit_cmodel_flag", doc="CModel failed (no data or neither fit converged)")
    for f in filters:
        s.add_field(f"multifit_coadd_exp_{f}_flux", "D", doc="exponential flux fitted on the "
                    "coadds", units="nJy")
        s.add_field(f"multifit_coadd_exp_{f}_fluxErr", "D", doc="its error", units="nJy")
    for name in ("e1", "e2", "r"):
        s.add_field(f"multifit_coadd_exp_{name}", "D", doc=f"{name} fitted on the coadds")
        s.add_field(f"multifit_coadd_exp_{name}Err", "D", doc="its error")
    s.add_field("multifit_coadd_exp_flags", "I", doc="flag bits of the coadd fit")
    s.add_flag("multifit_coadd_exp_flag", doc="any flag bit of the coadd fit set")
    return s


def multifit_epoch_schema() -> Schema:
    """The columns of ``deepCoadd_multifitEpoch``."""
    s = Schema()
    s.add_field("objectId", "L", doc="the object's id")
    s.add_field("visit", "L", doc="the calexp's visit")
    s.add_field("ccd", "I", doc="the calexp's ccd")
    s.add_field("filter", "I", doc="index of the filter in the FILTERS metadata")
    s.add_field("nPix", "I", doc="pixels fitted on this epoch")
    s.add_flag("edge", doc="the cutout was clipped by the calexp's edge")
    for model in ("point", "exp", "cmodel"):
        s.add_field(f"{model}_chi2", "D", doc=f"chi^2 of the {model} fit on this epoch")
    return s


class MultifitConfig(Config):
    """The multi-epoch model fits."""

    minSnr = RangeField("fit the objects whose PSF S/N in their reference filter (deepCoadd_ref) "
                        "is at least this", float, default=20.0, min=0.0)
    maxObjects = RangeField("fit at most this many objects per patch, the highest S/N first "
                            "(0: all)", int, default=0, min=0)
    primaryOnly = Field("fit only detect_isPrimary objects", bool, default=True)
    doCModel = Field("fit the de Vaucouleurs model and CModel besides the exponential", bool,
                     default=True)
    doPointSource = Field("fit the point-source model", bool, default=True)
    doCoadd = Field("fit the exponential model on the coadds too (the comparison)", bool,
                    default=True)
    stampSigmas = RangeField("cutout half-size in widths of the object's coadd moments", float,
                             default=4.0, min=1.0)
    minHalfSize = RangeField("smallest cutout half-size, pixels", int, default=6, min=2)
    maxHalfSize = RangeField("largest cutout half-size, pixels", int, default=30, min=2)
    psfGaussians = RangeField("Gaussians of the PSF mixtures", int, default=3, min=1, max=4)
    psfCellSize = RangeField("one PSF mixture per cell of this many pixels of an exposure", int,
                             default=512, min=1)
    maxIter = RangeField("most Levenberg-Marquardt steps of a fit", int, default=50, min=1)
    excludeMaskPlanes = ListField("mask planes of the pixels left out", str,
                                  default=["BAD", "SAT", "CR", "NO_DATA", "SUSPECT"])


class MultifitTask(CmdLineTask):
    """Fit models of a patch's objects to every calexp that covers them."""

    ConfigClass = MultifitConfig
    _DefaultName = "multifit"

    @staticmethod
    def _exclude(exposure: Exposure, names: list[str]) -> int:
        present = [n for n in names if n in exposure.mask.planes]
        return exposure.mask.get_plane_bitmask(present) if present else 0

    def select(self, refs: Catalog) -> Catalog:
        """The objects to fit (primary, not parents, bright enough; highest S/N first)."""
        keep = np.ones(len(refs), bool)
        if self.config.primaryOnly and "detect_isPrimary" in refs.schema:
            keep &= refs["detect_isPrimary"]
        if "deblend_nChild" in refs.schema:
            keep &= refs["deblend_nChild"] == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.nan_to_num(refs["base_PsfFlux_instFlux"] / refs["base_PsfFlux_instFluxErr"],
                                nan=-np.inf)
        keep &= snr >= self.config.minSnr
        index = np.nonzero(keep)[0]
        index = index[np.argsort(-snr[index], kind="stable")]
        if self.config.maxObjects:
            index = index[:self.config.maxObjects]
        return refs.where(np.isin(np.arange(len(refs)), index))

    @staticmethod
    def _initial(moments: np.ndarray, coadd_jac: np.ndarray, psf_sigma: float
                 ) -> tuple[np.ndarray, float]:
        """Starting exponential parameters from an object's coadd moments ``(xx, yy, xy)``
        (coadd pixels; the PSF's ``psf_sigma`` pixels deconvolved), and the moments' width
        (arcsec) that sizes the cutouts."""
        jinv = np.linalg.inv(coadd_jac)
        scale = float(np.sqrt(abs(np.linalg.det(jinv))))
        xx, yy, xy = moments
        if not np.all(np.isfinite(moments)) or xx <= 0 or yy <= 0:
            return initial_theta("exp", 0.3), 2.0 * psf_sigma * scale
        width = float(np.sqrt(0.5 * (xx + yy))) * scale
        m = jinv @ (np.array([[xx, xy], [xy, yy]]) - psf_sigma ** 2 * np.eye(2)) @ jinv.T
        ev = np.linalg.eigvalsh(m)
        if ev[0] <= (0.2 * scale) ** 2:
            return initial_theta("exp", 0.3), width
        a, b = np.sqrt(ev[1]), np.sqrt(ev[0])
        g = (a - b) / (a + b)
        two_phi = np.arctan2(2.0 * m[0, 1], m[0, 0] - m[1, 1])
        # Gaussian sigma to the half-light radius of an exponential of similar moments
        r = 1.1774 * np.sqrt(a * b)
        return initial_theta("exp", r, (g * np.cos(two_phi), g * np.sin(two_phi))), width

    @timed_method
    def run(self, refs: Catalog, calexps: list[tuple[dict[str, Any], Exposure]],
            coadds: dict[str, Exposure], segments: Segmentation | None,
            segment_ids: dict[int, int], filters: list[str]) -> Struct:
        """Fit the objects of ``refs`` on ``calexps`` (``(dataId, exposure)``) and coadds.

        Returns
        -------
        Struct
            ``catalog`` (deepCoadd_multifit), ``epochs`` (deepCoadd_multifitEpoch),
            ``timing`` (seconds spent making epochs and fitting).
        """
        refs = self.select(refs)
        n = len(refs)
        ra = np.degrees(refs["coord_ra"])
        dec = np.degrees(refs["coord_dec"])
        sources = []
        for data_id, exposure in calexps:
            label = f"calexp visit={data_id.get('visit')} ccd={data_id.get('ccd')}"
            maker = ExposureEpochs(exposure, self._exclude(exposure,
                                                           self.config.excludeMaskPlanes),
                                   self.config.psfGaussians, self.config.psfCellSize, label)
            sources.append((data_id, maker, *maker.positions(ra, dec)))
        coadd_makers = []
        for band, coadd in sorted(coadds.items()):
            maker = ExposureEpochs(coadd, self._exclude(coadd, self.config.excludeMaskPlanes),
                                   self.config.psfGaussians, self.config.psfCellSize,
                                   f"deepCoadd_calexp filter={band}")
            coadd_makers.append((maker, *maker.positions(ra, dec)))
        seg_pos = seg_jac = None
        if segments is not None and n:
            seg_pos, seg_jac = local_jacobian(segments.wcs, ra, dec)
        # the starting shapes: the reference filter's coadd moments (tract pixels)
        moments = np.stack([refs[f"base_SdssShape_{c}"] for c in ("xx", "yy", "xy")], axis=1) \
            if n else np.zeros((0, 3))
        ref_coadd = next(iter(coadds.values()), None)
        if ref_coadd is not None and n:
            pos_c, jac_c = local_jacobian(ref_coadd.wcs, ra, dec)
            assert ref_coadd.psf is not None  # coadds have a PSF
            psf_sigma = float(ref_coadd.psf.sigma_at(*pos_c[0]))
        else:  # no coadd: round starting shapes of 0.3 arcsec
            jac_c = np.tile(np.eye(2) * 5.0, (n, 1, 1))
            moments[:] = np.nan
            psf_sigma = 2.0
        schema = multifit_schema(filters)
        cols: dict[str, np.ndarray] = {}
        for field in schema:
            cols[field.name] = np.zeros(n, dtype=field.dtype)
            if field.dtype.kind == "f":
                cols[field.name][:] = np.nan
        cols["id"] = refs["id"]
        epoch_rows: list[tuple] = []
        t_epochs = t_fit = 0.0
        for k in range(n):
            t0 = time.perf_counter()
            theta0, width = self._initial(moments[k], jac_c[k], psf_sigma)
            seg_id = segment_ids.get(int(refs["id"][k]), 0)
            epochs, ids = [], []
            seg_at = None
            if segments is not None and seg_id:
                assert seg_pos is not None and seg_jac is not None  # set with segments
                seg_at = (segments, seg_id, seg_pos[k], seg_jac[k])
            for data_id, maker, pos, jac in sources:
                e = self._cutout(maker, pos[k], jac[k], width, seg_at)
                if e is not None:
                    epochs.append(e)
                    ids.append(data_id)
            coadd_epochs = [e for e in (self._cutout(maker, pos[k], jac[k], width, seg_at)
                                        for maker, pos, jac in coadd_makers) if e is not None]
            t1 = time.perf_counter()
            es = EpochSet(epochs)
            for band in es.bands:
                if band not in filters:
                    raise ValueError(f"calexp filter {band!r} is not one of the survey's "
                                     f"filters {filters}")
            cols["multifit_nEpochs"][k] = len(es)
            exp = fit_model(es, "exp", theta0, self.config.maxIter)
            self._store(cols, "exp", k, exp, filters)
            shift = exp.theta[:2] if np.all(np.isfinite(exp.theta[:2])) else np.zeros(2)
            cosd = np.cos(np.radians(dec[k]))
            cols["coord_ra"][k] = np.radians(ra[k] + shift[0] / 3600.0 / cosd)
            cols["coord_dec"][k] = np.radians(dec[k] + shift[1] / 3600.0)
            point = None
            if self.config.doPointSource:
                point = fit_model(es, "point", exp.theta[:2].copy(), self.config.maxIter)
                self._store(cols, "point", k, point, filters)
            cm = None
            if self.config.doCModel:
                cm = fit_cmodel(es, theta0, self.config.maxIter, exp_fit=exp)
                self._store(cols, "dev", k, cm.dev, filters)
                cols["multifit_cmodel_fracDev"][k] = cm.frac_dev
                for band, value in cm.flux.items():
                    cols[f"multifit_cmodel_{band}_flux"][k] = value
                    cols[f"multifit_cmodel_{band}_fluxErr"][k] = cm.flux_err[band]
                cols["multifit_cmodel_chi2"][k] = float(np.sum(cm.chi2))
                cols["multifit_cmodel_flag"][k] = bool(cm.flags & ~FLAG_BITS["edge"])
            if self.config.doCoadd:
                co = fit_model(EpochSet(coadd_epochs), "exp", theta0, self.config.maxIter)
                for band, value in co.flux.items():
                    cols[f"multifit_coadd_exp_{band}_flux"][k] = value
                    cols[f"multifit_coadd_exp_{band}_fluxErr"][k] = co.flux_err[band]
                for name, value, err in (("e1", co.g[0], co.g_err[0]),
                                         ("e2", co.g[1], co.g_err[1]), ("r", co.r, co.r_err)):
                    cols[f"multifit_coadd_exp_{name}"][k] = value
                    cols[f"multifit_coadd_exp_{name}Err"][k] = err
                cols["multifit_coadd_exp_flags"][k] = co.flags
                cols["multifit_coadd_exp_flag"][k] = co.flags != 0
            for i, (data_id, e) in enumerate(zip(ids, epochs)):
                epoch_rows.append((
                    int(refs["id"][k]), int(data_id.get("visit", -1)),
                    int(data_id.get("ccd", -1)), filters.index(e.band), int(es.npix[i]),
                    bool(e.edge), float(point.chi2[i]) if point is not None else np.nan,
                    float(exp.chi2[i]), float(cm.chi2[i]) if cm is not None else np.nan))
            t_epochs += t1 - t0
            t_fit += time.perf_counter() - t1
        meta = {"FILTERS": ",".join(filters), "NEPOCHS": len(calexps)}
        catalog = Catalog.from_columns(schema, cols, metadata=meta)
        es_schema = multifit_epoch_schema()
        rows: list[Any] = list(zip(*epoch_rows)) if epoch_rows else [[]] * len(es_schema.names)
        epochs_cat = Catalog.from_columns(es_schema, {
            name: np.asarray(values, dtype=field.dtype)
            for name, values, field in zip(es_schema.names, rows, es_schema)}, metadata=meta)
        self.metadata["nFitted"] = n
        self.metadata["nCalexps"] = len(calexps)
        self.metadata["epochSeconds"] = t_epochs
        self.metadata["fitSeconds"] = t_fit
        self.log.info("fitted %d objects on %d calexps in %.1f s (%.1f s making the epochs)",
                      n, len(calexps), t_epochs + t_fit, t_epochs)
        return Struct(catalog=catalog, epochs=epochs_cat,
                      timing={"epochs": t_epochs, "fit": t_fit})

    def _cutout(self, maker: ExposureEpochs, pos: np.ndarray, jac: np.ndarray, width: float,
                seg_at: tuple | None) -> Epoch | None:
        """One object's epoch on one exposure (None: off the exposure or no usable pixel).

        ``seg_at`` is ``(segmentation, the object's segment id, its coadd position, the
        coadd's local Jacobian)`` when neighbours are left out.
        """
        half = int(np.clip(np.ceil(self.config.stampSigmas * width
                                   * np.sqrt(abs(np.linalg.det(jac)))),
                           self.config.minHalfSize, self.config.maxHalfSize))
        neighbours = None
        if seg_at is not None:
            segmentation, seg_id, seg_pos, seg_jac = seg_at

            def neighbours(x0: int, y0: int, shape: tuple[int, ...]) -> np.ndarray:
                return segmentation.neighbours(seg_id, pos, jac, seg_pos, seg_jac, x0, y0,
                                               shape)
        e = maker.epoch(pos, jac, half, neighbours)
        return e if e is not None and np.any(e.weight > 0) else None

    @staticmethod
    def _store(cols: dict[str, np.ndarray], model: str, k: int, fit: ModelFit,
               filters: list[str]) -> None:
        for band, value in fit.flux.items():
            cols[f"multifit_{model}_{band}_flux"][k] = value
            cols[f"multifit_{model}_{band}_fluxErr"][k] = fit.flux_err[band]
        if model in _GALAXY_MODELS:
            for name, value, err in (("e1", fit.g[0], fit.g_err[0]),
                                     ("e2", fit.g[1], fit.g_err[1]), ("r", fit.r, fit.r_err)):
                cols[f"multifit_{model}_{name}"][k] = value
                cols[f"multifit_{model}_{name}Err"][k] = err
        cols[f"multifit_{model}_chi2"][k] = fit.chi2_total
        cols[f"multifit_{model}_nPix"][k] = int(np.sum(fit.npix))
        cols[f"multifit_{model}_nIter"][k] = fit.niter
        cols[f"multifit_{model}_flags"][k] = fit.flags
        cols[f"multifit_{model}_flag"][k] = fit.flags != 0

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read the patch's deepCoadd_ref, its segments, coadds and the calexps that cover it
        (each once); write deepCoadd_multifit and deepCoadd_multifitEpoch."""
        butler = data_ref.butler
        d = data_ref.dataId
        key = patch_key(d)
        if not butler.datasetExists("deepCoadd_ref", **key):
            self.log.info("no reference catalog for %s: nothing to fit", key)
            return Struct(catalog=None, epochs=None)
        refs = butler.get("deepCoadd_ref", **key)
        filters = [str(f) for f in butler.queryMetadata("raw", "filter")]
        patch_info = patch_of(butler, d)
        tract_wcs = butler.get("skyMap")[int(d["tract"])].wcs
        coadds = get_per_filter(butler, d, "deepCoadd_calexp")
        segments = None
        segment_ids: dict[int, int] = {}
        if butler.datasetExists("deepCoadd_segments", **key) and butler.datasetExists(
                "deepCoadd_deblend", **key):
            seg = butler.get("deepCoadd_segments", **key)
            segments = Segmentation(seg.image.array.astype(np.int64), tuple(seg.xy0), tract_wcs)
            deblend = butler.get("deepCoadd_deblend", **key)
            segment_ids = dict(zip(deblend["id"].tolist(), deblend["segment"].tolist()))
        calexps = []
        for f in filters:
            for visit in butler.queryMetadata("raw", "visit", {"filter": f}):
                if not butler.datasetExists("deepCoadd_directWarp", visit=visit, filter=f,
                                            **key):
                    continue
                for ccd in butler.queryMetadata("raw", "ccd", {"visit": visit}):
                    if not butler.datasetExists("calexp", visit=visit, ccd=ccd):
                        continue
                    calexp = butler.get("calexp", visit=visit, ccd=ccd)
                    if ccd_box_on_patch(calexp, tract_wcs, patch_info.outer_bbox) is not None:
                        calexps.append(({"visit": int(visit), "ccd": int(ccd)}, calexp))
        result = self.run(refs, calexps, coadds, segments, segment_ids, filters)
        butler.put(result.catalog, "deepCoadd_multifit", **key)
        butler.put(result.epochs, "deepCoadd_multifitEpoch", **key)
        return result
