"""Memory per unit: each unit's peak resident memory, and a limit that fails the unit alone.

A unit that needs three times the usual memory must not take its node down through the
kernel's OOM killer (which kills a rank, and with it the whole MPI job). Around each unit the
worker

* resets the process's peak resident set size (``/proc/self/clear_refs``, Linux 4.0+) and
  reads it back after the unit (``VmHWM``): the unit's own peak, exactly, at no cost while it
  runs; where that is not available, a :mod:`psutil` reading of the resident set after the
  unit stands in (a lower bound);
* with a limit, lowers the soft address-space limit (``RLIMIT_AS``) to what the process
  maps at the unit's start plus the limit, so that an allocation past it fails at once inside
  the unit (``MemoryError``, which the pool records as "exceeded its memory limit of N GB")
  and the worker goes on; the limit is restored after the unit. The address space counts
  what a unit maps, not only what it touches: a limit is a bound on the unit's new
  allocations (arrays, buffers), which is what grows with a larger-than-usual unit.
"""

from __future__ import annotations

import os
import re
from typing import Any

import psutil

__all__ = ["UnitMemory", "MemoryLimitError", "format_gb", "peak_supported"]

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"
_HWM = re.compile(rb"VmHWM:\s+(\d+) kB")
_VMS = re.compile(rb"VmSize:\s+(\d+) kB")

try:  # Linux and the BSDs; the limit is not enforced elsewhere
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]


class MemoryLimitError(MemoryError):
    """A unit allocated past its step's memory limit."""


def format_gb(nbytes: float) -> str:
    """Bytes as GB with as many digits as make sense (``0.25 GB``, ``12 GB``)."""
    gb = nbytes / 1e9
    return f"{gb:.3g} GB"


def _status_kb(pattern: re.Pattern[bytes]) -> int | None:
    try:
        with open(_STATUS, "rb") as handle:
            match = pattern.search(handle.read())
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def _reset_peak() -> bool:
    try:
        with open(_CLEAR_REFS, "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def peak_supported() -> bool:
    """Whether a unit's own peak resident memory can be measured here (Linux)."""
    return os.path.exists(_CLEAR_REFS) and _status_kb(_HWM) is not None


class UnitMemory:
    """Measure (and optionally bound) the memory of one unit: ``with UnitMemory(limit) as m``.

    Parameters
    ----------
    limit : float, optional
        Bytes the unit may allocate on top of what the process holds at its start; None for
        no limit.

    Attributes
    ----------
    peak : float
        After the block: the unit's peak resident memory in bytes (NaN if unknown).
    """

    def __init__(self, limit: float | None = None) -> None:
        self.limit = limit if limit and limit > 0 else None
        self.peak = float("nan")
        self._exact = False
        self._previous: tuple[int, int] | None = None

    def __enter__(self) -> UnitMemory:
        self._exact = _reset_peak()
        if self.limit is not None and resource is not None:
            mapped = _status_kb(_VMS)
            if mapped is not None:
                soft, hard = resource.getrlimit(resource.RLIMIT_AS)
                wanted = mapped + int(self.limit)
                if hard != resource.RLIM_INFINITY:
                    wanted = min(wanted, hard)
                try:
                    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
                    self._previous = (soft, hard)
                except (ValueError, OSError):
                    self._previous = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            resource.setrlimit(resource.RLIMIT_AS, self._previous)
            self._previous = None
        peak = _status_kb(_HWM) if self._exact else None
        if peak is None:
            try:

                peak = psutil.Process().memory_info().rss
            except Exception:  # noqa: BLE001 - a measurement must never fail a unit
                peak = None
        self.peak = float(peak) if peak is not None else float("nan")

    def explain(self, exc: BaseException) -> str | None:
        """The failure message for ``exc`` if it comes from the limit, else None."""
        if self.limit is None or not isinstance(exc, MemoryError):
            return None
        return (f"MemoryLimitError: the unit exceeded its memory limit of "
                f"{format_gb(self.limit)} ({type(exc).__name__}: {exc})")
