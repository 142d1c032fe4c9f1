"""Running a production on the pool: configs first, then the unit graph, then the report.

:func:`run_production` is the master's main function (``Pool.run(run_production, request)``):

1. open the butler (the output repository is created, chained to the input);
2. select the inputs: every raw exposure an ``--id`` data id matches (its exposure keys;
   other keys, such as ``tract``, select among the units of the steps that have them);
3. write every selected step's config to the output repository (``<step>_config``), after
   checking them all, so that a refused config (it differs, and no ``--clobber-config``)
   stops the run before anything is written or run;
4. list the units of each step and their inputs (:mod:`hpcpipe.drivers.unitgraph`), and run
   each stage's graph with :meth:`~hpcpipe.comm.pool.Pool.map_graph`: a unit runs as soon as
   its inputs are done, on whichever worker is free; the units done by an earlier run (their
   ``<step>_metadata`` exists) are skipped unless ``--clobber-outputs``;
5. write the run report (JSON, timeline PNG, HTML) and return the number of failed units.

Each unit runs ``task.run_data_ref(ref)`` on a data reference of the output butler, then
writes ``<step>_metadata`` (:func:`hpcpipe.task.cmdline.process_data_ref`). The workers make
each step's task once, from the configs broadcast at the start, and keep it in their cache.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcpipe.butler import Butler, ButlerDataRef, ButlerError
from hpcpipe.comm.journal import Journal
from hpcpipe.comm.pool import Pool
from hpcpipe.comm.records import UnitError, UnitRecord
from hpcpipe.drivers.production import (
    DataId,
    Production,
    ProductionContext,
    ProductionError,
    ProductionStep,
    format_unit,
)
from hpcpipe.drivers.report import JOURNAL_NAME, rebuild_report
from hpcpipe.drivers.unitgraph import UnitGraph, plan_stages
from hpcpipe.io.atomic import remove_debris
from hpcpipe.kernels import kernels_used
from hpcpipe.task.cmdline import (
    MAX_EXIT_STATUS,
    config_conflict,
    outputs_open,
    persist_config,
    process_data_ref,
)

__all__ = ["DrpRequest", "DrpResult", "DrpUsageError", "run_production", "select_inputs",
           "write_configs", "declare_task_units", "format_summary"]

log = logging.getLogger("hpcpipe.drivers.drp")


class DrpUsageError(ProductionError):
    """A request that cannot run (an ``--id`` that selects nothing, a refused config);
    ``option`` names the option at fault."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(f"argument {option}: {message}" if option else message)


@dataclass
class DrpRequest:
    """Everything a production run needs (what ``hpcpipe drp`` parsed).

    Attributes
    ----------
    production : Production
        The production.
    input_root, output_root : Path
        The input repository and the output repository (None: write into the input).
    selection : list of dict
        The ``--id`` data ids (``[{}]``: everything).
    steps : list of str or None
        The steps to run (None: all), run in production order.
    configs : dict
        Each selected step's config (validated, frozen), by step name.
    """

    production: Production
    input_root: Path
    output_root: Path | None
    selection: list[DataId]
    steps: list[str] | None
    configs: dict[str, Any]
    clobber_outputs: bool = False
    clobber_config: bool = False
    verify_outputs: bool = False
    report_dir: Path | None = None
    show_data: bool = False
    retries: int = 0
    timeout: float | None = None
    doraise: bool = False

    def selected_steps(self) -> list[ProductionStep]:
        return self.production.select(self.steps)

    def butler(self) -> Butler:
        if self.output_root is None:
            return Butler(self.input_root)
        return Butler(self.input_root, outputs=self.output_root)


@dataclass
class DrpResult:
    """What a run did: every unit's record (job = its step), the report, the exit status."""

    records: list[UnitRecord]
    exit_status: int
    report: dict[str, Path] = field(default_factory=dict)
    wall_seconds: float = 0.0
    ranks: int = 1
    message: str = ""


@dataclass
class _WorkerSpec:
    """What the workers need, broadcast once per run."""

    token: str
    input_root: str
    output_root: str | None
    tasks: dict[str, tuple[type, Any, tuple[str, ...]]]


def declare_task_units(mapper: Any, steps: list[ProductionStep]) -> None:
    """Declare each step's unit keys as its ``<step>_metadata`` keys, unless the mapper
    declares them already (then the two must agree).

    Raises
    ------
    ProductionError
        If the mapper declares other keys for a step.
    """
    for step in steps:
        known = type(mapper).task_units.get(step.name)
        if known is None:
            type(mapper).register_task(step.name, step.unit_keys)
        elif set(known) != set(step.unit_keys):
            raise ProductionError(f"step {step.name}: unit keys {step.unit_keys} but the "
                                  f"{mapper} mapper declares {tuple(known)}")


