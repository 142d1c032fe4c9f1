"""The run report: every unit's state, time, rank and host, as JSON, PNG and HTML.

``report.json`` holds one entry per unit (job, key, state, rank, host, start, end, attempts,
error) and the counts per state; ``timeline.png`` draws one row per rank and one bar per unit
(one colour per step, failed, blocked and retried units marked); ``report.html`` puts the
summary, the interactive timeline (:mod:`hpcpipe.drivers.timeline_html`: zoom, pan, a tooltip
per unit, filters; self-contained), the busy and idle time per rank and step, and the failures
with their tracebacks on one page. All three are written atomically; the JSON is
strict (a time that is not known is ``null``, never ``NaN``).

The master also appends every unit's end to ``journal.jsonl`` in the same directory as it
happens (:mod:`hpcpipe.comm.journal`); the report is rewritten from it at the end, and
``hpcpipe report OUT`` (:func:`rebuild_report`) rebuilds it after a run that was killed.
"""

from __future__ import annotations

import base64
import collections
import html
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hpcpipe.comm.journal import read_journal, read_journal_kernels, strict
from hpcpipe.comm.records import UnitRecord
from hpcpipe.drivers.report_kernels import kernel_section, kernel_summary
from hpcpipe.drivers.timeline_html import busy_idle, busy_idle_table, step_order, timeline_section
from hpcpipe.io.atomic import atomic_path

__all__ = ["write_report", "rebuild_report", "find_journal", "summarize", "STATE_COLOURS",
           "STATE_MARKS", "step_colours", "JOURNAL_NAME"]

#: The journal's file name in a report directory.
JOURNAL_NAME = "journal.jsonl"

#: Bar colours of the unit states in the timeline.
STATE_COLOURS = {
    "done": "#4c9a2a",
    "failed": "#d62728",
    "skipped": "#9e9e9e",
    "blocked": "#ff7f0e",
    "running": "#1f77b4",
    "pending": "#cccccc",
}


def summarize(records: Iterable[UnitRecord]) -> dict[str, Any]:
    """Counts per state (over all jobs and per job), the wall-clock span of the run, and
    each job's largest peak resident memory of a unit (``peak_rss``, bytes)."""
    records = list(records)
    per_job: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    peaks: dict[str, float] = {}
    for rec in records:
        per_job[rec.job][rec.state] += 1
        if math.isfinite(rec.peak_rss):
            peaks[rec.job] = max(peaks.get(rec.job, 0.0), rec.peak_rss)
    starts = [r.start for r in records if math.isfinite(r.start)]
    ends = [r.end for r in records if math.isfinite(r.end)]
    totals = collections.Counter(r.state for r in records)
    return {
        "units": len(records),
        "states": dict(totals),
        "jobs": {job: dict(counts) for job, counts in per_job.items()},
        "wall_seconds": (max(ends) - min(starts)) if starts and ends else 0.0,
        "busy_seconds": sum(r.end - r.start for r in records
                            if math.isfinite(r.start) and math.isfinite(r.end)),
        "ranks": sorted({r.rank for r in records if r.rank >= 0}),
        "peak_rss": peaks,
    }


#: How units that did not simply finish are marked over their step's colour in the timeline.
STATE_MARKS = {"failed": ("xx", "#d62728"), "blocked": ("//", "#ff7f0e"),
               "skipped": ("..", "#616161")}


def step_colours(jobs: Iterable[str]) -> dict[str, str]:
    """One colour per step (job), in the order given: matplotlib's tab20, its ten strong
    colours first (the first ten steps differ in hue), then its light ones, then tab20b."""
    # start-up cost: matplotlib, only when a picture is drawn
    import matplotlib

    tab20 = matplotlib.colormaps["tab20"].colors  # type: ignore[attr-defined]
    palette = [matplotlib.colors.to_hex(c) for c in
               [*tab20[0::2], *tab20[1::2], *matplotlib.colormaps["tab20b"].colors]]  # type: ignore[attr-defined]
    return {job: palette[i % len(palette)] for i, job in enumerate(jobs)}


