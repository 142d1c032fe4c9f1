"""The Alert Production DataBase (APDB): Rubin's tables, a HEALPix index, SQLite or PostgreSQL.

LSST keeps the state of its alert production (every object seen to vary, every source
detected on a difference image, the forced photometry of the objects on later difference
images) in a database beside the butler, the APDB. hpcpipe's has Rubin's tables, with the
columns of ``apdb.yaml`` from ``lsst-sdm-schemas`` (:mod:`hpcpipe.ap.sdm`), so that the
database and the alert packets (whose records Rubin generates from the same file) agree:

``DiaSource``
    One row per source detected on a difference image. hpcpipe fills the columns of
    :data:`DIA_SOURCE_COLUMNS`; the others (trails, solar-system ids, reliability, streak
    and injection flags: measurements hpcpipe does not make) stay NULL.
``DiaObject``
    One row per object: mean position and its errors, per band the light-curve statistics
    (:func:`hpcpipe.ap.association.light_curve_stats`), first and last diaSource times.
    Rubin keeps every version of a diaObject (``validityStartMjdTai`` to
    ``validityEndMjdTai``); hpcpipe keeps the latest only (``validityEndMjdTai`` NULL).
``DiaForcedSource``
    The forced PSF photometry of a diaObject on a later difference image (and the calexp),
    at its position (:mod:`hpcpipe.ap.forced`).

Every table has an extra ``pixelId`` column, the HEALPix pixel (nested scheme, order
:data:`INDEX_ORDER`, about 3 arcsec) of the row's position, with an index on it (as
Rubin's ``dax_apdb`` adds a ``pixelId`` of its pixelization). A spatial query covers its
region with HEALPix pixels of an order suited to the region's size, turns them into ranges
of index pixels (nested pixels of one parent are consecutive) and reads those ranges
only: a CCD reads a few hundred square arcminutes, not a band of declination around the sky.

The database is SQLite (a file: the embedded default) or anything SQLAlchemy reaches, such
as a PostgreSQL server shared by the ranks of a production (``postgresql+psycopg://...``).
Writes are transactions: a visit's new and updated objects and its sources are stored
together or not at all (:meth:`Apdb.store`), so a crash never leaves half a visit.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hpgeom
import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from hpcpipe.ap.sdm import apdb_columns, apdb_schema_version, numpy_dtype
from hpcpipe.errors import HpcpipeError

__all__ = ["Apdb", "ApdbError", "BANDS", "DIA_FORCED_SOURCE_DTYPE", "DIA_OBJECT_DTYPE",
           "DIA_SOURCE_COLUMNS", "DIA_SOURCE_DTYPE", "INDEX_ORDER", "SCHEMA_VERSION",
           "STAT_NAMES", "new_rows", "pixel_ranges_circle", "pixel_ranges_polygon",
           "table_columns"]

#: Version of hpcpipe's APDB layout (stored in the database; another version is refused).
SCHEMA_VERSION = 2
#: HEALPix order of the ``pixelId`` columns (nested; nside 65536, pixels of 3.2 arcsec).
INDEX_ORDER = 16
#: The bands of Rubin's DiaObject table (per-band columns ``<band>_<stat>``).
BANDS = ("u", "g", "r", "i", "z", "y")
#: The per-band light-curve statistics of DiaObject (``<band>_<name>``).
STAT_NAMES = ("psfFluxMean", "psfFluxMeanErr", "psfFluxSigma", "psfFluxNdata", "psfFluxMin",
              "psfFluxMax", "psfFluxMaxSlope", "psfFluxErrMean", "scienceFluxMean",
              "scienceFluxMeanErr", "fpFluxMean", "fpFluxMeanErr")

#: The DiaSource columns hpcpipe measures (the rest of Rubin's stay NULL).
DIA_SOURCE_COLUMNS = (
    "diaSourceId", "visit", "detector", "diaObjectId", "midpointMjdTai", "exposureTime",
    "ra", "raErr", "dec", "decErr", "ra_dec_Cov", "x", "xErr", "y", "yErr", "centroid_flag",
    "apFlux", "apFluxErr", "apFlux_flag", "isNegative", "snr", "psfFlux", "psfFluxErr",
    "psfNdata", "psfFlux_flag", "trailNdata", "dipoleMeanFlux", "dipoleMeanFluxErr",
    "dipoleFluxDiff", "dipoleFluxDiffErr", "dipoleLength", "dipoleAngle", "dipoleChi2",
    "dipoleNdata", "scienceFlux", "scienceFluxErr", "forced_PsfFlux_flag", "templateFlux",
    "templateFluxErr", "ixx", "iyy", "ixy", "shape_flag", "band", "isDipole",
    "dipoleFitAttempted", "timeProcessedMjdTai", "bboxSize", "pixelFlags", "pixelFlags_bad",
    "pixelFlags_cr", "pixelFlags_crCenter", "pixelFlags_edge", "pixelFlags_nodata",
    "pixelFlags_nodataCenter", "pixelFlags_interpolated", "pixelFlags_interpolatedCenter",
    "pixelFlags_offimage", "pixelFlags_saturated", "pixelFlags_saturatedCenter",
    "pixelFlags_suspect", "pixelFlags_suspectCenter",
)
#: A diaSource row (the measured columns, with Rubin's types).
DIA_SOURCE_DTYPE = numpy_dtype("DiaSource", DIA_SOURCE_COLUMNS)
#: A diaObject row (every column of Rubin's DiaObject but ``validityEndMjdTai``).
DIA_OBJECT_DTYPE = numpy_dtype("DiaObject", tuple(
    c.name for c in apdb_columns("DiaObject") if c.name != "validityEndMjdTai"))
#: A diaForcedSource row (every column of Rubin's DiaForcedSource).
DIA_FORCED_SOURCE_DTYPE = numpy_dtype("DiaForcedSource")

_SQL_TYPES: dict[str, Any] = {
    "long": sa.BigInteger, "int": sa.Integer, "short": sa.SmallInteger, "float": sa.REAL,
    "double": sa.Double, "boolean": sa.Boolean, "char": sa.String, "string": sa.String}
_KEYS = {"DiaObject": ("diaObjectId",), "DiaSource": ("diaSourceId",),
         "DiaForcedSource": ("diaObjectId", "visit", "detector")}
_DTYPES = {"DiaObject": DIA_OBJECT_DTYPE, "DiaSource": DIA_SOURCE_DTYPE,
           "DiaForcedSource": DIA_FORCED_SOURCE_DTYPE}


def new_rows(dtype: np.dtype, n: int) -> np.ndarray:
    """``n`` empty rows of ``dtype``: floating-point columns NaN (NULL: not measured), the
    others zero."""
    rows = np.zeros(n, dtype)
    for name in dtype.names or ():
        if dtype[name].kind == "f":
            rows[name] = np.nan
    return rows


class ApdbError(HpcpipeError):
    """The APDB is missing, not an APDB, of another layout version, or inconsistent."""


def table_columns(table: str, keys: tuple[str, ...]) -> list[sa.Column]:
    """The SQLAlchemy columns of one of Rubin's APDB tables (from its schema), ``keys`` the
    primary key."""
    columns = []
    for spec in apdb_columns(table):
        kind = _SQL_TYPES[spec.datatype]
        sql_type = kind(spec.length or 64) if kind is sa.String else kind()
        columns.append(sa.Column(spec.name, sql_type, primary_key=spec.name in keys,
                                 nullable=spec.nullable and spec.name not in keys,
                                 autoincrement=False, comment=spec.description or None))
    return columns


def _metadata() -> sa.MetaData:
    meta = sa.MetaData()
    for table, keys in _KEYS.items():
        columns = table_columns(table, keys)
        columns.append(sa.Column("pixelId", sa.BigInteger, nullable=False,
                                 comment=f"HEALPix nested pixel, order {INDEX_ORDER}"))
        sa.Table(table, meta, *columns)
        sa.Index(f"{table}_pixelId", meta.tables[table].c.pixelId)
    sa.Index("DiaSource_diaObjectId", meta.tables["DiaSource"].c.diaObjectId)
    sa.Index("DiaSource_visit_detector", meta.tables["DiaSource"].c.visit,
             meta.tables["DiaSource"].c.detector)
    sa.Index("DiaForcedSource_visit_detector", meta.tables["DiaForcedSource"].c.visit,
             meta.tables["DiaForcedSource"].c.detector)
    sa.Table("ApdbInfo", meta, sa.Column("key", sa.String(64), primary_key=True),
             sa.Column("value", sa.String(256)))
    for name in ("ApdbDetectorVisit", "ApdbForcedDetectorVisit"):
        sa.Table(name, meta, sa.Column("visit", sa.BigInteger, primary_key=True,
                                       autoincrement=False),
                 sa.Column("detector", sa.Integer, primary_key=True, autoincrement=False))
    return meta


def _query_order(radius_deg: float) -> int:
    """A HEALPix order whose pixels are about half the radius (a few dozen cover a disc)."""
    size = math.degrees(math.sqrt(4 * math.pi / 12))  # order-0 pixel side, ~58.6 deg
    order = int(math.floor(math.log2(size / max(radius_deg / 2, 1e-9))))
    return int(np.clip(order, 0, INDEX_ORDER))


def pixel_ranges_circle(ra: float, dec: float, radius_deg: float) -> np.ndarray:
    """Half-open ranges of :data:`INDEX_ORDER` pixels covering a disc (degrees)."""
    order = _query_order(radius_deg)
    nside = hpgeom.order_to_nside(order)
    ranges = hpgeom.query_circle(nside, ra, dec, radius_deg, inclusive=True,
                                 return_pixel_ranges=True)
    return hpgeom.upgrade_pixel_ranges(nside, ranges, hpgeom.order_to_nside(INDEX_ORDER))


def pixel_ranges_polygon(ra: Sequence[float] | np.ndarray, dec: Sequence[float] | np.ndarray
                         ) -> np.ndarray:
    """Half-open ranges of :data:`INDEX_ORDER` pixels covering a convex polygon (degrees,
    vertices in order, such as a CCD's corners)."""
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    centre = _unit(ra, dec).mean(axis=0)
    centre /= np.linalg.norm(centre)
    radius = float(np.degrees(np.arccos(np.clip(_unit(ra, dec) @ centre, -1, 1))).max())
    order = _query_order(radius)
    nside = hpgeom.order_to_nside(order)
    ranges = hpgeom.query_polygon(nside, ra, dec, inclusive=True, return_pixel_ranges=True)
    return hpgeom.upgrade_pixel_ranges(nside, ranges, hpgeom.order_to_nside(INDEX_ORDER))


def _unit(ra: npt.ArrayLike, dec: npt.ArrayLike) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])


