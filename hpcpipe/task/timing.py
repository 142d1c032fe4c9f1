"""Timing of task methods: wall time, CPU time and memory into the task's metadata.

:func:`timed_method` wraps a Task method; each call adds to the task's :attr:`Task.metadata`
under the method's name:

=====================  =========================================================
``<method>StartUtc``   start of the first call, ISO 8601 UTC
``<method>EndUtc``     end of the latest call, ISO 8601 UTC
``<method>WallTime``   wall-clock seconds, summed over calls
``<method>CpuTime``    CPU seconds of the process (user + system), summed over calls
``<method>MaxRss``     peak resident set size of the process so far, in bytes
``<method>EndRss``     resident set size at the end of the latest call, in bytes (psutil)
``<method>Calls``      number of calls
=====================  =========================================================

The values accumulate until :meth:`Task.reset_metadata` (a command-line task resets them for
each data id, so a ``*_metadata`` dataset holds one data id's figures).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import sys
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["timed_method", "timed_block", "record_timing", "peak_rss", "current_rss"]

F = TypeVar("F", bound=Callable[..., Any])


def current_rss() -> int:
    """Return the resident set size of this process now, in bytes (psutil)."""
    import psutil  # start-up cost: psutil (~30 ms), only when memory is asked for

    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int:
    """Return the peak resident set size of this process so far, in bytes."""
    try:
        import resource  # optional dependency: resource is POSIX only (not on Windows)
    except ImportError:  # Windows: psutil reports the peak working set
        import psutil  # start-up cost: psutil (~30 ms), needed on Windows only

        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass(frozen=True)
class _Mark:
    utc: str
    wall: float
    cpu: float

    @classmethod
    def now(cls) -> _Mark:
        utc = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        return cls(utc, time.perf_counter(), time.process_time())


def record_timing(metadata: MutableMapping[str, Any], name: str, start: _Mark,
                  end: _Mark) -> float:
    """Add one timed call of ``name`` to ``metadata``; return its wall time in seconds."""
    wall = end.wall - start.wall
    metadata.setdefault(f"{name}StartUtc", start.utc)
    metadata[f"{name}EndUtc"] = end.utc
    metadata[f"{name}WallTime"] = metadata.get(f"{name}WallTime", 0.0) + wall
    metadata[f"{name}CpuTime"] = metadata.get(f"{name}CpuTime", 0.0) + (end.cpu - start.cpu)
    metadata[f"{name}MaxRss"] = max(metadata.get(f"{name}MaxRss", 0), peak_rss())
    metadata[f"{name}EndRss"] = current_rss()
    metadata[f"{name}Calls"] = metadata.get(f"{name}Calls", 0) + 1
    return wall


@contextlib.contextmanager
def timed_block(task: Any, name: str) -> Iterator[None]:
    """Time a block of code into ``task.metadata`` under ``name`` (also on an exception)."""
    start = _Mark.now()
    try:
        yield
    finally:
        wall = record_timing(task.metadata, name, start, _Mark.now())
        task.log.debug("%s took %.3f s", name, wall)


def timed_method(func: F) -> F:
    """Record the time, CPU time and memory of each call of a Task method in its metadata.

    The figures are recorded even when the method raises; see :mod:`hpcpipe.task.timing` for
    the keys.

    Examples
    --------
    >>> class DetectTask(Task):  # doctest: +SKIP
    ...     @timed_method
    ...     def run(self, exposure):
    ...         ...
    """

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with timed_block(self, func.__name__):
            return func(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
