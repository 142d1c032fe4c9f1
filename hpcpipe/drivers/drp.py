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
5. write the run report (JSON, timeline PNG, HTML) and return the number of failed units
   (at most 74), or :data:`~hpcpipe.comm.walltime.MORE_TO_DO_EXIT` (75) when the job's
   walltime left units for the next job (the pool's ``end_time``; the journal of each run is
   kept, ``journal.<k>.jsonl``, and its unit times seed the next run's estimates).

Each unit runs ``task.run_data_ref(ref)`` on a data reference of the output butler, then
writes ``<step>_metadata`` (:func:`hpcpipe.task.cmdline.process_data_ref`). The workers make
each step's task once, from the configs broadcast at the start, and keep it in their cache.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcpipe.butler import Butler, ButlerDataRef, ButlerError
from hpcpipe.butler.provenance import output_table
from hpcpipe.butler.userdatasets import declare
from hpcpipe.comm.journal import Journal, archive_journal, journal_history, read_journal
from hpcpipe.comm.memory import format_gb
from hpcpipe.comm.pool import Pool
from hpcpipe.comm.records import UnitError, UnitRecord
from hpcpipe.comm.walltime import MORE_TO_DO_EXIT
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
    config_conflict,
    lineage_from_metadata,
    outputs_open,
    persist_config,
    process_data_ref,
    record_lineage,
)

__all__ = ["DrpRequest", "DrpResult", "DrpUsageError", "run_production", "select_inputs",
           "write_configs", "declare_task_units", "declare_datasets", "format_summary",
           "report_directory", "worker_butler", "MAX_FAILED_STATUS", "MORE_TO_DO_EXIT"]

#: The exit status counts failed units up to this (75 means "more to do": MORE_TO_DO_EXIT).
MAX_FAILED_STATUS = MORE_TO_DO_EXIT - 1
#: Earlier journals whose unit times seed a resumed run's estimates (walltime).
SEED_JOURNALS = 3

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
    #: Seconds of walltime left at the start (None: from the environment, or unlimited).
    walltime_left: float | None = None
    #: Seconds between the master's status lines (0: none).
    status_interval: float = 60.0
    #: Bytes a unit may allocate, by step (``"*"``: every step).
    memory_limits: dict[str, float] = field(default_factory=dict)
    #: Where the workers' log records go: ``auto``, ``files`` or ``stream``.
    rank_logs: str = "auto"

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
    #: The walltime left units for the next job (the exit status is MORE_TO_DO_EXIT).
    more_to_do: bool = False


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


def declare_datasets(butler: Butler, steps: list[ProductionStep]) -> None:
    """Register the dataset types the steps' tasks declare in the output repository.

    Raises
    ------
    DrpUsageError
        For a declaration that clashes with an existing dataset type.
    """
    for step in steps:
        datasets = getattr(step.task_class, "declared_datasets", ())
        keys = getattr(step.task_class, "declared_keys", ())
        if datasets or keys:
            try:
                declare(butler, datasets, keys, task=step.name)
            except ButlerError as exc:
                raise DrpUsageError("", str(exc)) from None


def worker_butler(cache: Any, prefix: str, input_root: str | Path,
                  output_root: str | Path | None, *, token: Any = None,
                  task_units: Mapping[str, Sequence[str]] | None = None) -> tuple[Butler, bool]:
    """The butler of a run on a worker: opened at the worker's first unit of the run, then
    kept in the pool's cache (``<prefix>_butler``, ``<prefix>_token``) for its other units.

    Parameters
    ----------
    cache : object
        The pool's per-rank cache (what the master's ``pool.store`` sets).
    prefix : str
        The driver's prefix of cache names (``drp``, ``alert``).
    input_root, output_root : str or Path
        The input repository and the output one (None: write into the input).
    token : object
        The run's token: a butler cached under another token (an earlier run) is replaced;
        a master may also store ``<prefix>_butler=None`` to have it opened again.
    task_units : mapping, optional
        Unit keys of the run's tasks, registered on the mapper when it does not know them.

    Returns
    -------
    butler : Butler
        The run's butler.
    opened : bool
        Whether it was opened now (the first unit of a run: reset the run's other caches).
    """
    butler = getattr(cache, f"{prefix}_butler", None)
    if butler is not None and getattr(cache, f"{prefix}_token", None) == token:
        return butler, False
    inputs = Path(input_root)
    butler = Butler(inputs, outputs=Path(output_root)) if output_root else Butler(inputs)
    for name, keys in (task_units or {}).items():
        if name not in type(butler.mapper).task_units:
            type(butler.mapper).register_task(name, keys)
    setattr(cache, f"{prefix}_butler", butler)
    setattr(cache, f"{prefix}_token", token)
    return butler, True


