"""``hpcpipe status OUT [--check]``: where a campaign stands, from the journals of its runs.

The work is :mod:`hpcpipe.drivers.status`, which explains the figures and ``--check``'s exit
status (0 complete, 75 units left to run, 1 only failed or blocked units left).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpcpipe.commands.options import usage_error

__all__ = ["add_status_command"]


def run_status(args: argparse.Namespace) -> int:
    """Print where the campaign stands; with ``--check``, its state as the exit status."""
    from hpcpipe.drivers.status import campaign_status, format_status  # start-up cost

    try:
        status = campaign_status(args.location)
    except FileNotFoundError as exc:
        return usage_error("status", f"argument OUT: {exc}")
    print(format_status(status), flush=True)
    return status.check_status() if args.check else 0


def add_status_command(subparsers: Any) -> None:
    """Add ``hpcpipe status OUT [--check]`` to the command line."""
    parser = subparsers.add_parser(
        "status", help="where a campaign stands: units per step and state, throughput, "
        "remaining core-hours (from the journals)",
        description="Read the journals of an output repository's runs and print the units "
        "done, failed, blocked and pending per step, the last run's throughput and the "
        "core-hours left.")
    parser.add_argument("location", type=Path, metavar="OUT",
                        help="the output repository (its report/), or a report directory")
    parser.add_argument("--check", action="store_true",
                        help="exit with 0 when complete, 75 when units are left to run, 1 "
                             "when only failed or blocked units are left")
    parser.set_defaults(handler=run_status)
