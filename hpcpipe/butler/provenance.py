"""Lineage: which datasets each output was made from, in a SQLite table of the repository.

Every unit a task runs through :func:`hpcpipe.task.cmdline.process_data_ref` (``hpcpipe
run`` and the steps of ``hpcpipe drp``, serial, ``-j`` or on the MPI pool) records, in the
output repository's ``provenance.sqlite3``, one row per (output, input) pair: the datasets
it wrote through the butler and those it read, each as its dataset type and its data id
over the type's keys (JSON), with the task's name. Run alone (``-j``, a task called
directly) the rows of one unit are written in one transaction, before its
``<task>_metadata`` (its completion marker); a unit redone replaces its rows.

On the MPI pool (``hpcpipe run``, ``hpcpipe drp``) the workers do not write the table:
each unit returns its lineage to the master, which records a whole stage's in one
transaction when the stage ends (SQLite must not be written from several nodes of a network
file system). A unit done by a run killed before its stage ended has its lineage in its
``<task>_metadata`` (``hpcpipe_unit``: inputs and outputs); the resumed run records it from
there when it skips the unit (the ``units`` table lists the units recorded).

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
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcpipe.butler.errors import StorageError

if TYPE_CHECKING:
    from hpcpipe.butler.butler import Butler

__all__ = ["ProvenanceTable", "PROVENANCE_FILE", "record_unit", "output_table", "trace",
           "format_trace", "encode_id"]

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
            # Switching a new database to WAL takes an exclusive lock, and SQLite answers
            # "database is locked" at once (without its busy handler) to a second process
            # doing the same at that moment (the -j N workers' first units): retry, up to
            # the busy timeout.
            deadline = time.monotonic() + self.busy_timeout
            delay = 0.005
            while True:
                try:
                    self._initialise(conn)
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc) \
                            or time.monotonic() > deadline:
                        conn.close()
                        raise
                    time.sleep(delay)
                    delay = min(2 * delay, 0.25)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @staticmethod
    def _initialise(conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: set once per database
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS lineage (output_type TEXT NOT NULL, output_id TEXT "
            "NOT NULL, input_type TEXT NOT NULL, input_id TEXT NOT NULL, task TEXT NOT "
            "NULL, PRIMARY KEY (output_type, output_id, input_type, input_id))")
        conn.execute("CREATE TABLE IF NOT EXISTS units (unit TEXT PRIMARY KEY, task TEXT "
                     "NOT NULL)")

    def record(self, task: str, outputs: Iterable[DatasetRef], inputs: Iterable[DatasetRef],
               unit: str | None = None) -> int:
        """Record that ``task`` made every output from every input (one transaction).

        An output's earlier rows are replaced. An output without inputs gets one row with an
        empty input, so that it is known to be made here. ``unit`` (a printable unit id) is
        recorded as having its lineage. Returns the rows written.
        """
        return self.record_many([(unit, task, list(outputs), list(inputs))])

    def record_many(self, units: Sequence[tuple[str | None, str, Sequence[DatasetRef],
                                                Sequence[DatasetRef]]]) -> int:
        """Record the lineage of several units, ``(unit id or None, task, outputs,
        inputs)`` each, in one transaction (see :meth:`record`)."""
        deletes: list[tuple[str, str]] = []
        rows: list[tuple[str, str, str, str, str]] = []
        names: list[tuple[str, str]] = []
        for unit, task, outputs, inputs in units:
            outs = list(dict.fromkeys((t, encode_id(i)) for t, i in outputs
                                      if not t.endswith(_BOOKKEEPING)))
            ins = list(dict.fromkeys((t, encode_id(i)) for t, i in inputs)) or [("", "")]
            deletes += outs
            rows += [(ot, oi, it, ii, task) for ot, oi in outs for it, ii in ins
                     if (it, ii) != (ot, oi)]
            if unit is not None:
                names.append((unit, task))
        if not rows and not names:
            return 0
        conn = self._writer()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM lineage WHERE output_type = ? AND output_id = ?",
                             deletes)
            conn.executemany("INSERT OR REPLACE INTO lineage VALUES (?, ?, ?, ?, ?)", rows)
            conn.executemany("INSERT OR REPLACE INTO units VALUES (?, ?)", names)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return len(rows)

    def recorded_units(self) -> set[str]:
        """The unit ids whose lineage is recorded (:meth:`record` with a ``unit``)."""
        if not self.path.is_file():
            return set()
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                               timeout=self.busy_timeout)
        try:
            return {row[0] for row in conn.execute("SELECT unit FROM units")}
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return set()
            raise
        finally:
            conn.close()

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


def output_table(butler: Butler) -> ProvenanceTable | None:
    """The lineage table of the butler's output repository (kept open on the butler), or
    None for a storage without local files."""
    table = getattr(butler, "_provenance", None)
    if table is None:
        table = _table(butler.output)
        if table is not None:
            butler._provenance = table  # type: ignore[attr-defined]
    return table


def record_unit(butler: Butler, task: str, outputs: Sequence[DatasetRef],
                inputs: Sequence[DatasetRef], unit: str | None = None) -> int:
    """Record a unit's lineage in the butler's output repository (see
    :meth:`ProvenanceTable.record`)."""
    table = output_table(butler)
    return 0 if table is None else table.record(task, outputs, inputs, unit)


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
