"""The errors of the data butler: one family, each naming what was asked and what exists.

Every class derives from :class:`ButlerError` (itself an :class:`~hpcpipe.errors.HpcpipeError`)
and from the closest built-in exception, so ``except KeyError`` or ``except LookupError`` keep
working. Messages are complete sentences meant for the person running the pipeline: they name
the dataset type, the data id and the repositories involved, and list the alternatives (close
matches among the dataset types, the known keys, the candidates of an ambiguous id).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hpcpipe.errors import HpcpipeError

__all__ = [
    "ButlerError",
    "UnknownDatasetTypeError",
    "UnknownDataIdKeyError",
    "DataIdValueError",
    "DatasetObjectTypeError",
    "NoSuchDatasetError",
    "AmbiguousDataIdError",
    "IncompleteDataIdError",
    "MissingMapperError",
    "UnknownMapperError",
    "RepositoryError",
    "StorageError",
    "IngestError",
    "format_data_id",
]

#: How many candidates an ambiguity error lists before it says "and N more".
MAX_LISTED = 20


def format_data_id(data_id: Mapping[str, Any]) -> str:
    """Format a data id as ``{visit=12, ccd=3}`` (keys in the given order)."""
    return "{" + ", ".join(f"{k}={v!r}" for k, v in data_id.items()) + "}"


def _listing(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f" and {len(items) - limit} more"
    return shown


class ButlerError(HpcpipeError):
    """Base class of the data butler's errors."""

    def __str__(self) -> str:  # KeyError subclasses would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class UnknownDatasetTypeError(ButlerError, KeyError):
    """A dataset type that the repository's mapper does not define.

    Parameters
    ----------
    name : str
        The dataset type asked for.
    known : iterable of str
        The names the mapper defines (the closest ones are suggested).
    mapper : str
        The mapper's name, for the message.
    patterns : iterable of str, optional
        Name patterns the mapper also accepts (``<task>_config`` ...).
    """

    def __init__(self, name: str, known: Iterable[str], mapper: str,
                 patterns: Iterable[str] = ()) -> None:
        self.name = name
        self.known = sorted(known)
        self.close_matches = difflib.get_close_matches(name, self.known, n=5, cutoff=0.6)
        message = f"unknown dataset type {name!r} for mapper {mapper}"
        if self.close_matches:
            message += f"; did you mean {', '.join(self.close_matches)}?"
        message += f" Known dataset types: {', '.join(self.known)}"
        patterns = list(patterns)
        if patterns:
            message += f"; and the patterns {', '.join(patterns)}"
        super().__init__(message)


class UnknownDataIdKeyError(ButlerError, KeyError):
    """A data id key that the mapper does not know."""

    def __init__(self, key: str, known: Iterable[str], mapper: str) -> None:
        self.key = key
        self.known = list(known)
        close = difflib.get_close_matches(key, self.known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(
            f"unknown data id key {key!r} for mapper {mapper}{hint} "
            f"Known keys: {', '.join(self.known)}"
        )


class DataIdValueError(ButlerError, ValueError, TypeError):
    """A data id value of the wrong type, or one that its key does not accept."""


class DatasetObjectTypeError(ButlerError, TypeError):
    """An object handed to ``put`` that the dataset type cannot store."""


class NoSuchDatasetError(ButlerError, LookupError):
    """A dataset that is in none of the repositories searched.

    Parameters
    ----------
    dataset_type : str
        The dataset type.
    data_id : mapping
        The data id asked for (completed as far as possible).
    searched : sequence of str
        The repositories searched, in order.
    reason : str, optional
        Why it was not found, when more can be said than "no file" (for example no
        calibration valid on the date, or no registry entry matching a partial id).
    """

    def __init__(self, dataset_type: str, data_id: Mapping[str, Any], searched: Sequence[str],
                 reason: str = "") -> None:
        self.dataset_type = dataset_type
        self.data_id = dict(data_id)
        self.searched = list(searched)
        message = f"no {dataset_type} dataset for data id {format_data_id(self.data_id)}"
        if reason:
            message += f": {reason}"
        message += f" (repositories searched: {', '.join(self.searched) or 'none'})"
        super().__init__(message)


class AmbiguousDataIdError(ButlerError, LookupError):
    """A partial data id that matches several datasets.

    Attributes
    ----------
    candidates : list of dict
        The complete data ids that match.
    """

    def __init__(self, dataset_type: str, data_id: Mapping[str, Any],
                 candidates: Sequence[Mapping[str, Any]]) -> None:
        self.dataset_type = dataset_type
        self.data_id = dict(data_id)
        self.candidates = [dict(c) for c in candidates]
        listed = _listing([format_data_id(c) for c in self.candidates])
        super().__init__(
            f"data id {format_data_id(self.data_id)} is ambiguous for {dataset_type}: it "
            f"matches {len(self.candidates)} datasets; add keys to choose one of: {listed}"
        )


class IncompleteDataIdError(ButlerError, LookupError):
    """A data id that lacks keys the dataset type needs, and nothing can complete it."""


class MissingMapperError(ButlerError, FileNotFoundError):
    """A directory that is not a repository: no ``_mapper`` file, or no directory at all."""


class UnknownMapperError(ButlerError, LookupError):
    """A mapper name that is neither a registered short name nor an importable class."""


class RepositoryError(ButlerError, ValueError):
    """A repository configuration that cannot be used (parents, cycles, mixed mappers)."""


class StorageError(ButlerError, OSError):
    """A storage location that no backend handles, or a storage operation that failed."""


class IngestError(ButlerError, ValueError):
    """A raw or calibration file that cannot be ingested (the message names the file)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
