"""ADQL to DuckDB SQL for the release database.

The query is first checked against the ADQL 2.0 grammar by ``queryparser-python3``
(:class:`queryparser.adql.ADQLQueryTranslator`), so a syntax error is reported with its line
and column as ADQL sees it; then the few ADQL constructs DuckDB does not know are rewritten:

* ``SELECT TOP n ...`` becomes ``SELECT ... LIMIT n``;
* ``CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', ra0, dec0, r)) = 1`` (either side of the
  ``=``, or ``= 0`` for outside) becomes the pruned cone search
  ``cone(ra, dec, ra0, dec0, r)`` of :mod:`hpcpipe.catalog.query`;
* ``DISTANCE(POINT(...), POINT(...))`` becomes ``ang_sep(...)`` (degrees).

Other geometry (``BOX``, ``POLYGON``, ``REGION``, ``INTERSECTS``) is refused with a message
saying so.
"""

from __future__ import annotations

import re

from queryparser.adql import ADQLQueryTranslator
from queryparser.exceptions import QueryError as ParserQueryError
from queryparser.exceptions import QuerySyntaxError

from hpcpipe.catalog.query import QueryError, _split_arguments

__all__ = ["adql_to_duckdb"]

_TOP = re.compile(r"^\s*SELECT\s+(ALL\s+|DISTINCT\s+)?TOP\s+(\d+)\s+", re.IGNORECASE)
_UNSUPPORTED = re.compile(r"\b(BOX|POLYGON|REGION|INTERSECTS|CENTROID|AREA|COORD1|COORD2|"
                          r"COORDSYS)\s*\(", re.IGNORECASE)


def _call(text: str, name: str, start: int = 0) -> tuple[int, int, list[str]] | None:
    match = re.compile(rf"\b{name}\s*\(", re.IGNORECASE).search(text, start)
    if match is None:
        return None
    parsed = _split_arguments(text, match.end())
    if parsed is None:
        raise QueryError(f"unbalanced parentheses after {name.upper()}(")
    args, end = parsed
    return match.start(), end, args


def _point(text: str) -> list[str]:
    call = _call(text, "POINT")
    if call is None or call[0] != 0 or text[call[1]:].strip():
        raise QueryError(f"expected POINT(...), not {text!r}")
    args = call[2]
    if len(args) == 3:  # POINT('ICRS', ra, dec): the coordinate system is ICRS
        args = args[1:]
    if len(args) != 2:
        raise QueryError(f"POINT takes ra and dec: {text!r}")
    return args


def _circle(text: str) -> list[str]:
    call = _call(text, "CIRCLE")
    if call is None or call[0] != 0 or text[call[1]:].strip():
        raise QueryError(f"expected CIRCLE(...), not {text!r}")
    args = call[2]
    if len(args) == 4:
        args = args[1:]
    if len(args) == 2:  # CIRCLE(POINT(...), r)
        args = [*_point(args[0]), args[1]]
    if len(args) != 3:
        raise QueryError(f"CIRCLE takes a centre and a radius: {text!r}")
    return args


def _rewrite_contains(sql: str) -> str:
    while True:
        call = _call(sql, "CONTAINS")
        if call is None:
            return sql
        start, end, args = call
        if len(args) != 2:
            raise QueryError("CONTAINS takes a POINT and a CIRCLE")
        ra, dec = _point(args[0])
        ra0, dec0, radius = _circle(args[1])
        cone = f"cone({ra}, {dec}, {ra0}, {dec0}, {radius})"
        after = re.match(r"\s*=\s*([01])\b", sql[end:])
        before = re.search(r"\b([01])\s*=\s*$", sql[:start])
        if after:
            inside = after.group(1) == "1"
            sql = sql[:start] + (cone if inside else f"NOT {cone}") + sql[end + after.end():]
        elif before:
            inside = before.group(1) == "1"
            sql = sql[:before.start()] + (cone if inside else f"NOT {cone}") + sql[end:]
        else:
            raise QueryError("CONTAINS(...) must be compared with 1 or 0 (ADQL 2.0)")


def _rewrite_distance(sql: str) -> str:
    while True:
        call = _call(sql, "DISTANCE")
        if call is None:
            return sql
        start, end, args = call
        if len(args) == 2:
            a, b = _point(args[0]), _point(args[1])
        elif len(args) == 4:
            a, b = args[:2], args[2:]
        else:
            raise QueryError("DISTANCE takes two POINTs")
        sql = sql[:start] + f"ang_sep({a[0]}, {a[1]}, {b[0]}, {b[1]})" + sql[end:]


def adql_to_duckdb(adql: str) -> str:
    """The DuckDB SQL (with the ``cone``/``ang_sep`` macros) for an ADQL query.

    Raises
    ------
    QueryError
        On an ADQL syntax error (with line and column) or an unsupported construct.
    """
    if not isinstance(adql, str) or not adql.strip():
        raise QueryError("empty query")
    text = adql.strip().rstrip(";")
    try:
        ADQLQueryTranslator(text)
    except QuerySyntaxError as exc:
        where = "; ".join(f"line {line}, column {col + 1} near {near!r}"
                          for line, col, near in exc.syntax_errors)
        raise QueryError(f"ADQL syntax error: {where}") from None
    except ParserQueryError as exc:
        raise QueryError(f"ADQL error: {exc}") from None
    unsupported = _UNSUPPORTED.search(text)
    if unsupported:
        raise QueryError(f"ADQL {unsupported.group(1).upper()}() is not supported here (use "
                         "CONTAINS(POINT, CIRCLE) or DISTANCE)")
    top = _TOP.match(text)
    limit = None
    if top:
        limit = int(top.group(2))
        text = "SELECT " + (top.group(1) or "") + text[top.end():]
    text = _rewrite_distance(_rewrite_contains(text))
    if limit is not None:
        text = f"{text} LIMIT {limit}"
    return text