def _timeline_png(records: list[UnitRecord], path: Path, title: str) -> None:
    # start-up cost: matplotlib, only when a picture is drawn
    import matplotlib

    matplotlib.use("Agg")
    # start-up cost: matplotlib, only when a picture is drawn
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    timed = [r for r in records if math.isfinite(r.start) and math.isfinite(r.end)]
    ranks = sorted({r.rank for r in timed}) or [0]
    t0 = min((r.start for r in timed), default=0.0)
    jobs = list(dict.fromkeys(r.job for r in sorted(timed, key=lambda r: r.start)))
    colours = step_colours(jobs)
    columns = 4
    legend_rows = math.ceil((len(jobs) + len(STATE_MARKS) + 1) / columns)
    height = 1.5 + 0.35 * len(ranks) + 0.2 * legend_rows
    fig, ax = plt.subplots(figsize=(11, height), dpi=100)
    bars: dict[tuple[int, str, str, str], list[tuple[float, float]]] = {}
    for rec in timed:  # one collection per rank, step and look: fast for many units
        hatch, edge = STATE_MARKS.get(rec.state, ("", "white"))
        if rec.state == "done" and rec.attempts > 1:
            edge = "#000000"  # done on a retry
        bars.setdefault((ranks.index(rec.rank), rec.job, hatch, edge), []).append(
            (rec.start - t0, max(rec.end - rec.start, 1e-4)))
    for (row, job, hatch, edge), spans in bars.items():
        ax.broken_barh(spans, (row - 0.4, 0.8), facecolors=colours.get(job, "#000000"),
                       edgecolor=edge, linewidth=0.8 if edge != "white" else 0.3, hatch=hatch)
    ax.set_yticks(range(len(ranks)), [f"rank {r}" for r in ranks])
    ax.set_ylim(-0.6, len(ranks) - 0.4)
    ax.set_xlabel("seconds since the first unit started")
    ax.set_title(title)
    handles = [Patch(facecolor=colours[j], label=j) for j in jobs]
    states = {r.state for r in timed}
    handles += [Patch(facecolor="white", edgecolor=edge, hatch=hatch, label=state)
                for state, (hatch, edge) in STATE_MARKS.items() if state in states]
    if any(r.state == "done" and r.attempts > 1 for r in timed):
        handles.append(Patch(facecolor="white", edgecolor="#000000", label="done on a retry"))
    if handles:
        # below the axes, in columns: every step fits whatever the number of ranks
        fig.legend(handles=handles, loc="lower center", ncols=columns, fontsize=8,
                   frameon=False)
        fig.subplots_adjust(bottom=(0.2 * legend_rows + 0.65) / height,
                            top=1 - 0.45 / height, left=0.08, right=0.98)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _html(records: list[UnitRecord], summary: dict[str, Any], png: bytes, title: str,
          kernels: dict[str, Any], quality_png: bytes | None = None) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(job)}</td>" + "".join(
            f"<td>{counts.get(state, 0)}</td>" for state in STATE_COLOURS) + "</tr>"
        for job, counts in summary["jobs"].items())
    failures = "".join(
        f"<details><summary><b>{esc(r.job)}</b> {esc(r.key)}: {esc(r.error)} "
        f"(rank {r.rank}, {esc(r.host)}, {r.attempts} attempt(s))</summary>"
        f"<pre>{esc(r.traceback)}</pre></details>"
        for r in records if r.state in ("failed", "blocked"))
    header = "".join(f"<th>{s}</th>" for s in STATE_COLOURS)
    memory = ", ".join(f"{job} {peak / 1e9:.3g} GB" for job, peak in summary["peak_rss"].items())
    image = base64.b64encode(png).decode()
    colours = step_colours(step_order(records))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:right}}
pre{{background:#f4f4f4;padding:6px;overflow-x:auto}}</style></head>
<body><h1>{esc(title)}</h1>
<p>{summary['units']} units on {len(summary['ranks'])} rank(s), wall time
{summary['wall_seconds']:.1f} s, busy {summary['busy_seconds']:.1f} s.</p>
<table><tr><th>job</th>{header}</tr>{rows}</table>
<p>Largest peak memory of a unit: {esc(memory) or 'not measured'}.</p>
<h2>Timeline</h2>{timeline_section(records, colours)}
<details><summary>the same as a picture (timeline.png)</summary>
<img alt="timeline" src="data:image/png;base64,{image}"></details>
<h2>Busy and idle time per rank</h2>{busy_idle_table(busy_idle(records), colours)}
<h2>Failures</h2>{failures or '<p>none</p>'}
<h2>Kernels</h2>{kernel_section(kernels)}
{_quality_section(quality_png)}
</body></html>
"""


#: A run's quality figure, when one was written beside the report (``hpcpipe demo`` does).
QUALITY_PNG = "quality.png"


def _quality_section(png: bytes | None) -> str:
    if png is None:
        return ""
    return ("<h2>Quality</h2><p>Astrometric and photometric residuals against the reference "
            f"catalog, PSF size over the field, depth per visit ({QUALITY_PNG}).</p>"
            f'<img alt="quality figure" style="max-width:100%" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def write_report(records: Iterable[UnitRecord], directory: str | os.PathLike[str],
                 title: str = "hpcpipe run report",
                 kernels: Mapping[int, Mapping[str, Any]] | None = None) -> dict[str, Path]:
    """Write ``report.json``, ``timeline.png`` and ``report.html`` into ``directory``.

    ``kernels`` (``{rank: {"host", "kernels": {module: implementation}}}``, as the journal
    records them) goes into both as the kernels the run used
    (:func:`hpcpipe.drivers.report_kernels.kernel_summary`). A ``quality.png`` already in
    ``directory`` is shown in ``report.html`` too.

    Returns
    -------
    dict
        The paths written, by kind (``json``, ``png``, ``html``).
    """
    records = list(records)
    out = Path(directory)
    summary = summarize(records)
    used = kernel_summary(kernels)
    paths = {"json": out / "report.json", "png": out / "timeline.png", "html": out / "report.html"}
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(strict({"summary": summary, "kernels": used,
                                          "units": [r.to_dict() for r in records]}),
                                  indent=1, allow_nan=False))
    _timeline_png(records, paths["png"], title)
    with atomic_path(paths["html"]) as tmp:
        quality = out / QUALITY_PNG
        tmp.write_text(_html(records, summary, paths["png"].read_bytes(), title, used,
                             quality.read_bytes() if quality.is_file() else None))
    return paths


def find_journal(location: str | os.PathLike[str]) -> Path:
    """The journal of a report directory, or of an output repository's ``report/``.

    Raises
    ------
    FileNotFoundError
        Naming both places looked at.
    """
    base = Path(location)
    for candidate in (base / JOURNAL_NAME, base / "report" / JOURNAL_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {JOURNAL_NAME} in {base} nor in {base / 'report'}")


def rebuild_report(location: str | os.PathLike[str]) -> dict[str, Path]:
    """Rewrite a run's report from its journal (the last entry of each unit wins).

    Parameters
    ----------
    location : str or os.PathLike
        The report directory, or the output repository whose ``report/`` holds it.
    """
    journal = find_journal(location)
    title, records = read_journal(journal)
    return write_report(records, journal.parent, title=title,
                        kernels=read_journal_kernels(journal))
