"""``hpcpipe solarsystem REPO --output OUT --night DATE``: the night's solar-system processing.

After ``hpcpipe alerts``: attribution to known orbits, tracklets, HelioLinC over the MPI pool
and the catalogue update (:mod:`hpcpipe.drivers.solarsystem` explains each step). Exit status
0, 2 for a usage error (a bad date, no APDB), 1 for another failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_solarsystem_command"]

PROG = "hpcpipe solarsystem"


def run_solarsystem_command(args: argparse.Namespace) -> int:
    """Run the night's processing on the pool; 2 for a usage error (a bad date, no APDB, a
    bad config override)."""
    # the pool, the MPI world, the APDB and the orbits: start-up cost
    from hpcpipe.ap.apdb import ApdbError
    from hpcpipe.comm.pool import Pool
    from hpcpipe.comm.world import World
    from hpcpipe.config import ConfigError, apply_overrides
    from hpcpipe.drivers.solarsystem import (
        SolarSystemConfig,
        format_summary,
        night_window,
        run_solarsystem,
    )

    try:
        night_window(args.night)
    except ValueError:
        print(f"{PROG}: error: argument --night: expected a date YYYY-MM-DD, got "
              f"{args.night!r}", file=sys.stderr)
        return 2
    if not Path(args.repo).is_dir():
        print(f"{PROG}: error: argument REPO: {args.repo}: no such directory", file=sys.stderr)
        return 2
    output = Path(args.output)
    location: Any = args.apdb if args.apdb and "://" in args.apdb else (
        Path(args.apdb) if args.apdb else output / "apdb.sqlite")
    config = SolarSystemConfig()
    try:
        apply_overrides(config, args.config or [])
        config.validate()
    except ConfigError as exc:
        print(f"{PROG}: error: argument --config: {exc}", file=sys.stderr)
        return 2
    pool = Pool(World())
    try:
        summary = pool.run(run_solarsystem, location, args.night, output, config)
    except ApdbError as exc:
        print(f"{PROG}: error: argument --apdb: {exc}", file=sys.stderr)
        return 2
    if summary is None:  # a worker
        return 0
    print(format_summary(summary), flush=True)
    print(f"report: {output / 'solarsystem' / (args.night + '.json')}")
    return 0


def add_solarsystem_command(subparsers: Any) -> None:
    """Add ``hpcpipe solarsystem REPO --output OUT --night DATE`` to the command line."""
    parser = subparsers.add_parser(
        "solarsystem", help="attribute the night's diaSources to known orbits, link the "
        "rest into new orbits (HelioLinC), update SSObject/SSSource in the APDB",
        description="After hpcpipe alerts: the night's new transients attributed to the "
        "known orbits, the others paired into tracklets and linked with the previous nights' "
        "(HelioLinC over the MPI pool), orbits fitted, the APDB's solar-system tables "
        "updated. Two-body dynamics (no planetary perturbations).")
    parser.add_argument("repo", metavar="REPO", help="the input repository")
    parser.add_argument("--output", required=True, metavar="OUT",
                        help="the output of hpcpipe alerts (its APDB; the report goes to "
                        "OUT/solarsystem/DATE.json)")
    parser.add_argument("--night", required=True, metavar="YYYY-MM-DD",
                        help="the night (Rubin's dayObs: the date at UTC-12h)")
    parser.add_argument("--apdb", metavar="PATH|URL",
                        help="the APDB (default OUT/apdb.sqlite)")
    parser.add_argument("--config", "-c", action="append", metavar="KEY=VALUE",
                        help="a SolarSystemConfig field (repeatable), e.g. windowDays=10")
    parser.set_defaults(handler=run_solarsystem_command)
