"""The dataset types of every camera: raw data, calibrations, per-CCD products, coadds.

One list shared by all cameras (:class:`hpcpipe.obs.mapper.CameraMapper` replaces only the
raw formatter, by the camera's).

Paths follow the Gen2 conventions (``calexp/v0000012/r/...``), with the visit on 7 digits and
the detector on 3 so that listings sort naturally.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hpcpipe.butler.datasets import DatasetType, DatasetTypePattern, PathTemplate
from hpcpipe.butler.formatters import (
    CatalogFormatter,
    ConfigDataFormatter,
    ExposureFormatter,
    JsonLinesFormatter,
    MetadataFormatter,
    ReleaseTableFormatter,
    SchemaFormatter,
    SkyMapFormatter,
)
from hpcpipe.butler.mapper import Mapper

__all__ = ["dataset_types", "patterns", "user_template", "TASK_NAME"]

FITS_EXPOSURE = ExposureFormatter("fits")
HDF5_EXPOSURE = ExposureFormatter("hdf5")
FITS_CATALOG = CatalogFormatter("fits")
HDF5_CATALOG = CatalogFormatter("hdf5")
SCHEMA = SchemaFormatter()
CONFIG = ConfigDataFormatter()
METADATA = MetadataFormatter("yaml")
SKYMAP = SkyMapFormatter()
LOG = JsonLinesFormatter()

#: What a task name may look like in ``<task>_config`` and ``<task>_metadata``.
TASK_NAME = r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*?"

CCD = "v{visit:07d}/{filter}"
PATCH = "{filter}/{tract:d}/{patch}"
CCD_NAME = "v{visit:07d}_c{ccd:03d}"
PATCH_NAME = "{filter}_{tract:d}_{patch}"


def _t(name: str, formatter: Any, template: str, doc: str, **kwargs: Any) -> DatasetType:
    return DatasetType(name, formatter, PathTemplate(template), doc, **kwargs)


def dataset_types() -> list[DatasetType]:
    """Every dataset type with a fixed name, in documentation order."""
    types = [
        # --- raw data and calibrations ---
        _t("raw", FITS_EXPOSURE, f"raw/{CCD}/raw_{CCD_NAME}.fits",
           "A raw CCD image as it came from the camera, with its header. Ingested by "
           "`hpcpipe ingest`, which registers its visit, ccd, filter, date, dateObs and "
           "expTime from the header keywords below."),
        _t("bias", FITS_EXPOSURE, "CALIB/bias/{calibDate}/bias_{calibDate}_c{ccd:03d}.fits",
           "Master bias of one CCD.", calib_keys=("ccd",)),
        _t("dark", FITS_EXPOSURE, "CALIB/dark/{calibDate}/dark_{calibDate}_c{ccd:03d}.fits",
           "Master dark of one CCD, per second of exposure.",
           calib_keys=("ccd",)),
        _t("flat", FITS_EXPOSURE,
           "CALIB/flat/{filter}/{calibDate}/flat_{filter}_{calibDate}_c{ccd:03d}.fits",
           "Master flat of one CCD in one filter, normalized to 1.",
           calib_keys=("ccd", "filter")),
        # --- reference catalogs ---
        _t("ref_cat", FITS_CATALOG, "ref_cats/ref_cat.fits",
           "The astrometric and photometric reference catalog of the field: coord_ra, "
           "coord_dec (radians) with errors and <band>_flux, <band>_fluxErr (nJy), as LSST's "
           "ref_cats."),
        _t("truth_cat", FITS_CATALOG, "truth/truth_cat.fits",
           "The simulation's truth: every object of the simulated sky with its true position "
           "(degrees), magnitudes, type and shape (written by `hpcpipe simulate`)."),
        _t("transient_truth", FITS_CATALOG, "truth/transient_truth.fits",
           "The injected transients, periodic variables and moving objects (written by "
           "`hpcpipe simulate --transients/--variables/--movers`): one row per object with "
           "its kind, position, magnitudes and light-curve or motion parameters (see "
           "hpcpipe.sim.transients)."),
        _t("transient_lightcurves", FITS_CATALOG, "truth/transient_lightcurves.fits",
           "The true light curves of the injected objects: one row per object per visit with "
           "the visit, band, MJD, position (degrees), magnitude and flux (nJy)."),
        # --- single-CCD processing ---
        _t("postISRCCD", FITS_EXPOSURE, f"postISRCCD/{CCD}/postISRCCD_{CCD_NAME}.fits",
           "A CCD after instrument signature removal (bias, dark and flat corrected, "
           "variance and mask planes set)."),
        _t("icExp", FITS_EXPOSURE, f"icExp/{CCD}/icExp_{CCD_NAME}.fits",
           "A characterized CCD (characterizeImage's output): background-subtracted, cosmic "
           "rays repaired, with its PSF; calibrate's input."),
        _t("icExpBackground", HDF5_EXPOSURE, f"icExp/{CCD}/icExpBackground_{CCD_NAME}.h5",
           "The background model subtracted from the icExp, as an image of the CCD's size."),
        _t("calexp", FITS_EXPOSURE, f"calexp/{CCD}/calexp_{CCD_NAME}.fits",
           "Calibrated exposure: background-subtracted, with its PSF, WCS and photometric "
           "calibration."),
        _t("calexpBackground", HDF5_EXPOSURE, f"calexp/{CCD}/bkgd_{CCD_NAME}.h5",
           "The background model subtracted from the calexp, as an image of the CCD's size."),
        _t("icSrc", FITS_CATALOG, f"src/{CCD}/icSrc_{CCD_NAME}.fits",
           "Bright sources used to characterize the image (PSF, aperture correction)."),
        _t("src", FITS_CATALOG, f"src/{CCD}/src_{CCD_NAME}.fits",
           "Sources detected and measured on the calexp."),
        _t("srcMatch", HDF5_CATALOG, f"src/{CCD}/srcMatch_{CCD_NAME}.h5",
           "Matches between src and the reference catalog used for the astrometric and "
           "photometric calibration."),
        # --- the sky map and coadds ---
        _t("skyMap", SKYMAP, "deepCoadd/skyMap.yaml",
           "The sky map defining tracts and patches (written by makeSkyMap).",
           aliases=("deepCoadd_skyMap",)),
        _t("deepCoadd_directWarp", FITS_EXPOSURE,
           f"deepCoadd/{PATCH}/warp_{PATCH_NAME}_v{{visit:07d}}.fits",
           "One visit resampled onto a patch's pixel grid, ready to be coadded.",
           aliases=("coaddTempExp",)),
        _t("deepCoadd", FITS_EXPOSURE, f"deepCoadd/{PATCH}.fits",
           "The coadd of the warps of a patch in one filter."),
        _t("deepCoadd_calexp", FITS_EXPOSURE,
           f"deepCoadd-results/{PATCH}/calexp_{PATCH_NAME}.fits",
           "The coadd after background subtraction and detection (DETECTED mask plane set)."),
        _t("deepCoadd_det", FITS_CATALOG, f"deepCoadd-results/{PATCH}/det_{PATCH_NAME}.fits",
           "Footprints and peaks detected on the coadd of one filter."),
        _t("deepCoadd_mergeDet", FITS_CATALOG,
           "deepCoadd-results/merged/{tract:d}/{patch}/mergeDet_{tract:d}_{patch}.fits",
           "Peaks of a patch merged across filters: one row per peak with the filters it "
           "was detected in (merge_peak_<filter>)."),
        _t("deepCoadd_deblend", FITS_CATALOG,
           "deepCoadd-results/merged/{tract:d}/{patch}/deblend_{tract:d}_{patch}.fits",
           "Deblended sources of a patch (from the multi-band detection image): parents "
           "with deblend_nChild and their children, with the segment id of each child."),
        _t("deepCoadd_segments", HDF5_EXPOSURE,
           "deepCoadd-results/merged/{tract:d}/{patch}/segments_{tract:d}_{patch}.h5",
           "Segmentation of a patch: the segment id of the deblended child each footprint "
           "pixel belongs to (0 outside footprints), as the image of an exposure (exact "
           "integers in float32)."),
        _t("deepCoadd_meas", FITS_CATALOG, f"deepCoadd-results/{PATCH}/meas_{PATCH_NAME}.fits",
           "Sources measured on the coadd of one filter, from the merged detections."),
        _t("deepCoadd_ref", FITS_CATALOG,
           "deepCoadd-results/merged/{tract:d}/{patch}/ref_{tract:d}_{patch}.fits",
           "Reference catalog of a patch: one row per object, with its reference band, "
           "the positions forced photometry uses."),
        _t("deepCoadd_forced_src", HDF5_CATALOG,
           f"deepCoadd-results/{PATCH}/forced_src_{PATCH_NAME}.h5",
           "Forced photometry on the coadd of one filter, at the deepCoadd_ref positions."),
        _t("deepCoadd_multifit", HDF5_CATALOG,
           "deepCoadd-results/merged/{tract:d}/{patch}/multifit_{tract:d}_{patch}.h5",
           "Models fitted jointly to every calexp of a patch's objects (multifit): point "
           "source, exponential, de Vaucouleurs and CModel fluxes per filter, shapes, chi^2, "
           "flags, and the exponential fitted on the coadds for comparison."),
        _t("deepCoadd_multifitEpoch", HDF5_CATALOG,
           "deepCoadd-results/merged/{tract:d}/{patch}/multifitEpoch_{tract:d}_{patch}.h5",
           "The multifit chi^2 of each object on each calexp (one row per object and epoch)."),
        _t("forced_src", HDF5_CATALOG,
           "forced/v{visit:07d}/{filter}/{tract:d}/forced_src_" + CCD_NAME + ".h5",
           "Forced photometry on one calexp at the deepCoadd_ref positions of a tract."),
        # --- image differencing (hpcpipe run imageDifference) ---
        _t("deepDiff_differenceExp", FITS_EXPOSURE, f"deepDiff/{CCD}/diffexp_{CCD_NAME}.fits",
           "The difference image of a calexp: calexp minus the PSF-matched deepCoadd template, "
           "in the calexp's counts and PhotoCalib, with variance var_calexp + "
           "var_template convolved by K^2, the masks of both (the template's grown by the "
           "matching kernel) and DETECTED/DETECTED_NEGATIVE planes."),
        _t("deepDiff_diaSrc", FITS_CATALOG, f"deepDiff/{CCD}/diaSrc_{CCD_NAME}.fits",
           "Sources detected on the difference image, positive and negative (is_negative), "
           "with coord_ra/coord_dec, centroids, shapes, PSF fluxes on the difference "
           "(base_PsfFlux_flux, nJy), forced on the calexp (ip_diffim_forced_PsfFlux_flux) "
           "and on the matched template, dipole fits (ip_diffim_DipoleFit_*), pixel flags, "
           "visit, ccd and midPointTai."),
        _t("deepDiff_kernelSrc", FITS_CATALOG, f"deepDiff/{CCD}/kernelSrc_{CCD_NAME}.fits",
           "The stamps the PSF-matching kernel was fitted on: position, reduced chi-square "
           "of their own and of the spatial fit, and whether they were used."),
        _t("deepDiff_warpedExp", FITS_EXPOSURE, f"deepDiff/{CCD}/warpedexp_{CCD_NAME}.fits",
           "The template (deepCoadd patches) warped onto a calexp's pixel grid and "
           "photometric scale, before PSF matching (imageDifference.doWriteWarpedExp).",
           aliases=("deepDiff_templateExp",)),
        _t("deepDiff_matchedExp", FITS_EXPOSURE, f"deepDiff/{CCD}/matchexp_{CCD_NAME}.fits",
           "The PSF-matched template subtracted from a calexp "
           "(imageDifference.doWriteMatchedExp)."),
        # --- the data release files (hpcpipe release) ---
        _t("release_sources", ReleaseTableFormatter("sources"),
           "release/sources/visit-{visit:d}.h5",
           "Release file of one visit's single-frame sources (src of every CCD, with visit "
           "and ccd columns); see docs/release_layout.md."),
        _t("release_objects", ReleaseTableFormatter("objects"),
           "release/objects/tract-{tract:d}.h5",
           "Release file of one tract's objects (deepCoadd_ref of every patch, with a patch "
           "column)."),
        _t("release_multifit", ReleaseTableFormatter("multifit"),
           "release/multifit/tract-{tract:d}.h5",
           "Release file of one tract's multifit models (deepCoadd_multifit of every patch, "
           "with a patch column)."),
        _t("release_forced", ReleaseTableFormatter("forced"),
           "release/forced/tract-{tract:d}-{filter}.h5",
           "Release file of one tract's forced photometry on the coadds of one filter."),
    ]
    catalogs = [t for t in types if isinstance(t.formatter, CatalogFormatter)]
    for catalog in catalogs:
        types.append(_t(f"{catalog.name}_schema", SCHEMA, f"schema/{catalog.name}.fits",
                        f"The schema of {catalog.name} (an empty catalog): the fields, their "
                        "types, units and docs, written once per output repository."))
    return types


def _config(mapper: Mapper, name: str, groups: dict[str, str], data_id: Mapping[str, Any]
            ) -> DatasetType:
    task = groups["task"]
    return DatasetType(name, CONFIG, PathTemplate(f"config/{task}.yaml"),
                       f"The configuration task {task} ran with.", pattern="<task>_config")


def _metadata(mapper: Mapper, name: str, groups: dict[str, str], data_id: Mapping[str, Any]
              ) -> DatasetType:
    task = groups["task"]
    unit = mapper.task_unit(task, data_id)
    template = f"metadata/{task}" + "".join(f"/{k}={{{k}}}" for k in unit) + ".yaml"
    return DatasetType(name, METADATA, PathTemplate(template),
                       f"Metadata of a run of task {task} (timings, counts, statistics) "
                       f"per {', '.join(unit) or 'repository'}.", pattern="<task>_metadata")


def _log(mapper: Mapper, name: str, groups: dict[str, str], data_id: Mapping[str, Any]
         ) -> DatasetType:
    task = groups["task"]
    unit = mapper.task_unit(task, data_id)
    template = f"logs/{task}" + "".join(f"/{k}={{{k}}}" for k in unit) + ".jsonl"
    return DatasetType(name, LOG, PathTemplate(template),
                       f"The log records of a run of task {task} per "
                       f"{', '.join(unit) or 'repository'}, as JSON lines.",
                       pattern="<task>_log")


def user_template(mapper: Mapper, name: str, keys: Sequence[str], extension: str) -> str:
    """The path template of a dataset type a task declares, in the camera's layout.

    With ``visit`` and ``ccd``: as ``calexp`` (``name/v0000012/r/name_v0000012_c003.ext``,
    ``filter`` added); with ``tract`` and ``patch``: as the coadd products
    (``name/r/0/1,2/name_r_0_1,2.ext``, or ``name/merged/0/1,2/...`` without ``filter``);
    with ``visit``: ``name/v0000012/name_v0000012.ext``; otherwise the mapper's generic
    layout. Other keys follow in the file name as ``_<key><value>``.
    """
    keys = list(keys)

    def rest(used: Sequence[str]) -> str:
        return "".join(f"_{k}{{{k}{':d' if mapper.keys[k].type is int else ''}}}"
                       for k in keys if k not in used)

    used: tuple[str, ...]
    if "visit" in keys and "ccd" in keys:
        used = ("visit", "ccd", "filter")
        return f"{name}/{CCD}/{name}_{CCD_NAME}{rest(used)}.{extension}"
    if "tract" in keys and "patch" in keys:
        if "filter" in keys:
            used = ("tract", "patch", "filter")
            return f"{name}/{PATCH}/{name}_{PATCH_NAME}{rest(used)}.{extension}"
        used = ("tract", "patch")
        return (f"{name}/merged/{{tract:d}}/{{patch}}/{name}_{{tract:d}}_{{patch}}"
                f"{rest(used)}.{extension}")
    if "visit" in keys:
        return f"{name}/v{{visit:07d}}/{name}_v{{visit:07d}}{rest(('visit',))}.{extension}"
    return Mapper.user_template(mapper, name, keys, extension)


def patterns() -> list[DatasetTypePattern]:
    """The dataset type families named after tasks."""
    return [
        DatasetTypePattern(
            "<task>_config", rf"(?P<task>{TASK_NAME})_config",
            "The configuration a task ran with, written once per output repository "
            "(processCcd_config, isr_config...): an hpcpipe.config Config, stored as data (YAML "
            "of its flattened fields, read with a safe loader: nothing in it ever runs) and "
            "read back as a StoredConfig; a dict or str is stored as YAML. Any task name works.",
            CONFIG, "config/<task>.yaml", _config),
        DatasetTypePattern(
            "<task>_metadata", rf"(?P<task>{TASK_NAME})_metadata",
            "Metadata of one run of a task (processCcd_metadata...). Its keys are the task's "
            "data unit: declared for the pipeline's tasks (see the table below) and by "
            "Mapper.register_task(name, keys) for others; otherwise the first of "
            "(tract, patch, filter), (tract, patch), (visit, ccd), (visit) whose keys are "
            "all in the data id given.",
            METADATA, "metadata/<task>/<key1>=<value1>/<key2>=<value2>.yaml", _metadata),
        DatasetTypePattern(
            "<task>_log", rf"(?P<task>{TASK_NAME})_log",
            "The log records of one run of a task (processCcd_log...), one JSON object a "
            "line (time, level, logger, message, file, line), with the keys of its "
            "<task>_metadata; written for every unit that logged something.",
            LOG, "logs/<task>/<key1>=<value1>/<key2>=<value2>.jsonl", _log),
    ]
