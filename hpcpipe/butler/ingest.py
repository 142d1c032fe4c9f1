"""Ingest: put raw and calibration files into a repository and record them in its registry.

For each file, the mapper checks it and turns its headers into registry entries, one per
detector it holds (:meth:`~hpcpipe.butler.mapper.Mapper.ingest_records`: a file is accepted
only if it can be read); the file is then copied, linked (symbolic link to the original) or
moved to the path the mapper's template gives (a multi-extension file is placed once and
hard-linked at the paths of its other detectors), and the entries are added, in one
registry transaction. Every file is handled on its own:

* a file whose header is missing a keyword, holds an invalid value or cannot be read is
  reported by name with the reason, and skipped;
* a file already ingested with the same header values is reported as such and left alone,
  so ingesting the same files twice is harmless;
* a file that claims the data id of another, already ingested file with different values is
  a conflict: reported and skipped, the first one is kept.

Registry entries only appear once their file is in place, so a reader that sees an entry can
read its file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcpipe.butler.calibs import CalibEntry
from hpcpipe.butler.errors import ButlerError, IngestError, format_data_id
from hpcpipe.butler.repository import Repository
from hpcpipe.butler.storage import INGEST_MODES, IngestMode, Storage
from hpcpipe.errors import FileFormatError

__all__ = ["ingest", "IngestReport"]

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What an ingest did, file by file.

    Attributes
    ----------
    ingested : list of (str, str, dict)
        Files added: source path, dataset type, data id.
    already : list of (str, str)
        Files that were already ingested with the same values: source path, what.
    failed : list of (str, str)
        Files skipped: source path, reason.
    """

    ingested: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    already: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no file was skipped for a problem."""
        return not self.failed

    def summary(self) -> str:
        """One line per skipped file, then the counts."""
        lines = [f"skipped {path}: {reason}" for path, reason in self.failed]
        lines += [f"already ingested {path}: {what}" for path, what in self.already]
        lines.append(f"{len(self.ingested)} files ingested, {len(self.already)} already "
                     f"ingested, {len(self.failed)} skipped")
        return "\n".join(lines)


def _same(a: dict[str, Any], b: dict[str, Any], keys: Iterable[str]) -> bool:
    return all(a[k] == b[k] for k in keys)


def _place(storage: Storage, source: Path, relpath: str, mode: IngestMode, placed: str,
           missing_only: bool = False) -> str:
    """Put ``source`` at ``relpath`` (once per file: a file holding several detectors is placed
    at its first detector's path and linked at the others'); the path it is first at."""
    if missing_only and storage.exists(relpath):
        return placed or relpath
    if placed:
        if placed != relpath:
            storage.place_same(placed, relpath)
        return placed
    storage.place(source, relpath, mode)
    return relpath


def ingest(repository: str | os.PathLike[str] | Storage | Repository,
           files: Iterable[str | os.PathLike[str]], mode: IngestMode = "copy") -> IngestReport:
    """Ingest raw and calibration files into a repository.

    Parameters
    ----------
    repository : str, os.PathLike, Storage or Repository
        The repository (it must exist; see :func:`hpcpipe.butler.create_repository`).
    files : iterable of path
        The files.
    mode : {"copy", "link", "move"}
        How to place each file in the repository.

    Returns
    -------
    IngestReport
        Which files were ingested, already there, or skipped and why.
    """
    if mode not in INGEST_MODES:
        raise ValueError(f"ingest mode must be one of {', '.join(INGEST_MODES)}, not {mode!r}")
    repo = repository if isinstance(repository, Repository) else Repository.open(repository)
    mapper = repo.mapper()
    registry = repo.registry(mapper)
    report = IngestReport()
    columns = list(mapper.exposure_keys)
    for name in files:
        path = Path(name)
        added: list[tuple[str, dict[str, Any]]] = []
        try:
            records = mapper.ingest_records(path)
            prepared = []
            for record in records:
                data_id = mapper.validate(record.data_id)
                dataset_type = mapper.dataset_type(record.dataset_type)
                prepared.append((record, data_id, dataset_type,
                                 dataset_type.template.format(data_id)))
            with registry.transaction() as tx:
                # every entry is checked before anything is placed: a conflict on one
                # detector of a file leaves the repository (and, for move, the file) as it was
                actions: list[tuple[str, Any, dict[str, Any], str]] = []
                for record, data_id, dataset_type, relpath in prepared:
                    if dataset_type.is_calibration:
                        entry = CalibEntry(dataset_type.name, {k: data_id[k] for k in
                                                               dataset_type.keys},
                                           record.valid_start, record.valid_end)
                        old = tx.find_calibration(entry.dataset_type, entry.data_id)
                        if old is not None and (old.valid_start, old.valid_end) != (
                                entry.valid_start, entry.valid_end):
                            raise IngestError(
                                str(path), f"conflicts with the {entry.dataset_type} "
                                f"already ingested for {format_data_id(entry.data_id)}, "
                                f"valid {old.valid_start}..{old.valid_end} (this file "
                                f"says {entry.valid_start}..{entry.valid_end})")
                        kind = "calib-already" if old is not None else "calib"
                        actions.append((kind, entry, data_id, relpath))
                    else:
                        old_row = tx.find_exposure(data_id)
                        if old_row is not None and not _same(old_row, data_id, columns):
                            differ = {k: (old_row[k], data_id[k]) for k in columns
                                      if old_row[k] != data_id[k]}
                            raise IngestError(
                                str(path), "conflicts with the raw file already ingested "
                                f"from {old_row['source']} for the same "
                                f"{', '.join(mapper.exposure_unique)}: (registered, this "
                                f"file) values {differ}")
                        kind = "raw-already" if old_row is not None else "raw"
                        actions.append((kind, dataset_type.name, data_id, relpath))
                placed = ""  # the first path the file was placed at (the others link to it)
                for kind, what, data_id, relpath in actions:
                    if kind.endswith("-already"):
                        placed = _place(repo.storage, path, relpath, mode, placed,
                                        missing_only=True)
                        label = (f"{what.dataset_type} {format_data_id(what.data_id)}"
                                 if kind == "calib-already" else
                                 f"raw {format_data_id(data_id)}")
                        report.already.append((str(path), label))
                        continue
                    placed = _place(repo.storage, path, relpath, mode, placed)
                    if kind == "calib":
                        tx.add_calibration(what, str(path))
                        added.append((what.dataset_type, data_id))
                    else:
                        tx.add_exposure(data_id, str(path))
                        added.append((what, data_id))
        except (ButlerError, FileFormatError, ValueError, KeyError, OSError) as exc:
            named = isinstance(exc, (IngestError, FileFormatError)) and exc.path == str(path)
            reason = exc.reason if named else str(exc)  # type: ignore[union-attr]
            log.warning("skipped %s: %s", path, reason)
            report.failed.append((str(path), reason))
            continue
        for dataset_name, data_id in added:
            report.ingested.append((str(path), dataset_name, data_id))
    return report
