"""``hpcpipe status OUT``: where a campaign stands, from the journals of its runs.

A campaign is a chain of batch jobs running the same production into one output
repository; each run keeps its journal (``report/journal.jsonl``, the earlier ones
``journal.<k>.jsonl``: :mod:`hpcpipe.comm.journal`). This command reads them, without opening
the butler, and prints per step the units done (in any run), failed, blocked and pending; the
last job's throughput; and the core-hours the pending units need (each step's median unit time
times its pending units, then divided by the last job's efficiency: unit time over ranks x
wall time).

``--check`` also sets the exit status: 0 when the campaign is complete (the last run ended
with nothing pending, failed or blocked), 75 when units are left to run (or the last run did
not end: killed), 1 when only failed or blocked units are left. A chained job runs it first
and ends at once on 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcpipe.comm.journal import journal_history, read_events, read_journal
from hpcpipe.comm.records import UnitRecord
from hpcpipe.comm.walltime import MORE_TO_DO_EXIT
from hpcpipe.drivers.report import find_journal

__all__ = ["CampaignStatus", "StepStatus", "campaign_status", "format_status"]


@dataclass
class StepStatus:
    """One step of a campaign: its units by state and its median unit time."""

    total: int = 0
    done: int = 0
    failed: int = 0
    blocked: int = 0
    median_seconds: float = math.nan

    @property
    def pending(self) -> int:
        return max(0, self.total - self.done - self.failed - self.blocked)


@dataclass
class CampaignStatus:
    """Where a campaign stands (see the module documentation)."""

    title: str
    runs: int
    steps: dict[str, StepStatus] = field(default_factory=dict)
    #: The last run: ranks, wall seconds, units done, whether it ended and how.
    last_ranks: int = 0
    last_wall: float = 0.0
    last_done: int = 0
    last_busy: float = 0.0
    last_ended: bool = False
    last_status: int | None = None
    #: Later stages not listed yet (the last run stopped before them).
    unlisted: bool = False

    @property
    def pending(self) -> int:
        return sum(s.pending for s in self.steps.values())

    @property
    def failed(self) -> int:
        return sum(s.failed + s.blocked for s in self.steps.values())

    @property
    def complete(self) -> bool:
        return self.last_ended and not self.pending and not self.failed and not self.unlisted

    @property
    def throughput(self) -> float:
        """Units per second of the last run."""
        return self.last_done / self.last_wall if self.last_wall > 0 else 0.0

    @property
    def efficiency(self) -> float:
        """Unit time over ranks x wall time in the last run (NaN if unknown)."""
        if self.last_wall <= 0 or self.last_ranks <= 0 or self.last_busy <= 0:
            return math.nan
        return min(1.0, self.last_busy / (self.last_ranks * self.last_wall))

    def remaining_unit_hours(self) -> tuple[float, list[str]]:
        """Core-hours of unit time the pending units need, and the steps without a time."""
        hours, unknown = 0.0, []
        for name, step in self.steps.items():
            if not step.pending:
                continue
            if math.isfinite(step.median_seconds):
                hours += step.pending * step.median_seconds / 3600.0
            else:
                unknown.append(name)
        return hours, unknown

    def check_status(self) -> int:
        """0 complete, 75 units left to run, 1 only failed or blocked units left."""
        if self.complete:
            return 0
        if self.pending or self.unlisted or not self.last_ended:
            return MORE_TO_DO_EXIT
        return 1


def campaign_status(location: str | Path) -> CampaignStatus:
    """Read the journals of an output repository (or a report directory).

    Raises
    ------
    FileNotFoundError
        If there is no journal there.
    """
    current = find_journal(location)
    history = journal_history(current)
    latest: dict[tuple[str, str], UnitRecord] = {}
    times: dict[str, list[float]] = {}
    title = "hpcpipe run"
    for path in history:
        title, records = read_journal(path)
        for rec in records:
            key = (rec.job, rec.key)
            earlier = latest.get(key)
            if rec.state == "skipped" and earlier is not None and earlier.state == "done":
                continue  # done by that earlier run: keep its record
            latest[key] = rec
            if rec.state == "done" and math.isfinite(rec.seconds):
                times.setdefault(rec.job, []).append(rec.seconds)
    status = CampaignStatus(title, len(history))
    events = read_events(current)
    planned: dict[str, int] = {}
    for event in events:
        if event.get("event") == "plan":
            for step, count in event.get("units", {}).items():
                planned[step] = planned.get(step, 0) + int(count)
    for (job, _key), rec in latest.items():
        step = status.steps.setdefault(job, StepStatus())
        step.total += 1
        if rec.state in ("done", "skipped"):
            step.done += 1
        elif rec.state == "failed":
            step.failed += 1
        elif rec.state == "blocked":
            step.blocked += 1
    for job, count in planned.items():
        step = status.steps.setdefault(job, StepStatus())
        step.total = max(step.total, count)
    for job, step in status.steps.items():
        if job in times:
            step.median_seconds = float(np.median(times[job]))
    _last_run(status, current, events)
    return status


def _last_run(status: CampaignStatus, current: Path, events: list[dict[str, Any]]) -> None:
    _title, records = read_journal(current)
    start = next((e.get("time") for e in events if e.get("event") in ("start", "run")), None)
    end = next((e for e in reversed(events) if e.get("event") == "end"), None)
    ran = [r for r in records if r.state in ("done", "failed") and math.isfinite(r.end)]
    last = end.get("time") if end else max((r.end for r in ran), default=None)
    status.last_ranks = int(next((e.get("ranks", 0) for e in events
                                  if e.get("event") == "start"), 0) or 0)
    status.last_wall = float(last - start) if start is not None and last is not None else 0.0
    status.last_done = sum(r.state == "done" for r in records)
    status.last_busy = sum(r.seconds for r in ran if math.isfinite(r.seconds))
    status.last_ended = end is not None
    status.last_status = end.get("status") if end else None
    status.unlisted = bool(end and end.get("more_to_do")) and not any(
        s.pending for s in status.steps.values())


def format_status(status: CampaignStatus) -> str:
    """The table and the estimates ``hpcpipe status`` prints."""
    width = max([len("step"), *map(len, status.steps)])
    columns = ("units", "done", "failed", "blocked", "pending", "median s")
    lines = [f"{status.title}: {status.runs} run(s)",
             f"{'step':<{width}}" + "".join(f"  {c:>8}" for c in columns)]
    for name, step in status.steps.items():
        median = f"{step.median_seconds:.3g}" if math.isfinite(step.median_seconds) else "-"
        lines.append(f"{name:<{width}}" + "".join(
            f"  {v:>8}" for v in (step.total, step.done, step.failed, step.blocked,
                                  step.pending, median)))
    how = ("ended" + (f" with status {status.last_status}" if status.last_status is not None
                      else "") if status.last_ended else "did not end (killed?)")
    lines.append(f"last run: {status.last_done} unit(s) done in {status.last_wall:.1f} s on "
                 f"{status.last_ranks or '?'} rank(s), {status.throughput:.3g} units/s; it "
                 f"{how}")
    hours, unknown = status.remaining_unit_hours()
    efficiency = status.efficiency
    text = f"remaining: {status.pending} unit(s), {hours:.3g} core-hours of unit time"
    if math.isfinite(efficiency) and hours:
        text += (f", about {hours / efficiency:.3g} core-hours of jobs at the last run's "
                 f"efficiency ({100 * efficiency:.0f}%)")
    if unknown:
        text += f" (plus steps never timed: {', '.join(unknown)})"
    if status.unlisted:
        text += "; later stages are listed when the next run gets there"
    lines.append(text)
    lines.append("complete" if status.complete else
                 "more to do" if status.check_status() == MORE_TO_DO_EXIT else
                 "only failed or blocked units are left (fix the cause and rerun)")
    return "\n".join(lines)
