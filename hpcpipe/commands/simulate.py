"""``hpcpipe simulate REPO``: a simulated survey, written and ingested into a repository.

The work is :func:`hpcpipe.drivers.simulate.simulate_repository`, on the pool's workers.
"""

from __future__ import annotations

import argparse
from typing import Any

from hpcpipe.argtypes import non_negative_int, positive_float, positive_int

__all__ = ["add_simulate_command"]


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate the survey into the repository; 2 for a usage error, 1 when files were
    refused or failed to simulate."""
    bands = tuple(b.strip() for b in args.filters.split(",") if b.strip())
    unknown = [b for b in bands if b not in ("g", "r", "i")]
    if unknown or not bands:
        print(f"hpcpipe simulate: error: --filters {args.filters!r}: SimCam has g, r and i",
              flush=True)
        return 2
    # the simulator, the pool and the butler are imported when the command runs: start-up cost
    from hpcpipe.comm.pool import Pool
    from hpcpipe.comm.world import World
    from hpcpipe.drivers.simulate import simulate_repository, survey_config_for
    from hpcpipe.sim.survey import survey_transients

    try:
        config = survey_config_for(args.visits, args.ccds, bands, args.seed, args.size,
                                   args.star_density, transients=args.transients,
                                   variables=args.variables, movers=args.movers,
                                   cadence=args.cadence)
        config.ccd_ids()
        survey_transients(config)  # the injected objects must fit on the CCDs
    except ValueError as exc:
        print(f"hpcpipe simulate: error: {exc}", flush=True)
        return 2
    world = World()
    result = Pool(world, progress=True).run(simulate_repository, args.repo, config)
    if world.rank == 0:
        print(f"simulated {result['visits']} visits x {args.ccds} CCDs into {args.repo}: "
              f"{result['ingested']} files ingested, {len(result['failed'])} refused, "
              f"{len(result['simulation_failures'])} simulation failures")
        return 1 if result["failed"] or result["simulation_failures"] else 0
    return 0


def add_simulate_command(subparsers: Any) -> None:
    """Add ``hpcpipe simulate`` to the command line."""
    sim = subparsers.add_parser("simulate", help="simulate a survey into a repository",
                                description=__doc__.split("\n")[0])
    sim.add_argument("repo", metavar="REPO", help="the repository (created if needed)")
    sim.add_argument("--visits", type=positive_int, default=2, help="visits per filter (2)")
    sim.add_argument("--ccds", type=positive_int, default=4, help="CCDs per visit (4)")
    sim.add_argument("--filters", default="g,r,i", help="comma-separated bands (g,r,i)")
    sim.add_argument("--size", type=positive_int, default=2048,
                     help="CCD width and height in pixels (2048)")
    sim.add_argument("--seed", type=int, default=1, help="the survey's seed (1)")
    sim.add_argument("--star-density", type=positive_float, default=15000.0,
                     help="stars per square degree between r=16 and 25 (15000: high galactic "
                     "latitude; small CCDs need more for their calibration)")
    sim.add_argument("--transients", type=non_negative_int, default=0,
                     help="supernova-like transients to inject (0); they explode between 50%% "
                     "and 70%% of the survey's span")
    sim.add_argument("--variables", type=non_negative_int, default=0,
                     help="periodic variable stars to inject (0)")
    sim.add_argument("--movers", type=non_negative_int, default=0,
                     help="moving objects to inject (0)")
    sim.add_argument("--cadence", type=positive_float, default=None, metavar="DAYS",
                     help="days between visits (default: one minute); the calibrations stay "
                     "valid for 3 weeks after the survey's start")
    sim.set_defaults(handler=run_simulate)
