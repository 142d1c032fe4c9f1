"""Ingest: put raw and calibration files into a repository and record them in its registry.

For each file, the mapper reads its header and turns it into a registry entry
(:meth:`~hpcpipe.butler.mapper.Mapper.translate_header`); the file is then copied, linked
(symbolic link to the original) or moved to the path the mapper's template gives, and the
entry is added, in one registry transaction. Every file is handled on its own:

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
from hpcpipe.butler.storage import INGEST_MODES, Storage
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


def ingest(repository: str | os.PathLike[str] | Storage | Repository,
           files: Iterable[str | os.PathLike[str]], mode: str = "copy") -> IngestReport:
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
        try:
            header = mapper.read_header(path)
            record = mapper.translate_header(header, path)
            data_id = mapper.validate(record.data_id)
            dataset_type = mapper.dataset_type(record.dataset_type)
            relpath = dataset_type.template.format(data_id)
            with registry.transaction() as tx:
                if dataset_type.is_calibration:
                    entry = CalibEntry(dataset_type.name, {k: data_id[k] for k in
                                                           dataset_type.keys},
                                       record.valid_start, record.valid_end)
                    old = tx.find_calibration(entry.dataset_type, entry.data_id)
                    if old is not None:
                        if (old.valid_start, old.valid_end) != (entry.valid_start,
                                                                entry.valid_end):
                            raise IngestError(
                                str(path), f"conflicts with the {entry.dataset_type} already "
                                f"ingested for {format_data_id(entry.data_id)}, valid "
                                f"{old.valid_start}..{old.valid_end} (this file says "
                                f"{entry.valid_start}..{entry.valid_end})")
                        if not repo.storage.exists(relpath):
                            repo.storage.place(path, relpath, mode)
                        report.already.append((str(path), f"{entry.dataset_type} "
                                               f"{format_data_id(entry.data_id)}"))
                        continue
                    repo.storage.place(path, relpath, mode)
                    tx.add_calibration(entry, str(path))
                else:
                    old_row = tx.find_exposure(data_id)
                    if old_row is not None:
                        if not _same(old_row, data_id, columns):
                            differ = {k: (old_row[k], data_id[k]) for k in columns
                                      if old_row[k] != data_id[k]}
                            raise IngestError(
                                str(path), "conflicts with the raw file already ingested "
                                f"from {old_row['source']} for the same "
                                f"{', '.join(mapper.exposure_unique)}: (registered, this file) "
                                f"values {differ}")
                        if not repo.storage.exists(relpath):
                            repo.storage.place(path, relpath, mode)
                        report.already.append((str(path), f"raw {format_data_id(data_id)}"))
                        continue
                    repo.storage.place(path, relpath, mode)
                    tx.add_exposure(data_id, str(path))
        except (ButlerError, FileFormatError, ValueError, KeyError, OSError) as exc:
            named = isinstance(exc, (IngestError, FileFormatError)) and exc.path == str(path)
            reason = exc.reason if named else str(exc)
            log.warning("skipped %s: %s", path, reason)
            report.failed.append((str(path), reason))
            continue
        report.ingested.append((str(path), dataset_type.name, data_id))
    return report
