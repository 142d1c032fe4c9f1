"""A master-worker pool over the MPI world the run was launched with.

Rank 0 is the master: it runs the user's main function and hands out units of work; the
other ranks are workers that serve it until it closes the pool. With one rank, or without
MPI, the same code runs every unit in the one process. The pool lives in ``COMM_WORLD`` as
launched (no ``MPI_Comm_spawn``, which SLURM with PMIx and Cray MPI lack).

Three ways to hand out work, as LSST's ctrl_pool had:

* ``map(..., mode="dynamic")``: a worker gets more units when it returns results. Units are
  sent in chunks sized from the measured time per unit (about :data:`TARGET_CHUNK_SECONDS`
  a chunk, more with many workers so that the master receives at most
  :data:`MASTER_MESSAGES_PER_SECOND` messages; never more than half a worker's fair share),
  so fast units do not make the master a bottleneck and the user never chooses a chunk size.
* ``mode="static"``: unit ``i`` goes to worker ``i mod n`` in one message; no round trip.
* ``mode="previous"`` (cache-affine): a unit goes back to the worker that last processed a
  unit with the same key, where its data may still be in memory (the worker's ``cache``).

Every unit function is called as ``func(cache, unit, *args)``; ``cache`` is the worker's
:class:`WorkerCache`, holding the read-only state broadcast once with :meth:`Pool.store`
(the butler, the sky map, the config) and whatever the function keeps there.

A unit that raises is recorded (key, rank, host, traceback) and the others go on; the result
list holds a :class:`~hpcpipe.comm.records.UnitFailure` (false in a boolean test) in its
place. ``retries`` runs a failed unit again, on another worker where possible; ``timeout``
fails a unit that runs too long; ``doraise`` stops at the first failure and raises
:class:`~hpcpipe.comm.records.UnitError` on the master once the workers are idle again.

The master never waits forever for a worker. The ``timeout`` alarm lives in the worker and
cannot fire for a unit stuck in native code, in an MPI call or in a stopped process, so the
master keeps a deadline of its own for every worker with units in flight: ``timeout`` plus
a grace period (:func:`grace_seconds`) after the worker's last answer; without a
``timeout``, :data:`SILENCE_SECONDS` without a heartbeat (a worker thread sends one every
:data:`HEARTBEAT_SECONDS` while units run). Past it the worker's units are failed ("no
answer for N s", with rank and host), the worker is given up (MPI cannot take a rank back)
and the others go on; when the master's main function has returned (summary and report
written), the job ends with ``MPI_Abort``, since the lost rank would keep ``mpirun`` and
``MPI_Finalize`` waiting. A worker that leaves its loop for any reason (``KeyboardInterrupt``,
a ``BaseException``) tells the master first; a unit that calls ``sys.exit`` only fails.

Campaigns (optional, all off by default):

* ``end_time``: the job's end (:mod:`hpcpipe.comm.walltime`). The master hands out a unit only
  if its step's running median unit time fits before the end, less a reserve; ``SIGUSR1``
  (or :meth:`Pool.request_stop`) stops the handing out at once. The units in flight finish;
  the others stay ``pending`` and :attr:`Pool.out_of_time` is set.
* ``status_interval``: every so many seconds the master logs a status line (units done and
  failed per step, units per second, the time to the end) to ``hpcpipe.progress``, with or
  without a terminal, so that a batch log shows how the run goes.
* ``memory_limits``: bytes a unit of a step may allocate (:mod:`hpcpipe.comm.memory`); past
  it the unit fails alone ("exceeded its memory limit of N GB"), and may be retried. Every
  unit's peak resident memory is measured and recorded (``UnitRecord.peak_rss``).
"""

from __future__ import annotations

import atexit
import collections
import functools
import itertools
import logging
import math
import os
import pickle
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np

from hpcpipe.comm.journal import Journal
from hpcpipe.comm.messages import (
    EndJob,
    Gone,
    Outcomes,
    Results,
    StartJob,
    Stop,
    Store,
    Work,
)
from hpcpipe.comm.records import (
    HOSTNAME,
    UnitError,
    UnitFailure,
    UnitRecord,
    run_chunk,
)
from hpcpipe.comm.transport import Tag, Transport
from hpcpipe.comm.walltime import StepDurations, default_reserve
from hpcpipe.comm.world import World

#: How ``Pool.map`` hands out units: on demand, in fixed shares, or to the rank that did the
#: unit's key before.
MapMode = Literal["dynamic", "static", "previous"]

__all__ = ["MapMode", "Pool", "WorkerCache", "LaunchError", "check_launch", "TARGET_CHUNK_SECONDS",
           "HEARTBEAT_SECONDS", "SILENCE_SECONDS", "LOST_WORKER_EXIT", "MEMORY_RETRY_FACTOR",
           "grace_seconds"]

log = logging.getLogger("hpcpipe.comm.pool")
#: Where the master's status lines go (``status_interval``).
progress_log = logging.getLogger("hpcpipe.progress")

#: Dynamic chunks aim at about this much work each (seconds), at least.
TARGET_CHUNK_SECONDS = 0.02
#: Result messages per second one master handles with room to spare (measured: about 10
#: microseconds per pickled round trip on one node; see docs/scaling.md). Chunks grow with the
#: number of workers so that the master never receives more than this.
MASTER_MESSAGES_PER_SECOND = 20_000
#: A worker with results to return sends them at least this often (seconds).
FLUSH_SECONDS = 0.05
#: A worker running units tells the master it is alive this often (seconds).
HEARTBEAT_SECONDS = 1.0
#: Without a ``timeout``, a worker with units in flight silent this long is given up (no
#: heartbeat: stopped, or holding the GIL in native code that long). Override with
#: ``HPCPIPE_SILENCE_SECONDS``.
SILENCE_SECONDS = float(os.environ.get("HPCPIPE_SILENCE_SECONDS", "120"))
#: The exit status of a job ended by ``MPI_Abort`` because a worker was lost.
LOST_WORKER_EXIT = 3
#: A unit's memory limit is multiplied by this on each retry.
MEMORY_RETRY_FACTOR = 2.0


