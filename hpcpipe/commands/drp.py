"""``hpcpipe drp REPO --output OUT --id ...``: run a data release production.

The production is the one registered for ``REPO``'s camera (its mapper's name; see
:func:`hpcpipe.drivers.production.register_production`), or ``--production NAME`` (a
registered name or ``package.module:attribute``), or the one given to
:func:`add_drp_command`. The options are those of every command-line task (``--id``,
``--output``/``--rerun``, ``--show``, ``--loglevel``, ``--doraise``, ``--clobber-config``,
``-C``/``-c`` with ``step.field`` names) and ``--add-step TASK`` (a user's task appended
as a step, see docs/level3.md), ``--steps``, ``--clobber-outputs``, ``--retries``,
``--timeout`` and ``--report``, and for campaigns ``--walltime-left``, ``--status-interval``,
``--memory-limit`` and ``--rank-logs``. Run it under ``mpiexec``/``srun`` for several ranks;
usage errors exit with status 2 naming the option or data id, before any unit runs; otherwise
the exit status is the number of failed units (at most 74), or 75 when the walltime left
units for the next job.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcpipe.argtypes import positive_float
from hpcpipe.commands.options import add_unit_options

if TYPE_CHECKING:
    from hpcpipe.config import Config
    from hpcpipe.drivers.drp import DrpRequest
    from hpcpipe.drivers.production import Production

__all__ = ["add_drp_command", "run_drp_command", "parse_drp_args", "prepare_drp_submission",
           "production_config_class", "drp_report_directory"]

PROG = "hpcpipe drp"
#: With ``--rank-logs auto``, jobs of more ranks than this write one log file per worker.
RANK_LOG_FILES_ABOVE = 16


def _memory_limit(text: str) -> tuple[str, float]:
    """``[STEP=]GB`` -> (step or ``"*"``, bytes)."""
    step, _, value = text.rpartition("=")
    try:
        gb = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give [STEP=]GB, e.g. 4 or "
                                         "processCcd=2.5") from None
    if not gb > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the limit must be more than 0 GB")
    return step.strip() or "*", gb * 1e9


def production_config_class(production: Production) -> type[Config]:
    """A config class with one nested config per step (``config.<step>.<field>``), so that
    ``-c step.field=value`` and ``-C file`` address any step's config."""
    from hpcpipe.config import Config, ConfigField  # start-up cost (as every import below)

    fields = {step.name: ConfigField(f"config of step {step.name} "
                                     f"({step.task_class.__name__})",
                                     step.task_class.ConfigClass)
              for step in production.steps}
    return type(f"{production.name.capitalize()}ProductionConfig", (Config,), fields)


def _find_production(argv: Sequence[str], default: Production | None) -> Production | None:
    """The production from ``--production``, the hook's default or ``REPO``'s mapper; exits
    with status 2 when it cannot be found."""
    # the productions, their tasks and the butler: start-up cost
    from hpcpipe.drivers.production import (
        BUILTIN_PRODUCTIONS,
        STANDARD_PRODUCTION,
        ProductionError,
        find_production,
        registered_productions,
    )

    # start-up cost: imported when the command runs, so that --help answers at once
    from hpcpipe.drivers.run_task import append_user_steps

    pre = argparse.ArgumentParser(prog=PROG, add_help=False)
    pre.add_argument("repo", nargs="?")
    pre.add_argument("--production")
    pre.add_argument("--add-step", action="append", default=[])
    known, _rest = pre.parse_known_args(list(argv))
    if known.add_step:
        found = _find_production([a for a in argv if a not in known.add_step
                                  and a != "--add-step"], default)
        if found is None:
            return None
        try:
            return append_user_steps(found, known.add_step)
        except ProductionError as exc:
            pre.error(f"argument --add-step: {exc}")
    try:
        if known.production:
            return find_production(known.production)
        if default is not None:
            return default
        if known.repo is None or known.repo.startswith("-"):
            return None  # --help, or a missing REPO that the full parser reports
        # start-up cost: imported when the command runs, so that --help answers at once
        from hpcpipe.butler import Butler, ButlerError

        try:
            mapper = Butler(known.repo).mapper
        except ButlerError as exc:
            pre.error(f"argument REPO: {exc}")
        name = mapper.name or mapper.full_name
        if name not in registered_productions() and name not in BUILTIN_PRODUCTIONS and \
                getattr(mapper, "camera", None) is not None:
            # a camera described by a file, without a production of its own: the standard
            # data release production (the same dataset types for every camera)
            name = STANDARD_PRODUCTION
        return find_production(name)
    except ProductionError as exc:
        option = "--production" if known.production else "REPO"
        pre.error(f"argument {option}: {exc}")
    return None  # not reached


