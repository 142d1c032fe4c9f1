"""Command-line tasks: ``hpcpipe run TASK REPO --id ...`` (LSST's CmdLineTask and TaskRunner).

A :class:`CmdLineTask` processes one data reference at a time in :meth:`run_data_ref`.
:func:`run_cmdline_task` parses the command line (:mod:`hpcpipe.task.argparser`), opens the
butler on ``REPO`` with ``--output`` or ``--rerun`` chained to it (the config is built from the
task's defaults, then the camera's defaults from the repository's mapper, then ``-C`` and
``-c``), expands ``--id`` into data
references, writes the task's config to the output repository on the first run (and refuses a
later run whose config differs, unless ``--clobber-config``, which keeps a backup), runs every
data reference (``-j N`` at once), writes ``<task>_metadata`` after each, and returns the
number of data ids that failed (capped at 255 so that it never wraps to 0).
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import multiprocessing
import os
import resource
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from hpcpipe.butler import Butler, ButlerError
from hpcpipe.butler.provenance import output_table, record_unit
from hpcpipe.config import StoredConfig
from hpcpipe.config.compare import ConfigDifference, format_differences
from hpcpipe.io.atomic import atomic_path
from hpcpipe.task.argparser import apply_camera_defaults, build_argument_parser
from hpcpipe.task.struct import Struct
from hpcpipe.task.task import Task

if TYPE_CHECKING:
    from hpcpipe.butler import Butler, ButlerDataRef

__all__ = ["CmdLineTask", "run_cmdline_task", "MAX_EXIT_STATUS", "config_conflict",
           "persist_config", "stored_config", "process_data_ref", "outputs_open", "OUTPUTS_KEY",
           "butler_for", "repository_keys", "camera_defaults", "UNIT_KEY",
           "lineage_from_metadata", "record_lineage"]

log = logging.getLogger("hpcpipe.task.cmdline")

#: The exit status is the number of failed data ids, but never more than this.
MAX_EXIT_STATUS = 255


class CmdLineTask(Task):
    """A task run over data references from the command line.

    Subclasses set ``ConfigClass``, ``_DefaultName`` and, if their units are not raw
    exposures, :attr:`id_dataset_type`, and implement :meth:`run_data_ref`.
    """

    #: The dataset type whose data ids ``--id`` selects (one reference per dataset: every
    #: registered raw, every existing ``deepCoadd`` of a tract...); None: the units are the
    #: ``--id`` (and ``--id-file``) data ids themselves (a list of objects, say).
    id_dataset_type: ClassVar[str | None] = "raw"
    #: The keys of one unit (those of ``<task>_metadata``); empty: the mapper's default for
    #: the units' data ids, else the keys of ``id_dataset_type``, else of the ``--id``.
    unit_keys: ClassVar[tuple[str, ...]] = ()
    #: The dataset types the task writes that the camera does not have (registered in the
    #: output repository by ``hpcpipe run``; see :mod:`hpcpipe.butler.userdatasets`).
    declared_datasets: ClassVar[tuple[Any, ...]] = ()
    #: The data id keys those dataset types add to the camera's (``KeyDeclaration``).
    declared_keys: ClassVar[tuple[Any, ...]] = ()

    @classmethod
    def list_units(cls, butler: Butler, data_ids: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The data ids of the units to run for the ``--id`` data ids (without duplicates).

        By default one unit per dataset of :attr:`id_dataset_type` agreeing with a data id
        (``butler.subset``), or the data ids themselves when it is None. Override it to list
        units from a registry query (``butler.queryMetadata``) or anything else.

        Raises
        ------
        ButlerError
            For a data id the butler refuses (reported as a usage error of ``--id``).
        """
        units: list[dict[str, Any]] = []
        seen: set[tuple[tuple[str, str], ...]] = set()
        for data_id in data_ids:
            if cls.id_dataset_type is None:
                found = [butler.mapper.validate(data_id)]
            else:
                found = [ref.dataId for ref in butler.subset(cls.id_dataset_type, data_id)]
            for unit in found:
                key = tuple(sorted((k, str(v)) for k, v in unit.items()))
                if key not in seen:
                    seen.add(key)
                    units.append(dict(unit))
        return units

    @classmethod
    def units_keys(cls, butler: Butler, units: Sequence[dict[str, Any]]) -> tuple[str, ...]:
        """The unit keys of this task's units (see :attr:`unit_keys`)."""
        if cls.unit_keys:
            return tuple(cls.unit_keys)
        mapper = butler.mapper
        name = cls._DefaultName or ""
        if name in type(mapper).task_units:
            return tuple(type(mapper).task_units[name])
        if units:
            default = mapper.task_unit(name, units[0])
            if default:
                return tuple(default)
        if cls.id_dataset_type is not None:
            return tuple(mapper.dataset_type(cls.id_dataset_type).keys)
        return tuple(units[0]) if units else ()

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Process one data reference (read inputs and write outputs through it)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement run_data_ref")

    @classmethod
    def parse_and_run(cls, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
        """Run from the command line; returns the exit status."""
        return run_cmdline_task(cls, argv, prog)


def repository_keys(parser: argparse.ArgumentParser):  # type: ignore[no-untyped-def]
    """A ``known_id_keys`` function: the data id keys of the repository ``REPO`` names
    (a usage error naming ``REPO`` if it is not a repository)."""

    def keys(ns: argparse.Namespace) -> set[str]:
        try:
            return set(Butler(ns.repo).getKeys())
        except ButlerError as exc:
            parser.error(f"argument REPO: {exc}")
            raise  # not reached: error() exits

    return keys


def camera_defaults(task_names: Sequence[str], nested: bool = False
                    ) -> Callable[[argparse.Namespace, Any], None]:
    """A ``camera_defaults`` function for :meth:`TaskArgumentParser.parse_task_args`: the
    camera-level config defaults of the repository ``REPO`` names (its mapper's
    ``config_overrides(task)``).

    Parameters
    ----------
    task_names : sequence of str
        The task whose config it is; with ``nested``, the config has one nested config per
        name (``hpcpipe drp``'s ``config.<step>``), each given the camera's defaults for
        that task.
    nested : bool, optional
        See ``task_names``.
    """

    def apply(ns: argparse.Namespace, config: Any) -> None:
        try:
            mapper = Butler(ns.repo).mapper
        except ButlerError as exc:
            raise ValueError(str(exc)) from exc
        source = f"camera {mapper}"
        for name in task_names:
            target = getattr(config, name) if nested else config
            overrides = mapper.config_overrides(name)
            applied = apply_camera_defaults(target, overrides, name, source)
            if applied:
                log.debug("%s: %s config defaults: %s", name, source, ", ".join(applied))

    return apply


def repository_paths(ns: argparse.Namespace) -> tuple[Path, Path | None]:
    """The input and output repositories of parsed options: ``REPO`` (or its rerun
    ``INPUT``), and ``--output`` or ``REPO/rerun/OUTPUT`` (None when neither is given)."""
    root = Path(ns.repo)
    inputs = root / "rerun" / ns.rerun_input if ns.rerun_input else root
    if ns.output:
        return inputs, Path(ns.output)
    if ns.rerun_output:
        return inputs, root / "rerun" / ns.rerun_output
    return inputs, None


def butler_for(ns: argparse.Namespace) -> Any:
    """The butler of parsed options: ``REPO`` read, ``--output`` or ``--rerun`` written."""
    inputs, outputs = repository_paths(ns)
    return Butler(inputs, outputs=outputs) if outputs is not None else Butler(inputs)


def _data_refs(butler: Butler, task_class: type[CmdLineTask], data_ids: list[dict[str, Any]],
               parser: argparse.ArgumentParser) -> list[Any]:
    dataset_type = task_class.id_dataset_type
    if dataset_type is None:
        parser.error(f"argument --id: {task_class._DefaultName} takes no data ids")
    refs, seen = [], set()
    for data_id in data_ids:
        try:
            found = butler.subset(dataset_type, data_id)
        except ButlerError as exc:
            parser.error(f"argument --id: {exc}")
        for ref in found:
            key = tuple(sorted((k, str(v)) for k, v in ref.dataId.items()))
            if key not in seen:
                seen.add(key)
                refs.append(ref)
    return refs


def _output_config(butler: Butler, name: str) -> tuple[Any, str]:
    """The ``<name>_config`` dataset type and its path in the *output* repository only."""
    resolved = butler.mapper.dataset_type(f"{name}_config", {})
    return resolved, resolved.template.format({})


def stored_config(butler: Butler, name: str) -> Any:
    """The ``<name>_config`` of the output repository (never one found through its inputs).

    Returns
    -------
    StoredConfig, other plain data, or None
        None if the output repository holds no config of ``name``. The file is read as data
        (:mod:`hpcpipe.config.stored`): nothing in it runs.
    """
    resolved, relpath = _output_config(butler, name)
    storage = butler.output.storage
    if not storage.exists(relpath):
        return None
    return storage.read(relpath, resolved.formatter.read)


def config_conflict(butler: Butler, name: str, config: Any) -> str | None:
    """Describe how ``config`` differs from the ``<name>_config`` in the output repository.

    Only the output repository is looked at: a config in an input repository describes
    another run, and belongs to whoever wrote it.

    Returns
    -------
    str or None
        The differences, one field a line; None if there is no saved config or it is equal.
    """
    stored = stored_config(butler, name)
    if stored is None:
        return None
    if not isinstance(stored, StoredConfig):
        return format_differences([ConfigDifference("(stored config)", "a config",
                                                    type(stored).__name__)])
    differences = stored.differences(config)
    return format_differences(differences) if differences else None


def persist_config(butler: Butler, name: str, config: Any, clobber: bool) -> str | None:
    """Write a task's config to the output repository as ``<name>_config``.

    On the first run the config is written; on later runs it is compared (as data) with the
    one the output repository holds. A different config is refused unless ``clobber``, which
    replaces it and keeps the old file as a backup beside it (``<file>~1``, ``~2``...) in the
    output repository.

    Returns
    -------
    str or None
        The error to report (the config differs and ``clobber`` is false), else None.
    """
    _, relpath = _output_config(butler, name)
    if butler.output.storage.exists(relpath):
        differences = config_conflict(butler, name, config)
        if differences is None:
            return None
        if not clobber:
            return (f"the config of {name} differs from the one in the output repository "
                    f"(use --clobber-config to replace it):\n{differences}")
        path = butler.output.storage.local_path(relpath)
        k = 1
        while path.with_name(f"{path.name}~{k}").exists():
            k += 1
        backup = path.with_name(f"{path.name}~{k}")
        with atomic_path(backup) as tmp:
            shutil.copy2(path, tmp)
        log.warning("replacing the config of %s; the old one is kept as %s", name, backup)
    butler.put(config, f"{name}_config")
    return None


def process_data_ref(task: CmdLineTask, data_ref: ButlerDataRef, provenance: bool | None = None,
                     lineage: list[Any] | None = None) -> Any:
    """Run ``task`` on one data reference and write its ``<task>_metadata`` there.

    The metadata is written only when :meth:`CmdLineTask.run_data_ref` returns, so its
    existence marks the data id as done (what resumed runs look for). With ``provenance``
    (the default, unless the environment sets ``HPCPIPE_PROVENANCE=0`` for every rank) the
    unit also leaves

    * in its metadata, under :data:`UNIT_KEY`: its start and end (Unix time), wall and CPU
      seconds, the process's peak RSS (bytes), the host and pid, and the datasets it read;
    * the log records its task hierarchy emitted (``<task>_log``, JSON lines; only when
      there were some);
    * its lineage in the output repository (:mod:`hpcpipe.butler.provenance`), written
      before the metadata: every dataset it wrote made from every dataset it read; with
      ``lineage`` (a list) it is appended there as ``(task, outputs, inputs)`` instead,
      for the caller to record (the pool's master records a stage's at once).
    """
    task.reset_metadata()
    written = getattr(data_ref, "written", None)
    first = len(written) if written is not None else 0
    butler = getattr(data_ref, "butler", None)
    if provenance is None:
        provenance = os.environ.get(PROVENANCE_ENV, "1") != "0"
    if not provenance or butler is None or not hasattr(butler, "track"):
        result = task.run_data_ref(data_ref)
        metadata: dict[str, Any] = task.get_full_metadata()
        if written is not None:  # what the unit wrote, for --verify-outputs on a resume
            metadata[OUTPUTS_KEY] = [{"datasetType": t, "dataId": dict(i)}
                                     for t, i in written[first:]]
        if butler is not None and hasattr(butler, "put_marker"):
            butler.put_marker(metadata, f"{task.name}_metadata", data_ref.dataId)
        else:
            data_ref.put(metadata, f"{task.name}_metadata")
        return result
    reads, writes = butler.track()
    handler = _RecordCollector()
    task.log.addHandler(handler)
    start, cpu0 = time.time(), time.process_time()
    try:
        result = task.run_data_ref(data_ref)
    finally:
        task.log.removeHandler(handler)
        butler.untrack()
    end, cpu1 = time.time(), time.process_time()
    metadata = cast("dict[str, Any]", task.get_full_metadata())  # gets the unit's keys too
    if written is not None:
        metadata[OUTPUTS_KEY] = [{"datasetType": t, "dataId": dict(i)}
                                 for t, i in written[first:]]
    metadata[UNIT_KEY] = {
        "start": start, "end": end, "wallSeconds": end - start, "cpuSeconds": cpu1 - cpu0,
        "maxRssBytes": _peak_rss(), "host": _HOST, "pid": os.getpid(),
        "inputs": [{"datasetType": t, "dataId": dict(i)} for t, i in _distinct(reads)],
        "outputs": [{"datasetType": t, "dataId": dict(i)} for t, i in _distinct(writes)],
        "logRecords": len(handler.records)}
    if handler.records:
        butler.put_marker(handler.records, f"{task.name}_log", data_ref.dataId)
    if lineage is not None:
        lineage.append((task.name, _distinct(writes), _distinct(reads)))
    else:
        record_unit(butler, task.name, writes, reads)
    butler.put_marker(metadata, f"{task.name}_metadata", data_ref.dataId)
    return result


def lineage_from_metadata(metadata: Any) -> tuple[list[Any], list[Any]] | None:
    """The ``(outputs, inputs)`` a unit's ``<task>_metadata`` records (``hpcpipe_unit``),
    as ``(dataset type, data id)`` pairs; None if it records none (provenance was off)."""
    unit = metadata.get(UNIT_KEY) if isinstance(metadata, dict) else None
    if not isinstance(unit, dict) or "outputs" not in unit:
        return None
    pairs = [[(d["datasetType"], dict(d["dataId"])) for d in unit.get(name) or []]
             for name in ("outputs", "inputs")]
    return pairs[0], pairs[1]


def record_lineage(butler: Butler, units: list[tuple[str, Any]]) -> int:
    """Record the lineage of units run elsewhere (``(unit id, (task, outputs, inputs))``,
    what :func:`process_data_ref` appends to ``lineage``) in one transaction; returns the
    rows written."""
    table = output_table(butler)
    if table is None or not units:
        return 0
    return table.record_many([(key, task, outs, ins) for key, (task, outs, ins) in units])


#: The environment variable that switches provenance off (``0``) for every unit.
PROVENANCE_ENV = "HPCPIPE_PROVENANCE"
#: The ``<task>_metadata`` entry with the unit's timings, resources and inputs.
UNIT_KEY = "hpcpipe_unit"
_HOST = socket.gethostname()


def _distinct(refs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, dict[str, Any]]] = {}
    for kind, data_id in refs:
        seen.setdefault((kind, tuple(sorted((k, str(v)) for k, v in data_id.items()))),
                        (kind, data_id))
    return list(seen.values())


