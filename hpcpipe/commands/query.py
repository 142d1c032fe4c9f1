"""``hpcpipe query REPO "SQL"``: SQL (or ADQL) over the release's HATS catalogs with DuckDB.

REPO is a repository (or production output) whose ``release/hats`` holds the catalogs, a
release directory, or the HATS directory itself. The result is printed as a table, or
written to FITS, Parquet or VOTable with ``--output`` (from the suffix). See
:mod:`hpcpipe.catalog.query` for the tables, the ``cone`` macro and the read-only rules.
"""

from __future__ import annotations

import argparse
from typing import Any

from hpcpipe.commands.options import add_hats_service_options, usage_error

__all__ = ["add_query_command"]


def run_query(args: argparse.Namespace) -> int:
    """Run the query and print or write the result; 2 for a bad REPO or SQL."""
    # DuckDB, hats and the ADQL parser are imported when the command runs: start-up cost
    from hpcpipe.catalog.adql import adql_to_duckdb
    from hpcpipe.catalog.query import QueryError, ReleaseDatabase, write_result
    from hpcpipe.drivers.query import find_hats_directory
    from hpcpipe.errors import HpcpipeError

    try:
        database = ReleaseDatabase(find_hats_directory(args.repo), threads=args.threads,
                                   max_rows=int(args.max_rows), timeout=args.timeout)
    except HpcpipeError as exc:
        return usage_error("query", f"argument REPO: {exc}")
    try:
        sql = adql_to_duckdb(args.sql) if args.adql else args.sql
        if args.explain:
            print(database.rewrite(sql)[0])
            return 0
        table = database.query(sql)
        if args.output:
            write_result(table, args.output)
            print(f"{args.output}: {len(table)} rows")
        else:
            table.pprint_all() if args.all else table.pprint(max_lines=args.lines)
    except QueryError as exc:
        return usage_error("query", f"argument SQL: {exc}")
    finally:
        database.close()
    return 0


def add_query_command(subparsers: Any) -> None:
    """Add ``hpcpipe query REPO SQL`` to the command line."""
    parser = subparsers.add_parser(
        "query", help="run SQL (or ADQL) on the release's HATS catalogs (DuckDB, read-only)",
        description="Run one read-only SELECT on the release's HATS catalogs, registered as "
        "tables objects, sources and forced (DuckDB). cone(ra, dec, ra0, dec0, radius_deg) "
        "is a cone search pruned by HEALPix pixel; ang_sep(ra1, dec1, ra2, dec2) is the "
        "distance in degrees. Example: hpcpipe query demo_output/rerun \"SELECT id, ra, dec "
        "FROM objects WHERE cone(ra, dec, 150.1, 2.2, 2/60)\"")
    parser.add_argument("repo", metavar="REPO", help="repository, release or HATS directory")
    parser.add_argument("sql", metavar="SQL", help="the query")
    parser.add_argument("--adql", action="store_true",
                        help="the query is ADQL (TOP, CONTAINS(POINT, CIRCLE), DISTANCE)")
    parser.add_argument("--output", metavar="FILE",
                        help="write the result to FILE (.fits, .parquet, .vot/.xml)")
    add_hats_service_options(parser, max_rows=1_000_000, timeout=300.0,
                             max_rows_help="refuse results of more than N rows",
                             timeout_help="interrupt the query after SECONDS")
    parser.add_argument("--lines", type=int, default=40, help="rows to print (default 40)")
    parser.add_argument("--all", action="store_true", help="print every row")
    parser.add_argument("--explain", action="store_true",
                        help="print the SQL DuckDB runs (cones rewritten) and stop")
    parser.set_defaults(handler=run_query)