def parse_drp_args(argv: Sequence[str], production: Production | None = None
                   ) -> DrpRequest:
    """Parse ``hpcpipe drp`` arguments into a :class:`DrpRequest`.

    Raises
    ------
    SystemExit
        Status 2 with a message naming the option on a usage error; 0 after ``--help`` or a
        ``--show`` that does not need the data.
    """
    # the task argument parser, the production and its configs: start-up cost
    from hpcpipe.drivers.drp import DrpRequest
    from hpcpipe.drivers.production import Production
    from hpcpipe.task.argparser import build_argument_parser
    from hpcpipe.task.cmdline import camera_defaults, repository_keys, repository_paths

    found = _find_production(argv, production)
    empty = Production("none", [])
    config_class = production_config_class(found or empty)
    parser = build_argument_parser(
        PROG, description=f"Run the production {found.name if found else ''} over the data "
        "ids of a repository, each unit as soon as its inputs are done.",
        config_class=config_class, task_name=found.name if found else None)
    parser.add_argument("--production", metavar="NAME",
                        help="a registered production or package.module:attribute (default: "
                             "the one registered for REPO's camera)")
    parser.add_argument("--add-step", action="append", default=[], metavar="TASK",
                        help="append a user's task (registered name or package.module:Class) "
                             "as a step; it reads the steps of its production_inputs "
                             "(repeatable)")
    parser.add_argument("--steps", metavar="A,B,...",
                        help="run only these steps (default all: "
                             f"{','.join((found or empty).step_names)})")
    parser.add_argument("--clobber-outputs", action="store_true",
                        help="redo every unit, even those done by an earlier run")
    parser.add_argument("--verify-outputs", action="store_true",
                        help="before skipping a unit done by an earlier run, check that its "
                             "metadata and every output it lists open (a truncated file: the "
                             "unit is redone)")
    add_unit_options(parser)
    parser.add_argument("--walltime-left", type=positive_float, metavar="SECONDS",
                        help="the job ends in SECONDS: hand out no unit whose step's median "
                             "time would not fit, finish the others, write the report and "
                             "exit with status 75 (more to do); default: from "
                             "HPCPIPE_JOB_END_TIME or SLURM_JOB_END_TIME, if set")
    parser.add_argument("--status-interval", type=float, default=60.0, metavar="SECONDS",
                        help="log a status line (units done per step, failed, units/s, "
                             "ETA) every SECONDS on the master (default 60; 0: never)")
    parser.add_argument("--memory-limit", type=_memory_limit, action="append", default=[],
                        metavar="[STEP=]GB",
                        help="a unit (of STEP, or of every step) that allocates more than GB "
                             "fails alone instead of bringing the OOM killer; its retries get "
                             "twice the limit each (repeatable)")
    parser.add_argument("--rank-logs", choices=("auto", "files", "stream"), default="auto",
                        help="where the workers log: files (REPORT/logs/rank-NNNNN.log), "
                             f"stream (stderr, as the master), auto (files above "
                             f"{RANK_LOG_FILES_ABOVE} ranks; the default)")
    ns = parser.parse_task_args(
        list(argv), known_id_keys=repository_keys(parser),
        camera_defaults=camera_defaults((found or empty).step_names, nested=True))
    if found is None:
        parser.error("argument REPO: no production for this repository")
    if ns.processes != 1:
        parser.error("argument -j: hpcpipe drp runs on the MPI ranks it is launched with "
                     "(mpiexec -n N hpcpipe drp ...)")
    steps = None
    if ns.steps is not None:
        steps = [s.strip() for s in ns.steps.split(",") if s.strip()]
        unknown = [s for s in steps if s not in found.step_names]
        if unknown or not steps:
            parser.error(f"argument --steps: {', '.join(unknown) or repr(ns.steps)} is not a "
                         f"step of {found.name} (its steps: {', '.join(found.step_names)})")
    if not ns.id_strings:
        parser.error("argument --id: give the data to process (a bare --id means all data)")
    if ns.status_interval < 0:
        parser.error(f"argument --status-interval: {ns.status_interval:g} is negative")
    limits = dict(ns.memory_limit)
    unknown = [s for s in limits if s != "*" and s not in found.step_names]
    if unknown:
        parser.error(f"argument --memory-limit: {', '.join(unknown)} is not a step of "
                     f"{found.name} (its steps: {', '.join(found.step_names)})")
    inputs, output = repository_paths(ns)
    configs = {}
    for step in found.steps:
        config = getattr(ns.config, step.name).copy()
        config.freeze()
        configs[step.name] = config
    request = DrpRequest(found, inputs, output, ns.data_ids, steps, configs,
                         clobber_outputs=ns.clobber_outputs, clobber_config=ns.clobber_config,
                         verify_outputs=ns.verify_outputs,
                         report_dir=ns.report, show_data=ns.show_data, retries=ns.retries,
                         timeout=ns.timeout, doraise=ns.doraise, walltime_left=ns.walltime_left,
                         status_interval=ns.status_interval, memory_limits=limits,
                         rank_logs=ns.rank_logs)
    return request


