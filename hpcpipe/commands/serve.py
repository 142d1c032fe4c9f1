"""``hpcpipe serve REPO``: the release's HATS catalogs as an IVOA TAP service, with a web page.

Binds to 127.0.0.1 (this machine only) unless ``--host`` says otherwise; the TAP base URL is
``http://HOST:PORT/tap`` (for pyvo, TOPCAT, astroquery) and the page is ``http://HOST:PORT/``.
See :mod:`hpcpipe.catalog.tap`.
"""

from __future__ import annotations

import argparse
from typing import Any

from hpcpipe.commands.options import add_hats_service_options, usage_error

__all__ = ["add_serve_command"]


def run_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted; 2 for a bad port or REPO."""
    # the server, DuckDB and hats are imported when the command runs: start-up cost
    import uvicorn

    # start-up cost: the catalog and the query driver, when the command runs
    from hpcpipe.catalog.query import ReleaseDatabase
    from hpcpipe.catalog.tap import make_app
    from hpcpipe.drivers.query import find_hats_directory
    from hpcpipe.errors import HpcpipeError

    if not 0 <= args.port <= 65535:
        return usage_error("serve", f"argument --port: {args.port} is not a port")
    try:
        database = ReleaseDatabase(find_hats_directory(args.repo), threads=args.threads,
                                   max_rows=int(args.max_rows), timeout=args.timeout)
    except HpcpipeError as exc:
        return usage_error("serve", f"argument REPO: {exc}")
    print(f"TAP service: http://{args.host}:{args.port}/tap  (page: "
          f"http://{args.host}:{args.port}/)", flush=True)
    uvicorn.run(make_app(database), host=args.host, port=args.port, log_level="info")
    database.close()
    return 0


def add_serve_command(subparsers: Any) -> None:
    """Add ``hpcpipe serve REPO [--host H] [--port P]`` to the command line."""
    parser = subparsers.add_parser(
        "serve", help="serve the release's HATS catalogs as an IVOA TAP service and a web page",
        description="A TAP service (synchronous ADQL queries, TAP_SCHEMA, VOTable results, "
        "read-only) and a query page over the release's HATS catalogs.")
    parser.add_argument("repo", metavar="REPO", help="repository, release or HATS directory")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_hats_service_options(parser, max_rows=100_000, timeout=60.0,
                             max_rows_help="most rows in one result",
                             timeout_help="interrupt a query after SECONDS")
    parser.set_defaults(handler=run_serve)
