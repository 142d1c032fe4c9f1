"""Options shared by several commands, declared once.

* :func:`add_unit_options`: ``--retries``, ``--timeout`` and ``--report`` of the drivers that
  run units on the master-worker pool (``drp``, ``alerts``, ``run``); their ``--doraise``
  and the other options of every command-line task come from
  :func:`hpcpipe.task.argparser.build_argument_parser`.
* :func:`add_hats_options`: the HATS partitioning of ``release --format hats`` and
  ``release-convert``; :func:`hats_options` checks them.
* :func:`add_hats_service_options`: ``--max-rows``, ``--timeout`` and ``--threads`` of the
  commands that query the release's HATS catalogs with DuckDB (``query``, ``serve``).

Standard library only, like every module of :mod:`hpcpipe.commands`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpcpipe.argtypes import non_negative_int, positive_float, positive_int
from hpcpipe.catalog import DEFAULT_MARGIN_ARCSEC

__all__ = ["usage_error", "add_unit_options", "add_hats_options", "hats_options",
           "add_hats_service_options"]


def usage_error(command: str, message: str) -> int:
    """Print ``hpcpipe COMMAND: error: MESSAGE`` on stderr, as argparse words a usage error,
    and return 2 (the exit status of a usage error): ``return usage_error("query", ...)``."""
    print(f"hpcpipe {command}: error: {message}", file=sys.stderr)
    return 2


def add_unit_options(parser: argparse.ArgumentParser, *, report_default: str = "OUT/report",
                     timeout_note: str = "") -> None:
    """Add ``--retries N``, ``--timeout SECONDS`` and ``--report DIR`` (the pool's retries and
    time limit per unit, and the run report's directory, ``report_default`` when not given).
    """
    parser.add_argument("--retries", type=non_negative_int, default=0, metavar="N",
                        help="try a failed unit N more times, on another rank (default 0)")
    parser.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help=f"fail a unit that runs longer than this{timeout_note}")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="where to write the journal and the run report (report.json, "
                             f"timeline.png, report.html; default {report_default})")


def add_hats_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--pixel-threshold ROWS`` and ``--margin-arcsec ARCSEC``."""
    parser.add_argument("--pixel-threshold", type=int, default=1_000_000, metavar="ROWS",
                        help="most rows in one HATS partition pixel (default 1000000)")
    parser.add_argument("--margin-arcsec", type=float, default=DEFAULT_MARGIN_ARCSEC,
                        metavar="ARCSEC", help="width of the margin caches (default "
                        f"{DEFAULT_MARGIN_ARCSEC:g} arcsec)")


def hats_options(args: argparse.Namespace) -> dict[str, Any] | str:
    """The keyword arguments of the HATS writer from :func:`add_hats_options`' options, or
    the usage error naming the option."""
    if args.pixel_threshold < 1:
        return f"argument --pixel-threshold: {args.pixel_threshold} is not a positive count"
    if not 0 < args.margin_arcsec <= 3600:
        return f"argument --margin-arcsec: {args.margin_arcsec} is not in (0, 3600]"
    return {"pixel_threshold": args.pixel_threshold, "margin_arcsec": args.margin_arcsec}


def add_hats_service_options(parser: argparse.ArgumentParser, *, max_rows: int,
                             timeout: float, max_rows_help: str, timeout_help: str) -> None:
    """Add ``--max-rows N`` (default ``max_rows``), ``--timeout SECONDS`` (default
    ``timeout``) and ``--threads`` (DuckDB's threads)."""
    parser.add_argument("--max-rows", type=positive_int, default=max_rows, metavar="N",
                        help=f"{max_rows_help} (default {max_rows})")
    parser.add_argument("--timeout", type=positive_float, default=timeout, metavar="SECONDS",
                        help=f"{timeout_help} (default {timeout:g})")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads")
