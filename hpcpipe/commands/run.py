"""``hpcpipe run TASK REPO --id ...``: any command-line task, run like a production step.

TASK is a registered task name (entry point group ``hpcpipe.tasks``) or an import path
(``package.module:Class``). Its options are those of every command-line task (``--id``,
``--output``/``--rerun``, ``-c``/``-C``, ``--show``, ``--doraise``, ``-j``...; see
:func:`hpcpipe.task.argparser.build_argument_parser`), ``--id-file``, ``--clobber-outputs``,
``--verify-outputs``, ``--retries``, ``--timeout``, ``--report``, ``--clobber-versions`` and
``--no-versions``; they are parsed by :func:`parse_run_args` once the task (and so its config)
is known. The run itself is :func:`hpcpipe.drivers.run_task.run_task`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcpipe.commands.options import add_unit_options, usage_error

if TYPE_CHECKING:
    from hpcpipe.drivers.run_task import TaskRequest
    from hpcpipe.task.cmdline import CmdLineTask

__all__ = ["add_run_command", "parse_run_args", "run_task_command"]


def add_run_command(subparsers: Any) -> None:
    """Add ``hpcpipe run TASK ...`` to the command line."""
    run = subparsers.add_parser("run", help="run a command-line task over data ids of a "
                                "repository", description="hpcpipe run TASK REPO --id ... "
                                "[options]: TASK is a registered task name or an import path "
                                "(package.module:Class); `hpcpipe run TASK --help` lists the "
                                "options.")
    run.add_argument("task", metavar="TASK", help="registered task name or import path")
    run.add_argument("task_args", nargs=argparse.REMAINDER, metavar="...",
                     help="REPO and the task's options")
    run.set_defaults(handler=run_run)


def run_run(args: argparse.Namespace) -> int:
    """Find the task and run it; 2 when TASK is not found or not a command-line task."""
    # the task framework is imported when the command runs: start-up cost
    from hpcpipe.task.cmdline import CmdLineTask
    from hpcpipe.task.discovery import TaskNotFoundError, find_task

    try:
        task_class = find_task(args.task)
    except TaskNotFoundError as exc:
        return usage_error("run", f"argument TASK: {exc}")
    if not (isinstance(task_class, type) and issubclass(task_class, CmdLineTask)):
        return usage_error("run", f"argument TASK: {args.task} is not a CmdLineTask")
    return run_task_command(task_class, args.task_args, prog=f"hpcpipe run {args.task}")


def run_task_command(task_class: type[CmdLineTask], argv: Sequence[str],
                     prog: str | None = None, world: Any = None) -> int:
    """Parse the arguments and run ``task_class`` (see :mod:`hpcpipe.drivers.run_task`);
    returns the exit status (0 on the workers of an MPI run)."""
    # start-up cost: imported when the command runs, so that --help answers at once
    from hpcpipe.drivers.run_task import run_task  # the pool: loaded only when run

    prog = prog or f"hpcpipe run {task_class._DefaultName}"
    try:
        ns, request = parse_run_args(task_class, argv, prog)
    except SystemExit as exc:
        return int(exc.code or 0)
    return run_task(request, ns, prog, world)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id-file", action="append", type=Path, metavar="FILE", default=[],
                        help="more data ids, one --id a line (KEY=VALUE ...; # comments)")
    parser.add_argument("--clobber-outputs", action="store_true",
                        help="redo every unit, even those done by an earlier run")
    parser.add_argument("--verify-outputs", action="store_true",
                        help="before skipping a unit done by an earlier run, check that its "
                             "metadata and every output it lists open")
    add_unit_options(parser, timeout_note=" (not with -j)")
    versions = parser.add_mutually_exclusive_group()
    versions.add_argument("--clobber-versions", action="store_true",
                          help="go on when the software versions differ from those recorded "
                               "in the output repository, and record the new ones")
    versions.add_argument("--no-versions", action="store_true",
                          help="neither check nor record the software versions")


def _read_id_files(parser: argparse.ArgumentParser, files: Sequence[Path],
                   keys: set[str]) -> list[dict[str, Any]]:
    from hpcpipe.task.dataid import DataIdError, expand_data_ids  # start-up cost

    out: list[dict[str, Any]] = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"argument --id-file: {path}: cannot read it ({exc})")
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                out.extend(expand_data_ids([text], known_keys=keys))
            except DataIdError as exc:
                parser.error(f"argument --id-file: {path} line {number}: {exc}")
    return out


def _output_keys(ns: argparse.Namespace) -> set[str]:
    """The keys declared in an existing output repository (by an earlier task's run)."""
    # start-up cost: imported when the command runs, so that --help answers at once
    from hpcpipe.butler import ButlerError, Repository  # start-up cost
    from hpcpipe.butler.userdatasets import read_declarations

    # parsed before --rerun is split: read --output and --rerun as given
    output = (Path(ns.output) if ns.output else
              Path(ns.repo) / "rerun" / ns.rerun.split(":")[-1] if ns.rerun else None)
    if output is None or not (output / "_mapper").exists():
        return set()
    try:
        return set(read_declarations(Repository.open(output))["keys"])
    except ButlerError:
        return set()  # reported when the butler opens it


def parse_run_args(task_class: type[CmdLineTask], argv: Sequence[str], prog: str
                   ) -> tuple[argparse.Namespace, TaskRequest]:
    """Parse ``hpcpipe run TASK`` arguments; exits with status 2 on a usage error."""
    # the task's config, the butler and the production are imported once TASK is known:
    # start-up cost
    from hpcpipe.drivers.production import Production, ProductionStep
    from hpcpipe.drivers.run_task import TaskRequest
    from hpcpipe.task.argparser import build_argument_parser
    from hpcpipe.task.cmdline import camera_defaults, repository_keys, repository_paths

    name = task_class._DefaultName or task_class.__name__
    parser = build_argument_parser(prog, description=(task_class.__doc__ or "").split("\n")[0]
                                   or None, config_class=task_class.ConfigClass,
                                   task_name=name)
    _add_run_options(parser)
    declared = {k.name for k in task_class.declared_keys}
    repo_keys = repository_keys(parser)

    def known_keys(ns: argparse.Namespace) -> set[str]:
        return set(repo_keys(ns)) | declared | _output_keys(ns)

    ns = parser.parse_task_args(list(argv), known_id_keys=known_keys,
                                camera_defaults=camera_defaults([name]))
    data_ids = list(ns.data_ids) if ns.id_strings else []
    if ns.id_file:
        data_ids += _read_id_files(parser, ns.id_file, known_keys(ns))
    ns.any_ids = bool(ns.id_strings) or bool(ns.id_file)
    if ns.timeout is not None and ns.processes > 1:
        parser.error("argument --timeout: not with -j (run serially or under mpiexec)")
    inputs, output = repository_paths(ns)
    production = Production(name, [ProductionStep(name, task_class, ())])
    request = TaskRequest(production, inputs, output, [{}], None, {name: ns.config},
                          clobber_outputs=ns.clobber_outputs, clobber_config=ns.clobber_config,
                          verify_outputs=ns.verify_outputs, report_dir=ns.report,
                          retries=ns.retries, timeout=ns.timeout, doraise=ns.doraise,
                          task_class=task_class, data_ids=data_ids,
                          clobber_versions=ns.clobber_versions, no_versions=ns.no_versions)
    return ns, request
