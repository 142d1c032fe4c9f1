"""The run journal: one JSON line per unit end, appended by the master as it happens.

A run killed before its end (the master killed, the node lost, the job out of walltime)
leaves no report, but its journal holds every unit that ended until then, so that
``hpcpipe report OUT`` rebuilds ``report.json``, ``timeline.png`` and ``report.html`` from
it. Lines are strict JSON (a time that is not known is ``null``, never ``NaN``); each is
written whole and flushed at once, so a kill loses at most the line being written, which the
reader skips.

A campaign is several runs into one output repository (one per batch job): before a run
starts its journal, :func:`archive_journal` renames the previous one to ``journal.<k>.jsonl``
(k = 1, 2, ... in the order of the runs), so that ``hpcpipe status`` reads the history of
every job (:func:`journal_history`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from hpcpipe.comm.records import UnitRecord

__all__ = ["Journal", "read_journal", "read_journal_kernels", "read_events", "strict",
           "archive_journal", "journal_history"]

log = logging.getLogger("hpcpipe.comm.journal")


def strict(value: Any) -> Any:
    """``value`` with NaN and infinite floats replaced by None, through lists and dicts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


class Journal:
    """Appends unit ends to a JSON-lines file (the master only).

    Parameters
    ----------
    path : str or os.PathLike
        The journal file; a new run starts it afresh with a ``run`` line.
    title : str
        What the run is (the report's title).
    """

    def __init__(self, path: str | os.PathLike[str], title: str = "hpcpipe run") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self.write({"event": "run", "title": title, "time": time.time(), "pid": os.getpid()})

    def write(self, entry: dict[str, Any]) -> None:
        """Append one entry as a line and flush it to the operating system."""
        if self._handle is None:
            return
        try:
            self._handle.write(json.dumps(strict(entry), allow_nan=False) + "\n")
            self._handle.flush()
        except OSError as exc:  # a full disk must not stop the run: the journal stops
            log.warning("%s: cannot append to the journal (%s); it stops here", self.path, exc)
            self._handle = None

    def unit(self, record: UnitRecord) -> None:
        """Append the end of one unit (its state, rank, host, times, error)."""
        self.write({"event": "unit", **record.to_dict()})

    def kernels(self, rank: int, host: str, kernels: dict[str, str]) -> None:
        """Append which implementation each kernel module had on a rank (see
        :mod:`hpcpipe.drivers.report_kernels`)."""
        self.write({"event": "kernels", "rank": rank, "host": host, "kernels": kernels})

    def close(self) -> None:
        """Flush the journal to stable storage and close it."""
        if self._handle is not None:
            try:
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except OSError as exc:
                log.warning("%s: cannot flush the journal (%s)", self.path, exc)
            finally:
                self._handle.close()
                self._handle = None


def read_journal(path: str | os.PathLike[str]) -> tuple[str, list[UnitRecord]]:
    """The title and the last record of each unit (by job and key) of a journal.

    A line cut short by a kill is skipped.
    """
    title = "hpcpipe run"
    latest: dict[tuple[str, str], UnitRecord] = {}
    fields = set(UnitRecord.__dataclass_fields__) - {"excluded_ranks"}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line of a killed writer
            if entry.get("event") == "run":
                title = str(entry.get("title", title))
            elif entry.get("event") == "unit":
                values = {k: v for k, v in entry.items() if k in fields}
                for name in ("start", "end", "peak_rss"):
                    values[name] = math.nan if values.get(name) is None else values[name]
                record = UnitRecord(**values)
                latest[(record.job, record.key)] = record
    return title, list(latest.values())


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every entry of a journal that is not a unit's (``run``, ``plan``, ``end``...), in order.

    A line cut short by a kill is skipped.
    """
    return [entry for entry in _entries(path) if entry.get("event") != "unit"]


def _entries(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The journal's entries (JSON objects), skipping a line cut short by a kill."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                yield entry


_ARCHIVED = re.compile(r"(.+)\.(\d+)(\.jsonl)$")


def journal_history(path: str | os.PathLike[str]) -> list[Path]:
    """The archived journals of ``path`` (``journal.1.jsonl``...) in run order, then ``path``
    itself if it exists."""
    path = Path(path)
    stem, suffix = path.name[: -len(path.suffix)] if path.suffix else path.name, path.suffix
    found = []
    if path.parent.is_dir():
        for candidate in path.parent.iterdir():
            match = _ARCHIVED.fullmatch(candidate.name)
            if match and match.group(1) == stem and match.group(3) == suffix:
                found.append((int(match.group(2)), candidate))
    out = [p for _, p in sorted(found)]
    if path.is_file():
        out.append(path)
    return out


def archive_journal(path: str | os.PathLike[str]) -> Path | None:
    """Rename an existing journal to the next ``<stem>.<k><suffix>``; return its new path
    (None if there was none)."""
    path = Path(path)
    if not path.is_file():
        return None
    history = journal_history(path)[:-1]
    last = _ARCHIVED.fullmatch(history[-1].name) if history else None
    number = int(last.group(2)) + 1 if last else 1
    target = path.with_name(f"{path.stem}.{number}{path.suffix}")
    os.replace(path, target)
    return target


def read_journal_kernels(path: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    """The kernel implementations per rank of a journal: ``{rank: {"host", "kernels"}}``
    (later lines of a rank add to and override earlier ones)."""
    out: dict[int, dict[str, Any]] = {}
    for entry in _entries(path):
        if entry.get("event") == "kernels" and isinstance(entry.get("kernels"), dict):
            rank = int(entry.get("rank", -1))
            slot = out.setdefault(rank, {"host": str(entry.get("host", "")), "kernels": {}})
            slot["kernels"].update({str(k): str(v) for k, v in entry["kernels"].items()})
    return out