def _peak_rss() -> int:
    """The peak resident set size of this process, in bytes (``getrusage``: kilobytes on
    Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class _RecordCollector(logging.Handler):
    """Keeps the log records of one unit as plain dicts (the ``<task>_log`` lines)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not fail the unit
            message = str(record.msg)
        entry: dict[str, Any] = {"time": record.created, "level": record.levelname,
                                 "logger": record.name, "message": message,
                                 "file": record.pathname, "line": record.lineno}
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = logging.Formatter().formatException(record.exc_info)
        self.records.append(entry)


#: The ``<task>_metadata`` entry listing the datasets a unit wrote through its data reference.
OUTPUTS_KEY = "hpcpipe_outputs"


def outputs_open(butler: Butler, task_name: str, data_id: dict[str, Any]) -> str | None:
    """Check that a done unit's outputs open: its metadata, and every dataset it lists.

    Returns
    -------
    str or None
        Why the unit does not count as done (a truncated or unreadable file), else None.
    """
    try:
        metadata = butler.get(f"{task_name}_metadata", data_id)
    except Exception as exc:  # noqa: BLE001 - any failure to read means: not done
        return f"{task_name}_metadata: {type(exc).__name__}: {exc}"
    if not isinstance(metadata, dict):
        return f"{task_name}_metadata: not a mapping"
    for output in metadata.get(OUTPUTS_KEY, []):
        try:
            butler.get(output["datasetType"], output["dataId"])
        except Exception as exc:  # noqa: BLE001
            return f"{output.get('datasetType')}: {type(exc).__name__}: {exc}"
    return None