def _run_unit(cache: Any, unit: tuple[str, DataId]) -> tuple[Any, dict[str, str] | None]:
    """The pool's unit function: one step on one data id, through the output butler.

    Returns the unit's lineage ``(task, outputs, inputs)`` for the master to record (None
    with provenance off) and the worker's kernel implementations (:func:`kernels_used`) when
    they changed since its last unit of this run (for the report), else None.
    """
    spec: _WorkerSpec = cache.drp
    butler, opened = worker_butler(cache, "drp", spec.input_root, spec.output_root,
                                   token=spec.token,
                                   task_units={n: t[2] for n, t in spec.tasks.items()})
    if opened:  # a new run: its tasks are made again, with its configs
        cache.drp_tasks, cache.drp_kernels = {}, None
    name, data_id = unit
    task = cache.drp_tasks.get(name)
    if task is None:
        task_class, config, _keys = spec.tasks[name]
        task = cache.drp_tasks[name] = task_class(config=config)
    lineage: list[Any] = []
    process_data_ref(task, ButlerDataRef(butler, task.id_dataset_type, data_id),
                     lineage=lineage)
    used = kernels_used()
    changed = None
    if used != cache.drp_kernels:
        cache.drp_kernels = changed = used
    return (lineage[0] if lineage else None), changed


def _repair_lineage(butler: Butler, graph: UnitGraph, skipped: list[int]) -> None:
    """Record the lineage of units done by an earlier run whose lineage is not in the
    table (that run was killed before the end of their stage), from their metadata."""
    table = output_table(butler)
    if table is None or not skipped:
        return
    recorded = table.recorded_units()
    missing = [g for g in skipped if graph.keys[g] not in recorded]
    found: list[tuple[str, Any]] = []
    for g in missing:
        try:
            metadata = butler.get(f"{graph.steps[g]}_metadata", graph.data_ids[g])
        except Exception:  # noqa: BLE001 - an unreadable marker: no lineage to recover
            continue
        pairs = lineage_from_metadata(metadata)
        found.append((graph.keys[g], (graph.steps[g], *(pairs or ([], [])))))
    if found:
        record_lineage(butler, found)
        log.info("lineage of %d unit(s) done before recorded from their metadata", len(found))


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
    declare_datasets(butler, steps)
    write_configs(butler, {s.name: request.configs[s.name] for s in steps},
                  request.clobber_config)
    report_dir = report_directory(request)
    if request.output_root is not None and request.output_root.is_dir():
        # a resumed run: the temporary files of writes killed with the last run go first
        removed = remove_debris(request.output_root)
        if removed:
            log.info("removed %d temporary file(s) left by killed writes in %s", len(removed),
                     request.output_root)
    title = f"hpcpipe drp: {request.production.name}"
    archive_journal(report_dir / JOURNAL_NAME)  # the campaign's history: kept, renumbered
    _seed_durations(pool, report_dir / JOURNAL_NAME)
    journal = pool.journal = Journal(report_dir / JOURNAL_NAME, title)
    journal.write({"event": "start", "time": started, "ranks": pool.world.size,
                   "end_time": pool.end_time, "batch_job": _batch_job_id()})
    token = f"{id(request)}-{started}"
    pool.store(drp=_WorkerSpec(
        token, str(request.input_root),
        str(request.output_root) if request.output_root is not None else None,
        {s.name: (s.task_class, request.configs[s.name], s.unit_keys) for s in steps}))
    graph = UnitGraph()
    records: dict[int, UnitRecord] = {}
    kernels: dict[int, tuple[str, dict[str, str]]] = {}
    message = ""
    number = 0
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
        per_step: dict[str, int] = {}
        for g in job.indices:
            per_step[graph.steps[g]] = per_step.get(graph.steps[g], 0) + 1
        journal.write({"event": "plan", "stage": number, "units": per_step})
        for g, cause in job.blocked.items():
            graph.state[g] = "blocked"
            records[g] = UnitRecord(graph.steps[g], g, graph.keys[g], "blocked",
                                    error=f"blocked: input {graph.keys[cause]} failed")
        log.info("stage %d: %d unit(s) of %s, %d done before, %d blocked", number + 1,
                 len(job.indices), ", ".join(s.name for s in stage), len(job.skip),
                 len(job.blocked))
        _repair_lineage(butler, graph, [job.indices[k] for k in job.skip])
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
            results = []
        # the stage's lineage, in one transaction (the workers never write the table)
        record_lineage(butler, [(graph.keys[g], value[0])
                                for g, value in zip(job.indices, results, strict=False)
                                if isinstance(value, tuple) and isinstance(value[0], tuple)])
        stage_records = pool.records[-len(nodes):] if nodes else []
        for rec, value in zip(stage_records, results, strict=False):  # the kernels each rank used
            if isinstance(value, tuple) and isinstance(value[1], dict):
                kernels.setdefault(rec.rank, (rec.host, {}))[1].update(value[1])
        for rec in _relabel(stage_records, graph, job.indices):
            graph.state[rec.index] = rec.state
            records[rec.index] = rec
        if stopped or pool.out_of_time:
            break  # a later stage's units may not even be listable without this one's
    ordered = [records[i] for i in sorted(records)]
    failed = sum(r.state == "failed" for r in ordered)
    status = min(failed, MAX_FAILED_STATUS)
    if message and not status:
        status = 1
    more = pool.out_of_time and not stopped
    if more:
        left = sum(r.state == "pending" for r in ordered)
        later = len(stages) - 1 - number
        message = (f"stopped for the walltime: {left} unit(s) left"
                   + (f" and {later} later stage(s)" if later else "")
                   + f" for the next job (exit status {MORE_TO_DO_EXIT})")
        status = MORE_TO_DO_EXIT
    result = DrpResult(ordered, status, wall_seconds=time.time() - started,
                       ranks=pool.world.size, message=message, more_to_do=more)
    for rec in ordered:  # the final state of every unit (skipped and blocked ones too)
        journal.unit(rec)
    for rank, (host, used) in sorted(kernels.items()):
        journal.kernels(rank, host, used)
    journal.write({"event": "end", "time": time.time(), "status": status, "more_to_do": more,
                   "failed": failed, "ranks": pool.world.size})
    journal.close()
    pool.journal = None
    result.report = rebuild_report(report_dir)
    return result


