"""The butler: datasets by dataset type and data id, read through a chain of repositories.

>>> butler = Butler("repo/rerun/me")                       # doctest: +SKIP
>>> calexp = butler.get("calexp", visit=12, ccd=3)         # filter from the registry
>>> flat = butler.get("flat", visit=12, ccd=3)             # calibration rendezvous by date
>>> box = butler.get("calexp_sub", bbox=Box2I(0, 0, 512, 512), visit=12, ccd=3)  # a box
>>> butler.put(catalog, "src", visit=12, ccd=3)            # atomic write, output repo only
>>> for ref in butler.subset("raw", visit=12):             # one reference per CCD
...     ref.put(process(ref.get("raw"), ref.get("flat")), "calexp")

The method names (``get``, ``put``, ``datasetExists``, ``queryMetadata``, ``subset``,
``dataRef``, ``getUri``, ``getKeys``) are those of the LSST Gen2 butler, which pipeline authors
know; everything else in :mod:`hpcpipe.butler` is snake_case.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from hpcpipe.butler.dataref import ButlerDataRef
from hpcpipe.butler.datasets import DatasetType
from hpcpipe.butler.errors import (
    AmbiguousDataIdError,
    NoSuchDatasetError,
    RepositoryError,
    UnknownDataIdKeyError,
    UnknownDatasetTypeError,
)
from hpcpipe.butler.lookup import DataIdResolver
from hpcpipe.butler.mapper import Mapper
from hpcpipe.butler.repository import MAPPER_FILE, REPOSITORY_CFG, Repository, resolve_chain
from hpcpipe.butler.storage import Storage, storage_for
from hpcpipe.butler.userdatasets import load_declarations

__all__ = ["Butler", "create_repository"]

DataIdLike = Mapping[str, Any] | ButlerDataRef | None
Location = str | os.PathLike[str] | Storage | Repository


def _repository(location: Location) -> Repository:
    return location if isinstance(location, Repository) else Repository.open(location)


def create_repository(location: str | os.PathLike[str] | Storage, mapper: str = "",
                      parents: Sequence[Location] = (), description: str | None = None
                      ) -> Repository:
    """Create an empty repository laid out by ``mapper`` (a registered camera or mapper
    name) or by a camera ``description`` (the YAML text of a camera file, stored in it).

    Parameters
    ----------
    location : str, os.PathLike or Storage
        A path or URL.
    mapper : str
        ``simcam``, ``generic`` or ``mosaic4``, for example.
    parents : sequence
        Repositories the new one reads through, in search order.
    description : str, optional
        A camera description, stored as the repository's ``_camera.yaml``.
    """
    return Repository.create(location, mapper, [_repository(p) for p in parents],
                             description=description)


class Butler:
    """Reads datasets from a chain of repositories and writes them to its output repository.

    Parameters
    ----------
    root : str, os.PathLike, Storage or Repository
        An existing repository (a path or a ``file://`` URL). Without ``outputs`` it is both
        read and written.
    outputs : str, os.PathLike, Storage or Repository, optional
        The output repository: created with ``root`` as its parent if it does not exist;
        if it exists, ``root`` must be in its chain. All writes go there; reads search it,
        then ``root`` and its parents.

    Raises
    ------
    MissingMapperError
        If ``root`` is not a repository.
    RepositoryError
        If ``outputs`` exists and does not read through ``root``, or the chain loops or mixes
        mappers.
    """

    def __init__(self, root: Location, outputs: Location | None = None) -> None:
        inputs = _repository(root)
        if outputs is None:
            output = inputs
        elif isinstance(outputs, Repository):
            output = outputs
        else:
            storage = storage_for(outputs)
            if storage.exists(MAPPER_FILE) or storage.exists(REPOSITORY_CFG):
                output = Repository.open(storage)
            else:
                output = Repository.create(storage, inputs.mapper_ref, [inputs],
                                           description=inputs.description())
        self.output: Repository = output
        self.chain: list[Repository] = resolve_chain(output)
        if inputs.uri not in [r.uri for r in self.chain]:
            raise RepositoryError(
                f"the output repository {output.uri} exists and does not read through "
                f"{inputs.uri} (its chain: {', '.join(r.uri for r in self.chain)})"
            )
        self.mapper: Mapper = output.mapper()
        load_declarations(self.mapper, self.chain)  # dataset types declared by tasks
        self._resolver = DataIdResolver(self.mapper, self.chain)
        #: While not None, every dataset read (``get``) and written (``put``) is appended as
        #: ``(dataset type, data id over its keys)``: the lineage of a unit (see
        #: :meth:`track`).
        self.reads: list[tuple[str, dict[str, Any]]] | None = None
        self.writes: list[tuple[str, dict[str, Any]]] | None = None

    def track(self) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
        """Start recording the datasets read and written (until :meth:`untrack`).

        Returns
        -------
        reads, writes : list of (dataset type, data id)
            The lists the butler appends to; the data ids hold the dataset type's keys.
        """
        self.reads, self.writes = [], []
        return self.reads, self.writes

    def untrack(self) -> None:
        """Stop recording reads and writes."""
        self.reads = self.writes = None

    def dataset_id(self, datasetType: str, dataId: DataIdLike = None, **keys: Any
                   ) -> tuple[str, dict[str, Any]]:
        """The dataset type's name and the data id over its keys (completed from the
        registry as for :meth:`get`): how lineage names a dataset."""
        resolved, full = self._resolve(datasetType, dataId, keys)
        return resolved.name, {k: full[k] for k in resolved.keys}

    def __repr__(self) -> str:
        return f"Butler({self.output.uri!r}, mapper={self.mapper})"

    # --- data ids -----------------------------------------------------------------------------
    @staticmethod
    def _merge(data_id: DataIdLike, keys: Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(data_id, ButlerDataRef):
            data_id = data_id.dataId
        return {**dict(data_id or {}), **keys}

    def _resolve(self, dataset_type: str, data_id: DataIdLike, keys: Mapping[str, Any],
                 for_write: bool = False) -> tuple[DatasetType, dict[str, Any]]:
        given = self.mapper.validate(self._merge(data_id, keys))
        resolved = self.mapper.dataset_type(dataset_type, given)
        return resolved, self._resolver.complete(resolved, given, for_write=for_write)

    def _locate(self, resolved: DatasetType, data_id: Mapping[str, Any]
                ) -> tuple[Repository, str] | None:
        relpath = resolved.template.format(data_id)
        for repo in self.chain:
            if repo.storage.exists(relpath):
                return repo, relpath
        return None

    # --- the Gen2 interface -------------------------------------------------------------------
    def get(self, datasetType: str, dataId: DataIdLike = None, **keys: Any) -> Any:
        """Read a dataset, or a box of an exposure dataset.

        Parameters
        ----------
        datasetType : str
            The dataset type (``calexp``, ``src``, ``flat``, ``processCcd_config``...), or
            ``<exposure type>_sub`` (Gen2's sub-region datasets: ``bbox`` is then required).
        dataId : mapping or ButlerDataRef, optional
            The data id; ``keys`` add to it. Missing keys are completed from the registry.
        bbox : Box2I, optional (keyword)
            Read only this box (parent pixels) of an exposure's planes (FITS sections, HDF5
            hyperslabs); its WCS, PSF and the rest are the whole exposure's.

        Raises
        ------
        UnknownDatasetTypeError, UnknownDataIdKeyError, DataIdValueError
            For a bad dataset type or data id.
        AmbiguousDataIdError
            If the partial id matches several datasets (they are listed).
        NoSuchDatasetError
            If the dataset is in none of the repositories (they are listed).
        DatasetObjectTypeError
            If ``bbox`` is given for a dataset that is not an exposure.
        ValueError
            If ``bbox`` is missing for a ``_sub`` type, or not inside the exposure.
        """
        bbox = keys.pop("bbox", None) if "bbox" not in self.mapper.keys else None
        if datasetType.endswith("_sub") and not self._known(datasetType):
            if bbox is None:
                raise ValueError(f"{datasetType}: a sub-region read needs bbox=Box2I(...)")
            datasetType = datasetType[:-len("_sub")]
        resolved, full = self._resolve(datasetType, dataId, keys)
        found = self._locate(resolved, full)
        if found is None:
            raise NoSuchDatasetError(
                resolved.name, {k: full[k] for k in resolved.keys} or full,
                self._resolver.searched,
                f"no file {resolved.template.format(full)}")
        repo, relpath = found
        formatter = resolved.formatter
        if bbox is not None:
            obj = repo.storage.read(relpath, lambda path: formatter.read_box(
                path, full, bbox, resolved.name))
        else:
            obj = repo.storage.read(relpath, lambda path: formatter.read_dataset(path, full))
        if self.reads is not None:
            self.reads.append((resolved.name, {k: full[k] for k in resolved.keys}))
        return obj

    def _known(self, datasetType: str) -> bool:
        try:
            self.mapper.dataset_type(datasetType)
        except UnknownDatasetTypeError:
            return False
        return True

    def put(self, obj: Any, datasetType: str, dataId: DataIdLike = None, **keys: Any) -> None:
        """Write a dataset into the output repository, atomically (replacing it if present).

        Raises
        ------
        DatasetObjectTypeError
            If ``obj`` is not what the dataset type stores (nothing is written).
        IncompleteDataIdError, AmbiguousDataIdError
            If the data id cannot be completed to exactly one dataset.
        """
        self._put(obj, datasetType, dataId, keys, True)

    def put_marker(self, obj: Any, datasetType: str, dataId: DataIdLike = None) -> None:
        """Write a completion marker or a log (``<task>_metadata``, ``<task>_log``) as
        :meth:`put` does, with its data synced but not its directory entry: after a power
        cut it is whole or missing, and a missing marker only means its unit is redone.
        One ``fsync`` instead of two."""
        self._put(obj, datasetType, dataId, {}, False)

    def _put(self, obj: Any, datasetType: str, dataId: DataIdLike, keys: Mapping[str, Any],
             sync_directory: bool) -> None:
        resolved = self.mapper.dataset_type(
            datasetType, self.mapper.validate(self._merge(dataId, keys)))
        resolved.formatter.check(obj, resolved.name)
        resolved, full = self._resolve(datasetType, dataId, keys, for_write=True)
        relpath = resolved.template.format(full)
        formatter = resolved.formatter
        if sync_directory:
            self.output.storage.write(relpath, lambda path: formatter.write(obj, path))
        else:
            self.output.storage.write(relpath, lambda path: formatter.write(obj, path),
                                      sync_directory=False)  # type: ignore[call-arg]
        if self.writes is not None:
            self.writes.append((resolved.name, {k: full[k] for k in resolved.keys}))

    def datasetExists(self, datasetType: str, dataId: DataIdLike = None, **keys: Any) -> bool:
        """Whether the dataset is in the chain (False if no registry entry completes the id).

        Raises
        ------
        AmbiguousDataIdError
            If the partial id matches several datasets.
        """
        try:
            resolved, full = self._resolve(datasetType, dataId, keys)
        except NoSuchDatasetError:
            return False
        return self._locate(resolved, full) is not None

    def getUri(self, datasetType: str, dataId: DataIdLike = None, **keys: Any) -> str:
        """The URL of a dataset: where it is in the chain, else where ``put`` writes it."""
        resolved, full = self._resolve(datasetType, dataId, keys)
        found = self._locate(resolved, full)
        if found is not None:
            return found[0].storage.url(found[1])
        return self.output.storage.url(resolved.template.format(full))

    def queryMetadata(self, datasetType: str, keys: str | Sequence[str],
                      dataId: DataIdLike = None, **more: Any) -> list[Any]:
        """The distinct values of data id keys among the datasets agreeing with ``dataId``.

        Parameters
        ----------
        datasetType : str
            Which datasets (raw-keyed types query the registry, calibrations the calibration
            registry, others their existing files).
        keys : str or sequence of str
            One key (the result is a list of values) or several (a list of tuples).
        dataId : mapping, optional
            Constraints; ``more`` adds to them.

        Examples
        --------
        >>> butler.queryMetadata("raw", "visit", filter="r")          # doctest: +SKIP
        [12, 13]
        >>> butler.queryMetadata("raw", ["visit", "ccd"], visit=12)   # doctest: +SKIP
        [(12, 0), (12, 1)]
        """
        single = isinstance(keys, str)
        wanted = [keys] if isinstance(keys, str) else list(keys)
        for key in wanted:
            if key not in self.mapper.keys:
                raise UnknownDataIdKeyError(key, self.mapper.keys, str(self.mapper))
        given = self.mapper.validate(self._merge(dataId, more))
        resolved = self.mapper.dataset_type(datasetType, given)
        rows = self._resolver.query(resolved, wanted, given)
        return [row[0] for row in rows] if single else rows

    def subset(self, datasetType: str, dataId: DataIdLike = None, **keys: Any
               ) -> list[ButlerDataRef]:
        """Data references for every dataset of the type that agrees with the partial id.

        Dataset types whose keys are all registry keys (raw, calexp, src...) give one
        reference per registered exposure, whether or not that dataset was written yet (the
        data id is the registry's whole row: date, expTime... included); calibrations one per
        calibration product (or, given exposure keys, the product each exposure uses); other
        types (coadds, warps, forced_src) one per existing file. An empty list when nothing
        matches.
        """
        given = self.mapper.validate(self._merge(dataId, keys))
        resolved = self.mapper.dataset_type(datasetType, given)
        return [ButlerDataRef(self, datasetType, data_id)
                for data_id in self._resolver.candidates(resolved, given)]

    def dataRef(self, datasetType: str, dataId: DataIdLike = None, **keys: Any
                ) -> ButlerDataRef:
        """The one data reference the partial id designates.

        Raises
        ------
        AmbiguousDataIdError
            If it designates several (they are listed).
        NoSuchDatasetError
            If it designates none.
        """
        given = self.mapper.validate(self._merge(dataId, keys))
        resolved = self.mapper.dataset_type(datasetType, given)
        found = self._resolver.candidates(resolved, given)
        if len(found) > 1:
            raise AmbiguousDataIdError(resolved.name, given, found)
        if not found:
            raise NoSuchDatasetError(resolved.name, given, self._resolver.searched,
                                     "nothing in the registries or repositories matches it")
        return ButlerDataRef(self, datasetType, found[0])

    def getKeys(self, datasetType: str | None = None) -> dict[str, type]:
        """The keys (and their types) of a dataset type, or of every data id."""
        if datasetType is None:
            return {k: spec.type for k, spec in self.mapper.keys.items()}
        resolved = self.mapper.dataset_type(datasetType)
        return {k: self.mapper.keys[k].type for k in resolved.keys}
