"""Reading and writing the datasets of the single-frame command-line tasks.

``isr``, ``characterizeImage`` and ``calibrate`` each read the output of the step before
(``postISRCCD``; ``icExp``, ``icExpBackground`` and ``icSrc``) and write their own, as LSST's
tasks do; ``processCcd`` runs the three in memory. A missing input is reported with the task,
the dataset, the data id and the step that makes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.butler import NoSuchDatasetError
from hpcpipe.errors import HpcpipeError
from hpcpipe.image import Exposure
from hpcpipe.table import Catalog

if TYPE_CHECKING:
    from hpcpipe.butler import Butler, ButlerDataRef

__all__ = ["MissingInputError", "read_input", "write_schemas", "background_exposure",
           "format_data_id"]


class MissingInputError(HpcpipeError, LookupError):
    """A dataset a task reads is not in the repository."""


def format_data_id(data_id: Mapping[str, Any]) -> str:
    """``visit=12, ccd=3``: a data id as it is typed after ``--id``."""
    return ", ".join(f"{k}={v}" for k, v in dict(data_id).items()) or "(no data id)"


def read_input(data_ref: ButlerDataRef, dataset: str, task: str, producer: str) -> Any:
    """Read one input dataset of a task through its data reference.

    Parameters
    ----------
    data_ref : ButlerDataRef
        The data reference being processed.
    dataset : str
        The dataset type read.
    task : str
        The task reading it (for the message).
    producer : str
        What makes the dataset (for the message), for example ``"isr"``.

    Raises
    ------
    MissingInputError
        If the dataset is not in the repository; the message names the dataset, the data id
        and the producer.
    """
    try:
        return data_ref.get(dataset)
    except NoSuchDatasetError as exc:
        raise MissingInputError(
            f"{task} needs the {dataset} of {format_data_id(data_ref.dataId)}, which is not in "
            f"the repository: run {producer} on it first ({exc})") from exc


def write_schemas(butler: Butler, catalogs: Mapping[str, Catalog]) -> None:
    """Write ``<name>_schema`` (an empty catalog with the schema) for each catalog, once."""
    for name, catalog in catalogs.items():
        if not butler.datasetExists(f"{name}_schema"):
            butler.put(Catalog(catalog.schema), f"{name}_schema")


def background_exposure(exposure: Exposure, background: np.ndarray) -> Exposure:
    """The background model subtracted from ``exposure``, as an exposure of its size
    (``icExpBackground``, ``calexpBackground``)."""
    out = Exposure(exposure.bbox, detector=exposure.detector)
    out.image.array[:] = background
    return out
