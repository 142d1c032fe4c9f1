"""The driver of ``hpcpipe run TASK REPO --id ...``: any command-line task, run like a
production step (the command line: :mod:`hpcpipe.commands.run`).

One runner for hpcpipe's tasks and users' own:

* the task's units come from :meth:`~hpcpipe.task.cmdline.CmdLineTask.list_units` (every
  raw an ``--id`` selects by default; every dataset of another type; the ``--id`` data ids
  themselves, with keys the task declares; or the task's own listing), with data ids also
  read from files (``--id-file FILE``, one ``--id`` a line);
* the dataset types and keys the task declares are registered in the output repository
  (:func:`hpcpipe.butler.userdatasets.declare`), the config and the software versions are
  recorded there (``--clobber-config``, ``--clobber-versions``, ``--no-versions``), all on
  the master before any unit runs;
* the units run as a one-step production (:func:`hpcpipe.drivers.drp.run_production`) on
  the master-worker pool: under ``mpiexec``/``srun`` on every rank but the master
  (dynamic hand-out), serially without MPI; failed units are retried (``--retries``),
  units running too long failed (``--timeout``), ``--doraise`` stops at the first failure;
  units done by an earlier run (their ``<task>_metadata`` exists) are skipped unless
  ``--clobber-outputs``; the journal and the report go to ``OUT/report`` (``--report``);
* ``-j N`` runs the units in N forked processes of this node instead (no MPI), with the
  same resume and retries (no ``--timeout``).

Every unit records its provenance (:func:`hpcpipe.task.cmdline.process_data_ref`). The exit
status is the number of failed units (at most 255); 2 for a usage error, before any unit
runs.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import sys
from collections.abc import Sequence
from typing import Any

from hpcpipe.butler import Butler, ButlerDataRef, ButlerError
from hpcpipe.butler.userdatasets import declare
from hpcpipe.comm.pool import Pool
from hpcpipe.comm.world import World
from hpcpipe.drivers.drp import (
    DrpRequest,
    DrpResult,
    DrpUsageError,
    format_summary,
    run_production,
    write_configs,
)
from hpcpipe.drivers.production import (
    Production,
    ProductionContext,
    ProductionError,
    ProductionStep,
)
from hpcpipe.task.cmdline import (
    MAX_EXIT_STATUS,
    CmdLineTask,
    _Runner,
    butler_for,
    run_in_processes,
)
from hpcpipe.task.discovery import TaskNotFoundError, find_task  # entry points: lazily
from hpcpipe.task.versions import check_versions

__all__ = ["run_task", "TaskRequest", "user_step", "append_user_steps"]

log = logging.getLogger("hpcpipe.drivers.run_task")


class TaskRequest(DrpRequest):
    """A :class:`DrpRequest` for one task, with what only ``hpcpipe run`` does."""

    def __init__(self, *args: Any, task_class: type[CmdLineTask], data_ids: list[dict[str, Any]],
                 clobber_versions: bool = False, no_versions: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task_class = task_class
        self.data_ids = data_ids
        self.clobber_versions = clobber_versions
        self.no_versions = no_versions


def user_step(task_class: type[CmdLineTask]) -> ProductionStep:
    """The production step of a user's task: its ``unit_keys`` and the steps it reads from
    (its ``production_inputs``); its units are the distinct unit keys of the selected raws.

    Raises
    ------
    ProductionError
        For a task without a name.
    """
    name = task_class._DefaultName
    if not name:
        raise ProductionError(f"{task_class.__name__} has no _DefaultName")
    return ProductionStep(name, task_class, tuple(task_class.unit_keys),
                          inputs=tuple(getattr(task_class, "production_inputs", ())))


def append_user_steps(production: Production, tasks: Sequence[str]) -> Production:
    """``production`` with the users' tasks (registered names or import paths) appended as
    steps (``hpcpipe drp --add-step TASK``).

    Raises
    ------
    ProductionError
        For a task that cannot be found, is not a CmdLineTask, or reads a step the
        production does not have.
    """

    steps = list(production.steps)
    for text in tasks:
        try:
            task_class = find_task(text)
        except TaskNotFoundError as exc:
            raise ProductionError(str(exc)) from None
        if not issubclass(task_class, CmdLineTask):
            raise ProductionError(f"{text} is not a CmdLineTask")
        steps.append(user_step(task_class))
    return Production(production.name, steps, production.sky_map_dataset, production.doc)


def _prepare(butler: Butler, request: TaskRequest) -> None:
    """Register the task's dataset types and check the versions (master, before any unit).

    Raises
    ------
    DrpUsageError
        For a declaration that clashes, or versions that differ.
    """
    task_class = request.task_class
    name = request.production.steps[0].name
    try:
        new = declare(butler, task_class.declared_datasets, task_class.declared_keys, task=name)
    except ButlerError as exc:
        raise DrpUsageError("TASK", str(exc)) from None
    if new:
        log.info("%s: registered %s in %s", name, ", ".join(new), butler.output.uri)
    error = check_versions(butler, request.clobber_versions, request.no_versions)
    if error is not None:
        raise DrpUsageError("", error)


def _list_units(butler: Butler, request: TaskRequest) -> tuple[list[dict[str, Any]],
                                                           tuple[str, ...]]:
    try:
        units = request.task_class.list_units(butler, request.data_ids)
    except ButlerError as exc:
        raise DrpUsageError("--id", str(exc)) from None
    return units, request.task_class.units_keys(butler, units)


def _run_pooled(pool: Pool, request: TaskRequest) -> DrpResult:
    """The master's main function: prepare, then run the task as a one-step production."""
    butler = request.butler()
    _prepare(butler, request)
    units, keys = _list_units(butler, request)
    name = request.production.steps[0].name

    def lister(ctx: ProductionContext) -> list[dict[str, Any]]:
        return units

    request.production = Production(name, [ProductionStep(name, request.task_class, keys,
                                                           list_units=lister)])
    result = run_production(pool, request)
    for rec in result.records:
        if rec.state == "failed":
            log.error("%s failed: %s", rec.key, (rec.error or "").strip())
    return result


