"""Forced photometry (LSST's ``ForcedPhotCoaddTask`` and ``ForcedPhotCcdTask``).

The objects of ``deepCoadd_ref`` are measured at their reference positions, without
re-centroiding, on every filter's coadd (``deepCoadd_forced_src``) and on every calexp
(``forced_src``: the primary objects of every patch of the tract that fall on the CCD). Each
row keeps its object's id (``objectId``) and gets calibrated fluxes in nJy from the image's
PhotoCalib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.config import Config, ConfigurableField, Field
from hpcpipe.image import Exposure
from hpcpipe.pipe.coadd_warp import ccd_box_on_patch, patch_of
from hpcpipe.pipe.measurement import MeasurementTask, measurement_schema
from hpcpipe.pipe.sources import source_id_base
from hpcpipe.table import Catalog, Schema
from hpcpipe.task import Struct, Task, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import ButlerDataRef

__all__ = ["ForcedPhotConfig", "ForcedPhotTask", "ForcedPhotCoaddTask", "ForcedPhotCcdTask",
           "forced_schema"]


def forced_schema(radii: list[float]) -> Schema:
    """Forced source catalogs: the measurement fields, objectId and calibrated PSF flux."""
    s = measurement_schema(radii)
    s.add_field("objectId", "L", doc="id of the object in deepCoadd_ref")
    s.add_field("base_PsfFlux_flux", "D", doc="calibrated PSF flux", units="nJy")
    s.add_field("base_PsfFlux_fluxErr", "D", doc="its error", units="nJy")
    return s


class ForcedPhotConfig(Config):
    """Forced measurement."""

    measurement = ConfigurableField("measure at fixed positions", MeasurementTask)
    primaryOnly = Field("measure only detect_isPrimary objects", bool, default=True)

    def set_defaults(self) -> None:
        """Forced mode keeps the reference centroids."""
        self.measurement.doRecentroid = False


class ForcedPhotTask(Task):
    """Measure reference objects at their positions on an exposure (coadd or calexp)."""

    ConfigClass = ForcedPhotConfig
    _DefaultName = "forcedPhot"
    # subtasks, set by make_subtask in __init__ (the config's ConfigurableFields; a
    # retargeted field gives a subclass or a task with the same run signature)
    measurement: MeasurementTask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.make_subtask("measurement")
        self.schema = forced_schema(list(self.config.measurement.apertureRadii))

    @timed_method
    def run(self, exposure: Exposure, refs: Catalog, id_base: int = 0) -> Struct:
        """Measure ``refs`` (``coord_ra``, ``coord_dec`` in radians) on ``exposure``.

        Objects whose position falls off the exposure are left out.

        Returns
        -------
        Struct
            ``catalog``.
        """
        if self.config.primaryOnly and "detect_isPrimary" in refs.schema:
            refs = refs.where(refs["detect_isPrimary"])
        ra, dec = np.degrees(refs["coord_ra"]), np.degrees(refs["coord_dec"])
        assert exposure.wcs is not None  # calexps and coadds have a WCS
        x, y = exposure.wcs.all_world2pix(ra, dec, 0) if len(refs) else (np.zeros(0),) * 2
        x0, y0 = exposure.xy0
        h, w = exposure.image.array.shape
        on = (x >= x0 - 0.5) & (x < x0 + w - 0.5) & (y >= y0 - 0.5) & (y < y0 + h - 0.5)
        refs = refs.where(on)
        n = len(refs)
        extra = {"id": id_base + 1 + np.arange(n), "objectId": refs["id"],
                 "base_PsfFlux_flux": np.zeros(n), "base_PsfFlux_fluxErr": np.zeros(n)}
        cat = self.measurement.run(exposure, x[on], y[on], extra=extra, schema=self.schema,
                                   recentroid=False).catalog
        cat["coord_ra"] = refs["coord_ra"]
        cat["coord_dec"] = refs["coord_dec"]
        if exposure.photo_calib is not None and n:
            flux, err = exposure.photo_calib.instflux_to_nanojansky(
                cat["base_PsfFlux_instFlux"], cat["base_PsfFlux_instFluxErr"])
            cat["base_PsfFlux_flux"] = flux
            cat["base_PsfFlux_fluxErr"] = err
        self.metadata["nForced"] = n
        return Struct(catalog=cat)


class ForcedPhotCoaddTask(ForcedPhotTask, CmdLineTask):
    """Forced photometry of a patch's reference objects on one filter's coadd."""

    _DefaultName = "forcedPhotCoadd"

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read deepCoadd_calexp and deepCoadd_ref; write deepCoadd_forced_src."""
        butler = data_ref.butler
        d = data_ref.dataId
        if not (data_ref.datasetExists("deepCoadd_calexp") and butler.datasetExists(
                "deepCoadd_ref", tract=d["tract"], patch=d["patch"])):
            self.log.info("no coadd or no reference catalog for %s: nothing to measure", d)
            return Struct(catalog=None)
        refs = butler.get("deepCoadd_ref", tract=d["tract"], patch=d["patch"])
        px, py = patch_of(butler, d).index
        result = self.run(data_ref.get("deepCoadd_calexp"), refs,
                          id_base=source_id_base(int(d["tract"]), px, py))
        data_ref.put(result.catalog, "deepCoadd_forced_src")
        return result


class ForcedPhotCcdTask(ForcedPhotTask, CmdLineTask):
    """Forced photometry of a tract's reference objects on one calexp."""

    _DefaultName = "forcedPhotCcd"

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read the calexp and the deepCoadd_ref of every patch it overlaps; write forced_src."""
        butler = data_ref.butler
        d = data_ref.dataId
        calexp = butler.get("calexp", visit=d["visit"], ccd=d["ccd"])
        tract = butler.get("skyMap")[int(d["tract"])]
        parts = []
        for patch_info in tract:
            if ccd_box_on_patch(calexp, tract.wcs, patch_info.outer_bbox) is None:
                continue
            patch = "{},{}".format(*patch_info.index)
            if butler.datasetExists("deepCoadd_ref", tract=d["tract"], patch=patch):
                parts.append(butler.get("deepCoadd_ref", tract=d["tract"], patch=patch))
        refs = Catalog.concatenate(parts) if len(parts) > 1 else (
            parts[0] if parts else None)
        if refs is None:
            result = Struct(catalog=Catalog(self.schema))
        else:
            result = self.run(calexp, refs,
                              id_base=source_id_base(int(d["visit"]), int(d["ccd"])))
        butler.put(result.catalog, "forced_src", visit=d["visit"], ccd=d["ccd"],
                   tract=d["tract"], filter=calexp.filter.band)
        return result