class _Runner:
    """Runs one data reference in this process or a ``-j`` worker process."""

    def __init__(self, task_class: type[CmdLineTask], config: Any, doraise: bool) -> None:
        self.task_class = task_class
        self.config = config
        self.doraise = doraise
        self._task: CmdLineTask | None = None

    def __call__(self, ref: ButlerDataRef) -> tuple[dict[str, Any], str | None]:
        if self._task is None:
            self._task = self.task_class(config=self.config)
        try:
            process_data_ref(self._task, ref)
        except Exception as exc:  # noqa: BLE001 - one failing data id must not stop the rest
            if self.doraise:
                raise
            text = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            return dict(ref.dataId), text
        return dict(ref.dataId), None


#: What a ``-j`` child inherits at fork: the runner, the references and each unit's state.
_FORKED: dict[str, Any] = {}
_PENDING, _STARTED, _FINISHED = 0, 1, 2


def _run_forked(index: int) -> tuple[dict[str, Any], str | None]:
    """Run reference ``index`` in a ``-j`` child, marking it started, then finished."""
    states = _FORKED["states"]
    states[index] = _STARTED
    outcome = _FORKED["runner"](_FORKED["refs"][index])
    states[index] = _FINISHED
    return outcome


def run_in_processes(runner: Any, refs: list[Any], processes: int
                     ) -> list[tuple[dict[str, Any], str | None]]:
    """Run ``runner(ref)`` for every reference in ``processes`` forked children.

    A child that dies (SIGKILL, the OOM killer) breaks a ``ProcessPoolExecutor``
    (``BrokenProcessPool``) instead of losing its task silently, as ``multiprocessing.Pool``
    does: the units that were running then are failed (their child died under them, or was
    stopped with the pool), the units not started yet go on in a new pool. It never hangs.

    Returns
    -------
    list of (data id, error text or None)
        In the order of ``refs``.
    """
    context = multiprocessing.get_context("fork")
    states = context.RawArray("b", len(refs))  # shared with the children, no lock needed
    _FORKED.update(runner=runner, refs=refs, states=states)
    outcomes: dict[int, tuple[dict[str, Any], str | None]] = {}
    todo = list(range(len(refs)))
    try:
        while todo:
            broken: list[int] = []
            with ProcessPoolExecutor(max_workers=min(processes, len(todo)),
                                     mp_context=context) as pool:
                futures = {pool.submit(_run_forked, i): i for i in todo}
                for future in as_completed(futures):
                    index = futures[future]
                    try:
                        outcomes[index] = future.result()
                    except BrokenProcessPool:
                        broken.append(index)
                    except BaseException:  # --doraise: stop at the first failure
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise
            todo = []
            for index in sorted(broken):
                if states[index] == _STARTED:
                    outcomes[index] = (dict(refs[index].dataId),
                                       "its -j worker process died while it ran (killed by a "
                                       "signal, or by the out-of-memory killer)")
                    log.error("a -j worker process died while it ran %s",
                              dict(refs[index].dataId))
                else:  # not started, or finished with its answer lost: run it again
                    states[index] = _PENDING
                    todo.append(index)
    finally:
        _FORKED.clear()
    return [outcomes[i] for i in range(len(refs))]