def _run_forked(request: TaskRequest, processes: int) -> int:
    """``-j N``: the units in N forked processes, with resume and retries."""
    butler = request.butler()
    _prepare(butler, request)
    name = request.production.steps[0].name
    units, keys = _list_units(butler, request)
    if name not in type(butler.mapper).task_units:
        type(butler.mapper).register_task(name, keys)
    write_configs(butler, {name: request.configs[name]}, request.clobber_config)
    todo = units
    if not request.clobber_outputs:
        todo = [u for u in units if not butler.datasetExists(f"{name}_metadata", u)]
    log.info("%s: %d unit(s), %d done before", name, len(units), len(units) - len(todo))
    task_class = request.task_class
    runner = _Runner(task_class, request.configs[name], request.doraise)
    refs = [ButlerDataRef(butler, task_class.id_dataset_type or "raw", u) for u in todo]
    failed: dict[int, str] = {}
    pending = list(range(len(refs)))
    for attempt in range(request.retries + 1):
        subset = [refs[i] for i in pending]
        outcomes = (run_in_processes(runner, subset, processes) if len(subset) > 1
                    else [runner(r) for r in subset])
        failed = {i: text for i, (_id, text) in zip(pending, outcomes) if text is not None}
        pending = sorted(failed)
        if not pending:
            break
        if attempt < request.retries:
            log.warning("%s: %d unit(s) failed; trying them again", name, len(pending))
    for i, text in failed.items():
        log.error("%s failed on %s: %s", name, refs[i].dataId, text)
    log.info("%s: %d data id(s) processed, %d failed", name, len(refs), len(failed))
    return min(len(failed), MAX_EXIT_STATUS)


def run_task(request: TaskRequest, ns: argparse.Namespace, prog: str,
             world: World | None = None) -> int:
    """Run the task of ``request`` as parsed by :func:`hpcpipe.commands.run.parse_run_args`
    (``ns``: the parsed options, for ``--show``, ``-j`` and ``--profile``); returns the exit
    status (0 on the workers of an MPI run)."""
    task_class = request.task_class
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                            level=logging.INFO)
    world = world or World()
    name = request.production.steps[0].name
    if ns.show_data:
        if world.rank == 0:
            units, _keys = _list_units(butler_for(ns), request)
            for unit in units:
                print(f"{task_class.id_dataset_type} dataRef.dataId = {unit}")
        if ns.exit_after_show:
            return 0
    if not ns.any_ids:
        log.warning("%s: no --id given, so no data to process (a bare --id means all)", name)
        return 0
    if ns.processes > 1 and world.is_parallel:
        print(f"{prog}: error: argument -j: not under MPI: the ranks are the workers",
              file=sys.stderr)
        return 2
    profile = cProfile.Profile() if ns.profile and world.rank == 0 else None
    if profile is not None:
        profile.enable()
    try:
        if ns.processes > 1:
            return _run_forked(request, ns.processes)
        pool = Pool(world, retries=request.retries, timeout=request.timeout,
                    doraise=request.doraise, progress=True)
        result = pool.run(_run_pooled, request)
    except DrpUsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - --doraise with -j: the first failure stops
        if not ns.doraise:
            raise
        log.error("%s failed (--doraise): %s: %s", name, type(exc).__name__, exc)
        return 1
    finally:
        if profile is not None:
            profile.disable()
            profile.dump_stats(ns.profile)
    if result is None:  # a worker
        return 0
    print(format_summary(result), flush=True)
    return result.exit_status
