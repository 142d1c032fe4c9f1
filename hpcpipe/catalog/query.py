"""SQL over the release's HATS catalogs with DuckDB: read-only, with a pruned cone search.

:class:`ReleaseDatabase` opens the HATS directory of a release (``<release>/hats``) in an
in-memory DuckDB database: each catalog (``objects``, ``sources``, ``forced``) is a view over
its partition Parquet files, and two macros are defined:

* ``ang_sep(ra1, dec1, ra2, dec2)``: the great-circle distance in degrees (haversine);
* ``cone(ra, dec, ra0, dec0, radius)``: whether ``(ra, dec)`` is within ``radius`` degrees
  of ``(ra0, dec0)``.

A query whose ``cone(...)`` has constant centre and radius is rewritten before DuckDB sees
it: the cone becomes ``_healpix_29`` ranges (the NESTED order-29 pixels of the cone's cover
at a coarser order, from :func:`cdshealpix.nested.cone_search`) *and* the exact distance, so
that Parquet statistics skip the row groups outside the cone; and when the query reads one
catalog only, that catalog is shadowed by a common table expression over only the partition
files whose HEALPix pixel meets the cone, so that the other files are never opened.

Read-only: only a single ``SELECT`` (or ``WITH ... SELECT``) statement is accepted; the
database is set up with ``enable_external_access = false`` (with the release directory as
the only allowed directory), extension auto-loading off, and ``lock_configuration = true``,
so that no query can write files, read outside the release, or load extensions. A query runs
with a row limit and a timeout (the connection is interrupted).
"""

from __future__ import annotations

import ast
import operator
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import cdshealpix
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from astropy.coordinates import Latitude, Longitude
from astropy.table import Table
from hats.catalog import PartitionInfo
from hats.io import paths
from hats.pixel_math.spatial_index import SPATIAL_INDEX_ORDER

from hpcpipe.catalog.columns import column_info
from hpcpipe.errors import HpcpipeError
from hpcpipe.io.atomic import atomic_path

__all__ = ["QueryError", "ReleaseDatabase", "ConeSearch", "cone_ranges", "write_result",
           "TABLES", "MAX_QUERY_LENGTH"]

#: The catalogs of a release, as table names.
TABLES = ("objects", "sources", "forced", "multifit")
#: Longest query text accepted (characters).
MAX_QUERY_LENGTH = 20_000

