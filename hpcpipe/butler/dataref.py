"""Data references: a butler and a data id, usable with any dataset type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hpcpipe.butler.errors import format_data_id

if TYPE_CHECKING:
    from hpcpipe.butler.butler import Butler

__all__ = ["ButlerDataRef"]


class ButlerDataRef:
    """One unit of data (an exposure, a CCD, a patch) seen through a butler.

    A data reference is what :meth:`Butler.subset` returns and what tasks receive: it holds a
    data id and reads or writes any dataset type with it, so ``ref.get("calexp")``,
    ``ref.put(catalog, "src")`` and ``ref.get("flat")`` (a calibration rendezvous) all work on
    the reference of a raw exposure. Keys the dataset type does not use are ignored; missing
    ones are completed as for :meth:`Butler.get`.

    Parameters
    ----------
    butler : Butler
        The butler.
    dataset_type : str
        The dataset type the reference was made for (the default of its methods).
    data_id : mapping
        The data id.
    """

    def __init__(self, butler: Butler, dataset_type: str, data_id: Mapping[str, Any]) -> None:
        self.butler = butler
        self.datasetType = dataset_type
        self.dataId: dict[str, Any] = dict(data_id)
        #: ``(dataset type, data id)`` of every dataset written through this reference, in
        #: order (a run's ``<task>_metadata`` lists them, so a resume can check they open).
        self.written: list[tuple[str, dict[str, Any]]] = []

    def _id(self, keys: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.dataId, **keys}

    def get(self, datasetType: str | None = None, **keys: Any) -> Any:
        """Read a dataset of this data id (``keys`` add to or override the id)."""
        return self.butler.get(datasetType or self.datasetType, self._id(keys))

    def put(self, obj: Any, datasetType: str | None = None, **keys: Any) -> None:
        """Write a dataset of this data id into the butler's output repository."""
        dataset, data_id = datasetType or self.datasetType, self._id(keys)
        self.butler.put(obj, dataset, data_id)
        self.written.append((dataset, data_id))

    def datasetExists(self, datasetType: str | None = None, **keys: Any) -> bool:
        """Whether a dataset of this data id exists in the chain."""
        return self.butler.datasetExists(datasetType or self.datasetType, self._id(keys))

    def getUri(self, datasetType: str | None = None, **keys: Any) -> str:
        """The URL of the dataset (where it is, or where ``put`` would write it)."""
        return self.butler.getUri(datasetType or self.datasetType, self._id(keys))

    def subset(self, datasetType: str, **keys: Any) -> list[ButlerDataRef]:
        """References of another dataset type that agree with this data id."""
        return self.butler.subset(datasetType, self._id(keys))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ButlerDataRef) and other.butler is self.butler
                and other.datasetType == self.datasetType and other.dataId == self.dataId)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ButlerDataRef({self.datasetType}, {format_data_id(self.dataId)})"