def grace_seconds(timeout: float) -> float:
    """How long past its ``timeout`` the master waits for a worker's answer (seconds).

    The worker's own alarm fails a unit at ``timeout``; the grace covers the reply's way
    back and a loaded machine: 5 s, or a quarter of the timeout if that is longer.
    """
    return max(5.0, 0.25 * float(timeout))


class LaunchError(RuntimeError):
    """The MPI world does not match what the batch system asked for."""


def check_launch(world: World, environ: dict[str, str] | None = None) -> None:
    """Check that the MPI world has the ranks SLURM asked for.

    An MPI started by ``srun`` without the right PMI plug-in silently runs N separate
    one-rank copies of the program; each would then process every unit.

    Raises
    ------
    LaunchError
        If ``SLURM_NTASKS`` (or ``SLURM_NPROCS``) is set and differs from the world size.
    """
    env = os.environ if environ is None else environ
    if world.comm is not None:
        # start-up cost: importing mpi4py.MPI initialises MPI; only where MPI is used
        from mpi4py import MPI

        if world.comm.Compare(MPI.COMM_WORLD) not in (MPI.IDENT, MPI.CONGRUENT):
            return  # a sub-communicator: its size is the caller's choice
    wanted = env.get("SLURM_NTASKS") or env.get("SLURM_NPROCS")
    if not wanted or "SLURM_STEP_ID" not in env and "SLURM_JOB_ID" not in env:
        return
    if int(wanted) != world.size:
        raise LaunchError(
            f"SLURM asked for {wanted} tasks but the MPI world has {world.size} rank(s): "
            "MPI was not started through SLURM's PMI. Launch with `srun --mpi=pmix` (or the "
            "plug-in `srun --mpi=list` shows for your MPI) or with mpirun inside the job."
        )


class WorkerCache(types.SimpleNamespace):
    """A worker's memory between units: shared state from :meth:`Pool.store` and more."""


_PENDING, _RUNNING, _DONE, _FAILED, _SKIPPED, _BLOCKED = 0, 1, 2, 3, 4, 5
_STATE_NAMES = ("pending", "running", "done", "failed", "skipped", "blocked")