def _run_unit(cache: Any, unit: tuple[str, DataId]) -> dict[str, str] | None:
    """The pool's unit function: one step on one data id, through the output butler.

    Returns the worker's kernel implementations (:func:`kernels_used`) when they changed
    since its last unit of this run (for the report), else None.
    """
    spec: _WorkerSpec = cache.drp
    if getattr(cache, "drp_token", None) != spec.token:
        inputs = Path(spec.input_root)
        butler = (Butler(inputs, outputs=Path(spec.output_root)) if spec.output_root
                  else Butler(inputs))
        for name, (_cls, _config, keys) in spec.tasks.items():
            if name not in type(butler.mapper).task_units:
                type(butler.mapper).register_task(name, keys)
        cache.drp_butler, cache.drp_tasks, cache.drp_token = butler, {}, spec.token
        cache.drp_kernels = None
    name, data_id = unit
    task = cache.drp_tasks.get(name)
    if task is None:
        task_class, config, _keys = spec.tasks[name]
        task = cache.drp_tasks[name] = task_class(config=config)
    process_data_ref(task, ButlerDataRef(cache.drp_butler, task.id_dataset_type, data_id))
    used = kernels_used()
    if used != cache.drp_kernels:
        cache.drp_kernels = used
        return used
    return None


def select_inputs(butler: Butler, selection: list[DataId]) -> list[DataId]:
    """The raw exposures the ``--id`` data ids select (registry rows, without duplicates).

    Only the exposure keys of each data id select raws; the others (``tract``...) select
    among units later.

    Raises
    ------
    DrpUsageError
        If a data id with exposure keys selects no raw exposure, or has a bad value.
    """
    exposure_keys = set(type(butler.mapper).exposure_keys)
    unique = type(butler.mapper).exposure_unique or tuple(exposure_keys)
    out: list[DataId] = []
    seen: set[tuple[Any, ...]] = set()
    for data_id in selection:
        part = {k: v for k, v in data_id.items() if k in exposure_keys}
        try:
            refs = butler.subset("raw", part)
        except ButlerError as exc:
            raise DrpUsageError("--id", str(exc)) from None
        if not refs and part:
            text = " ".join(f"{k}={v}" for k, v in data_id.items())
            raise DrpUsageError("--id", f"{text!r} selects no raw data in the repository")
        for ref in refs:
            key = tuple(ref.dataId.get(k) for k in unique)
            if key not in seen:
                seen.add(key)
                out.append(dict(ref.dataId))
    return out


def write_configs(butler: Butler, configs: dict[str, Any], clobber: bool,
                  dry_run: bool = False) -> None:
    """Write the steps' configs to the output repository, all or none.

    Every config is compared with the one saved first; if any differs and ``clobber`` is
    false nothing is written.

    Raises
    ------
    DrpUsageError
        Naming ``--clobber-config`` and listing the differences.
    """
    conflicts = {name: config_conflict(butler, name, config) for name, config in configs.items()}
    conflicts = {k: v for k, v in conflicts.items() if v is not None}
    if conflicts and not clobber:
        text = "\n".join(f"{name}:\n{diff}" for name, diff in conflicts.items())
        raise DrpUsageError("", f"the config of {', '.join(conflicts)} differs from the one in "
                            f"the output repository (use --clobber-config to replace it):\n"
                            f"{text}")
    if dry_run:
        return
    for name, config in configs.items():
        persist_config(butler, name, config, clobber)


def _relabel(records: list[UnitRecord], graph: UnitGraph, indices: list[int]
             ) -> list[UnitRecord]:
    return [dataclasses.replace(rec, job=graph.steps[g], index=g)
            for rec, g in zip(records, indices)]


def _show_units(stages: list[list[ProductionStep]], ctx: ProductionContext) -> None:
    """Print every unit the run would have (``--show data``), as far as they can be listed
    before anything runs."""
    for stage in stages:
        for step in stage:
            try:
                units = [u for u in step.units(ctx) if ctx.selected(u)]
            except ProductionError as exc:
                print(f"{step.name}: units listed when the run gets there ({exc})")
                return
            ctx.add_units(step.name, step.unit_keys, units)
            for unit in units:
                print(format_unit(step.name, step.unit_keys, unit))


