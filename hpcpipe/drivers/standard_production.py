"""The standard data release production (LSST's Gen2 one), as ``hpcpipe drp`` runs it.

Every camera described by a camera file (SimCam, ``generic``, ``mosaic4``, yours) has the same
dataset types, so ``hpcpipe drp`` runs this production on any of them that has no production
registered under its own name. It is registered as ``standard`` (setup.py's
``hpcpipe.productions`` entry points; :data:`hpcpipe.drivers.production.BUILTIN_PRODUCTIONS`).

The steps, their units and what each unit waits for (LSST's Gen2 production order)::

    processCcd              (visit, ccd)            raw + calibrations + ref_cat
    makeSkyMap              ()                      the raw WCSs
    makeCoaddTempExp        (visit, tract, patch)   the visit's calexps, the sky map
    assembleCoadd           (tract, patch, filter)  the patch's warps in the filter
    detectCoaddSources      (tract, patch, filter)  the coadd
    mergeCoaddDetections    (tract, patch)          every filter's detections
    deblendCoaddSources     (tract, patch)          the merged detections
    measureCoaddSources     (tract, patch, filter)  the deblended sources
    mergeCoaddMeasurements  (tract, patch)          every filter's measurements
    forcedPhotCoadd         (tract, patch, filter)  the reference catalog of the patch
    forcedPhotCcd           (visit, ccd, tract)     the calexp and the tract's references
    multifit                (tract, patch)          the reference catalog and the calexps
                                                    reaching the patch

Which patches a visit's warps cover is decided from the raw headers' WCS (the telescope's
pointing, good to a few arcseconds) with a margin, before the calexps exist, so that the
whole graph is known at the start: a warp whose CCDs turn out not to reach the patch writes
nothing, and the coadd of the patch uses the warps that exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from astropy.wcs import WCS

from hpcpipe.drivers.production import Production, ProductionContext, ProductionStep
from hpcpipe.geom import Box2I
from hpcpipe.obs.mapper import CameraMapper
from hpcpipe.obs.raw import raw_wcs_box
from hpcpipe.pipe.assemble_coadd import AssembleCoaddTask
from hpcpipe.pipe.coadd_detection import (
    DeblendCoaddSourcesTask,
    DetectCoaddSourcesTask,
    MergeDetectionsTask,
)
from hpcpipe.pipe.coadd_measurement import MeasureCoaddSourcesTask, MergeMeasurementsTask
from hpcpipe.pipe.coadd_warp import MakeCoaddTempExpTask
from hpcpipe.pipe.forced import ForcedPhotCcdTask, ForcedPhotCoaddTask
from hpcpipe.pipe.make_skymap import MakeSkyMapTask
from hpcpipe.pipe.multifit import MultifitTask
from hpcpipe.pipe.process_ccd import ProcessCcdTask

if TYPE_CHECKING:
    from hpcpipe.butler import Butler

__all__ = ["production", "make_production", "warp_units", "ccd_patches"]

#: Pixels added around a CCD when deciding which patches it may reach.
OVERLAP_MARGIN = 50


def _raw_wcs_box(butler: Butler, data_id: dict[str, Any]) -> tuple[WCS, Box2I]:
    """The header WCS and the trimmed box of a raw (grown by :data:`OVERLAP_MARGIN`), from
    its headers alone, through the repository's camera description (any raw layout)."""
    path = Path(butler.getUri("raw", visit=data_id["visit"], ccd=data_id["ccd"])
                .removeprefix("file://"))
    mapper = butler.mapper
    if not isinstance(mapper, CameraMapper):
        raise ValueError(f"the repository's mapper {type(mapper).__name__} has no camera "
                         "description: the standard production needs one (a camera file)")
    wcs, box = raw_wcs_box(mapper.camera, path, int(data_id["ccd"]))
    if wcs is None:
        raise ValueError(f"raw of visit={data_id['visit']}, ccd={data_id['ccd']} ({path}) has "
                         "no WCS in its header: the production cannot tell which patches it "
                         "reaches")
    return wcs, Box2I(-OVERLAP_MARGIN, -OVERLAP_MARGIN, box.width + 2 * OVERLAP_MARGIN,
                      box.height + 2 * OVERLAP_MARGIN)


def ccd_patches(ctx: ProductionContext) -> dict[tuple[int, int], list[tuple[int, str]]]:
    """``{(visit, ccd): [(tract, "x,y"), ...]}``: the patches each selected CCD may reach."""
    cache = ctx.__dict__.setdefault("_standard_ccd_patches", {})
    if cache:
        return cache
    sky_map = ctx.sky_map
    for data_id in ctx.inputs:
        wcs, box = _raw_wcs_box(ctx.butler, data_id)
        found = []
        for tract, patches in sky_map.find_overlapping(wcs, box):
            found += [(tract.tract_id, "{},{}".format(*p.index)) for p in patches]
        cache[(int(data_id["visit"]), int(data_id["ccd"]))] = found
    return cache


def warp_units(ctx: ProductionContext) -> list[dict[str, Any]]:
    """One unit per (visit, tract, patch) that a selected CCD of the visit may reach."""
    filters = {int(d["visit"]): d.get("filter") for d in ctx.inputs}
    units = []
    for (visit, _ccd), patches in sorted(ccd_patches(ctx).items()):
        for tract, patch in patches:
            unit = {"visit": visit, "tract": tract, "patch": patch}
            if filters.get(visit) is not None:
                unit["filter"] = filters[visit]
            if ctx.selected(unit):
                units.append(unit)
    return units


