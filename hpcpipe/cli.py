"""The ``hpcpipe`` command line.

Subcommands:

* ``hpcpipe demo``: the built-in demonstration (run it under ``mpiexec`` for several ranks).
* ``hpcpipe info``: versions, MPI and parallel HDF5 support, and which kernels are compiled.
* ``hpcpipe submit``: a batch job script from ``jobs/``, submitted to SLURM or PBS
  (``--chain N``: a campaign of N dependent jobs).
* ``hpcpipe status OUT``: where a campaign stands (:mod:`hpcpipe.drivers.status`).
* ``hpcpipe simulate REPO``: a simulated survey, ingested into a repository.
* ``hpcpipe run TASK REPO --id ...``: a command-line task (:mod:`hpcpipe.task.cmdline`).
* ``hpcpipe drp REPO --output OUT --id ...``: a data release production
  (:mod:`hpcpipe.drivers.drp_cli`).
* ``hpcpipe butler create|describe`` and ``hpcpipe ingest``: data repositories
  (:mod:`hpcpipe.butler.cli`).
* ``hpcpipe refcat ingest|list|describe``: external reference catalogs
  (:mod:`hpcpipe.refcat.cli`).
* ``hpcpipe camera check|list``: camera files and what raw files would become
  (:mod:`hpcpipe.obs.cli`).

Usage errors exit with status 2 and a message naming the option at fault.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hpcpipe.task.argparser import positive_int

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpcpipe", description=__doc__.split("\n")[0])
    parser.add_argument("--loglevel", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
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

    sub.add_parser("info", help="show versions, MPI and HDF5 support, and the kernels in use")
    report = sub.add_parser("report", help="rebuild a run's report from its journal (after "
                            "a run that was killed)",
                            description="Rebuild report.json, timeline.png and report.html "
                            "from journal.jsonl, which the master appends to as units end.")
    report.add_argument("location", type=Path, metavar="OUT",
                        help="the output repository (its report/), or a report directory")
    _add_submit_parser(sub)
    from hpcpipe.butler.cli import add_butler_commands

    add_butler_commands(sub)
    from hpcpipe.obs.cli import add_camera_command

    add_camera_command(sub)
    from hpcpipe.drivers.simulate import add_simulate_command

    add_simulate_command(sub)
    from hpcpipe.drivers.drp_cli import add_drp_command
    from hpcpipe.drivers.release import add_release_command

    add_drp_command(sub)
    add_release_command(sub)
    from hpcpipe.drivers.status import add_status_command

    add_status_command(sub)
    from hpcpipe.drivers.release_hats_cli import (
        add_release_convert_command,
        extend_release_command,
    )

    extend_release_command(sub)
    add_release_convert_command(sub)
    from hpcpipe.drivers.query import add_query_command

    add_query_command(sub)
    from hpcpipe.drivers.serve import add_serve_command

    add_serve_command(sub)
    from hpcpipe.drivers.crossmatch import add_crossmatch_command

    add_crossmatch_command(sub)
    from hpcpipe.drivers.alerts import add_alerts_command

    add_alerts_command(sub)
    from hpcpipe.drivers.solarsystem import add_solarsystem_command

    add_solarsystem_command(sub)
    from hpcpipe.refcat.cli import add_refcat_command

    add_refcat_command(sub)
    run = sub.add_parser("run", help="run a command-line task over data ids of a repository",
                         description="hpcpipe run TASK REPO --id ... [options]: TASK is a "
                         "registered task name or an import path (package.module:Class); "
                         "`hpcpipe run TASK --help` lists the options.")
    run.add_argument("task", metavar="TASK", help="registered task name or import path")
    run.add_argument("task_args", nargs=argparse.REMAINDER, metavar="...",
                     help="REPO and the task's options")
    run.set_defaults(handler=_cmd_run)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from hpcpipe.task.cmdline import CmdLineTask
    from hpcpipe.task.discovery import TaskNotFoundError, find_task

    try:
        task_class = find_task(args.task)
    except TaskNotFoundError as exc:
        print(f"hpcpipe run: error: argument TASK: {exc}", file=sys.stderr)
        return 2
    if not (isinstance(task_class, type) and issubclass(task_class, CmdLineTask)):
        print(f"hpcpipe run: error: argument TASK: {args.task} is not a CmdLineTask",
              file=sys.stderr)
        return 2
    from hpcpipe.drivers.run_task import run_task_command  # the pool: loaded only when run

    return run_task_command(task_class, args.task_args, prog=f"hpcpipe run {args.task}")


def _add_submit_parser(sub: argparse._SubParsersAction) -> None:
    submit = sub.add_parser(
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from hpcpipe.comm.world import World
    from hpcpipe.drivers.demo import (
        DemoSettings,
        format_demo_summary,
        run_production_demo,
    )

    filters = tuple(f.strip() for f in args.filters.split(",") if f.strip())
    if not filters or any(f not in ("g", "r", "i") for f in filters):
        print(f"hpcpipe demo: error: argument --filters: {args.filters!r}: SimCam has g, r "
              "and i", file=sys.stderr)
        return 2
    settings = DemoSettings(args.visits, args.ccds, filters, args.size, args.seed)
    summary = run_production_demo(args.output, settings, world=World(), progress=True)
    if summary is None:  # a worker
        return 0
    print(format_demo_summary(summary), flush=True)
    return min(int(summary["exit_status"]), 255)


def _cmd_submit(args: argparse.Namespace) -> int:
    from hpcpipe.drivers.submit import (
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
        print(f"hpcpipe submit: error: {exc}", file=sys.stderr)
        return 2
    precheck = None
    if args.driver == "drp" and "--help" not in args.driver_args:
        # the configs go to the output repository now, so that the job's ranks never race
        # to write them (and a refused config is reported here, not in the job's log)
        from hpcpipe.drivers.drp_cli import drp_report_directory, prepare_drp_submission

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


def _cmd_report(args: argparse.Namespace) -> int:
    from hpcpipe.drivers.report import rebuild_report

    try:
        paths = rebuild_report(args.location)
    except FileNotFoundError as exc:
        print(f"hpcpipe report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {paths['html']}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import astropy
    import h5py
    import numpy

    import hpcpipe
    from hpcpipe.comm.world import World
    from hpcpipe.kernels import kernel_status

    world = World()
    print(f"hpcpipe {hpcpipe.__version__}")
    print(f"numpy {numpy.__version__}, astropy {astropy.__version__}, h5py {h5py.__version__} "
          f"(HDF5 {h5py.version.hdf5_version}, parallel: {h5py.get_config().mpi})")
    try:
        from mpi4py import MPI

        print(f"mpi4py: {MPI.Get_library_version().splitlines()[0]}; ranks: {world.size}")
    except ImportError:
        print("mpi4py: not installed; running serially")
    for name, impl in kernel_status().items():
        print(f"kernel {name}: {impl}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from hpcpipe.comm.logs import LOG_FORMAT, install_record_fields

    args = build_parser().parse_args(argv)
    install_record_fields()  # records carry rank@host (lines of many ranks in one batch log)
    logging.basicConfig(level=args.loglevel, format=LOG_FORMAT)
    if hasattr(args, "handler"):  # commands that bring their own handler (butler, ingest)
        return int(args.handler(args))
    handlers = {"demo": _cmd_demo, "info": _cmd_info, "submit": _cmd_submit,
                "report": _cmd_report}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
