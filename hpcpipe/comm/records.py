"""What happened to each unit of work: its state, where and when it ran, and why it failed."""

from __future__ import annotations

import math
import signal
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hpcpipe.comm.memory import UnitMemory
from hpcpipe.comm.messages import Outcomes

__all__ = ["UnitRecord", "UnitFailure", "UnitTimeoutError", "UnitError", "run_chunk",
           "HOSTNAME"]

HOSTNAME = socket.gethostname()


class UnitTimeoutError(TimeoutError):
    """A unit ran longer than the pool's per-unit timeout."""


class UnitError(RuntimeError):
    """Raised on the master by ``doraise`` pools: a unit failed (after its retries).

    Attributes
    ----------
    failure : UnitFailure
        Which unit, where, and the worker's traceback.
    """

    def __init__(self, failure: UnitFailure) -> None:
        self.failure = failure
        super().__init__(
            f"unit {failure.key} failed on rank {failure.rank} ({failure.host}) after "
            f"{failure.attempts} attempt(s): {failure.error}\n{failure.traceback}"
        )


@dataclass
class UnitFailure:
    """Stands in the results list for a unit that failed; it is false in a boolean test."""

    key: str
    error: str
    traceback: str
    rank: int
    host: str
    attempts: int

    def __bool__(self) -> bool:
        return False


@dataclass
class UnitRecord:
    """The life of one unit of one job.

    ``state`` is ``pending``, ``running``, ``done``, ``failed``, ``skipped`` (done by an
    earlier run) or ``blocked`` (an input failed); ``start`` and ``end`` are Unix times;
    ``pending`` at the end of a run means not started (``--doraise`` stopped the run, or the
    job's walltime was too short for it).
    """

    job: str
    index: int
    key: str
    state: str = "pending"
    rank: int = -1
    host: str = ""
    start: float = math.nan
    end: float = math.nan
    attempts: int = 0
    error: str = ""
    traceback: str = ""
    #: The unit's peak resident memory in bytes (its last attempt; NaN if not measured).
    peak_rss: float = math.nan
    excluded_ranks: set[int] = field(default_factory=set, repr=False)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("excluded_ranks")
        return out

    def failure(self) -> UnitFailure:
        return UnitFailure(self.key, self.error, self.traceback, self.rank, self.host,
                           self.attempts)


def _alarm(signum: int, frame: Any) -> None:
    raise UnitTimeoutError("the unit exceeded its time limit")


def run_chunk(
    func: Callable[..., Any],
    cache: Any,
    units: Sequence[Any],
    args: tuple[Any, ...],
    timeout: float | None,
    indices: Sequence[int],
    reply: Callable[[Outcomes], None] | None = None,
    flush_seconds: float = math.inf,
    memory_limits: Sequence[float | None] | None = None,
) -> Outcomes | None:
    """Run ``func(cache, unit, *args)`` for each unit, catching any exception.

    Parameters
    ----------
    timeout : float or None
        Seconds each unit may run (``SIGALRM``); None for no limit.
    indices : sequence of int
        The units' indices in their job, used to label the results.
    reply : callable, optional
        Called with the :class:`~hpcpipe.comm.messages.Outcomes` of the units run so far at
        least every ``flush_seconds`` and at the end; then nothing is returned.
    memory_limits : sequence of float or None, optional
        Bytes each unit may allocate (:class:`~hpcpipe.comm.memory.UnitMemory`); past it the
        unit fails with "exceeded its memory limit of N GB".

    Returns
    -------
    Outcomes or None
        Without ``reply``: the outcomes of all the units (values, None for failed units;
        Unix start and end times; ``{index: (error message, traceback)}`` for the units that
        raised; each unit's peak resident memory in bytes, NaN where unknown).
    """
    use_alarm = timeout is not None and timeout > 0
    previous = signal.signal(signal.SIGALRM, _alarm) if use_alarm else None
    batch_idx: list[int] = []
    values: list[Any] = []
    starts: list[float] = []
    ends: list[float] = []
    peaks: list[float] = []
    failures: dict[int, tuple[str, str]] = {}
    now = time.time
    last_flush = time.perf_counter()
    try:
        for k, (index, unit) in enumerate(zip(indices, units)):
            start = now()
            memory = UnitMemory(memory_limits[k] if memory_limits is not None else None)
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, float(timeout))  # type: ignore[arg-type]
            try:
                with memory:
                    value = func(cache, unit, *args)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a failing unit must never
                # stop the others; sys.exit() in a unit fails that unit, not its worker
                explained = memory.explain(exc)
                if explained is not None:
                    message = explained
                elif isinstance(exc, UnitTimeoutError):
                    message = f"UnitTimeoutError: the unit ran longer than its {timeout} s timeout"
                elif isinstance(exc, SystemExit):
                    message = (f"SystemExit: {exc.code!r} (a unit may not end its process: "
                               "it is failed, its worker goes on)")
                else:
                    message = f"{type(exc).__name__}: {exc}"
                failures[index] = (message, traceback.format_exc())
                value = None
            finally:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0.0)
            batch_idx.append(index)
            values.append(value)
            starts.append(start)
            ends.append(now())
            peaks.append(memory.peak)
            if reply is not None and time.perf_counter() - last_flush > flush_seconds:
                reply(Outcomes(batch_idx, values, starts, ends, failures, peaks))
                batch_idx, values, starts, ends, failures, peaks = [], [], [], [], {}, []
                last_flush = time.perf_counter()
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, previous)
    outcomes = Outcomes(batch_idx, values, starts, ends, failures, peaks)
    if reply is None:
        return outcomes
    if batch_idx:
        reply(outcomes)
    return None
