"""``hpcpipe demo``: simulate a small survey and run the whole production on it under MPI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpcpipe.argtypes import positive_int

__all__ = ["add_demo_command"]


def add_demo_command(subparsers: Any) -> None:
    """Add ``hpcpipe demo [--output OUT] [--visits N] ...`` to the command line."""
    demo = subparsers.add_parser(
        "demo", help="simulate a small survey and run the whole production on it under MPI")
    demo.add_argument("--output", type=Path, default=Path("demo_output"),
                      help="output directory (default: demo_output); a rerun resumes")
    demo.add_argument("--visits", type=positive_int, default=2,
                      help="visits per filter (default 2)")
    demo.add_argument("--ccds", type=positive_int, default=4,
                      help="CCDs per visit (default 4)")
    demo.add_argument("--filters", default="g,r", help="comma-separated filters (default g,r)")
    demo.add_argument("--size", type=positive_int, default=1024,
                      help="CCD width and height in pixels (default 1024)")
    demo.add_argument("--seed", type=int, default=42, help="simulation seed (default 42)")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demonstration; returns the exit status (0 on the workers)."""
    filters = tuple(f.strip() for f in args.filters.split(",") if f.strip())
    if not filters or any(f not in ("g", "r", "i") for f in filters):
        print(f"hpcpipe demo: error: argument --filters: {args.filters!r}: SimCam has g, r "
              "and i", file=sys.stderr)
        return 2
    # the driver, the pool and the science are imported when the command runs: start-up cost
    from hpcpipe.comm.world import World
    from hpcpipe.drivers.demo import DemoSettings, format_demo_summary, run_production_demo

    settings = DemoSettings(args.visits, args.ccds, filters, args.size, args.seed)
    summary = run_production_demo(args.output, settings, world=World(), progress=True)
    if summary is None:  # a worker
        return 0
    print(format_demo_summary(summary), flush=True)
    return min(int(summary["exit_status"]), 255)
