"""The registry: a SQLite database in the repository listing its raw files and calibrations.

Ingest fills it from the files' headers; the butler reads it to complete partial data ids and
to find calibrations. Two tables:

``exposure``
    one row per raw file: the mapper's :attr:`~hpcpipe.butler.mapper.Mapper.exposure_keys`
    (``visit``, ``ccd``, ``filter``, ``date``...) as columns, unique on
    :attr:`~hpcpipe.butler.mapper.Mapper.exposure_unique`, plus the ingested file's name.
``calib``
    one row per calibration product: its dataset type, data id (JSON), first and last day of
    validity (see :mod:`hpcpipe.butler.calibs`).

Concurrency, for MPI jobs where one rank ingests while others read:

* one writer at a time: a writer takes the database's write lock at the start of its
  transaction (``BEGIN IMMEDIATE``) and other writers wait for it (busy timeout);
* readers are never blocked nor shown a partial transaction: the database is in WAL mode, in
  which readers see the last committed state while a writer works, and they open it
  read-only (``file:...?mode=ro``), so a reader can never modify it.

WAL needs shared memory between the processes using the database, which some network file
systems do not give across nodes; there, ingest before the jobs that read the repository run.
A registry in a directory the reader cannot write (a shared input repository) is read as an
immutable file, for the same reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hpcpipe.butler.calibs import CalibEntry

__all__ = ["Registry", "RegistryWriter", "REGISTRY_FILE", "SCHEMA_VERSION"]

#: The registry's file name in a repository.
REGISTRY_FILE = "registry.sqlite3"
#: The version of the table layout (stored in the ``butler_meta`` table).
SCHEMA_VERSION = "1"

_SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT"}


def _q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


class Registry:
    """The registry database of one repository.

    Parameters
    ----------
    path : pathlib.Path
        The database file (it need not exist: readers then see no entries and the first
        writer creates it).
    columns : mapping of str to type
        The exposure table's columns (key name to int, float or str), in order.
    unique : sequence of str
        The columns that identify one raw file.
    busy_timeout : float, optional
        Seconds a writer waits for another writer's transaction to end.
    """

    def __init__(self, path: Path, columns: Mapping[str, type], unique: Sequence[str],
                 busy_timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.columns = dict(columns)
        self.unique = tuple(unique)
        self.busy_timeout = float(busy_timeout)

    def exists(self) -> bool:
        """Whether the database file exists."""
        return self.path.is_file()

    # --- reading ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection | None]:
        if not self.exists():
            yield None
            return
        uri = "file:" + quote(str(self.path.resolve())) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        except sqlite3.OperationalError:
            if os.access(self.path.parent, os.W_OK):
                raise
            # A registry in a directory we cannot write (a shared, read-only input
            # repository): WAL readers need to create the -shm file, so read the database
            # file as it is ("immutable"), which is right while nobody ingests into it.
            conn = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=self.busy_timeout)
        try:
            yield conn
        finally:
            conn.close()

    def _select(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._reader() as conn:
            if conn is None:
                return []
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # created but not yet filled by its writer
                    return []
                raise

    def exposures(self, where: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The exposure rows whose columns equal the values of ``where`` (unknown keys of
        ``where`` are ignored), sorted by the columns."""
        names = list(self.columns)
        conditions = {k: v for k, v in (where or {}).items() if k in self.columns}
        sql = f"SELECT {', '.join(_q(c) for c in names)} FROM exposure"
        if conditions:
            sql += " WHERE " + " AND ".join(f"{_q(k)} = ?" for k in conditions)
        sql += " ORDER BY " + ", ".join(_q(c) for c in names)
        return [dict(zip(names, row)) for row in self._select(sql, list(conditions.values()))]

    def count_exposures(self) -> int:
        """How many raw files are registered."""
        rows = self._select("SELECT COUNT(*) FROM exposure", [])
        return int(rows[0][0]) if rows else 0

    def calibrations(self, dataset_type: str | None = None) -> list[CalibEntry]:
        """The calibration entries (of one dataset type, or all), sorted."""
        sql = "SELECT dataset_type, data_id, valid_start, valid_end FROM calib"
        params: list[Any] = []
        if dataset_type is not None:
            sql += " WHERE dataset_type = ?"
            params.append(dataset_type)
        sql += " ORDER BY dataset_type, data_id"
        return [CalibEntry(t, json.loads(d), s, e) for t, d, s, e in self._select(sql, params)]

    # --- writing ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[RegistryWriter]:
        """A write transaction: the only one in progress until the block ends.

        It starts with ``BEGIN IMMEDIATE`` (waiting up to the busy timeout for another writer)
        and commits when the block ends normally, or rolls back if it raises.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            self._set_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._create_tables(conn)
                yield RegistryWriter(self, conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _set_wal(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + self.busy_timeout
        while True:  # switching the journal mode needs a moment without other connections
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(
                f"{self.path}: the registry cannot use WAL mode (journal mode {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")

    def _create_tables(self, conn: sqlite3.Connection) -> None:
        cols = ", ".join(f"{_q(n)} {_SQL_TYPES[t]} NOT NULL" for n, t in self.columns.items())
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS exposure ({cols}, source TEXT NOT NULL, "
            f"ingested TEXT NOT NULL, PRIMARY KEY ({', '.join(_q(u) for u in self.unique)}))"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS calib (dataset_type TEXT NOT NULL, data_id TEXT NOT "
            "NULL, valid_start TEXT NOT NULL, valid_end TEXT NOT NULL, source TEXT NOT NULL, "
            "ingested TEXT NOT NULL, PRIMARY KEY (dataset_type, data_id))"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS butler_meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT OR IGNORE INTO butler_meta VALUES ('schema_version', ?)",
                     (SCHEMA_VERSION,))
        conn.execute("INSERT OR IGNORE INTO butler_meta VALUES ('exposure_columns', ?)",
                     (json.dumps({n: t.__name__ for n, t in self.columns.items()}),))

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"


class RegistryWriter:
    """The operations of a write transaction (see :meth:`Registry.transaction`)."""

    def __init__(self, registry: Registry, conn: sqlite3.Connection) -> None:
        self.registry = registry
        self.conn = conn

    def find_exposure(self, data_id: Mapping[str, Any]) -> dict[str, Any] | None:
        """The row with the same unique keys as ``data_id``, with its source file."""
        names = [*self.registry.columns, "source"]
        unique = self.registry.unique
        row = self.conn.execute(
            f"SELECT {', '.join(_q(c) for c in names)} FROM exposure WHERE "
            + " AND ".join(f"{_q(k)} = ?" for k in unique),
            [data_id[k] for k in unique],
        ).fetchone()
        return None if row is None else dict(zip(names, row))

    def add_exposure(self, data_id: Mapping[str, Any], source: str) -> None:
        """Register a raw file (its data id must have every exposure column)."""
        names = list(self.registry.columns)
        self.conn.execute(
            f"INSERT INTO exposure ({', '.join(_q(c) for c in names)}, source, ingested) "
            f"VALUES ({', '.join('?' for _ in names)}, ?, datetime('now'))",
            [data_id[c] for c in names] + [source],
        )

    def find_calibration(self, dataset_type: str, data_id: Mapping[str, Any]
                         ) -> CalibEntry | None:
        """The calibration entry of that dataset type and data id, if any."""
        row = self.conn.execute(
            "SELECT valid_start, valid_end FROM calib WHERE dataset_type = ? AND data_id = ?",
            (dataset_type, CalibEntry.encode(data_id)),
        ).fetchone()
        return None if row is None else CalibEntry(dataset_type, dict(data_id), *row)

    def add_calibration(self, entry: CalibEntry, source: str) -> None:
        """Register a calibration product with its validity range."""
        self.conn.execute(
            "INSERT INTO calib VALUES (?, ?, ?, ?, ?, datetime('now'))",
            (entry.dataset_type, CalibEntry.encode(entry.data_id), entry.valid_start,
             entry.valid_end, source),
        )
