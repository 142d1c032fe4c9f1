"""The mapper of the simulated camera (``simcam``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from hpcpipe.butler.datasets import DataIdKey, DatasetType, DatasetTypePattern
from hpcpipe.butler.headers import HeaderKeyword
from hpcpipe.butler.mapper import IngestRecord, Mapper
from hpcpipe.obs.simcam import datasets, headers
from hpcpipe.obs.simcam.keys import KEYS

__all__ = ["SimCamMapper"]


class SimCamMapper(Mapper):
    """Mapper of SimCam, the simulated camera of :mod:`hpcpipe.sim` and of the test suite.

    Data ids of single-CCD datasets are ``visit``, ``ccd`` and ``filter``; the registry also
    keeps each exposure's ``date``, ``dateObs`` and ``expTime``. Coadds are identified by
    ``tract``, ``patch`` and ``filter``. Calibration products (bias, dark, flat) are found for
    an exposure by date, ccd (and filter, for flats) through their validity ranges.
    """

    name: ClassVar[str] = "simcam"
    doc: ClassVar[str] = (
        "SimCam is the simulated camera of hpcpipe.sim: any number of CCDs (numbered from 0), "
        "filters u, g, r, i, z, y, dates in TAI. Raw data and calibration products are "
        "ingested from their headers into the repository's registry."
    )
    exposure_keys: ClassVar[tuple[str, ...]] = ("visit", "ccd", "filter", "date", "dateObs",
                                                 "expTime")
    exposure_unique: ClassVar[tuple[str, ...]] = ("visit", "ccd")
    date_key: ClassVar[str] = "date"
    header_keywords: ClassVar[Sequence[HeaderKeyword]] = headers.HEADER_KEYWORDS
    #: Days a calibration product is valid on either side of its calibDate when its
    #: CALIB_ID gives no validStart or validEnd.
    calib_validity_days: ClassVar[float] = 30.0
    task_units: ClassVar[dict[str, tuple[str, ...]]] = {
        "isr": ("visit", "ccd"),
        "characterizeImage": ("visit", "ccd"),
        "calibrate": ("visit", "ccd"),
        "processCcd": ("visit", "ccd"),
        "makeSkyMap": (),
        "makeWarp": ("tract", "patch", "visit"),
        "makeCoaddTempExp": ("tract", "patch", "visit"),
        "assembleCoadd": ("tract", "patch", "filter"),
        "detectCoaddSources": ("tract", "patch", "filter"),
        "mergeCoaddDetections": ("tract", "patch"),
        "deblendCoaddSources": ("tract", "patch"),
        "measureCoaddSources": ("tract", "patch", "filter"),
        "mergeCoaddMeasurements": ("tract", "patch"),
        "forcedPhotCoadd": ("tract", "patch", "filter"),
        "forcedPhotCcd": ("visit", "ccd", "tract"),
        "imageDifference": ("visit", "ccd"),
    }
    default_units: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("tract", "patch", "filter"), ("tract", "patch"), ("visit", "ccd"), ("visit",), ())

    def define_keys(self) -> Sequence[DataIdKey]:
        return KEYS

    def define_dataset_types(self) -> Sequence[DatasetType]:
        return datasets.dataset_types()

    def define_patterns(self) -> Sequence[DatasetTypePattern]:
        return datasets.patterns()

    def translate_header(self, header: Mapping[str, Any], path: Path) -> IngestRecord:
        return headers.translate_header(header, path, self.calib_validity_days)
