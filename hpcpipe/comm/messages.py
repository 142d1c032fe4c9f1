"""The messages of the pool's protocol between the master (rank 0) and its workers.

Each message is a :class:`~typing.NamedTuple`: its fields are read by name, and it pickles as
a tuple plus a reference to its class, so the wire stays as cheap as a bare tuple.

Master to worker:

* :class:`StartJob` (tag ``CONTROL``): the next chunks of this job run this function;
* :class:`Work` (``WORK``): units of the current job (a chunk);
* :class:`EndJob` (``CONTROL``): the job is over, drop its function;
* :class:`Store` (``CONTROL``): join the broadcast of shared state that follows;
* :class:`Stop` (``CONTROL``): leave the worker loop.

Worker to master (tag ``RESULT``):

* :class:`Results`: the outcomes of some units of a chunk;
* :class:`Gone`: the worker leaves its loop, and why.

:class:`Outcomes` is what :func:`~hpcpipe.comm.records.run_chunk` produces for a batch of units
(on a worker, sent inside :class:`Results`; serially, recorded at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["Outcomes", "StartJob", "Work", "EndJob", "Store", "Stop", "Results", "Gone",
           "ControlMessage", "ResultMessage"]


class Outcomes(NamedTuple):
    """The outcomes of a batch of units, in the order they ran."""

    #: The units' indices in their job.
    indices: list[int]
    #: Their return values (None for a failed unit).
    values: list[Any]
    #: Unix start times.
    starts: list[float]
    #: Unix end times.
    ends: list[float]
    #: ``{index: (error message, traceback)}`` for the units that failed.
    failures: dict[int, tuple[str, str]]
    #: Peak resident memory of each unit, bytes (NaN where unknown).
    peaks: list[float]


class StartJob(NamedTuple):
    """Master to worker: the next :class:`Work` messages of ``job_id`` run ``func``."""

    job_id: int
    #: Called as ``func(cache, unit, *args)``.
    func: Callable[..., Any]
    args: tuple[Any, ...]
    #: Seconds each unit may run, or None.
    timeout: float | None


class Work(NamedTuple):
    """Master to worker: a chunk of units to run."""

    job_id: int
    indices: list[int]
    units: list[Any]
    #: Bytes each unit may allocate (None: no limit), or None for no limits at all.
    limits: list[float | None] | None


class EndJob(NamedTuple):
    """Master to worker: job ``job_id`` is over."""

    job_id: int


class Store(NamedTuple):
    """Master to worker: take part in the broadcast of shared state that follows."""


class Stop(NamedTuple):
    """Master to worker: the pool is closed; return from the worker loop."""


class Results(NamedTuple):
    """Worker to master: the outcomes of some units of job ``job_id``."""

    job_id: int
    host: str
    outcomes: Outcomes


class Gone(NamedTuple):
    """Worker to master: the worker left its loop (an exception, an interrupt)."""

    #: The last job the worker ran units of.
    job_id: int
    #: The exception, as ``"Type: message"``.
    why: str
    host: str


#: What a worker receives with the ``CONTROL`` tag.
ControlMessage = StartJob | EndJob | Store | Stop
#: What the master receives with the ``RESULT`` tag.
ResultMessage = Results | Gone