_CONE = re.compile(r"\bcone\s*\(", re.IGNORECASE)
_NEGATION = re.compile(r"\b(OR|NOT|EXCEPT|UNION)\b", re.IGNORECASE)
_OPS: dict[type[ast.AST], Callable[..., float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.USub: operator.neg, ast.UAdd: operator.pos}


class QueryError(HpcpipeError, ValueError):
    """A query that cannot run: syntax, unknown table or column, not read-only, too long,
    over time."""


def _constant(text: str) -> float | None:
    """The value of a constant arithmetic expression (``2/60``), or None if it is not one."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.operand))
        raise ValueError("not constant")

    try:
        return float(value(tree))
    except (ValueError, ZeroDivisionError):
        return None


def _split_arguments(text: str, start: int) -> tuple[list[str], int] | None:
    """The comma-separated arguments of the call whose ``(`` is at ``start - 1``."""
    depth, args, current, k = 0, [], [], start
    while k < len(text):
        ch = text[k]
        if ch == "'":  # a string literal: copy it whole
            end = text.find("'", k + 1)
            if end < 0:
                return None
            current.append(text[k:end + 1])
            k = end + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                args.append("".join(current).strip())
                return args, k + 1
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            k += 1
            continue
        current.append(ch)
        k += 1
    return None


@dataclass
class ConeSearch:
    """A cone found in a query: centre and radius in degrees, and the position columns."""

    ra_column: str
    dec_column: str
    ra: float
    dec: float
    radius: float
    ranges: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 2), np.int64))


def cone_ranges(ra: float, dec: float, radius: float, max_ranges: int = 64) -> np.ndarray:
    """``_healpix_29`` ranges ``[start, stop)`` covering a cone (degrees), merged.

    The cone's cover is computed at the deepest order with at most ``max_ranges`` merged
    ranges (deeper is tighter, but more ranges make a longer predicate).
    """
    best = None
    for order in range(min(29, max(0, int(np.log2(60.0 / max(radius, 1e-6))) + 6)), -1, -1):
        cells = cdshealpix.nested.cone_search(Longitude(ra, u.deg), Latitude(dec, u.deg),
                                              radius * u.deg, order, flat=True)[0]
        shift = 2 * (SPATIAL_INDEX_ORDER - order)
        cells = np.sort(np.asarray(cells, np.int64))
        starts, stops = cells << shift, (cells + 1) << shift
        breaks = np.flatnonzero(starts[1:] != stops[:-1]) + 1
        merged = np.stack([starts[np.r_[0, breaks]], stops[np.r_[breaks - 1, len(cells) - 1]]],
                          axis=1)
        best = merged
        if len(merged) <= max_ranges:
            break
    assert best is not None  # the loop runs at least once (order 0)
    return best


def _rewrite_cones(sql: str) -> tuple[str, list[ConeSearch]]:
    """Replace every ``cone(ra, dec, ra0, dec0, radius)`` with constant centre and radius by
    ``_healpix_29`` ranges and the exact distance; other cones stay (the macro)."""
    out, cones, pos = [], [], 0
    for match in _CONE.finditer(sql):
        if match.start() < pos:
            continue
        parsed = _split_arguments(sql, match.end())
        if parsed is None:
            break
        args, end = parsed
        if len(args) != 5:
            raise QueryError(f"cone() takes 5 arguments (ra, dec, ra0, dec0, radius in "
                             f"degrees), not {len(args)}: {sql[match.start():end]}")
        ra0, dec0, radius = (_constant(a) for a in args[2:])
        if ra0 is None or dec0 is None or radius is None:
            continue
        if not (-90 <= dec0 <= 90) or not (0 < radius <= 180):
            raise QueryError(f"cone(): centre dec {dec0} or radius {radius} out of range "
                             "(degrees; -90 <= dec <= 90, 0 < radius <= 180)")
        qualifier = args[0].rsplit(".", 1)[0] + "." if "." in args[0] else ""
        ranges = cone_ranges(ra0 % 360.0, dec0, radius)
        index = f"{qualifier}_healpix_29"
        pixel_test = " OR ".join(f"({index} >= {a} AND {index} < {b})" for a, b in ranges)
        exact = f"ang_sep({args[0]}, {args[1]}, {ra0!r}, {dec0!r}) <= {radius!r}"
        out.append(sql[pos:match.start()])
        out.append(f"(({pixel_test}) AND {exact})")
        cones.append(ConeSearch(args[0], args[1], ra0 % 360.0, dec0, radius, ranges))
        pos = end
    out.append(sql[pos:])
    return "".join(out), cones


@dataclass
class _Catalog:
    name: str
    files: list[Path]
    pixels: list[Any]
    columns: dict[str, dict[str, str]]


def _strip(sql: str) -> str:
    return sql.strip().rstrip(";").strip()


class ReleaseDatabase:
    """The HATS catalogs of a release as read-only DuckDB tables.

    Parameters
    ----------
    hats_dir : str or Path
        The release's HATS directory (``<release>/hats``, holding ``objects/``...); a release
        directory holding ``hats/`` is accepted too.
    threads : int, optional
        DuckDB threads (default: DuckDB's, the cores).
    max_rows : int
        Row limit of :meth:`query` (``None``: none).
    timeout : float
        Seconds a query may run before it is interrupted.

    Examples
    --------
    >>> db = ReleaseDatabase("demo_output/rerun/release/hats")  # doctest: +SKIP
    >>> db.query("SELECT id, ra, dec FROM objects WHERE cone(ra, dec, 150.1, 2.2, 2/60)")
    """

    def __init__(self, hats_dir: str | Path, *, threads: int | None = None,
                 max_rows: int | None = 100_000, timeout: float = 60.0) -> None:
        root = Path(hats_dir)
        if (root / "hats").is_dir() and not any((root / t).is_dir() and
                                                (root / t / "collection.properties").exists()
                                                for t in TABLES):
            root = root / "hats"
        if not root.is_dir():
            raise QueryError(f"{hats_dir}: no such directory")
        self.root = root.resolve()
        self.max_rows = max_rows
        self.timeout = timeout
        self.catalogs: dict[str, _Catalog] = {}
        for name in TABLES:
            directory = self.root / name / name
            if not (directory / "partition_info.csv").exists():
                continue
            pixels = PartitionInfo.read_from_dir(directory).get_healpix_pixels()
            files = [Path(paths.pixel_catalog_file(directory, p).path) for p in pixels]
            schema = pq.read_schema(directory / "dataset" / "_common_metadata")
            self.catalogs[name] = _Catalog(name, files, pixels, dict(column_info(schema)))
        if not self.catalogs:
            raise QueryError(f"{hats_dir}: no HATS catalogs ({', '.join(TABLES)}) in it; write "
                             "them with `hpcpipe release --format hats` or "
                             "`hpcpipe release-convert`")
        config: dict[str, Any] = {"autoinstall_known_extensions": "false",
                                  "autoload_known_extensions": "false",
                                  "allow_community_extensions": "false"}
        if threads:
            config["threads"] = str(threads)
        self.con = duckdb.connect(":memory:", config=config)
        self.con.execute("CREATE MACRO ang_sep(ra1, dec1, ra2, dec2) AS degrees(2 * asin(least("
                         "1.0, sqrt(pow(sin(radians(dec2 - dec1) / 2), 2) + cos(radians(dec1))"
                         " * cos(radians(dec2)) * pow(sin(radians(ra2 - ra1) / 2), 2)))))")
        self.con.execute("CREATE MACRO cone(ra, dec, ra0, dec0, radius) AS "
                         "ang_sep(ra, dec, ra0, dec0) <= radius")
        for name, catalog in self.catalogs.items():
            self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM {self._scan(catalog.files)}")
        self._create_tap_schema()
        self.con.execute("SET parquet_metadata_cache = true")
        self.con.execute(f"SET allowed_directories = ['{self._quote(str(self.root))}/']")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
        self._lock = threading.Lock()

    @staticmethod
    def _quote(text: str) -> str:
        return text.replace("'", "''")

    def _scan(self, files: Sequence[Path]) -> str:
        listed = ", ".join(f"'{self._quote(str(f))}'" for f in files)
        return f"read_parquet([{listed}], hive_partitioning = false)"

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.con.close()

    def __enter__(self) -> ReleaseDatabase:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the query path -----------------------------------------------------------------------

    def check(self, sql: str) -> str:
        """The query text if it is one read-only ``SELECT``; else :class:`QueryError`."""
        if not isinstance(sql, str) or not sql.strip():
            raise QueryError("empty query")
        if len(sql) > MAX_QUERY_LENGTH:
            raise QueryError(f"query too long: {len(sql)} characters (at most "
                             f"{MAX_QUERY_LENGTH})")
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(f"syntax error: {_message(exc)}") from None
        if len(statements) != 1:
            raise QueryError(f"one statement per query, not {len(statements)}")
        if statements[0].type != duckdb.StatementType.SELECT:
            raise QueryError(f"read-only: only SELECT queries, not "
                             f"{statements[0].type.name}")
        return _strip(sql)

    def rewrite(self, sql: str) -> tuple[str, list[ConeSearch]]:
        """The SQL DuckDB runs for ``sql``: cones turned into pixel pruning (see the module)."""
        sql = self.check(sql)
        rewritten, cones = _rewrite_cones(sql)
        if not cones:
            return rewritten, cones
        used = [name for name in self.catalogs if re.search(rf"\b{name}\b", rewritten, re.I)]
        # the files outside the cone can be left out only when the cone is a condition every
        # row must meet: one cone, and no OR or NOT anywhere in the query
        if len(used) == 1 and len(cones) == 1 and not _NEGATION.search(sql):
            catalog = self.catalogs[used[0]]
            keep = [f for f, p in zip(catalog.files, catalog.pixels)
                    if all(_meets(p, cone.ranges) for cone in cones)]
            scan = self._scan(keep) if keep else f"(SELECT * FROM {used[0]} LIMIT 0)"
            cte = f"{used[0]} AS (SELECT * FROM {scan})"
            head = re.match(r"\s*WITH\s+(RECURSIVE\s+)?", rewritten, re.I)
            if head:
                rewritten = f"{head.group(0)}{cte}, {rewritten[head.end():]}"
            else:
                rewritten = f"WITH {cte} {rewritten}"
        return rewritten, cones

    def arrow(self, sql: str, *, max_rows: int | None = -1) -> pa.Table:
        """Run a read-only query; the result as an Arrow table (at most ``max_rows`` rows,
        default the database's; :class:`QueryError` beyond)."""
        limit = self.max_rows if max_rows == -1 else max_rows
        result, overflow = self.run(sql, max_rows=limit)
        if overflow:
            raise QueryError(f"the result has more than {limit} rows: add a LIMIT (or TOP), "
                             "a narrower condition, or raise the row limit")
        return result

    def run(self, sql: str, *, max_rows: int | None) -> tuple[pa.Table, bool]:
        """Run a read-only query; the first ``max_rows`` rows (all if None) as an Arrow
        table, and whether there were more."""
        limit = max_rows
        rewritten, _ = self.rewrite(sql)
        if limit is not None:
            rewritten = f"SELECT * FROM ({rewritten}) LIMIT {int(limit) + 1}"
        with self._lock:
            cursor = self.con.cursor()
            timer = threading.Timer(self.timeout, cursor.interrupt)
            timer.start()
            try:
                result = cursor.sql(rewritten).to_arrow_table()
            except duckdb.InterruptException:
                raise QueryError(f"query timed out after {self.timeout:g} s") from None
            except duckdb.Error as exc:
                raise QueryError(_message(exc)) from None
            finally:
                timer.cancel()
                cursor.close()
        if limit is not None and len(result) > limit:
            return result.slice(0, limit), True
        return result, False

    def query(self, sql: str, *, max_rows: int | None = -1) -> Table:
        """Run a read-only query; the result as an astropy Table with units, UCDs and
        descriptions for the columns that come from the catalogs."""
        return self.to_astropy(self.arrow(sql, max_rows=max_rows))

    def to_astropy(self, result: pa.Table) -> Table:
        """An Arrow result as an astropy Table, with the catalogs' column metadata."""
        table = Table()
        for name in result.column_names:
            column = result[name].combine_chunks()
            if pa.types.is_fixed_size_list(column.type):
                values = column.flatten().to_numpy(zero_copy_only=False).reshape(
                    len(column), column.type.list_size)
            elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                sizes = pc.list_value_length(column).to_numpy(zero_copy_only=False)
                if len(column) and column.null_count == 0 and np.all(sizes == sizes[0]):
                    values = column.flatten().to_numpy(zero_copy_only=False).reshape(
                        len(column), int(sizes[0]))
                else:
                    values = np.array(column.to_pylist(), dtype=object)
            elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                values = np.array(["" if v is None else v for v in column.to_pylist()],
                                  dtype=str) if len(column) else np.zeros(0, "U1")
            else:
                values = column.to_numpy(zero_copy_only=False)
            table[name] = values
            info = self.column(name)
            if info:
                if info["unit"]:
                    table[name].unit = info["unit"]
                table[name].description = info["description"] or None
                table[name].meta["ucd"] = info["ucd"]
        return table

    def _create_tap_schema(self) -> None:
        """The IVOA ``TAP_SCHEMA`` (TAP 1.1): schemas, tables, columns, keys, key_columns."""
        con = self.con
        con.execute('CREATE SCHEMA "TAP_SCHEMA"')
        con.execute('CREATE TABLE "TAP_SCHEMA".schemas (schema_name VARCHAR, utype VARCHAR, '
                    'description VARCHAR, schema_index INTEGER)')
        con.execute('CREATE TABLE "TAP_SCHEMA".tables (schema_name VARCHAR, table_name VARCHAR, '
                    'table_type VARCHAR, utype VARCHAR, description VARCHAR, table_index INTEGER)')
        con.execute('CREATE TABLE "TAP_SCHEMA".columns (table_name VARCHAR, column_name VARCHAR, '
                    'datatype VARCHAR, arraysize VARCHAR, xtype VARCHAR, "size" INTEGER, '
                    'description VARCHAR, utype VARCHAR, unit VARCHAR, ucd VARCHAR, '
                    'indexed INTEGER, principal INTEGER, std INTEGER, column_index INTEGER)')
        con.execute('CREATE TABLE "TAP_SCHEMA".keys (key_id VARCHAR, from_table VARCHAR, '
                    'target_table VARCHAR, description VARCHAR, utype VARCHAR)')
        con.execute('CREATE TABLE "TAP_SCHEMA".key_columns (key_id VARCHAR, from_column VARCHAR, '
                    'target_column VARCHAR)')
        con.execute("INSERT INTO \"TAP_SCHEMA\".schemas VALUES ('main', NULL, 'the hpcpipe data "
                    "release (HATS catalogs)', 0), ('TAP_SCHEMA', NULL, 'this service', 1)")
        descriptions = {"objects": "objects measured on the coadds (deepCoadd_ref), all tracts",
                        "sources": "single-frame sources (src) of every visit and CCD",
                        "forced": "forced photometry on the coadds, every tract and filter",
                        "multifit": "galaxy models fitted jointly to every epoch "
                                    "(deepCoadd_multifit), all tracts"}
        for k, name in enumerate(self.catalogs):
            con.execute('INSERT INTO "TAP_SCHEMA".tables VALUES (?, ?, ?, NULL, ?, ?)',
                        ["main", name, "table", descriptions.get(name, name), k])
            schema = pq.read_schema(self.catalogs[name].files[0])
            rows = []
            for j, fld in enumerate(schema):
                datatype, arraysize = _adql_type(fld.type)
                meta = self.catalogs[name].columns.get(fld.name, {})
                rows.append([name, fld.name, datatype, arraysize, None, None,
                             meta.get("description") or None, None, meta.get("unit") or None,
                             meta.get("ucd") or None, int(fld.name == "_healpix_29"),
                             int(fld.name in ("id", "ra", "dec")), 0, j])
            con.executemany('INSERT INTO "TAP_SCHEMA".columns VALUES '
                            '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', rows)

    def tap_tables(self) -> dict[str, list[dict[str, Any]]]:
        """``{table: [column rows of TAP_SCHEMA.columns as dicts]}`` for the catalogs."""
        with self._lock:
            rows = self.con.execute('SELECT * FROM "TAP_SCHEMA".columns ORDER BY table_name, '
                                    'column_index').fetchall()
            names = [d[0] for d in self.con.description]
        out: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            item = dict(zip(names, row))
            out.setdefault(item["table_name"], []).append(item)
        return out

    def column(self, name: str) -> dict[str, str] | None:
        """The unit, UCD and description of a catalog column (first catalog that has it)."""
        for catalog in self.catalogs.values():
            if name in catalog.columns:
                return catalog.columns[name]
        return None


def _adql_type(kind: pa.DataType) -> tuple[str, str | None]:
    """TAP_SCHEMA datatype and arraysize of an Arrow type."""
    size = None
    if pa.types.is_fixed_size_list(kind):
        size, kind = str(kind.list_size), kind.value_type
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        size, kind = "*", kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "VARCHAR", "*"
    names = {pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.int16(): "SMALLINT",
             pa.int8(): "SMALLINT", pa.uint8(): "SMALLINT", pa.uint16(): "INTEGER",
             pa.uint32(): "BIGINT", pa.float64(): "DOUBLE", pa.float32(): "REAL",
             pa.bool_(): "BOOLEAN"}
    return names.get(kind, "VARCHAR"), size


def _meets(pixel: Any, ranges: np.ndarray) -> bool:
    shift = 2 * (SPATIAL_INDEX_ORDER - pixel.order)
    start, stop = pixel.pixel << shift, (pixel.pixel + 1) << shift
    return bool(np.any((ranges[:, 0] < stop) & (ranges[:, 1] > start)))


def _message(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if "\n" in text and len(text) > 400 else text


def write_result(table: Table, path: str | Path, fmt: str | None = None) -> None:
    """Write a query result to FITS, Parquet or VOTable (from the suffix, or ``fmt``)."""
    path = Path(path)
    fmt = fmt or {".fits": "fits", ".fit": "fits", ".parquet": "parquet", ".vot": "votable",
                  ".xml": "votable", ".votable": "votable"}.get(path.suffix.lower())
    if fmt not in ("fits", "parquet", "votable"):
        raise QueryError(f"{path}: output format from the suffix: .fits, .parquet or .vot/.xml")
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            table.write(tmp, format="parquet")
        elif fmt == "votable":
            table.write(tmp, format="votable")
        else:
            table.write(tmp, format="fits")