def pixel_ids(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """The :data:`INDEX_ORDER` HEALPix pixels (nested) of positions in degrees."""
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    if len(ra) == 0:
        return np.zeros(0, np.int64)
    return hpgeom.angle_to_pixel(hpgeom.order_to_nside(INDEX_ORDER), ra % 360.0,
                                 np.clip(dec, -90, 90)).astype(np.int64)


def _to_python(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN is stored as NULL
        return None
    return value


def _url(location: str | os.PathLike[str]) -> tuple[str, Path | None]:
    text = os.fspath(location)
    if "://" in text:
        return text, None
    path = Path(text)
    return f"sqlite:///{path}", path


class Apdb:
    """An APDB: an SQLite file or an SQLAlchemy database URL.

    Parameters
    ----------
    location : str or os.PathLike
        A file path (SQLite) or a URL (``postgresql+psycopg://user@/db?host=/socket/dir``).
    bands : sequence of str, optional
        The bands a new database records (among :data:`BANDS`); an existing database keeps
        its own, and giving others is an error.
    create : bool
        Create the tables if the database has none; otherwise a missing database is an
        :class:`ApdbError`.
    """

    def __init__(self, location: str | os.PathLike[str], bands: Sequence[str] | None = None,
                 create: bool = False) -> None:
        self.url, self.path = _url(location)
        self.name = str(self.path) if self.path is not None else sa.make_url(
            self.url).render_as_string(hide_password=True)
        if self.path is not None:
            if not self.path.exists() and not create:
                raise ApdbError(f"{self.path}: no APDB here (create it with create=True)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(self.url, connect_args={"timeout": 120.0})
            sa.event.listen(self.engine, "connect", _sqlite_on_connect)
            sa.event.listen(self.engine, "begin", _sqlite_on_begin)
        else:
            self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        self.meta = _metadata()
        self.tables = self.meta.tables
        try:
            self.bands = self._open_or_create(bands, create)
        except sa.exc.DBAPIError as exc:
            self.engine.dispose()
            raise ApdbError(f"{self.name}: not an APDB, or not reachable ({exc.orig})") \
                from exc
        except ApdbError:
            self.engine.dispose()
            raise
        self.object_dtype = DIA_OBJECT_DTYPE

    def _open_or_create(self, bands: Sequence[str] | None, create: bool) -> tuple[str, ...]:
        existing = set(sa.inspect(self.engine).get_table_names())
        if "ApdbInfo" in existing:
            with self.engine.connect() as conn:
                info: dict[str, Any] = dict(conn.execute(sa.select(self.tables["ApdbInfo"])).all())
            version = int(info.get("schema_version", -1))
            if version != SCHEMA_VERSION:
                raise ApdbError(f"{self.name}: APDB layout version {version} is unknown "
                                f"(this hpcpipe reads version {SCHEMA_VERSION})")
            stored = tuple(info["bands"].split(",")) if info.get("bands") else ()
            if bands is not None and tuple(bands) != stored:
                raise ApdbError(f"{self.name}: the APDB records bands {stored}, not "
                                f"{tuple(bands)}")
            return stored
        if existing:
            raise ApdbError(f"{self.name}: a database, but not an APDB "
                            f"(tables: {', '.join(sorted(existing))})")
        if not create:
            raise ApdbError(f"{self.name}: no APDB here (create it with create=True)")
        if not bands:
            raise ApdbError(f"{self.name}: a new APDB needs its bands")
        unknown = [b for b in bands if b not in BANDS]
        if unknown:
            raise ApdbError(f"{self.name}: bands {unknown} have no columns in Rubin's "
                            f"DiaObject (bands {', '.join(BANDS)})")
        with self.engine.begin() as conn:
            self.meta.create_all(conn)
            conn.execute(self.tables["ApdbInfo"].insert(), [
                {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                {"key": "bands", "value": ",".join(bands)},
                {"key": "sdm_apdb_version", "value": apdb_schema_version()},
                {"key": "pixelization", "value": f"healpix nest order {INDEX_ORDER}"}])
        return tuple(bands)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Apdb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------
    def _select(self, table: str, where: Any = None, order: Sequence[str] = ()) -> np.ndarray:
        dtype = _DTYPES[table]
        t = self.tables[table]
        query = sa.select(*(t.c[n] for n in dtype.names or ()))
        if where is not None:
            query = query.where(where)
        if order:
            query = query.order_by(*(t.c[n] for n in order))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return _rows_to_array(rows, dtype)

    def objects_in_pixel_ranges(self, ranges: np.ndarray) -> np.ndarray:
        """The diaObjects whose ``pixelId`` is in these half-open ranges (one statement,
        its text cached by the number of ranges: each range is an index range scan)."""
        if len(ranges) == 0:
            return np.zeros(0, DIA_OBJECT_DTYPE)
        params = {}
        for k, (a, b) in enumerate(ranges):
            params[f"a{k}"], params[f"b{k}"] = int(a), int(b)
        with self.engine.connect() as conn:
            rows = conn.execute(_ranges_query("DiaObject", len(ranges)), params).all()
        return _rows_to_array(rows, DIA_OBJECT_DTYPE)

    def objects_in_region(self, ra: float, dec: float, radius_deg: float) -> np.ndarray:
        """The diaObjects within ``radius_deg`` of (``ra``, ``dec``) (degrees)."""
        rows = self.objects_in_pixel_ranges(pixel_ranges_circle(ra, dec, radius_deg))
        if len(rows) == 0:
            return rows
        cos_sep = _unit(rows["ra"], rows["dec"]) @ _unit(np.array([ra]), np.array([dec]))[0]
        return rows[cos_sep >= np.cos(np.radians(radius_deg))]

    def objects_in_polygon(self, ra: Sequence[float], dec: Sequence[float]) -> np.ndarray:
        """The diaObjects in the HEALPix pixels covering a convex polygon (such as a CCD's
        corners): a superset of those inside it."""
        return self.objects_in_pixel_ranges(pixel_ranges_polygon(ra, dec))

    def objects(self, ids: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """The diaObjects with these ids (all of them if None), ordered by id."""
        t = self.tables["DiaObject"]
        if ids is None:
            return self._select("DiaObject", order=("diaObjectId",))
        parts = [self._select("DiaObject", t.c.diaObjectId.in_(chunk))
                 for chunk in _chunks([int(i) for i in ids])]
        rows = np.concatenate(parts) if parts else np.zeros(0, DIA_OBJECT_DTYPE)
        return rows[np.argsort(rows["diaObjectId"], kind="stable")]

    def sources_of(self, object_ids: Sequence[int] | np.ndarray, since_mjd: float = -np.inf
                   ) -> np.ndarray:
        """The diaSources of these objects at or after ``since_mjd``, by object then time."""
        return self._history("DiaSource", object_ids, since_mjd, "diaSourceId")

    def forced_sources_of(self, object_ids: Sequence[int] | np.ndarray, since_mjd: float = -np.inf
                          ) -> np.ndarray:
        """The diaForcedSources of these objects at or after ``since_mjd``, by object then
        time."""
        return self._history("DiaForcedSource", object_ids, since_mjd, "visit")

    def _history(self, table: str, object_ids: Sequence[int] | np.ndarray, since_mjd: float,
                 tie: str) -> np.ndarray:
        t = self.tables[table]
        since = float(since_mjd) if np.isfinite(since_mjd) else -1e300
        parts = [self._select(table, sa.and_(t.c.diaObjectId.in_(chunk),
                                             t.c.midpointMjdTai >= since))
                 for chunk in _chunks([int(i) for i in object_ids])]
        rows = np.concatenate(parts) if parts else np.zeros(0, _DTYPES[table])
        return rows[np.lexsort((rows[tie], rows["midpointMjdTai"], rows["diaObjectId"]))]

    def sources_of_visit(self, visit: int, detector: int | None = None) -> np.ndarray:
        """The diaSources of one visit (one detector of it), by id."""
        t = self.tables["DiaSource"]
        where = t.c.visit == int(visit)
        if detector is not None:
            where = sa.and_(where, t.c.detector == int(detector))
        return self._select("DiaSource", where, order=("diaSourceId",))

    def forced_sources_of_visit(self, visit: int, detector: int | None = None) -> np.ndarray:
        """The diaForcedSources of one visit (one detector of it), by object."""
        t = self.tables["DiaForcedSource"]
        where = t.c.visit == int(visit)
        if detector is not None:
            where = sa.and_(where, t.c.detector == int(detector))
        return self._select("DiaForcedSource", where, order=("diaObjectId",))

    def _pairs(self, table: str) -> list[tuple[int, int]]:
        t = self.tables[table]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.visit, t.c.detector).order_by(
                t.c.visit, t.c.detector)).all()
        return [(int(v), int(d)) for v, d in rows]

    def ccd_visits(self) -> list[tuple[int, int]]:
        """The (visit, detector) pairs whose diaSources are stored."""
        return self._pairs("ApdbDetectorVisit")

    def forced_ccd_visits(self) -> list[tuple[int, int]]:
        """The (visit, detector) pairs whose forced photometry is stored."""
        return self._pairs("ApdbForcedDetectorVisit")

    def visits(self) -> list[int]:
        """The visits with at least one stored detector."""
        return sorted({v for v, _ in self.ccd_visits()})

    def next_object_id(self) -> int:
        """One more than the largest diaObjectId stored (1 for an empty database)."""
        t = self.tables["DiaObject"]
        with self.engine.connect() as conn:
            top = conn.execute(sa.select(sa.func.max(t.c.diaObjectId))).scalar()
        return 1 + int(top or 0)

    # --- writing ---------------------------------------------------------------------------
    def store(self, visit: int, ccds: Sequence[int], objects: np.ndarray, sources: np.ndarray
              ) -> None:
        """Store detectors of one visit atomically: new or updated diaObjects, diaSources.

        Parameters
        ----------
        visit : int
            The visit.
        ccds : sequence of int
            The detectors processed (their diaSources, possibly none, are all in
            ``sources``).
        objects, sources : numpy.ndarray
            The new and updated diaObjects, and the diaSources.

        Raises
        ------
        ApdbError
            A detector of the visit was stored already (each is associated once), a source
            is of another visit or detector, or it names an object neither given nor stored.
        """
        objects = np.asarray(objects, dtype=DIA_OBJECT_DTYPE)
        sources = np.asarray(sources, dtype=DIA_SOURCE_DTYPE)
        ccds = sorted({int(c) for c in ccds})
        stray = ~np.isin(sources["detector"], ccds) | (sources["visit"] != visit)
        if stray.any():
            raise ApdbError(f"{self.name}: visit {visit} detectors {ccds}: sources of visit "
                            f"{int(sources['visit'][stray][0])} detector "
                            f"{int(sources['detector'][stray][0])} given")
        done_table = self.tables["ApdbDetectorVisit"]
        with self.engine.begin() as conn:
            done = [c for c in ccds if conn.execute(sa.select(done_table.c.visit).where(
                done_table.c.visit == int(visit), done_table.c.detector == c)).first()]
            if done:
                raise ApdbError(f"{self.name}: visit {visit} detector(s) {done} were already "
                                "stored")
            self._replace(conn, "DiaObject", objects)
            self._insert(conn, "DiaSource", sources)
            wanted = sorted({int(i) for i in sources["diaObjectId"]})
            obj = self.tables["DiaObject"]
            found: set[int] = set()
            for chunk in _chunks(wanted):
                found |= {int(r[0]) for r in conn.execute(
                    sa.select(obj.c.diaObjectId).where(obj.c.diaObjectId.in_(chunk)))}
            unknown = sorted(set(wanted) - found)
            if unknown:
                raise ApdbError(f"{self.name}: visit {visit}: sources name unknown diaObjects "
                                f"{unknown[:5]}")
            if ccds:
                conn.execute(done_table.insert(), [{"visit": int(visit), "detector": c}
                                                   for c in ccds])

    def store_forced(self, visit: int, detector: int, forced: np.ndarray,
                     objects: np.ndarray | None = None) -> None:
        """Store one detector's forced photometry (and the objects it updated) atomically.

        Raises
        ------
        ApdbError
            The detector's forced photometry was stored already, or a row is of another
            visit or detector.
        """
        forced = np.asarray(forced, dtype=DIA_FORCED_SOURCE_DTYPE)
        stray = (forced["visit"] != visit) | (forced["detector"] != detector)
        if stray.any():
            raise ApdbError(f"{self.name}: forced photometry of visit {visit} detector "
                            f"{detector}: rows of visit {int(forced['visit'][stray][0])} "
                            f"detector {int(forced['detector'][stray][0])} given")
        done_table = self.tables["ApdbForcedDetectorVisit"]
        with self.engine.begin() as conn:
            if conn.execute(sa.select(done_table.c.visit).where(
                    done_table.c.visit == int(visit),
                    done_table.c.detector == int(detector))).first():
                raise ApdbError(f"{self.name}: forced photometry of visit {visit} detector "
                                f"{detector} was already stored")
            self._insert(conn, "DiaForcedSource", forced)
            if objects is not None:
                self._replace(conn, "DiaObject", np.asarray(objects, DIA_OBJECT_DTYPE))
            conn.execute(done_table.insert(), [{"visit": int(visit),
                                                "detector": int(detector)}])

    def _replace(self, conn: Any, table: str, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        t = self.tables[table]
        for chunk in _chunks([int(i) for i in rows["diaObjectId"]]):
            conn.execute(t.delete().where(t.c.diaObjectId.in_(chunk)))
        self._insert(conn, table, rows)

    def _insert(self, conn: Any, table: str, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        names = rows.dtype.names or ()
        pix = pixel_ids(rows["ra"], rows["dec"])
        records = [{**{n: _to_python(v) for n, v in zip(names, row, strict=True)},
                    "pixelId": int(p)} for row, p in zip(rows.tolist(), pix, strict=True)]
        try:
            conn.execute(self.tables[table].insert(), records)
        except sa.exc.IntegrityError as exc:
            raise ApdbError(f"{self.name}: {table}: {exc.orig}") from exc


@functools.lru_cache(maxsize=256)
def _ranges_query(table: str, n_ranges: int) -> sa.TextClause:
    names = ", ".join(f'"{n}"' for n in _DTYPES[table].names or ())
    where = " OR ".join(f'("pixelId" >= :a{k} AND "pixelId" < :b{k})' for k in range(n_ranges))
    return sa.text(f'SELECT {names} FROM "{table}" WHERE {where}')


def _rows_to_array(rows: Sequence[Any], dtype: np.dtype) -> np.ndarray:
    out = np.zeros(len(rows), dtype)
    if not rows:
        return out
    columns = list(zip(*rows, strict=True))
    for name, values in zip(dtype.names or (), columns, strict=True):
        kind = dtype[name].kind
        if kind == "f":
            out[name] = np.array([np.nan if v is None else v for v in values], float)
        elif kind in "iub":
            out[name] = [0 if v is None else v for v in values]
        else:
            out[name] = ["" if v is None else v for v in values]
    return out


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # let SQLAlchemy issue BEGIN (pysqlite's own transaction handling is off) and use WAL
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA journal_mode=WAL")


def _sqlite_on_begin(conn: Any) -> None:
    # a deferred transaction: readers (the workers) never wait for one another; one rank
    # (the master) writes
    conn.exec_driver_sql("BEGIN")


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]