def _patch_filter_units(ctx: ProductionContext) -> list[dict[str, Any]]:
    return [{"tract": u["tract"], "patch": u["patch"], "filter": u["filter"]}
            for u in warp_units(ctx)]


def _patch_units(ctx: ProductionContext) -> list[dict[str, Any]]:
    return [{"tract": u["tract"], "patch": u["patch"]} for u in warp_units(ctx)]


def _forced_ccd_units(ctx: ProductionContext) -> list[dict[str, Any]]:
    filters = {int(d["visit"]): d.get("filter") for d in ctx.inputs}
    units = []
    for (visit, ccd), patches in sorted(ccd_patches(ctx).items()):
        for tract in sorted({t for t, _ in patches}):
            unit = {"visit": visit, "ccd": ccd, "tract": tract, "filter": filters.get(visit)}
            if ctx.selected(unit):
                units.append(unit)
    return units


def _warp_needs(unit: Any, ctx: ProductionContext) -> list[tuple[str, Any]]:
    needs: list[tuple[str, Any]] = [("makeSkyMap", u) for u in ctx.matching("makeSkyMap", {})]
    needs += [("processCcd", u) for u in ctx.matching("processCcd", {"visit": unit["visit"]})]
    return needs


def _forced_ccd_needs(unit: Any, ctx: ProductionContext) -> list[tuple[str, Any]]:
    patches = {p for t, p in ccd_patches(ctx).get((int(unit["visit"]), int(unit["ccd"])), [])
               if t == int(unit["tract"])}
    needs: list[tuple[str, Any]] = [
        ("processCcd", u) for u in ctx.matching("processCcd",
                                                {"visit": unit["visit"], "ccd": unit["ccd"]})]
    needs += [("mergeCoaddMeasurements", u)
              for u in ctx.matching("mergeCoaddMeasurements", {"tract": unit["tract"]})
              if u["patch"] in patches]
    return needs


def _multifit_needs(unit: Any, ctx: ProductionContext) -> list[tuple[str, Any]]:
    """The patch's reference catalog and every CCD that may reach the patch."""
    ccds = {ccd for ccd, patches in ccd_patches(ctx).items()
            if (int(unit["tract"]), unit["patch"]) in patches}
    needs: list[tuple[str, Any]] = [
        ("mergeCoaddMeasurements", u) for u in ctx.matching(
            "mergeCoaddMeasurements", {"tract": unit["tract"], "patch": unit["patch"]})]
    needs += [("processCcd", u) for u in ctx.matching("processCcd", {})
              if (int(u["visit"]), int(u["ccd"])) in ccds]
    return needs


def make_production() -> Production:
    """The standard production (a new object each call)."""
    patch_filter = ("tract", "patch", "filter")
    patch = ("tract", "patch")
    return Production("standard", [
        ProductionStep("processCcd", ProcessCcdTask, ("visit", "ccd")),
        ProductionStep("makeSkyMap", MakeSkyMapTask, ()),
        ProductionStep("makeCoaddTempExp", MakeCoaddTempExpTask, ("visit", "tract", "patch"),
                       inputs=("processCcd", "makeSkyMap"), list_units=warp_units,
                       upstream=_warp_needs, listing_needs=("makeSkyMap",)),
        ProductionStep("assembleCoadd", AssembleCoaddTask, patch_filter,
                       inputs=("makeCoaddTempExp",), list_units=_patch_filter_units,
                       listing_needs=("makeSkyMap",)),
        ProductionStep("detectCoaddSources", DetectCoaddSourcesTask, patch_filter,
                       inputs=("assembleCoadd",), list_units=_patch_filter_units,
                       listing_needs=("makeSkyMap",)),
        ProductionStep("mergeCoaddDetections", MergeDetectionsTask, patch,
                       inputs=("detectCoaddSources",), list_units=_patch_units,
                       listing_needs=("makeSkyMap",)),
        ProductionStep("deblendCoaddSources", DeblendCoaddSourcesTask, patch,
                       inputs=("mergeCoaddDetections",), list_units=_patch_units,
                       listing_needs=("makeSkyMap",)),
        ProductionStep("measureCoaddSources", MeasureCoaddSourcesTask, patch_filter,
                       inputs=("deblendCoaddSources",), list_units=_patch_filter_units,
                       listing_needs=("makeSkyMap",)),
        ProductionStep("mergeCoaddMeasurements", MergeMeasurementsTask, patch,
                       inputs=("measureCoaddSources",), list_units=_patch_units,
                       listing_needs=("makeSkyMap",)),
        ProductionStep("forcedPhotCoadd", ForcedPhotCoaddTask, patch_filter,
                       inputs=("mergeCoaddMeasurements",), list_units=_patch_filter_units,
                       listing_needs=("makeSkyMap",)),
        ProductionStep("forcedPhotCcd", ForcedPhotCcdTask, ("visit", "ccd", "tract"),
                       inputs=("processCcd", "mergeCoaddMeasurements"),
                       list_units=_forced_ccd_units, upstream=_forced_ccd_needs,
                       listing_needs=("makeSkyMap",)),
        ProductionStep("multifit", MultifitTask, patch,
                       inputs=("processCcd", "mergeCoaddMeasurements"), list_units=_patch_units,
                       upstream=_multifit_needs, listing_needs=("makeSkyMap",)),
    ], doc="raw exposures to calibrated exposures, coadds, multi-band catalogs and forced "
           "photometry")


#: The production ``hpcpipe drp`` runs on a repository of a camera described by a file.
production = make_production()