def report_directory(request: DrpRequest) -> Path:
    """Where a run's report and journal go: ``--report``, else ``OUT/report`` (or the input
    repository's ``report/`` when writing into it)."""
    if request.report_dir is not None:
        return request.report_dir
    return (request.output_root or request.input_root) / "report"


def _batch_job_id() -> str | None:
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID") or None


def _seed_durations(pool: Pool, journal_path: Path) -> None:
    """Give the pool the unit times of the last runs, so that a resumed run knows at once
    which units fit before its walltime."""
    if pool.end_time is None:
        return
    for path in journal_history(journal_path)[-SEED_JOURNALS:]:
        try:
            _title, previous = read_journal(path)
        except OSError:
            continue
        for rec in previous:
            if rec.state == "done" and math.isfinite(rec.seconds):
                pool.durations.add(rec.job, rec.seconds)


def format_summary(result: DrpResult, max_failures: int = 10) -> str:
    """One screen: units per step and state, the wall time, the first failures, the report."""
    states = ("done", "skipped", "failed", "blocked", "pending")
    per_step: dict[str, dict[str, int]] = {}
    for rec in result.records:
        per_step.setdefault(rec.job, dict.fromkeys(states, 0))
        per_step[rec.job][rec.state] = per_step[rec.job].get(rec.state, 0) + 1
    peaks: dict[str, float] = {}
    for rec in result.records:
        if math.isfinite(rec.peak_rss):
            peaks[rec.job] = max(peaks.get(rec.job, 0.0), rec.peak_rss)
    width = max([len("step"), *map(len, per_step)])
    lines = [f"{'step':<{width}}  {'units':>6}" + "".join(f"  {s:>7}" for s in states)
             + "  peak memory"]
    for step, counts in per_step.items():
        lines.append(f"{step:<{width}}  {sum(counts.values()):>6}"
                     + "".join(f"  {counts.get(s, 0):>7}" for s in states)
                     + (f"  {format_gb(peaks[step]):>11}" if step in peaks else ""))
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
