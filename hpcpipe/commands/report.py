"""``hpcpipe report OUT``: rebuild a run's report from its journal (after a killed run)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpcpipe.commands.options import usage_error

__all__ = ["add_report_command"]


def add_report_command(subparsers: Any) -> None:
    """Add ``hpcpipe report OUT`` to the command line."""
    report = subparsers.add_parser(
        "report", help="rebuild a run's report from its journal (after a run that was killed)",
        description="Rebuild report.json, timeline.png and report.html from journal.jsonl, "
        "which the master appends to as units end.")
    report.add_argument("location", type=Path, metavar="OUT",
                        help="the output repository (its report/), or a report directory")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Rebuild the report; 2 when there is no journal."""
    from hpcpipe.drivers.report import rebuild_report  # matplotlib: start-up cost

    try:
        paths = rebuild_report(args.location)
    except FileNotFoundError as exc:
        return usage_error("report", f"{exc}")
    print(f"report: {paths['html']}")
    return 0
