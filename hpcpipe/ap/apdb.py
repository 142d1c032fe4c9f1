"""The Alert Production DataBase (APDB): diaObjects and their diaSources, in SQLite.

LSST keeps the state of its alert production (every object seen to vary and every source
detected on a difference image) in a database beside the butler, the APDB. hpcpipe's is one
SQLite file with two tables:

``DiaSource``
    One row per source detected on a difference image (:data:`DIA_SOURCE_DTYPE`): its id,
    the diaObject it was associated with, visit, ccd, band, time (``midpointMjdTai``),
    position, PSF flux on the difference image, forced flux on the science image, S/N,
    dipole and flag bits.
``DiaObject``
    One row per object (:func:`dia_object_dtype`): mean position, number of sources, first
    and last time, and per band the light-curve statistics of
    :func:`hpcpipe.ap.association.light_curve_stats` (``<band>_psfFluxMean`` and so on).

Writes are transactions: a visit's new and updated objects and its sources are stored
together or not at all (:meth:`Apdb.store`), so a crash never leaves half a visit. SQLite
allows one writer at a time; in an MPI run the master writes and the workers read.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from hpcpipe.errors import HpcpipeError

__all__ = ["Apdb", "ApdbError", "DIA_SOURCE_DTYPE", "STAT_NAMES", "dia_object_dtype",
           "SCHEMA_VERSION"]

#: Version of the APDB's table layout (stored in the file; another version is refused).
SCHEMA_VERSION = 1

#: A diaSource row.
DIA_SOURCE_DTYPE = np.dtype([
    ("diaSourceId", np.int64), ("diaObjectId", np.int64), ("visit", np.int64),
    ("ccd", np.int32), ("band", "U8"), ("midpointMjdTai", np.float64),
    ("ra", np.float64), ("dec", np.float64), ("x", np.float64), ("y", np.float64),
    ("psfFlux", np.float64), ("psfFluxErr", np.float64), ("scienceFlux", np.float64),
    ("scienceFluxErr", np.float64), ("snr", np.float64), ("isDipole", np.bool_),
    ("flags", np.int64),
])

#: The light-curve statistics kept per band (columns ``<band>_<name>`` of DiaObject).
STAT_NAMES = ("psfFluxMean", "psfFluxMeanErr", "psfFluxSigma", "psfFluxChi2", "psfFluxNdata",
              "psfFluxMin", "psfFluxMax")

_SQL_TYPES = {"i": "INTEGER", "u": "INTEGER", "b": "INTEGER", "f": "REAL", "U": "TEXT"}


class ApdbError(HpcpipeError):
    """The APDB file is missing, not an APDB, of another layout version, or inconsistent."""


def dia_object_dtype(bands: Sequence[str]) -> np.dtype:
    """The DiaObject row of an APDB that records ``bands``."""
    fields: list[tuple[str, object]] = [
        ("diaObjectId", np.int64), ("ra", np.float64), ("dec", np.float64),
        ("nDiaSources", np.int64), ("firstMjdTai", np.float64), ("lastMjdTai", np.float64)]
    for band in bands:
        for name in STAT_NAMES:
            fields.append((f"{band}_{name}", np.int64 if name == "psfFluxNdata" else np.float64))
    return np.dtype(fields)


def _columns_sql(dtype: np.dtype, key: str) -> str:
    parts = []
    for name in dtype.names or ():
        sql = _SQL_TYPES[dtype[name].kind]
        parts.append(f'"{name}" {sql}{" PRIMARY KEY" if name == key else ""}')
    return ", ".join(parts)


def _to_python(value: object) -> object:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN is stored as NULL
        return None
    return value


class Apdb:
    """An APDB in the SQLite file ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The database file.
    bands : sequence of str, optional
        The bands of a new database (its DiaObject columns); an existing database keeps
        its own, and giving others is an error.
    create : bool
        Create the file (and its tables) if it does not exist; otherwise a missing file is
        an :class:`ApdbError`.
    """

    def __init__(self, path: str | os.PathLike[str], bands: Sequence[str] | None = None,
                 create: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise ApdbError(f"{self.path}: no APDB here (create it with create=True)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=120.0, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self.bands = self._open_or_create(bands)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ApdbError(f"{self.path}: not an APDB ({exc})") from exc
        self.object_dtype = dia_object_dtype(self.bands)

    def _open_or_create(self, bands: Sequence[str] | None) -> tuple[str, ...]:
        tables = {r[0] for r in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if "ApdbInfo" in tables:
            info = dict(self._db.execute("SELECT key, value FROM ApdbInfo"))
            version = int(info.get("schema_version", -1))
            if version != SCHEMA_VERSION:
                raise ApdbError(f"{self.path}: APDB layout version {version} is unknown (this "
                                f"hpcpipe reads version {SCHEMA_VERSION})")
            stored = tuple(info["bands"].split(",")) if info.get("bands") else ()
            if bands is not None and tuple(bands) != stored:
                raise ApdbError(f"{self.path}: the APDB records bands {stored}, not "
                                f"{tuple(bands)}")
            return stored
        if tables:
            raise ApdbError(f"{self.path}: an SQLite file, but not an APDB "
                            f"(tables: {', '.join(sorted(tables))})")
        if not bands:
            raise ApdbError(f"{self.path}: a new APDB needs its bands")
        for band in bands:
            if not band.isidentifier():
                raise ApdbError(f"{self.path}: band {band!r} cannot name a column")
        with self._transaction():
            self._db.execute("CREATE TABLE ApdbInfo (key TEXT PRIMARY KEY, value TEXT)")
            self._db.executemany("INSERT INTO ApdbInfo VALUES (?, ?)",
                                 [("schema_version", str(SCHEMA_VERSION)),
                                  ("bands", ",".join(bands))])
            self._db.execute(f"CREATE TABLE DiaObject "
                             f"({_columns_sql(dia_object_dtype(bands), 'diaObjectId')})")
            self._db.execute(f"CREATE TABLE DiaSource "
                             f"({_columns_sql(DIA_SOURCE_DTYPE, 'diaSourceId')})")
            self._db.execute("CREATE INDEX DiaObject_dec ON DiaObject (dec)")
            self._db.execute("CREATE INDEX DiaSource_object ON DiaSource (diaObjectId)")
            self._db.execute("CREATE TABLE ApdbCcdVisit (visit INTEGER, ccd INTEGER, "
                             "PRIMARY KEY (visit, ccd))")
        return tuple(bands)

    # --- transactions --------------------------------------------------------------------
    class _Transaction:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")

    def _transaction(self) -> Apdb._Transaction:
        return Apdb._Transaction(self._db)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Apdb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------
    def _select(self, dtype: np.dtype, table: str, where: str, args: Iterable[object]
                ) -> np.ndarray:
        names = ", ".join(f'"{n}"' for n in dtype.names or ())
        rows = self._db.execute(f"SELECT {names} FROM {table} {where}", tuple(args)).fetchall()
        out = np.zeros(len(rows), dtype)
        for i, row in enumerate(rows):
            out[i] = tuple(np.nan if (v is None and dtype[k].kind == "f") else
                           (0 if v is None else v) for k, v in enumerate(row))
        return out

    def objects_in_region(self, ra: float, dec: float, radius_deg: float) -> np.ndarray:
        """The diaObjects within ``radius_deg`` of (``ra``, ``dec``) (degrees)."""
        lo, hi = dec - radius_deg, dec + radius_deg
        rows = self._select(self.object_dtype, "DiaObject", "WHERE dec BETWEEN ? AND ?",
                            (lo, hi))
        if len(rows) == 0:
            return rows
        r0, d0 = np.radians(ra), np.radians(dec)
        r, d = np.radians(rows["ra"]), np.radians(rows["dec"])
        cos_sep = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(r - r0)
        return rows[cos_sep >= np.cos(np.radians(radius_deg))]

    def objects(self, ids: Sequence[int] | None = None) -> np.ndarray:
        """The diaObjects with these ids (all of them if None), ordered by id."""
        if ids is None:
            return self._select(self.object_dtype, "DiaObject", "ORDER BY diaObjectId", ())
        ids = [int(i) for i in ids]
        out = [self._select(self.object_dtype, "DiaObject",
                            f"WHERE diaObjectId IN ({','.join('?' * len(chunk))})", chunk)
               for chunk in _chunks(ids)]
        rows = np.concatenate(out) if out else np.zeros(0, self.object_dtype)
        return rows[np.argsort(rows["diaObjectId"], kind="stable")]

    def sources_of(self, object_ids: Sequence[int], since_mjd: float = -np.inf) -> np.ndarray:
        """The diaSources of these objects at or after ``since_mjd``, by object then time."""
        ids = [int(i) for i in object_ids]
        out = [self._select(DIA_SOURCE_DTYPE, "DiaSource",
                            f"WHERE diaObjectId IN ({','.join('?' * len(chunk))}) "
                            "AND midpointMjdTai >= ?",
                            [*chunk, float(since_mjd) if np.isfinite(since_mjd) else -1e300])
               for chunk in _chunks(ids)]
        rows = np.concatenate(out) if out else np.zeros(0, DIA_SOURCE_DTYPE)
        return rows[np.lexsort((rows["diaSourceId"], rows["midpointMjdTai"],
                                rows["diaObjectId"]))]

    def sources_of_visit(self, visit: int, ccd: int | None = None) -> np.ndarray:
        """The diaSources of one visit (one CCD of it), by id."""
        where, args = "WHERE visit = ?", [int(visit)]
        if ccd is not None:
            where, args = where + " AND ccd = ?", [*args, int(ccd)]
        return self._select(DIA_SOURCE_DTYPE, "DiaSource", where + " ORDER BY diaSourceId",
                            args)

    def ccd_visits(self) -> list[tuple[int, int]]:
        """The (visit, ccd) pairs whose diaSources are stored."""
        return [(int(v), int(c)) for v, c in self._db.execute(
            "SELECT visit, ccd FROM ApdbCcdVisit ORDER BY visit, ccd")]

    def visits(self) -> list[int]:
        """The visits with at least one stored CCD."""
        return sorted({v for v, _ in self.ccd_visits()})

    def next_object_id(self) -> int:
        """One more than the largest diaObjectId stored (1 for an empty database)."""
        row = self._db.execute("SELECT MAX(diaObjectId) FROM DiaObject").fetchone()
        return 1 + int(row[0] or 0)

    # --- writing ---------------------------------------------------------------------------
    def store(self, visit: int, ccds: Sequence[int], objects: np.ndarray, sources: np.ndarray
              ) -> None:
        """Store CCDs of one visit atomically: new or updated diaObjects and their diaSources.

        Parameters
        ----------
        visit : int
            The visit.
        ccds : sequence of int
            The CCDs processed (their diaSources, possibly none, are all in ``sources``).
        objects, sources : numpy.ndarray
            The new and updated diaObjects, and the diaSources.

        Raises
        ------
        ApdbError
            A CCD of the visit was stored already (each is associated once), a source is of
            another visit or CCD, or it names an object that is neither given nor stored.
        """
        objects = np.asarray(objects, dtype=self.object_dtype)
        sources = np.asarray(sources, dtype=DIA_SOURCE_DTYPE)
        ccds = sorted({int(c) for c in ccds})
        stray = ~np.isin(sources["ccd"], ccds) | (sources["visit"] != visit)
        if stray.any():
            raise ApdbError(f"{self.path}: visit {visit} CCDs {ccds}: sources of visit "
                            f"{int(sources['visit'][stray][0])} CCD "
                            f"{int(sources['ccd'][stray][0])} given")
        with self._transaction():
            done = [c for c in ccds if self._db.execute(
                "SELECT 1 FROM ApdbCcdVisit WHERE visit = ? AND ccd = ?",
                (int(visit), c)).fetchone()]
            if done:
                raise ApdbError(f"{self.path}: visit {visit} CCD(s) {done} were already stored")
            self._insert("DiaObject", objects, replace=True)
            self._insert("DiaSource", sources, replace=False)
            known = {int(r[0]) for r in self._db.execute(
                "SELECT DISTINCT s.diaObjectId FROM DiaSource s LEFT JOIN DiaObject o "
                "ON s.diaObjectId = o.diaObjectId WHERE o.diaObjectId IS NULL AND s.visit = ?",
                (int(visit),))}
            if known:
                raise ApdbError(f"{self.path}: visit {visit}: sources name unknown diaObjects "
                                f"{sorted(known)[:5]}")
            self._db.executemany("INSERT INTO ApdbCcdVisit VALUES (?, ?)",
                                 [(int(visit), c) for c in ccds])

    def _insert(self, table: str, rows: np.ndarray, replace: bool) -> None:
        if len(rows) == 0:
            return
        names = rows.dtype.names or ()
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        sql = (f"{verb} INTO {table} ({', '.join(f'{chr(34)}{n}{chr(34)}' for n in names)}) "
               f"VALUES ({', '.join('?' * len(names))})")
        try:
            self._db.executemany(sql, ([_to_python(v) for v in row] for row in rows.tolist()))
        except sqlite3.IntegrityError as exc:
            raise ApdbError(f"{self.path}: {table}: {exc}") from exc


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]
