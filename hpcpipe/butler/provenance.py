"""Lineage: which datasets each output was made from, in a SQLite table of the repository.

Every unit a task runs through :func:`hpcpipe.task.cmdline.process_data_ref` (``hpcpipe
run`` and the steps of ``hpcpipe drp``, serial, ``-j`` or on the MPI pool) records, in the
output repository's ``provenance.sqlite3``, one row per (output, input) pair: the datasets
it wrote through the butler and those it read, each as its dataset type and its data id
over the type's keys (JSON), with the task's name. The rows of one unit are written in one
transaction, before its ``<task>_metadata`` (its completion marker), so that a unit marked
done always has its lineage; a unit redone replaces its rows.

The table is kept apart from ``registry.sqlite3`` (the registry of raws and calibrations,
which read-only input repositories share): it belongs to the repository a run writes.
WAL mode with ``synchronous=NORMAL``: a commit is one append to the WAL, without an
``fsync`` (a kill loses no committed transaction; a power cut may lose the last ones, and
the units concerned are redone since their metadata is written after them). Writers from
several ranks take turns (busy timeout).

:func:`trace` follows the lineage through every repository of a butler's chain, from a
dataset back to the datasets nobody wrote in this chain (the raws, calibrations, the sky
map...): what ``hpcpipe butler provenance REPO DATASET --id ...`` prints.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcpipe.butler.errors import StorageError

if TYPE_CHECKING:
    from hpcpipe.butler.butler import Butler

__all__ = ["ProvenanceTable", "PROVENANCE_FILE", "record_unit", "trace", "format_trace",
           "encode_id"]

#: The lineage database's file name in a repository.
PROVENANCE_FILE = "provenance.sqlite3"
#: Dataset types that are bookkeeping, not data: never recorded as outputs.
_BOOKKEEPING = ("_metadata", "_log", "_config")

DatasetRef = tuple[str, dict[str, Any]]


def encode_id(data_id: Mapping[str, Any]) -> str:
    """A data id as canonical JSON (sorted keys), the lineage table's form."""
    return json.dumps({k: data_id[k] for k in sorted(data_id)}, separators=(",", ":"),
                      default=str)


class ProvenanceTable:
    """The lineage table of one repository (``provenance.sqlite3``).

    Parameters
    ----------
    path : pathlib.Path
        The database file (created by the first write).
    busy_timeout : float
        Seconds a writer waits for another one.
    """

    def __init__(self, path: Path, busy_timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def _writer(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never share one across a fork
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS lineage (output_type TEXT NOT NULL, output_id TEXT "
                "NOT NULL, input_type TEXT NOT NULL, input_id TEXT NOT NULL, task TEXT NOT "
                "NULL, PRIMARY KEY (output_type, output_id, input_type, input_id))")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def record(self, task: str, outputs: Iterable[DatasetRef], inputs: Iterable[DatasetRef]
               ) -> int:
        """Record that ``task`` made every output from every input (one transaction).

        An output's earlier rows are replaced. An output without inputs gets one row with an
        empty input, so that it is known to be made here. Returns the rows written.
        """
        outs = list(dict.fromkeys((t, encode_id(i)) for t, i in outputs
                                  if not t.endswith(_BOOKKEEPING)))
        ins = list(dict.fromkeys((t, encode_id(i)) for t, i in inputs)) or [("", "")]
        if not outs:
            return 0
        rows = [(ot, oi, it, ii, task) for ot, oi in outs for it, ii in ins
                if (it, ii) != (ot, oi)]
        conn = self._writer()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM lineage WHERE output_type = ? AND output_id = ?",
                             outs)
            conn.executemany("INSERT OR REPLACE INTO lineage VALUES (?, ?, ?, ?, ?)", rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return len(rows)

    def inputs_of(self, dataset_type: str, data_id: Mapping[str, Any]
                  ) -> tuple[str, list[DatasetRef]] | None:
        """The task that made a dataset and its inputs, or None if this table has no row."""
        if not self.path.is_file():
            return None
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                               timeout=self.busy_timeout)
        try:
            rows = conn.execute("SELECT input_type, input_id, task FROM lineage WHERE "
                                "output_type = ? AND output_id = ? ORDER BY input_type, "
                                "input_id", (dataset_type, encode_id(data_id))).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        finally:
            conn.close()
        if not rows:
            return None
        return rows[0][2], [(t, json.loads(i)) for t, i, _ in rows if t]

    def close(self) -> None:
        """Close the writer's connection (if this process opened it)."""
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


def _table(repo: Any) -> ProvenanceTable | None:
    try:
        return ProvenanceTable(repo.storage.local_path(PROVENANCE_FILE))
    except StorageError:  # a storage without local files: no lineage there
        return None


def record_unit(butler: Butler, task: str, outputs: Sequence[DatasetRef],
                inputs: Sequence[DatasetRef]) -> int:
    """Record a unit's lineage in the butler's output repository (see
    :meth:`ProvenanceTable.record`); the table is kept open on the butler."""
    table = getattr(butler, "_provenance", None)
    if table is None:
        table = _table(butler.output)
        if table is None:
            return 0
        butler._provenance = table  # type: ignore[attr-defined]
    return table.record(task, outputs, inputs)


def trace(butler: Butler, dataset_type: str, data_id: Mapping[str, Any],
          max_depth: int = 64) -> dict[str, Any]:
    """The lineage tree of a dataset, through every repository of the butler's chain.

    Returns
    -------
    dict
        ``{"datasetType", "dataId", "task" (None for a dataset nobody wrote in this chain),
        "inputs": [subtrees], "seen": bool}``; a dataset met a second time is not expanded
        again (``seen`` true).
    """
    tables = [t for t in (_table(r) for r in butler.chain) if t is not None]
    seen: set[tuple[str, str]] = set()

    def node(kind: str, ident: dict[str, Any], depth: int) -> dict[str, Any]:
        key = (kind, encode_id(ident))
        out: dict[str, Any] = {"datasetType": kind, "dataId": ident, "task": None,
                               "inputs": [], "seen": key in seen}
        if key in seen or depth > max_depth:
            return out
        seen.add(key)
        for table in tables:
            found = table.inputs_of(kind, ident)
            if found is not None:
                out["task"] = found[0]
                out["inputs"] = [node(t, i, depth + 1) for t, i in found[1]]
                break
        return out

    return node(dataset_type, dict(data_id), 0)


def format_trace(tree: Mapping[str, Any]) -> str:
    """The lineage tree as indented text, one dataset a line (``<-`` its inputs)."""
    lines: list[str] = []

    def walk(n: Mapping[str, Any], depth: int) -> None:
        ident = " ".join(f"{k}={n['dataId'][k]}" for k in sorted(n["dataId"]))
        text = f"{'  ' * depth}{n['datasetType']} {ident}".rstrip()
        if n["seen"]:
            text += "  (see above)"
        elif n["task"] is not None:
            text += f"  <- {n['task']}"
        else:
            text += "  (input: not made in this chain)"
        lines.append(text)
        for child in n["inputs"]:
            walk(child, depth + 1)

    walk(tree, 0)
    return "\n".join(lines)