def run_cmdline_task(task_class: type[CmdLineTask], argv: Sequence[str] | None = None,
                     prog: str | None = None) -> int:
    """Parse ``argv`` for ``task_class`` and run it; returns the exit status.

    Usage errors (a bad option, ``--id`` or config override, an unreadable ``REPO``) exit with
    status 2 before any data is touched.
    """
    name = task_class._DefaultName
    assert name is not None  # a CmdLineTask has a _DefaultName
    parser = build_argument_parser(prog or f"hpcpipe run {name}",
                                   description=(task_class.__doc__ or "").split("\n")[0] or None,
                                   config_class=task_class.ConfigClass, task_name=name)
    ns = parser.parse_task_args(argv, known_id_keys=repository_keys(parser),
                                camera_defaults=camera_defaults([name]))
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                            level=logging.INFO)
    butler = butler_for(ns)
    refs = _data_refs(butler, task_class, ns.data_ids, parser) if ns.id_strings else []
    if ns.show_data:
        for ref in refs:
            print(f"{task_class.id_dataset_type} dataRef.dataId = {dict(ref.dataId)}")
        if ns.exit_after_show:
            return 0
    if not ns.id_strings:
        log.warning("%s: no --id given, so no data to process (a bare --id means all)", name)
    error = persist_config(butler, name, ns.config, ns.clobber_config)
    if error is not None:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    runner = _Runner(task_class, ns.config, ns.doraise)
    profile = cProfile.Profile() if ns.profile else None
    if profile is not None:
        profile.enable()
    try:
        if ns.processes > 1 and len(refs) > 1:
            outcomes = run_in_processes(runner, refs, ns.processes)
        else:
            outcomes = [runner(ref) for ref in refs]
    except Exception as exc:  # noqa: BLE001 - --doraise: the first failure stops the run
        log.error("%s failed (--doraise): %s: %s", name, type(exc).__name__, exc)
        return 1
    finally:
        if profile is not None:
            profile.disable()
            profile.dump_stats(ns.profile)
    failures = [(data_id, text) for data_id, text in outcomes if text is not None]
    for data_id, text in failures:
        log.error("%s failed on %s: %s", name, data_id, text)
    log.info("%s: %d data id(s) processed, %d failed", name, len(outcomes), len(failures))
    return min(len(failures), MAX_EXIT_STATUS)
