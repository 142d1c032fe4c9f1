"""The generic mapper, built from a camera description, and the raw formatter of a camera.

Every camera, SimCam included, is a :class:`CameraMapper` of a :class:`~hpcpipe.obs.camera.
Camera`: the data id keys of :mod:`hpcpipe.obs.keys` (the ``filter`` key takes the camera's
filters), the dataset types of :mod:`hpcpipe.obs.datasets` (the ``raw`` type read by the
camera's :class:`RawFormatter`), ingest through :func:`hpcpipe.obs.raw.scan_raw` (a file is
registered only once its HDUs, shapes and sections have been checked against the camera, one
raw per detector of a multi-extension file) and the camera's per-task config defaults
(:meth:`CameraMapper.config_overrides`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from hpcpipe.butler.datasets import DataIdKey, DatasetType, DatasetTypePattern
from hpcpipe.butler.errors import DatasetObjectTypeError
from hpcpipe.butler.formatters import ExposureFormatter, Formatter
from hpcpipe.butler.headers import HeaderKeyword, read_fits_header
from hpcpipe.butler.mapper import IngestRecord, Mapper
from hpcpipe.image import Exposure
from hpcpipe.obs import datasets
from hpcpipe.obs.camera import CAMERA_DIR, TRANSLATION_TARGETS, Camera
from hpcpipe.obs.keys import make_keys
from hpcpipe.obs.raw import read_raw, scan_raw, translate

__all__ = ["CameraMapper", "RawFormatter"]

#: Which data id key each header translation gives (for the documentation).
_TARGET_KEYS = {"visit": "visit", "ccd": "ccd", "filter": "filter", "dateObs": "dateObs, date",
                "expTime": "expTime", "calibId": "calibDate", "obsType": "(dataset type)",
                "timeScale": "(time scale of dateObs)", "amplifier": "(amplifier of an HDU)"}


class RawFormatter(Formatter):
    """Reads the raws of one camera, whatever their layout, into Exposures (ADU, untrimmed).

    For the ``hpcpipe-exposure`` layout the files are hpcpipe exposures, read and written as
    such; raws of other layouts come from the camera and are only ingested, never written.
    """

    python_type = "hpcpipe.image.Exposure"

    def __init__(self, camera: Camera) -> None:
        self.camera = camera
        self.name = f"raw-{camera.layout}"
        self.description = f"raw files of camera {camera.name} ({camera.layout})"
        self._exposure = ExposureFormatter("fits")

    def check(self, obj: Any, dataset_type: str) -> None:
        if self.camera.layout != "hpcpipe-exposure":
            raise DatasetObjectTypeError(
                f"{dataset_type} of camera {self.camera.name} ({self.camera.layout}) are "
                "ingested from the camera's files (hpcpipe ingest), not written")
        self._check_type(obj, (Exposure,), dataset_type)

    def write(self, obj: Any, path: Path) -> None:
        self.check(obj, "raw")
        self._exposure.write(obj, path)

    def read(self, path: Path) -> Any:
        return read_raw(self.camera, path)

    def read_dataset(self, path: Path, data_id: Mapping[str, Any]) -> Any:
        return read_raw(self.camera, path, data_id.get("ccd"))


class CameraMapper(Mapper):
    """The mapper of a camera described by a file (see :mod:`hpcpipe.obs.camera`).

    Data ids of single-CCD datasets are ``visit``, ``ccd`` and ``filter``; the registry also
    keeps each exposure's ``date``, ``dateObs`` and ``expTime``. Coadds are identified by
    ``tract``, ``patch`` and ``filter``. Calibration products (bias, dark, flat) are found for
    an exposure by date, ccd (and filter, for flats) through their validity ranges.

    Parameters
    ----------
    camera : Camera
        The camera description.
    """

    exposure_keys: ClassVar[tuple[str, ...]] = ("visit", "ccd", "filter", "date", "dateObs",
                                                 "expTime")
    exposure_unique: ClassVar[tuple[str, ...]] = ("visit", "ccd")
    date_key: ClassVar[str] = "date"
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
        "multifit": ("tract", "patch"),
        "imageDifference": ("visit", "ccd"),
    }
    default_units: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("tract", "patch", "filter"), ("tract", "patch"), ("visit", "ccd"), ("visit",), ())

    def __init__(self, camera: Camera) -> None:
        self.camera = camera
        self.name = camera.name  # type: ignore[misc]
        self.doc = camera.description or (  # type: ignore[misc]
            f"Camera {camera.name}, described by {camera.source} ({camera.layout}).")
        self.header_keywords = tuple(  # type: ignore[misc]
            HeaderKeyword(t.keywords[0] if t.keywords else f"({t.describe()})",
                          _TARGET_KEYS.get(target, target), TRANSLATION_TARGETS[target][1]
                          + (f"; {t.describe()}" if t.keywords else ""),
                          t.keywords[1:], required=not t.has_default)
            for target, t in camera.translations.items())
        self.raw_formatter = RawFormatter(camera)
        super().__init__()

    def define_keys(self) -> Sequence[DataIdKey]:
        sources = {target: t.describe() for target, t in self.camera.translations.items()}
        return make_keys(tuple(f.name for f in self.camera.filters), sources)

    def define_dataset_types(self) -> Sequence[DatasetType]:
        return [dataclasses.replace(t, formatter=self.raw_formatter) if t.name == "raw" else t
                for t in datasets.dataset_types()]

    def define_patterns(self) -> Sequence[DatasetTypePattern]:
        return datasets.patterns()

    def user_template(self, name: str, keys: Sequence[str], extension: str) -> str:
        """The camera's layout for a dataset type a task declares
        (:func:`hpcpipe.obs.datasets.user_template`)."""
        return datasets.user_template(self, name, keys, extension)

    @property
    def full_name(self) -> str:
        """The camera file (shipped ones relative to the hpcpipe checkout)."""
        source = Path(self.camera.source)
        if source.parent == CAMERA_DIR:
            return f"hpcpipe.obs.mapper.CameraMapper of hpcpipe/obs/cameras/{source.name}"
        return f"hpcpipe.obs.mapper.CameraMapper of {source.name}"

    def read_header(self, path: Path) -> dict[str, Any]:
        return read_fits_header(path)

    def translate_header(self, header: Mapping[str, Any], path: Path) -> IngestRecord:
        record, _ = translate(self.camera, header, Path(path), "", self.calib_validity_days)
        return record

    def ingest_records(self, path: Path) -> list[IngestRecord]:
        """One record per detector of the file, once the file was checked against the
        camera (HDUs, shapes, sections, WCS); see :func:`hpcpipe.obs.raw.scan_raw`."""
        return [u.record for u in scan_raw(self.camera, path, self.calib_validity_days)]

    def config_overrides(self, task_name: str) -> dict[str, object]:
        """The camera file's config defaults of a task (``{"isr.doOverscan": False}``)."""
        return dict(self.camera.config.get(task_name, {}))
