"""``hpcpipe submit``: write a batch job script for a driver from ``jobs/`` and submit it.

``--batch-type slurm|pbs`` submits to the scheduler, ``smp`` runs ``mpiexec`` on this machine
now, ``none`` runs the command directly; ``--chain N`` submits a campaign of N jobs, each
waiting for the one before. For ``drp``, the arguments are checked and the steps' configs
written to the output repository before anything is submitted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpcpipe.argtypes import positive_int
from hpcpipe.commands.drp import drp_report_directory, prepare_drp_submission
from hpcpipe.commands.options import usage_error

__all__ = ["add_submit_command"]


def add_submit_command(subparsers: Any) -> None:
    """Add ``hpcpipe submit --batch-type TYPE [options] DRIVER ...`` to the command line."""
    submit = subparsers.add_parser(
        "submit", help="write a batch job script for a driver and submit it",
        description="Write a job script from the templates in jobs/ and submit it; the "
        "arguments after DRIVER are the driver's own.")
    submit.add_argument("--batch-type", required=True, choices=["slurm", "pbs", "smp", "none"],
                        help="scheduler (smp: mpiexec on this machine now; none: run directly)")
    submit.add_argument("--nodes", type=positive_int, default=1, help="nodes (default 1)")
    submit.add_argument("--procs-per-node", type=positive_int, default=1,
                        help="MPI ranks per node (default 1)")
    submit.add_argument("--time", help="walltime, D-HH:MM:SS, HH:MM:SS, MM:SS or minutes")
    submit.add_argument("--time-per-unit", type=float,
                        help="seconds per unit, to estimate the walltime (with --units)")
    submit.add_argument("--units", type=int, help="number of units, to estimate the walltime")
    submit.add_argument("--queue", help="partition (SLURM) or queue (PBS): letters, digits, "
                        "'.', '_', '-' (several separated by ',')")
    submit.add_argument("--account", help="account (project) to charge: letters, digits, "
                        "'.', '_', '-'")
    submit.add_argument("--job", default="hpcpipe", help="job name (default hpcpipe): "
                        "letters, digits, '.', '_', '-'")
    submit.add_argument("--batch-option", action="append", default=[],
                        help="an extra scheduler option line, e.g. --batch-option=--mem=8G "
                        "(one option starting with '-', printable characters)")
    submit.add_argument("--batch-output", type=Path, default=Path("batch"),
                        help="directory of the script and the job's log (default batch)")
    submit.add_argument("--dry-run", action="store_true",
                        help="print the script and the submit command; submit nothing")
    submit.add_argument("--chain", type=positive_int, default=1, metavar="N",
                        help="a campaign: N jobs, each waiting for the one before "
                        "(afterany) and resuming its run; the later ones end at once when "
                        "nothing is left (hpcpipe status --check OUT)")
    submit.add_argument("driver", metavar="DRIVER", help="the hpcpipe command the job runs")
    submit.add_argument("driver_args", nargs=argparse.REMAINDER, metavar="...",
                        help="the driver's arguments (REPO --id ...)")
    submit.set_defaults(handler=run_submit)


def run_submit(args: argparse.Namespace) -> int:
    """Write and submit the job (or the chain); 2 for a usage error, 1 when the scheduler
    refuses it."""
    # start-up cost: imported when the command runs, so that --help answers at once
    from hpcpipe.drivers.submit import (  # the job templates: loaded only when run
        BatchRequest,
        SubmitError,
        estimate_walltime,
        parse_walltime,
        submit_chain,
    )

    try:
        if args.time is not None:
            seconds = float(parse_walltime(args.time))
        elif args.time_per_unit is not None and args.units is not None:
            seconds = estimate_walltime(args.time_per_unit, args.units,
                                        args.nodes * args.procs_per_node)
        elif args.batch_type in ("slurm", "pbs"):
            raise SubmitError("give --time, or --time-per-unit with --units: without a "
                              "walltime the scheduler's default (often minutes) kills the job")
        else:
            seconds = 0.0
        request = BatchRequest(
            batch_type=args.batch_type, job=args.job,
            command=[sys.executable, "-m", "hpcpipe", args.driver, *args.driver_args],
            nodes=args.nodes, procs_per_node=args.procs_per_node, walltime_seconds=seconds,
            queue=args.queue, account=args.account, extra_options=args.batch_option,
            log_dir=args.batch_output,
        )
    except SubmitError as exc:  # checked before anything is written
        return usage_error("submit", f"{exc}")
    precheck = None
    if args.driver == "drp" and "--help" not in args.driver_args:
        # the configs go to the output repository now, so that the job's ranks never race
        # to write them (and a refused config is reported here, not in the job's log)
        code = prepare_drp_submission(args.driver_args, dry_run=args.dry_run)
        if code:
            return code
        report = drp_report_directory(args.driver_args)
        if report is not None:
            precheck = [sys.executable, "-m", "hpcpipe", "status", "--check", str(report)]
    elif args.chain > 1:
        print("hpcpipe submit: note: --chain without drp: every job runs the command again "
              "(no check that the campaign is complete)", file=sys.stderr)
    try:
        submit_chain(request, args.chain, precheck=precheck, dry_run=args.dry_run)
    except SubmitError as exc:
        print(f"hpcpipe submit: error: {exc}", file=sys.stderr)
        return 1
    return 0
