"""The solar-system tables of the APDB: SSObject, SSSource and hpcpipe's orbits (SSOrbit).

Rubin keeps the solar-system census beside the alert production's tables: ``SSObject`` (one
row per known moving object: observation counts, arc, per-band photometric phase-curve
fits) and ``SSSource`` (one row per diaSource attributed to an SSObject: its ephemeris, the
offset from it, the geometry), with the columns of ``apdb.yaml`` (:mod:`hpcpipe.ap.sdm`);
an attributed diaSource also carries the ``ssObjectId`` in ``DiaSource``. The orbits
themselves are not in that version of Rubin's schema (its ``MPCORB`` table came later), so
hpcpipe adds ``SSOrbit``: the heliocentric equatorial state (au, au/day) at an epoch (MJD
TDB), its 6x6 covariance, the osculating elements (ecliptic J2000) and the fit's quality.

The tables live in the APDB's database (:class:`~hpcpipe.ap.apdb.Apdb`) and are created the
first time :class:`SolarSystemDb` opens it, so an APDB made before them gains them without
a change of its layout version. Every night's update (:meth:`SolarSystemDb.store`) is one
transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from hpcpipe.ap.apdb import Apdb, ApdbError, _chunks, _rows_to_array, _to_python, table_columns
from hpcpipe.ap.sdm import numpy_dtype

__all__ = ["SSOBJECT_DTYPE", "SSSOURCE_DTYPE", "SSORBIT_DTYPE", "DETECTION_COLUMNS",
           "SolarSystemDb"]

#: A row of Rubin's SSObject.
SSOBJECT_DTYPE = numpy_dtype("SSObject")
#: A row of Rubin's SSSource.
SSSOURCE_DTYPE = numpy_dtype("SSSource")
#: A row of hpcpipe's SSOrbit (the covariance is stored apart, see :meth:`SolarSystemDb.orbits`).
SSORBIT_DTYPE = np.dtype([
    ("ssObjectId", "i8"), ("epoch", "f8"), ("x", "f8"), ("y", "f8"), ("z", "f8"),
    ("vx", "f8"), ("vy", "f8"), ("vz", "f8"), ("a", "f8"), ("e", "f8"), ("incl", "f8"),
    ("node", "f8"), ("peri", "f8"), ("M", "f8"), ("q", "f8"), ("rmsArcsec", "f8"),
    ("chi2", "f8"), ("dof", "i4"), ("nObs", "i4"), ("arcStartMjdTai", "f8"),
    ("arcEndMjdTai", "f8"), ("lastUpdateMjdTai", "f8")])
_ORBIT_COMMENTS = {
    "epoch": "epoch of the state, MJD TDB", "x": "heliocentric ICRF position, au",
    "vx": "heliocentric ICRF velocity, au/day", "a": "semi-major axis, au",
    "incl": "inclination, deg (ecliptic J2000)", "node": "longitude of the node, deg",
    "peri": "argument of perihelion, deg", "M": "mean anomaly at epoch, deg",
    "q": "perihelion distance, au", "rmsArcsec": "RMS of the fit's residuals, arcsec"}
#: The diaSource columns the solar-system processing reads.
DETECTION_COLUMNS = ("diaSourceId", "diaObjectId", "visit", "detector", "midpointMjdTai",
                     "ra", "dec", "raErr", "decErr", "band", "psfFlux", "ssObjectId")
_DETECTION_DTYPE = numpy_dtype("DiaSource", DETECTION_COLUMNS)


def _metadata() -> sa.MetaData:
    meta = sa.MetaData()
    for table, keys in (("SSObject", ("ssObjectId",)), ("SSSource", ("diaSourceId",))):
        sa.Table(table, meta, *table_columns(table, keys))
    sa.Index("SSSource_ssObjectId", meta.tables["SSSource"].c.ssObjectId)
    kinds = {"f": sa.Double, "i": sa.BigInteger}
    orbit = [sa.Column(name, kinds[SSORBIT_DTYPE[name].kind](),
                       primary_key=name == "ssObjectId", autoincrement=False,
                       nullable=name != "ssObjectId",
                       comment=_ORBIT_COMMENTS.get(name))
             for name in SSORBIT_DTYPE.names or ()]
    orbit.append(sa.Column("covariance", sa.LargeBinary, nullable=False,
                           comment="6x6 covariance of (x, y, z, vx, vy, vz), float64 LE"))
    sa.Table("SSOrbit", meta, *orbit)
    return meta


class SolarSystemDb:
    """The solar-system tables of an APDB (created when missing).

    Parameters
    ----------
    apdb : Apdb
        The open APDB; its engine is shared.
    """

    def __init__(self, apdb: Apdb) -> None:
        self.apdb = apdb
        self.engine = apdb.engine
        self.meta = _metadata()
        self.tables = self.meta.tables
        try:
            with self.engine.begin() as conn:
                self.meta.create_all(conn, checkfirst=True)
        except sa.exc.DBAPIError as exc:
            raise ApdbError(f"{apdb.name}: cannot create the solar-system tables "
                            f"({exc.orig})") from exc

    # --- reading ---------------------------------------------------------------------------
    def unattributed_sources(self, mjd_start: float, mjd_end: float,
                             max_object_sources: int = 1) -> np.ndarray:
        """DiaSources with ``mjd_start <= midpointMjdTai < mjd_end`` attributed to no
        SSObject whose diaObject has at most ``max_object_sources`` diaSources (new
        transients: what a moving object leaves in the association), by time then id."""
        src = self.apdb.tables["DiaSource"]
        obj = self.apdb.tables["DiaObject"]
        query = (sa.select(*(src.c[n] for n in DETECTION_COLUMNS))
                 .join(obj, obj.c.diaObjectId == src.c.diaObjectId)
                 .where(src.c.midpointMjdTai >= float(mjd_start),
                        src.c.midpointMjdTai < float(mjd_end), src.c.ssObjectId.is_(None),
                        obj.c.nDiaSources <= int(max_object_sources))
                 .order_by(src.c.midpointMjdTai, src.c.diaSourceId))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out = _rows_to_array(rows, _DETECTION_DTYPE)
        out["ssObjectId"] = -1
        return out

    def sources_of(self, ss_object_ids: Sequence[int]) -> np.ndarray:
        """The diaSources attributed to these SSObjects, by object then time."""
        src = self.apdb.tables["DiaSource"]
        parts = []
        with self.engine.connect() as conn:
            for chunk in _chunks([int(i) for i in ss_object_ids]):
                rows = conn.execute(sa.select(*(src.c[n] for n in DETECTION_COLUMNS))
                                    .where(src.c.ssObjectId.in_(chunk))).all()
                parts.append(_rows_to_array(rows, _DETECTION_DTYPE))
        out = np.concatenate(parts) if parts else np.zeros(0, _DETECTION_DTYPE)
        return out[np.lexsort((out["midpointMjdTai"], out["ssObjectId"]))]

    def source_attributions(self) -> np.ndarray:
        """Every diaSource's ``ssObjectId`` (-1: none): rows ``(diaSourceId, ssObjectId)``
        by diaSourceId."""
        src = self.apdb.tables["DiaSource"]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(src.c.diaSourceId, src.c.ssObjectId)
                                .order_by(src.c.diaSourceId)).all()
        out = np.zeros(len(rows), [("diaSourceId", "i8"), ("ssObjectId", "i8")])
        if rows:
            out["diaSourceId"] = [r[0] for r in rows]
            out["ssObjectId"] = [-1 if r[1] is None else r[1] for r in rows]
        return out

    def orbits(self) -> tuple[np.ndarray, np.ndarray]:
        """Every orbit: rows of :data:`SSORBIT_DTYPE` by id, and their ``(n, 6, 6)``
        covariances."""
        t = self.tables["SSOrbit"]
        names = SSORBIT_DTYPE.names or ()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*(t.c[n] for n in names), t.c.covariance)
                                .order_by(t.c.ssObjectId)).all()
        out = _rows_to_array([r[:-1] for r in rows], SSORBIT_DTYPE)
        cov = np.array([np.frombuffer(r[-1], "<f8").reshape(6, 6) for r in rows]) \
            if rows else np.zeros((0, 6, 6))
        return out, cov

    def ss_objects(self) -> np.ndarray:
        """Every SSObject, by id."""
        t = self.tables["SSObject"]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*(t.c[n] for n in SSOBJECT_DTYPE.names or ()))
                                .order_by(t.c.ssObjectId)).all()
        return _rows_to_array(rows, SSOBJECT_DTYPE)

    def ss_sources(self) -> np.ndarray:
        """Every SSSource, by diaSourceId."""
        t = self.tables["SSSource"]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*(t.c[n] for n in SSSOURCE_DTYPE.names or ()))
                                .order_by(t.c.diaSourceId)).all()
        return _rows_to_array(rows, SSSOURCE_DTYPE)

    def next_ss_object_id(self) -> int:
        """One more than the largest ssObjectId stored (1 for none)."""
        t = self.tables["SSObject"]
        with self.engine.connect() as conn:
            top = conn.execute(sa.select(sa.func.max(t.c.ssObjectId))).scalar()
        return 1 + int(top or 0)

    # --- writing ---------------------------------------------------------------------------
    def store(self, orbits: np.ndarray, covariances: np.ndarray, ss_objects: np.ndarray,
              ss_sources: np.ndarray, attributed: Mapping[int, int], now_mjd_tai: float
              ) -> None:
        """Store a night's update atomically.

        Parameters
        ----------
        orbits, covariances : numpy.ndarray
            New and updated orbits (:data:`SSORBIT_DTYPE`) and their 6x6 covariances.
        ss_objects : numpy.ndarray
            New and updated SSObjects (replace the stored rows of their ids).
        ss_sources : numpy.ndarray
            New SSSources (replace the stored rows of their diaSourceIds).
        attributed : mapping
            ``diaSourceId -> ssObjectId`` to write into DiaSource.
        now_mjd_tai : float
            ``ssObjectReassocTimeMjdTai`` of the attributed diaSources.

        Raises
        ------
        ApdbError
            An SSSource names an SSObject neither given nor stored, or a diaSource that is
            not in the APDB.
        """
        orbits = np.asarray(orbits, SSORBIT_DTYPE)
        ss_objects = np.asarray(ss_objects, SSOBJECT_DTYPE)
        ss_sources = np.asarray(ss_sources, SSSOURCE_DTYPE)
        covariances = np.asarray(covariances, float).reshape(len(orbits), 6, 6)
        src = self.apdb.tables["DiaSource"]
        with self.engine.begin() as conn:
            self._replace(conn, "SSOrbit", "ssObjectId", [
                {**_record(row), "covariance": np.ascontiguousarray(c, "<f8").tobytes()}
                for row, c in zip(orbits, covariances, strict=True)])
            self._replace(conn, "SSObject", "ssObjectId", [_record(r) for r in ss_objects])
            self._replace(conn, "SSSource", "diaSourceId", [_record(r) for r in ss_sources])
            known = self.tables["SSObject"].c.ssObjectId
            wanted = sorted({int(i) for i in ss_sources["ssObjectId"]}
                            | {int(i) for i in attributed.values()})
            found: set[int] = set()
            for chunk in _chunks(wanted):
                found |= {int(r[0]) for r in conn.execute(sa.select(known)
                                                          .where(known.in_(chunk)))}
            if set(wanted) - found:
                raise ApdbError(f"{self.apdb.name}: SSSources name unknown SSObjects "
                                f"{sorted(set(wanted) - found)[:5]}")
            for dia_id, ss_id in attributed.items():
                done = conn.execute(src.update().where(src.c.diaSourceId == int(dia_id))
                                    .values(ssObjectId=int(ss_id),
                                            ssObjectReassocTimeMjdTai=float(now_mjd_tai)))
                if done.rowcount != 1:
                    raise ApdbError(f"{self.apdb.name}: no diaSource {dia_id} to attribute "
                                    f"to SSObject {ss_id}")

    def _replace(self, conn: Any, table: str, key: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        t = self.tables[table]
        for chunk in _chunks([int(r[key]) for r in records]):
            conn.execute(t.delete().where(t.c[key].in_(chunk)))
        conn.execute(t.insert(), records)


def _record(row: np.void) -> dict[str, Any]:
    return {n: _to_python(v) for n, v in zip(row.dtype.names or (), row.tolist(), strict=True)}