def run_production(pool: Pool, request: DrpRequest) -> DrpResult:
    """Run a production (the master's main function; see the module documentation).

    Raises
    ------
    DrpUsageError
        Before any unit runs: an ``--id`` that selects nothing, a refused config.
    ProductionError
        For a production whose steps cannot be listed (a missing sky map...).
    """
    started = time.time()
    steps = request.selected_steps()
    butler = request.butler()
    declare_task_units(butler.mapper, steps)
    ctx = ProductionContext(butler, select_inputs(butler, request.selection),
                            selection=request.selection,
                            sky_map_dataset=request.production.sky_map_dataset)
    stages = plan_stages(steps)
    if request.show_data:
        _show_units(stages, ctx)
        return DrpResult([], 0, message="--show data")
    write_configs(butler, {s.name: request.configs[s.name] for s in steps},
                  request.clobber_config)
    report_dir = request.report_dir
    if report_dir is None and request.output_root is not None:
        report_dir = request.output_root / "report"
    elif report_dir is None:
        report_dir = request.input_root / "report"
    if request.output_root is not None and request.output_root.is_dir():
        # a resumed run: the temporary files of writes killed with the last run go first
        removed = remove_debris(request.output_root)
        if removed:
            log.info("removed %d temporary file(s) left by killed writes in %s", len(removed),
                     request.output_root)
    title = f"hpcpipe drp: {request.production.name}"
    journal = pool.journal = Journal(report_dir / JOURNAL_NAME, title)
    token = f"{id(request)}-{started}"
    pool.store(drp=_WorkerSpec(
        token, str(request.input_root),
        str(request.output_root) if request.output_root is not None else None,
        {s.name: (s.task_class, request.configs[s.name], s.unit_keys) for s in steps}))
    graph = UnitGraph()
    records: dict[int, UnitRecord] = {}
    kernels: dict[int, tuple[str, dict[str, str]]] = {}
    message = ""
    for number, stage in enumerate(stages):
        for step in stage:
            units = [u for u in step.units(ctx) if ctx.selected(u)]
            ctx.add_units(step.name, step.unit_keys, units)
            graph.add_step(step, units, ctx, number)
        def is_done(i: int) -> bool:
            step, data_id = graph.steps[i], graph.data_ids[i]
            if not butler.datasetExists(f"{step}_metadata", data_id):
                return False
            if request.verify_outputs:
                why = outputs_open(butler, step, data_id)
                if why is not None:
                    log.warning("%s: done before, but its outputs do not open (%s): redone",
                                graph.keys[i], why)
                    return False
            return True

        job = graph.stage_job(number, is_done, request.clobber_outputs)
        for g, cause in job.blocked.items():
            graph.state[g] = "blocked"
            records[g] = UnitRecord(graph.steps[g], g, graph.keys[g], "blocked",
                                    error=f"blocked: input {graph.keys[cause]} failed")
        log.info("stage %d: %d unit(s) of %s, %d done before, %d blocked", number + 1,
                 len(job.indices), ", ".join(s.name for s in stage), len(job.skip),
                 len(job.blocked))
        nodes = [(_run_unit, (graph.steps[g], graph.data_ids[g])) for g in job.indices]
        stopped = False
        results: list[Any] = []
        try:
            results = pool.map_graph(nodes, job.deps, keys=[graph.keys[g] for g in job.indices],
                                     skip=job.skip, name="drp",
                                     jobs=[graph.steps[g] for g in job.indices])
        except UnitError as exc:
            message = f"stopped at the first failure (--doraise): {exc.failure.key}"
            stopped = True
        stage_records = pool.records[-len(nodes):] if nodes else []
        for rec, value in zip(stage_records, results):  # the kernels each rank used
            if isinstance(value, dict):
                kernels.setdefault(rec.rank, (rec.host, {}))[1].update(value)
        for rec in _relabel(stage_records, graph, job.indices):
            graph.state[rec.index] = rec.state
            records[rec.index] = rec
        if stopped:
            break
    ordered = [records[i] for i in sorted(records)]
    failed = sum(r.state == "failed" for r in ordered)
    status = min(failed, MAX_EXIT_STATUS)
    if message and not status:
        status = 1
    result = DrpResult(ordered, status, wall_seconds=time.time() - started,
                       ranks=pool.world.size, message=message)
    for rec in ordered:  # the final state of every unit (skipped and blocked ones too)
        journal.unit(rec)
    for rank, (host, used) in sorted(kernels.items()):
        journal.kernels(rank, host, used)
    journal.close()
    pool.journal = None
    result.report = rebuild_report(report_dir)
    return result


def format_summary(result: DrpResult, max_failures: int = 10) -> str:
    """One screen: units per step and state, the wall time, the first failures, the report."""
    states = ("done", "skipped", "failed", "blocked", "pending")
    per_step: dict[str, dict[str, int]] = {}
    for rec in result.records:
        per_step.setdefault(rec.job, dict.fromkeys(states, 0))
        per_step[rec.job][rec.state] = per_step[rec.job].get(rec.state, 0) + 1
    width = max([len("step"), *map(len, per_step)])
    lines = [f"{'step':<{width}}  {'units':>6}" + "".join(f"  {s:>7}" for s in states)]
    for step, counts in per_step.items():
        lines.append(f"{step:<{width}}  {sum(counts.values()):>6}"
                     + "".join(f"  {counts.get(s, 0):>7}" for s in states))
    busy = sum(r.seconds for r in result.records if math.isfinite(r.seconds))
    lines.append(f"{len(result.records)} units in {result.wall_seconds:.1f} s on "
                 f"{result.ranks} rank(s) ({busy:.1f} s of unit time)")
    failures = [r for r in result.records if r.state == "failed"]
    for rec in failures[:max_failures]:
        first = rec.error.splitlines()[0] if rec.error else ""
        lines.append(f"FAILED {rec.key} on rank {rec.rank} ({rec.host}), "
                     f"{rec.attempts} attempt(s): {first}")
    if len(failures) > max_failures:
        lines.append(f"... and {len(failures) - max_failures} more failures (see the report)")
    if result.message:
        lines.append(result.message)
    if result.report:
        lines.append(f"report: {result.report['html']}")
    lines.append(f"exit status {result.exit_status}")
    return "\n".join(lines)