class _Job:
    """The master's book-keeping of one map call, in arrays (a few bytes per unit)."""

    def __init__(self, name: str, units: Sequence[Any], keys: Sequence[str],
                 retries: int, deps: Sequence[Sequence[int]] | None = None,
                 skip: Iterable[int] = ()) -> None:
        n = len(units)
        self.name = name
        self.units = units
        self.keys = keys
        self.retries = retries
        self.state = np.zeros(n, np.int8)
        self.rank = np.full(n, -1, np.int32)
        self.start = np.full(n, np.nan)
        self.end = np.full(n, np.nan)
        self.attempts = np.zeros(n, np.int32)
        self.peak = np.full(n, np.nan)
        self.errors: dict[int, tuple[str, str]] = {}
        self.excluded: dict[int, set[int]] = {}
        self.hosts: dict[int, str] = {}
        self.results: list[Any] = [None] * n
        self.pending: collections.deque[int] = collections.deque()
        # dependencies: a unit becomes pending when every unit it depends on is done
        self.children: list[list[int]] = [[] for _ in range(n)]
        self.waiting = np.zeros(n, np.int64)
        self.retry: collections.deque[int] = collections.deque()
        self.remaining = n
        self.mean_seconds: float | None = None
        self.failed_for_good: int | None = None
        #: The job name of each unit in the records (default: the job's name).
        self.job_names: Sequence[str] | None = None
        #: Called with the record of each unit that ends (the run journal), if set.
        self.on_end: Callable[[UnitRecord], None] | None = None
        # the status lines: when the job started, units skipped then, each unit's step
        self.status_t0 = time.time()
        self.status_skipped = 0
        self.status_steps: list[str] = [name]
        self.status_codes = np.zeros(n, np.int64)
        for i, parents in enumerate(deps or ()):
            for parent in parents:
                if not 0 <= parent < n or parent == i:
                    raise ValueError(f"unit {keys[i]}: dependency {parent} is not another unit")
                self.children[parent].append(i)
            self.waiting[i] = len(parents)
        if deps is not None:
            self._check_acyclic()
        skipped = set(skip)
        for i in skipped:  # done by an earlier run: as good as done now
            self.state[i] = _SKIPPED
            self.remaining -= 1
            for child in self.children[i]:
                self.waiting[child] -= 1
        self.pending.extend(i for i in range(n) if i not in skipped and self.waiting[i] == 0)

    def _check_acyclic(self) -> None:
        """Raise if the dependencies have a cycle (Kahn's algorithm)."""
        waiting = self.waiting.copy()
        ready = [i for i in range(len(self.units)) if waiting[i] == 0]
        seen = 0
        while ready:
            i = ready.pop()
            seen += 1
            for child in self.children[i]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        if seen != len(self.units):
            stuck = [self.keys[i] for i in range(len(self.units)) if waiting[i] > 0][:5]
            raise ValueError(f"job {self.name}: the dependencies form a cycle through "
                             f"{', '.join(stuck)}")

    def _release(self, index: int) -> None:
        """A unit is done (or skipped): its children with no other wait become pending.

        They go to the front of the queue (depth first): a patch whose inputs are ready runs
        before further visits, so results flow through the steps early and inputs are still
        in the file system's cache when they are read again.
        """
        ready = []
        for child in self.children[index]:
            self.waiting[child] -= 1
            if self.waiting[child] == 0 and self.state[child] == _PENDING:
                ready.append(child)
        self.pending.extendleft(reversed(ready))

    def _block_descendants(self, index: int) -> None:
        """A unit failed for good: everything that needs it is blocked, not run."""
        stack = list(self.children[index])
        while stack:
            child = stack.pop()
            if self.state[child] in (_PENDING,):
                self.state[child] = _BLOCKED
                self.errors[child] = (f"blocked: input {self.keys[index]} failed", "")
                self.results[child] = self.failure(child)
                self.remaining -= 1
                self.ended((child,))
                stack.extend(self.children[child])

    def step(self, index: int) -> str:
        """The step (job name) of unit ``index``."""
        return self.job_names[index] if self.job_names is not None else self.name

    def record_batch(self, outcomes: Outcomes, rank: int, host: str) -> list[int]:
        """Store a batch of outcomes from one worker; return the indices that succeeded."""
        indices, values, starts, ends, failures, peaks = outcomes
        idx = np.asarray(indices, dtype=np.int64)
        st, en = np.asarray(starts), np.asarray(ends)
        self.rank[idx], self.start[idx], self.end[idx] = rank, st, en
        if peaks is not None:
            self.peak[idx] = np.asarray(peaks, dtype=float)
        self.attempts[idx] += 1
        self.hosts.setdefault(rank, host)
        mean = float(np.maximum(en - st, 1e-7).mean())
        self.mean_seconds = mean if self.mean_seconds is None else (
            0.8 * self.mean_seconds + 0.2 * mean)
        done = []
        results = self.results
        for i, value in zip(indices, values):
            if i in failures:
                self._failed(i, failures[i], rank, host)
            else:
                results[i] = value
                done.append(i)
        self.state[done] = _DONE
        self.remaining -= len(done)
        for i in done:
            if self.children[i]:
                self._release(i)
        if self.on_end is not None:
            self.ended(indices)
        return done

    def _failed(self, index: int, error: tuple[str, str], rank: int, host: str) -> None:
        self.errors[index] = error
        key = self.keys[index]
        if self.attempts[index] <= self.retries:
            self.state[index] = _PENDING
            self.excluded.setdefault(index, set()).add(rank)
            self.retry.append(index)
            log.warning("unit %s failed on rank %d (%s); retrying (%d of %d): %s", key, rank,
                        host, self.attempts[index], self.retries, error[0])
            return
        self.state[index] = _FAILED
        self.results[index] = self.failure(index)
        self.remaining -= 1
        self._block_descendants(index)
        if self.failed_for_good is None:
            self.failed_for_good = index
        log.error("unit %s failed on rank %d (%s): %s\n%s", key, rank, host, *error)

    def failure(self, index: int) -> UnitFailure:
        error, trace = self.errors[index]
        rank = int(self.rank[index])
        return UnitFailure(self.keys[index], error, trace, rank, self.hosts.get(rank, ""),
                           int(self.attempts[index]))

    def record(self, i: int) -> UnitRecord:
        """The :class:`UnitRecord` of unit ``i`` as it stands."""
        rank = int(self.rank[i])
        error, trace = self.errors.get(i, ("", ""))
        state = int(self.state[i])
        name = self.job_names[i] if self.job_names is not None else self.name
        return UnitRecord(
            name, i, self.keys[i], _STATE_NAMES[state], rank, self.hosts.get(rank, ""),
            float(self.start[i]), float(self.end[i]), int(self.attempts[i]),
            error if state != _DONE else "", trace if state != _DONE else "",
            float(self.peak[i]), set(self.excluded.get(i, ())))

    def records(self) -> list[UnitRecord]:
        """One :class:`UnitRecord` per unit."""
        return [self.record(i) for i in range(len(self.keys))]

    def ended(self, indices: Iterable[int]) -> None:
        """Units just ended (done, failed, or failed and retried): tell the journal."""
        if self.on_end is not None:
            for i in indices:
                self.on_end(self.record(i))


