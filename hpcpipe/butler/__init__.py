"""The data butler: datasets by dataset type and data id, in chained repositories.

Tasks never open files: they ask a :class:`Butler` for a dataset by its type and data id
(``butler.get("calexp", visit=12, ccd=3)``) and hand new datasets back to it
(``butler.put(catalog, "src", visit=12, ccd=3)``). The pieces, one module each:

* :mod:`~hpcpipe.butler.storage`: where repositories live (local paths and ``file://`` URLs;
  other backends plug in by URL scheme), with atomic writes;
* :mod:`~hpcpipe.butler.formatters`: how objects become files (FITS, HDF5, YAML, JSON);
* :mod:`~hpcpipe.butler.datasets`: data id keys, path templates and dataset types;
* :mod:`~hpcpipe.butler.mapper`: the mapper base class (cameras are described by files and
  served by :class:`hpcpipe.obs.mapper.CameraMapper`) and mapper look-up by registered name;
* :mod:`~hpcpipe.butler.registry` and :mod:`~hpcpipe.butler.calibs`: the SQLite registry of
  raw exposures and of calibration products with their validity ranges;
* :mod:`~hpcpipe.butler.ingest`: filling a repository and its registry from raw headers;
* :mod:`~hpcpipe.butler.repository`: repositories, their mapper and parents, chains;
* :mod:`~hpcpipe.butler.lookup`: completing partial data ids, calibration rendezvous;
* :mod:`~hpcpipe.butler.butler` and :mod:`~hpcpipe.butler.dataref`: the Gen2-style API;
* :mod:`~hpcpipe.butler.describe`: documentation of a mapper (``hpcpipe butler describe``);
* :mod:`~hpcpipe.butler.errors`: one exception family, each message naming what was asked.
"""

from __future__ import annotations

from hpcpipe.butler.butler import Butler, create_repository
from hpcpipe.butler.dataref import ButlerDataRef
from hpcpipe.butler.datasets import DataIdKey, DatasetType, DatasetTypePattern, PathTemplate
from hpcpipe.butler.describe import describe
from hpcpipe.butler.errors import (
    AmbiguousDataIdError,
    ButlerError,
    DataIdValueError,
    DatasetObjectTypeError,
    IncompleteDataIdError,
    IngestError,
    MissingMapperError,
    NoSuchDatasetError,
    RepositoryError,
    StorageError,
    UnknownDataIdKeyError,
    UnknownDatasetTypeError,
    UnknownMapperError,
)
from hpcpipe.butler.ingest import IngestReport, ingest
from hpcpipe.butler.mapper import IngestRecord, Mapper, load_mapper, register_mapper
from hpcpipe.butler.repository import Repository
from hpcpipe.butler.storage import PosixStorage, Storage, register_storage, storage_for

__all__ = [
    "AmbiguousDataIdError",
    "Butler",
    "ButlerDataRef",
    "ButlerError",
    "DataIdKey",
    "DataIdValueError",
    "DatasetObjectTypeError",
    "DatasetType",
    "DatasetTypePattern",
    "IncompleteDataIdError",
    "IngestError",
    "IngestRecord",
    "IngestReport",
    "Mapper",
    "MissingMapperError",
    "NoSuchDatasetError",
    "PathTemplate",
    "PosixStorage",
    "Repository",
    "RepositoryError",
    "Storage",
    "StorageError",
    "UnknownDataIdKeyError",
    "UnknownDatasetTypeError",
    "UnknownMapperError",
    "create_repository",
    "describe",
    "ingest",
    "load_mapper",
    "register_mapper",
    "register_storage",
    "storage_for",
]