def run_drp_command(argv: Sequence[str], production: Production | None = None,
                    world: Any = None) -> int:
    """Parse the arguments and run the production on the ranks of ``world`` (default: the
    launch world); returns the exit status (0 on the workers)."""
    # the pool and the production's driver: start-up cost
    from hpcpipe.comm.logs import log_to_rank_file, set_log_rank
    from hpcpipe.comm.pool import Pool
    from hpcpipe.comm.walltime import job_end_time
    from hpcpipe.comm.world import World
    from hpcpipe.drivers.drp import DrpUsageError, format_summary, report_directory, run_production
    from hpcpipe.drivers.production import ProductionError
    from hpcpipe.errors import HpcpipeError

    try:
        request = parse_drp_args(argv, production)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        end_time = job_end_time(request.walltime_left)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    world = world or World()
    set_log_rank(world.rank)
    if world.rank and (request.rank_logs == "files" or request.rank_logs == "auto"
                       and world.size > RANK_LOG_FILES_ABOVE):
        log_to_rank_file(report_directory(request) / "logs", world.rank)
    pool = Pool(world, retries=request.retries, timeout=request.timeout,
                doraise=request.doraise, progress=True, end_time=end_time,
                status_interval=request.status_interval or None,
                memory_limits=request.memory_limits)
    try:
        result = pool.run(run_production, request)
    except DrpUsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ProductionError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except HpcpipeError as exc:  # e.g. a unit lister that cannot read what it needs
        print(f"{PROG}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if result is None:  # a worker
        return 0
    if result.message != "--show data":
        print(format_summary(result), flush=True)
    return result.exit_status


def prepare_drp_submission(argv: Sequence[str], dry_run: bool = False,
                           production: Production | None = None) -> int:
    """For ``hpcpipe submit ... drp REPO ...``: check the arguments and write the steps'
    configs to the output repository before the job is submitted, so that its ranks never
    race to write them. Returns 0, or 2 after printing a usage error."""
    # start-up cost: imported when the command runs, so that --help answers at once
    from hpcpipe.drivers.drp import DrpUsageError, write_configs  # start-up cost
    from hpcpipe.drivers.production import ProductionError

    try:
        request = parse_drp_args(argv, production)
    except SystemExit as exc:
        return int(exc.code or 0) or 2
    try:
        butler = request.butler()
        configs = {s.name: request.configs[s.name] for s in request.selected_steps()}
        write_configs(butler, configs, request.clobber_config, dry_run=dry_run)
    except (DrpUsageError, ProductionError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("hpcpipe.drivers.drp").info(
        "configs of %s %s in %s", ", ".join(configs),
        "checked" if dry_run else "written", request.output_root or request.input_root)
    return 0


def drp_report_directory(argv: Sequence[str], production: Production | None = None
                         ) -> Path | None:
    """The absolute report directory of a ``hpcpipe drp`` command line (where its journals
    are: what a campaign's chained jobs check), or None if the arguments do not parse."""
    from hpcpipe.drivers.drp import report_directory  # start-up cost

    try:
        request = parse_drp_args(argv, production)
    except SystemExit:
        return None
    return report_directory(request).resolve()


def add_drp_command(subparsers: Any, production: Production | None = None) -> None:
    """Add ``hpcpipe drp`` to the command line (``production``: the default production,
    else the one registered for the repository's camera)."""
    drp = subparsers.add_parser(
        "drp", help="run a data release production over data ids of a repository",
        description="hpcpipe drp REPO --output OUT --id ... [options]; `hpcpipe drp REPO "
        "--help` lists the options and the steps.")
    drp.add_argument("drp_args", nargs=argparse.REMAINDER, metavar="...",
                     help="REPO and the production's options")

    def run_drp(args: argparse.Namespace) -> int:
        return run_drp_command(args.drp_args, production)

    drp.set_defaults(handler=run_drp)