class Pool:
    """The master-worker pool (see the module documentation).

    Parameters
    ----------
    world : World, optional
        The ranks (default: the launch world; serial without MPI).
    retries : int
        How many times a failed unit is tried again.
    timeout : float, optional
        Seconds a unit may run before it is failed (``SIGALRM`` in the worker).
    doraise : bool
        Stop at the first failed unit and raise :class:`UnitError`.
    progress : bool
        Show a progress bar on the master (only when its output is a terminal).
    end_time : float, optional
        The job's end (Unix time): no unit is handed out that would not finish before it.
    walltime_reserve : float, optional
        Seconds kept before ``end_time`` for what the master does after the units (the
        report); default :func:`~hpcpipe.comm.walltime.default_reserve`.
    status_interval : float, optional
        Seconds between the master's status lines (None: none).
    memory_limits : dict, optional
        Bytes a unit may allocate, by step (job name; ``"*"`` for every step).
    """

    def __init__(self, world: World | None = None, retries: int = 0,
                 timeout: float | None = None, doraise: bool = False,
                 progress: bool = False, *, end_time: float | None = None,
                 walltime_reserve: float | None = None, status_interval: float | None = None,
                 memory_limits: dict[str, float] | None = None) -> None:
        self.world = world or World()
        check_launch(self.world)
        self.retries = int(retries)
        self.timeout = timeout
        self.doraise = doraise
        self.progress = progress
        #: The job's end (Unix time; None: unknown).
        self.end_time = end_time
        self.walltime_reserve = (walltime_reserve if walltime_reserve is not None else
                                 default_reserve(end_time - time.time()) if end_time else 0.0)
        #: True once units were left pending because the walltime (or SIGUSR1) ended the run.
        self.out_of_time = False
        self._stop_requested = False
        #: Each step's running median unit time (seed it with earlier runs' times).
        self.durations = StepDurations()
        self.status_interval = status_interval
        self.memory_limits = dict(memory_limits or {})
        self._next_status = math.inf
        self.cache = WorkerCache()
        self._jobs: list[_Job] = []
        self._transport = Transport(self.world.comm) if self.world.is_parallel else None
        self._affinity: dict[str, int] = {}
        self._job_counter = 0
        self._closed = False
        #: The run journal (master): every unit's end is appended to it as it happens.
        self.journal: Journal | None = None
        #: Workers given up (rank: why); they get no more work and end the job by MPI_Abort.
        self.lost: dict[int, str] = {}
        self._hosts = self.world.allgather(HOSTNAME) if self.world.is_parallel else [HOSTNAME]

    # --- roles -----------------------------------------------------------------------------
    @property
    def is_master(self) -> bool:
        return self.world.rank == 0

    @property
    def num_workers(self) -> int:
        """Ranks that process units (the master too when running serially)."""
        return max(1, self.world.size - 1)

    def run(self, main: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``main(pool, *args, **kwargs)`` on the master while the workers serve it.

        Returns ``main``'s value on the master and None on the workers. The pool is closed
        when ``main`` returns or raises; every rank then returns (nothing hangs).
        """
        previous = self._catch_usr1()
        try:
            if not self.is_master:
                self._serve()
                return None
            try:
                return main(self, *args, **kwargs)
            finally:
                self.close()
        finally:
            if previous is not None:
                signal.signal(signal.SIGUSR1, previous)

    def request_stop(self) -> None:
        """Hand out no more units (the units in flight finish); what SIGUSR1 does."""
        self._stop_requested = True

    def _catch_usr1(self) -> Any:
        """SIGUSR1 (the walltime is near) stops the handing out on the master; the workers
        ignore it (SLURM signals every rank). Returns the previous handler."""
        if not hasattr(signal, "SIGUSR1") or threading.current_thread() is not \
                threading.main_thread():
            return None

        def handler(signum: int, frame: Any) -> None:
            if self.is_master:
                self._stop_requested = True

        return signal.signal(signal.SIGUSR1, handler)

    def close(self) -> None:
        """Tell the workers to return from :meth:`run` (master only; idempotent)."""
        if self._closed or not self.is_master:
            return
        self._closed = True
        if self._transport is not None:
            for worker in range(1, self.world.size):
                if worker not in self.lost:
                    self._transport.send(Stop(), worker, Tag.CONTROL)
                self._transport.drain_heartbeats(worker)
        if self.lost:

            lost = ", ".join(f"{r} ({self._hosts[r]}): {why}" for r, why in self.lost.items())
            log.error("rank(s) lost: %s; the job ends with MPI_Abort once the master is done "
                      "(MPI cannot take a rank back)", lost)
            atexit.register(self._abort)

    def _abort(self) -> None:
        """End every rank: a lost worker would keep MPI_Finalize and mpirun waiting."""
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        self.world.comm.Abort(LOST_WORKER_EXIT)

    # --- shared state ----------------------------------------------------------------------
    def store(self, **items: Any) -> None:
        """Broadcast read-only state to every worker's cache once (master only).

        Uses a collective broadcast (a tree), not one message per worker. The items are
        pickled before the workers are called to the broadcast (serially too), so an item
        that cannot be pickled raises here and leaves the workers waiting for the next
        command, not stuck in a broadcast.
        """
        self._require_master("store")
        # pickled even when serial: what cannot go to workers fails the same way everywhere
        payload = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        self.cache.__dict__.update(items)
        if self._transport is not None:
            for worker in range(1, self.world.size):
                self._transport.send(Store(), worker, Tag.CONTROL)
            self.world.comm.bcast(payload, root=0)

    # --- mapping ---------------------------------------------------------------------------
    def map(self, func: Callable[..., Any], units: Iterable[Any], *args: Any,
            keys: Sequence[str] | None = None, mode: MapMode = "dynamic",
            name: str | None = None) -> list[Any]:
        """Apply ``func(cache, unit, *args)`` to every unit; results in unit order.

        Parameters
        ----------
        func : callable
            A picklable function (module level, or a ``functools.partial`` of one).
        units : iterable
            The units of work (picklable).
        *args
            Extra arguments, sent once per job (not with each unit).
        keys : sequence of str, optional
            A printable id per unit (default ``str(unit)``); ``mode="previous"`` matches
            units to workers by key.
        mode : {"dynamic", "static", "previous"}
            How units are handed out (see the module documentation).
        name : str, optional
            The job's name in the records and the progress bar.

        Returns
        -------
        list
            The results; a failed unit's place holds a :class:`UnitFailure`.
        """
        self._require_master("map")
        if mode not in ("dynamic", "static", "previous"):
            raise ValueError(f"mode must be 'dynamic', 'static' or 'previous', not {mode!r}")
        units = list(units)
        if keys is None:
            keys = [str(u) for u in units] if mode == "previous" else _LazyKeys(units)
        elif len(keys) != len(units):
            raise ValueError(f"{len(keys)} keys for {len(units)} units")
        return self._run_job(_Job(str(name or getattr(func, "__name__", "job")), units, keys,
                                  self.retries), func, args, mode)

    def map_graph(self, nodes: Sequence[tuple[Callable[..., Any], Any]],
                  deps: Sequence[Sequence[int]], *, keys: Sequence[str] | None = None,
                  skip: Iterable[int] = (), name: str = "graph",
                  jobs: Sequence[str] | None = None) -> list[Any]:
        """Run units in the order of their dependencies, not step by step.

        A unit starts as soon as every unit it depends on is done, so a later step of one
        part of the data can run while an earlier step of another is still going; there is
        no barrier between steps.

        Parameters
        ----------
        nodes : sequence of (func, unit)
            Unit ``i`` runs ``func(cache, unit)`` (``func`` picklable, as for :meth:`map`).
        deps : sequence of sequences of int
            ``deps[i]``: the indices of the units that must be done before unit ``i``.
        keys : sequence of str, optional
            A printable id per unit (default: the function's name and the unit).
        skip : iterable of int
            Units already done (by an earlier run: resume); they count as done for their
            dependents and are recorded as ``skipped``.
        name : str
            The job's name in the records.
        jobs : sequence of str, optional
            A job name per unit for its record (a production's step), instead of ``name``.

        Returns
        -------
        list
            The results in node order; a failed unit holds a :class:`UnitFailure`, and so
            does a unit ``blocked`` by a failed input (it never ran) or a skipped one (None).
        """
        self._require_master("map_graph")
        nodes = list(nodes)
        if len(deps) != len(nodes):
            raise ValueError(f"{len(deps)} dependency lists for {len(nodes)} units")
        if keys is None:
            keys = [f"{getattr(f, '__name__', 'unit')} {u}" for f, u in nodes]
        job = _Job(name, nodes, keys, self.retries, deps=deps, skip=skip)
        if jobs is not None:
            if len(jobs) != len(nodes):
                raise ValueError(f"{len(jobs)} job names for {len(nodes)} units")
            job.job_names = list(jobs)
        return self._run_job(job, _call_node, (), "dynamic")

    def _run_job(self, job: _Job, func: Callable[..., Any], args: tuple[Any, ...], mode: MapMode
                 ) -> list[Any]:
        self._job_counter += 1
        self._jobs.append(job)
        if self.journal is not None:
            job.on_end = self.journal.unit
        bar = self._progress_bar(job)
        self._start_status(job)
        try:
            if self._transport is None:
                self._map_serial(job, func, args, bar)
            else:
                self._map_parallel(job, func, args, mode, bar)
        finally:
            if bar is not None:
                bar.close()
        if self.status_interval:
            progress_log.info("%s", self._status_line(job, final=True))
        if self.doraise and job.failed_for_good is not None:
            raise UnitError(job.failure(job.failed_for_good))
        return job.results

    @property
    def records(self) -> list[UnitRecord]:
        """A record of every unit of every job so far, in order."""
        return [rec for job in self._jobs for rec in job.records()]

    def failures(self) -> list[UnitRecord]:
        """The records of every unit that failed for good, over all jobs so far."""
        return [r for r in self.records if r.state == "failed"]

    # --- internals --------------------------------------------------------------------------
    def _require_master(self, what: str) -> None:
        if not self.is_master:
            raise RuntimeError(f"Pool.{what} is called on the master (rank 0) only")
        if self._closed:
            raise RuntimeError(f"Pool.{what} on a closed pool")

    def _progress_bar(self, job: _Job) -> Any:
        if not self.progress:
            return None
        # start-up cost: the progress bar, only on a terminal
        from tqdm import tqdm

        # disable=None: tqdm stays quiet when the output is not a terminal
        return tqdm(total=len(job.units), desc=job.name, unit="unit", disable=None)

    def _map_serial(self, job: _Job, func: Callable[..., Any], args: tuple[Any, ...],
                    bar: Any) -> None:
        while job.pending or job.retry:
            name = "pending" if job.pending else "retry"
            if self._limited():
                chosen = self._pop_fitting(job, name, 1)
                if not chosen and name == "pending" and job.retry:
                    chosen = self._pop_fitting(job, "retry", 1)
                if not chosen:
                    self._ran_out_of_time(job)
                    return
                index = chosen[0]
            else:
                index = getattr(job, name).popleft()
            job.state[index] = _RUNNING
            outcomes = run_chunk(
                func, self.cache, [job.units[index]], args, self.timeout, [index],
                memory_limits=self._memory_limits(job, [index]))
            assert outcomes is not None  # no reply: run_chunk returns the outcomes
            done = job.record_batch(outcomes, 0, HOSTNAME)
            self._learn(job, done)
            if bar is not None and (done or job.state[index] == _FAILED):
                bar.update(1)
            self._maybe_status(job)
            if self.doraise and job.failed_for_good is not None:
                return

    # --- walltime, status lines, memory -----------------------------------------------------
    def _limited(self) -> bool:
        """Whether units are handed out only if they fit (an end time, or a stop)."""
        return self._stop_requested or self.end_time is not None

    def _pop_fitting(self, job: _Job, queue_name: str, count: int,
                     allowed: Callable[[int], bool] | None = None) -> list[int]:
        """Take up to ``count`` units of ``job.<queue_name>`` whose expected times, one after
        the other, end before the job's end less the reserve (none after a stop)."""
        if self._stop_requested:
            return []
        queue: collections.deque[int] = getattr(job, queue_name)
        limit = (self.end_time if self.end_time is not None else math.inf) \
            - self.walltime_reserve
        clock = time.time()
        shortest = min(self.durations.medians().values(), default=0.0)
        if clock + shortest > limit:
            return []
        expected: dict[str, float] = {}
        taken: list[int] = []
        for i in queue:
            if allowed is not None and not allowed(i):
                continue
            step = job.step(i)
            seconds = expected.get(step)
            if seconds is None:
                seconds = expected[step] = self.durations.expected(step)
            if clock + seconds <= limit:
                taken.append(i)
                clock += seconds
                if len(taken) >= count:
                    break
        if taken:
            if list(itertools.islice(queue, len(taken))) == taken:
                for _ in taken:
                    queue.popleft()
            else:
                chosen = set(taken)
                setattr(job, queue_name, collections.deque(i for i in queue if i not in chosen))
        return taken

    def _ran_out_of_time(self, job: _Job) -> None:
        """No unit fits before the end any more: say so once per job."""
        left = int(np.count_nonzero(job.state == _PENDING))
        self.out_of_time = True
        why = ("SIGUSR1 (the walltime is near)" if self._stop_requested else
               f"the job ends at {time.strftime('%H:%M:%S', time.localtime(self.end_time))} "
               f"(less {self.walltime_reserve:.1f} s for the report)")
        medians = ", ".join(f"{k} {v:.3g} s" for k, v in self.durations.medians().items())
        log.warning("%s: %d unit(s) not started: %s; median unit times: %s. Rerun the same "
                    "command (the next job of the campaign) to do them.", job.name, left, why,
                    medians or "none measured")

    def _learn(self, job: _Job, done: Iterable[int]) -> None:
        """Add the times of units just done to their steps' running medians."""
        add = self.durations.add
        for i in done:
            add(job.step(i), float(job.end[i] - job.start[i]))

    def _memory_limits(self, job: _Job, chunk: Sequence[int]) -> list[float | None] | None:
        """Each unit's memory limit in bytes: its step's (or ``"*"``), doubled on each
        retry (as Gen3's memory multiplier: a unit that needs more gets more next time)."""
        if not self.memory_limits:
            return None
        limits = self.memory_limits
        out: list[float | None] = []
        for i in chunk:
            limit = limits.get(job.step(i), limits.get("*"))
            out.append(None if limit is None else
                       float(limit) * MEMORY_RETRY_FACTOR ** int(job.attempts[i]))
        return out

    def _start_status(self, job: _Job) -> None:
        if not self.status_interval:
            self._next_status = math.inf
            return
        job.status_t0 = time.time()
        job.status_skipped = int(np.count_nonzero(job.state == _SKIPPED))
        if job.job_names is not None:
            names, codes = np.unique(np.asarray(job.job_names, dtype=object).astype(str),
                                     return_inverse=True)
            order = list(dict.fromkeys(job.job_names))  # steps in the order of their units
            job.status_steps = order
            remap = np.array([order.index(n) for n in names], dtype=np.int64)
            job.status_codes = remap[codes]
        else:
            job.status_steps = [job.name]
            job.status_codes = np.zeros(len(job.state), np.int64)
        self._next_status = time.monotonic() + float(self.status_interval)
        progress_log.info("%s", self._status_line(job))

    def _maybe_status(self, job: _Job) -> None:
        if time.monotonic() >= self._next_status:
            progress_log.info("%s", self._status_line(job))
            self._next_status = time.monotonic() + float(self.status_interval or math.inf)

    def _status_line(self, job: _Job, final: bool = False) -> str:
        """Units done / total per step, failed, units per second, the time to the end."""
        state, codes, k = job.state, job.status_codes, len(job.status_steps)

        def per_step(*states: int) -> np.ndarray:
            return np.bincount(codes[np.isin(state, states)], minlength=k)

        total = np.bincount(codes, minlength=k)
        done = per_step(_DONE, _SKIPPED)
        failed = per_step(_FAILED, _BLOCKED)
        n_done, n_failed = int(done.sum()), int(failed.sum())
        running = int(np.count_nonzero(state == _RUNNING))
        elapsed = max(time.time() - job.status_t0, 1e-9)
        rate = (n_done - job.status_skipped) / elapsed
        left = len(state) - n_done - n_failed
        eta = (_clock(left / rate) if rate > 0 else "unknown") if left else "0:00:00"
        parts = [f"{job.name}: {n_done}/{len(state)} units done "
                 f"({100.0 * n_done / max(1, len(state)):.0f}%)",
                 f"{n_failed} failed", f"{running} running", f"{rate:.3g} units/s",
                 ("finished in " + _clock(elapsed)) if final else f"ETA {eta}"]
        if self.end_time is not None and not final:
            parts.append(f"walltime left {_clock(max(0.0, self.end_time - time.time()))}")
        steps = ", ".join(
            f"{name} {done[j]}/{total[j]}" + (f" ({failed[j]} failed)" if failed[j] else "")
            for j, name in enumerate(job.status_steps))
        return "progress " + ", ".join(parts) + " | " + steps

    def _chunk_size(self, job: _Job) -> int:
        """Units per chunk: enough work to keep the master's message rate bounded, but
        never more than half a worker's fair share of what is left (for the balance at
        the end)."""
        if job.mean_seconds is None:
            return 1
        target = max(TARGET_CHUNK_SECONDS, self.num_workers / MASTER_MESSAGES_PER_SECOND)
        fair = max(1, len(job.pending) // (2 * self.num_workers))
        return max(1, min(fair, int(target / job.mean_seconds)))

    def _next_chunk(self, job: _Job, worker: int, mode: MapMode) -> list[int]:
        """Pick the units to send to ``worker`` next (empty if none suits it now)."""
        limited = self._limited()
        if job.retry:
            # a retry goes to another worker, unless it has failed on every one of them
            everywhere = set(range(1, self.world.size)) - set(self.lost)

            def allowed(index: int) -> bool:
                tried = job.excluded.get(index, set())
                return worker not in tried or everywhere <= tried

            if limited:
                chosen = self._pop_fitting(job, "retry", 1, allowed)
                if chosen:
                    return chosen
            else:
                for index in job.retry:
                    if allowed(index):
                        job.retry.remove(index)
                        return [index]
        if not job.pending:
            return []
        if limited:
            if mode == "previous":
                affinity = self._affinity
                return self._pop_fitting(
                    job, "pending", self._chunk_size(job),
                    lambda i: affinity.get(job.keys[i], worker) == worker)
            return self._pop_fitting(job, "pending", self._chunk_size(job))
        if mode == "previous":
            affinity = self._affinity
            mine = [i for i in job.pending if affinity.get(job.keys[i], worker) == worker]
            chunk = mine[: self._chunk_size(job)]
            taken = set(chunk)
            job.pending = collections.deque(i for i in job.pending if i not in taken)
            return chunk
        pending = job.pending
        return [pending.popleft() for _ in range(min(self._chunk_size(job), len(pending)))]

    def _map_parallel(self, job: _Job, func: Callable[..., Any], args: tuple[Any, ...],
                      mode: MapMode, bar: Any) -> None:
        transport = self._transport
        assert transport is not None
        workers = [w for w in range(1, self.world.size) if w not in self.lost]
        job_id = self._job_counter
        for worker in workers:
            transport.send(StartJob(job_id, func, args, self.timeout), worker, Tag.CONTROL)
        in_flight = dict.fromkeys(workers, 0)
        self._assigned: dict[int, set[int]] = {w: set() for w in workers}
        self._heard: dict[int, float] = dict.fromkeys(workers, time.monotonic())
        if mode == "static":
            for k, worker in enumerate(workers):
                chunk = list(range(k, len(job.units), len(workers)))
                if chunk:
                    self._send_work(job, job_id, worker, chunk, in_flight)
            job.pending.clear()
            mode = "dynamic"  # retries of a static job are handed out dynamically
        stopping = False
        track_affinity = mode == "previous" or not isinstance(job.keys, _LazyKeys)
        while job.remaining > 0:
            if not stopping:
                for worker in workers:
                    if not in_flight[worker]:
                        chunk = self._next_chunk(job, worker, mode)
                        if chunk:
                            self._send_work(job, job_id, worker, chunk, in_flight)
            if not any(in_flight.values()):
                if stopping:
                    break
                if not workers:  # every worker lost: what is left cannot run
                    self._fail_unrunnable(job)
                    break
                if self._limited():  # nothing fits before the job's end
                    self._ran_out_of_time(job)
                    break
                raise RuntimeError("pool: units pending but no worker can take them")
            found = transport.poll(until=min(self._deadline(in_flight), self._next_status))
            if found is None:
                for worker in [w for w in workers if in_flight[w]]:
                    self._check_deadline(job, worker, in_flight, workers)
                self._maybe_status(job)
                continue
            worker, tag = found
            if tag == Tag.HEARTBEAT:
                transport.drain_heartbeats(worker)
                if not self.timeout and worker in self._heard:
                    self._heard[worker] = time.monotonic()
                continue
            message: Results | Gone = transport.comm.recv(source=worker, tag=tag)
            if worker in self.lost:
                continue  # a late answer of a worker given up: its units were failed
            if isinstance(message, Gone):  # the worker left its loop (and told why)
                self._lose_worker(job, worker, f"left the pool: {message.why}", in_flight,
                                  workers)
                continue
            if message.job_id != job_id:
                continue  # a late reply of an earlier, aborted job
            outcomes = message.outcomes
            in_flight[worker] -= len(outcomes.indices)
            self._assigned[worker].difference_update(outcomes.indices)
            self._heard[worker] = time.monotonic()
            done = job.record_batch(outcomes, worker, message.host)
            self._learn(job, done)
            self._maybe_status(job)
            if track_affinity:
                for i in done:
                    self._affinity[job.keys[i]] = worker
            if bar is not None:
                bar.update(len(done) + sum(job.state[i] == _FAILED for i in outcomes.failures))
            if self.doraise and job.failed_for_good is not None:
                stopping = True
                job.pending.clear()
                job.retry.clear()
        for worker in workers:
            transport.send(EndJob(job_id), worker, Tag.CONTROL)

    def _limit(self) -> float:
        """Seconds a busy worker may stay silent (see the module documentation)."""
        if self.timeout:
            return float(self.timeout) + grace_seconds(self.timeout)
        return SILENCE_SECONDS

    def _deadline(self, in_flight: dict[int, int]) -> float:
        """The earliest time a busy worker must have answered by."""
        busy = [self._heard[w] for w, n in in_flight.items() if n]
        return min(busy) + self._limit()

    def _check_deadline(self, job: _Job, worker: int, in_flight: dict[int, int],
                        workers: list[int]) -> None:
        silent = time.monotonic() - self._heard[worker]
        if silent < self._limit():
            return
        what = (f"its --timeout of {self.timeout:g} s plus {grace_seconds(self.timeout):g} s "
                "of grace" if self.timeout else "no heartbeat")
        self._lose_worker(job, worker, f"no answer for {silent:.0f} s ({what}): the worker "
                          "is stopped, or stuck in native code or in an MPI call",
                          in_flight, workers)

    def _lose_worker(self, job: _Job, worker: int, why: str, in_flight: dict[int, int],
                     workers: list[int]) -> None:
        """Give a worker up: fail its units in flight (they may be retried elsewhere)."""
        host = self._hosts[worker]
        self.lost[worker] = why
        workers.remove(worker)
        in_flight[worker] = 0
        log.error("rank %d (%s) given up: %s", worker, host, why)
        now = time.time()
        for index in sorted(self._assigned.pop(worker, ())):
            job.rank[index] = worker
            job.attempts[index] += 1
            job.end[index] = now
            job.hosts.setdefault(worker, host)
            job.excluded.setdefault(index, set()).add(worker)
            job._failed(index, (f"rank {worker} ({host}) {why}", ""), worker, host)
            job.ended((index,))

    def _fail_unrunnable(self, job: _Job) -> None:
        """No worker left: fail every unit that is still waiting to run."""
        lost = ", ".join(str(r) for r in self.lost)
        for index in list(job.pending) + list(job.retry):
            job.attempts[index] = max(int(job.attempts[index]), job.retries + 1)
            job._failed(index, (f"not run: every worker is lost (ranks {lost})", ""), -1, "")
            job.ended((index,))
        job.pending.clear()
        job.retry.clear()
        job.remaining = 0

    def _send_work(self, job: _Job, job_id: int, worker: int, chunk: list[int],
                   in_flight: dict[int, int]) -> None:
        job.state[chunk] = _RUNNING
        if not in_flight[worker]:
            self._heard[worker] = time.monotonic()
        in_flight[worker] += len(chunk)
        self._assigned[worker].update(chunk)
        assert self._transport is not None
        units = job.units
        self._transport.send(Work(job_id, chunk, [units[i] for i in chunk],
                                  self._memory_limits(job, chunk)), worker, Tag.WORK)

    def _serve(self) -> None:
        """The worker loop: run units of the current job until the master says stop.

        Leaving it any other way (``KeyboardInterrupt``, a ``BaseException``) is reported to
        the master first, so that it fails this worker's units instead of waiting for them.
        """
        transport = self._transport
        if transport is None:
            return
        self._busy = threading.Event()
        stop = threading.Event()
        beat = None
        if _threads_allowed():
            beat = threading.Thread(target=self._heartbeat, args=(stop,), daemon=True,
                                    name="hpcpipe-heartbeat")
            beat.start()
        try:
            self._serve_loop(transport)
        except BaseException as exc:
            try:
                transport.send(Gone(self._job_counter, f"{type(exc).__name__}: {exc}".strip(),
                                    HOSTNAME), 0, Tag.RESULT)
            finally:
                stop.set()
            raise
        finally:
            stop.set()
            if beat is not None:
                beat.join()

    def _heartbeat(self, stop: threading.Event) -> None:
        """A worker thread: tell the master this rank lives while it runs units."""
        assert self._transport is not None
        while not stop.wait(HEARTBEAT_SECONDS):
            if self._busy.is_set():
                self._transport.send_heartbeat()

    def _serve_loop(self, transport: Transport) -> None:
        func: Callable[..., Any] | None = None
        args: tuple[Any, ...] = ()
        timeout: float | None = None
        job_id = -1
        while True:
            message, _src, tag = transport.recv(source=0)
            if tag == Tag.CONTROL:
                if isinstance(message, Stop):
                    return
                if isinstance(message, Store):
                    payload = self.world.comm.bcast(None, root=0)
                    self.cache.__dict__.update(pickle.loads(payload))
                elif isinstance(message, StartJob):
                    job_id, func, args, timeout = message
                elif isinstance(message, EndJob):
                    func, args = None, ()
                continue
            work: Work = message
            if work.job_id != job_id or func is None:
                continue
            self._job_counter = job_id
            self._busy.set()
            try:
                run_chunk(func, self.cache, work.units, args, timeout, work.indices,
                          functools.partial(self._reply, job_id), FLUSH_SECONDS, work.limits)
            finally:
                self._busy.clear()

    def _reply(self, job_id: int, outcomes: Outcomes) -> None:
        """Send a batch of results; a value that cannot be pickled fails its unit."""
        assert self._transport is not None
        try:
            self._transport.send(Results(job_id, HOSTNAME, outcomes), 0, Tag.RESULT)
            return
        except Exception:  # noqa: BLE001 - an unpicklable result must not kill the worker
            pass  # pickling failed before anything was sent: find the culprits below
        values = list(outcomes.values)
        failures = outcomes.failures
        for k, i in enumerate(outcomes.indices):
            try:
                pickle.dumps(values[k], protocol=5)
            except Exception as exc:  # noqa: BLE001
                failures[i] = (f"the unit's result cannot be sent: {type(exc).__name__}: "
                               f"{exc}", "")
                values[k] = None
        self._transport.send(Results(job_id, HOSTNAME, outcomes._replace(values=values)), 0,
                             Tag.RESULT)


def _clock(seconds: float) -> str:
    """Seconds as ``H:MM:SS``."""
    if not math.isfinite(seconds):
        return "unknown"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _threads_allowed() -> bool:
    """Whether MPI lets a second thread send (the heartbeat needs MPI_THREAD_MULTIPLE)."""
    # start-up cost: importing mpi4py.MPI initialises MPI; only where MPI is used
    from mpi4py import MPI

    return bool(MPI.Query_thread() >= MPI.THREAD_MULTIPLE)


def _call_node(cache: Any, node: tuple[Callable[..., Any], Any]) -> Any:
    """The unit function of a graph job: each node brings its own function."""
    func, unit = node
    return func(cache, unit)


class _LazyKeys(Sequence[str]):
    """``str(unit)`` for each unit, made only when a key is read (failures, reports)."""

    def __init__(self, units: Sequence[Any]) -> None:
        self._units = units

    def __len__(self) -> int:
        return len(self._units)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [str(u) for u in self._units[index]]
        return str(self._units[index])
