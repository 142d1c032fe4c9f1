"""The job's end: when it is, and how long each step's units take, so that a run stops
handing out units that would not finish before it.

A batch job is killed at its walltime, mid-unit. A run that knows its end
(:func:`job_end_time`: ``--walltime-left``, ``HPCPIPE_JOB_END_TIME`` set by hpcpipe's job
scripts, or SLURM's ``SLURM_JOB_END_TIME``) hands out a unit only if the running median of
its step's unit times (:class:`StepDurations`) fits before the end, less a reserve for the
report and the journal; the units in flight finish, and the run exits with
:data:`MORE_TO_DO_EXIT` so that the next job of the campaign resumes it. ``SIGUSR1`` (which
the SLURM script asks for some minutes before the end: ``--signal=B:USR1@MARGIN``) stops
the handing out at once.
"""

from __future__ import annotations

import collections
import math
import os
import time

import numpy as np

__all__ = ["MORE_TO_DO_EXIT", "job_end_time", "default_reserve", "StepDurations",
           "END_TIME_VARIABLES"]

#: The exit status of a run stopped by its walltime with units left to do (``EX_TEMPFAIL``
#: of sysexits.h: "try again later"). A campaign's next job resumes the run.
MORE_TO_DO_EXIT = 75

#: Environment variables holding the job's end as a Unix time, in order of preference.
END_TIME_VARIABLES = ("HPCPIPE_JOB_END_TIME", "SLURM_JOB_END_TIME")

#: At most this many of a step's latest unit times make its running median.
WINDOW = 255


def job_end_time(walltime_left: float | None = None, environ: dict[str, str] | None = None,
                 now: float | None = None) -> float | None:
    """The job's end as a Unix time, or None if nothing tells it.

    ``walltime_left`` (seconds from ``now``) wins; then :data:`END_TIME_VARIABLES`.

    Raises
    ------
    ValueError
        If an end-time variable is set but is not a number (naming the variable).
    """
    now = time.time() if now is None else now
    if walltime_left is not None:
        return now + float(walltime_left)
    env = os.environ if environ is None else environ
    for name in END_TIME_VARIABLES:
        text = env.get(name, "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name}={text!r} is not a Unix time") from None
        if value > 0 and math.isfinite(value):
            return value
    return None


def default_reserve(seconds_left: float) -> float:
    """Seconds kept at the end for the report and the journal: a tenth of the walltime
    left at the start, at most two minutes."""
    return max(0.0, min(120.0, 0.1 * seconds_left))


class StepDurations:
    """The running median of the unit times of each step (its latest :data:`WINDOW`)."""

    def __init__(self) -> None:
        self._times: dict[str, collections.deque[float]] = {}
        self._median: dict[str, float] = {}

    def add(self, step: str, seconds: float) -> None:
        """Record one unit time of ``step``."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        times = self._times.setdefault(step, collections.deque(maxlen=WINDOW))
        times.append(float(seconds))
        self._median.pop(step, None)

    def median(self, step: str) -> float | None:
        """The median unit time of ``step`` (None before its first unit)."""
        value = self._median.get(step)
        if value is None:
            times = self._times.get(step)
            if not times:
                return None
            value = self._median[step] = float(np.median(np.fromiter(times, float)))
        return value

    def expected(self, step: str) -> float:
        """The time a unit of ``step`` is expected to take: its median; for a step not
        measured yet, the largest median of the others (0 when nothing is measured)."""
        value = self.median(step)
        if value is not None:
            return value
        others = [self.median(s) for s in self._times]
        return max((v for v in others if v is not None), default=0.0)

    def medians(self) -> dict[str, float]:
        """Every measured step's median."""
        return {s: m for s in self._times if (m := self.median(s)) is not None}
