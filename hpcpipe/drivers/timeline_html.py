"""The interactive run timeline and the busy/idle summary of ``report.html``.

:func:`timeline_section` returns an HTML fragment that draws the run on a canvas with a
hand-written script (``timeline.js`` beside this module, embedded in the page: the report
opens without network access): one row per rank, one bar per unit coloured by its step,
failed units cross-hatched in red, units that took more than one attempt edged in black,
units blocked by a failed input (they never ran) as orange diamonds on a last row; zoom
(mouse wheel), pan (drag), a tooltip per unit (step, data id, rank, host, start, duration,
state, attempts, error), filters by step and by state, and a search by data id.

The units travel as JSON in a ``<script type="application/json">`` block; :func:`embed_json`
escapes ``<``, ``>``, ``&`` and the JavaScript line separators so that no data id or error
message can end the block or inject markup, and the script only ever sets ``textContent``.

:func:`busy_idle` sums, per rank, the seconds spent in each step and the idle rest of the
run's wall time; :func:`busy_idle_table` renders it as a table with a stacked bar per rank.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from hpcpipe.comm.journal import strict
from hpcpipe.comm.records import UnitRecord

__all__ = ["timeline_data", "timeline_section", "busy_idle", "busy_idle_table", "embed_json",
           "step_order", "TIMELINE_SCRIPT"]

#: The script of the interactive timeline (package data).
TIMELINE_SCRIPT = "timeline.js"
#: How much of a unit's error message the tooltip shows (the traceback is in "Failures").
ERROR_CHARS = 400

_BLOCKED_BY = re.compile(r"^blocked: input (.*) failed$")


def _timed(record: UnitRecord) -> bool:
    return math.isfinite(record.start) and math.isfinite(record.end)


def step_order(records: Iterable[UnitRecord]) -> list[str]:
    """The steps (jobs) in the order their first unit started, then those that never ran."""
    records = list(records)
    timed = sorted((r for r in records if _timed(r)), key=lambda r: r.start)
    return list(dict.fromkeys([r.job for r in timed] + [r.job for r in records]))


def embed_json(value: Any) -> str:
    """``value`` as strict JSON that is safe inside an HTML ``<script>`` element.

    ``<``, ``>`` and ``&`` become ``\\u003c``, ``\\u003e`` and ``\\u0026`` (so ``</script>``
    and ``<!--`` cannot appear), and U+2028/U+2029 are escaped too; ``JSON.parse`` of the
    element's text gives ``value`` back.
    """
    text = json.dumps(strict(value), allow_nan=False, separators=(",", ":"),
                      ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def timeline_data(records: Iterable[UnitRecord], colours: Mapping[str, str]) -> dict[str, Any]:
    """What the timeline script draws.

    Parameters
    ----------
    records : iterable of UnitRecord
        The run's units.
    colours : mapping
        A colour per step (``#rrggbb``).

    Returns
    -------
    dict
        ``steps`` and their ``colours`` (same order), ``ranks``, ``hosts`` (by rank, as
        strings), ``wall`` (seconds from the first start to the last end), ``t0`` (the first
        start, Unix time), ``skipped`` (units done by an earlier run, not drawn) and
        ``units``: one entry per unit that ran or was blocked, with its step's index ``s``,
        data id ``k``, rank ``r``, host ``h``, start ``t`` (seconds since ``t0``), duration
        ``d``, state ``st``, attempts ``a``, error ``e`` (cut to :data:`ERROR_CHARS`) and
        ``b`` = 1 for a blocked unit, placed at the end of the failed input that blocked it.
    """
    records = list(records)
    steps = step_order(records)
    index = {step: i for i, step in enumerate(steps)}
    timed = [r for r in records if _timed(r)]
    t0 = min((r.start for r in timed), default=0.0)
    t1 = max((r.end for r in timed), default=t0)
    failed_end = {r.key: r.end - t0 for r in timed if r.state == "failed"}
    units: list[dict[str, Any]] = []
    for rec in timed:
        units.append({"s": index[rec.job], "k": rec.key, "r": rec.rank, "h": rec.host,
                      "t": round(rec.start - t0, 6), "d": round(max(rec.end - rec.start, 0.0), 6),
                      "st": rec.state, "a": rec.attempts, "e": rec.error[:ERROR_CHARS]})
    for rec in records:
        if rec.state != "blocked" or _timed(rec):
            continue
        match = _BLOCKED_BY.match(rec.error)
        at = failed_end.get(match.group(1)) if match else None
        units.append({"s": index[rec.job], "k": rec.key, "r": -1, "h": "",
                      "t": round(at if at is not None else t1 - t0, 6), "d": 0.0,
                      "st": "blocked", "a": rec.attempts, "e": rec.error[:ERROR_CHARS],
                      "b": 1})
    return {
        "steps": steps,
        "colours": [colours.get(step, "#000000") for step in steps],
        "ranks": sorted({r.rank for r in timed}),
        "hosts": {str(r.rank): r.host for r in timed},
        "wall": t1 - t0,
        "t0": t0,
        "skipped": sum(r.state == "skipped" for r in records),
        "units": units,
    }


_STYLE = """<style>
#hp-tl{font-size:13px}
#hp-tl canvas{width:100%;display:block;cursor:crosshair;border:1px solid #ccc}
#hp-tl .hp-tl-bar{display:flex;flex-wrap:wrap;gap:4px 14px;align-items:center;margin:4px 0}
#hp-tl label{white-space:nowrap;cursor:pointer}
#hp-tl .hp-tl-swatch{display:inline-block;width:11px;height:11px;margin:0 4px 0 2px;
vertical-align:middle;box-sizing:border-box}
#hp-tl .hp-tl-tip{position:fixed;display:none;z-index:10;background:#fffff0;
border:1px solid #888;padding:4px 8px;max-width:480px;box-shadow:2px 2px 6px #0003;
pointer-events:none;font-size:12px;overflow-wrap:anywhere}
#hp-tl .hp-tl-error{color:#b00000}
#hp-tl .hp-tl-status{color:#555}
table.hp-busy{font-size:12px}
table.hp-busy td,table.hp-busy th{padding:2px 5px;text-align:right}
table.hp-busy th{vertical-align:bottom;font-weight:normal}
table.hp-busy tr>th:first-child{font-weight:bold}
table.hp-busy td.hp-busy-bar{width:220px;min-width:120px;text-align:left}
.hp-busy .hp-tl-swatch{display:inline-block;width:10px;height:10px;margin-right:3px}
.hp-busy-bar div{display:flex;height:12px;border:1px solid #bbb;background:#fff}
.hp-busy-bar span{display:block;height:100%}
</style>"""


def timeline_section(records: Iterable[UnitRecord], colours: Mapping[str, str]) -> str:
    """The interactive timeline as an HTML fragment (style, controls, canvas, data, script).

    The page it goes into needs nothing else: the script is embedded, and it uses no
    network access. See the module documentation for what it shows.
    """
    data = timeline_data(records, colours)
    script = resources.files(__package__).joinpath(TIMELINE_SCRIPT).read_text(encoding="utf-8")
    if any(tag in script.lower() for tag in ("<script", "</script", "<!--")):
        raise ValueError(f"{TIMELINE_SCRIPT} must not contain '<script', '</script' or '<!--'")
    return f"""{_STYLE}
<div id="hp-tl">
<div class="hp-tl-bar"><b>zoom</b>
<button type="button" data-action="zoom-in">+</button>
<button type="button" data-action="zoom-out">&minus;</button>
<button type="button" data-action="reset">reset</button>
<span>(wheel: zoom, drag: pan, double click: whole run)</span>
<label>data id <input class="hp-tl-search" type="search" size="28"
placeholder="find, e.g. visit=1000"></label></div>
<div class="hp-tl-bar hp-tl-steps"><b>steps</b></div>
<div class="hp-tl-bar hp-tl-states"><b>states</b></div>
<canvas role="img" aria-label="run timeline: one row per rank, one bar per unit"></canvas>
<div class="hp-tl-status"></div>
<div class="hp-tl-tip" role="tooltip"></div>
<noscript><p>The interactive timeline needs JavaScript; timeline.png beside this page shows
the same run.</p></noscript>
</div>
<script type="application/json" id="hp-tl-data">{embed_json(data)}</script>
<script>
{script}
</script>"""


def busy_idle(records: Iterable[UnitRecord]) -> dict[str, Any]:
    """Per rank, the seconds spent in each step and idle over the run's wall time.

    Returns
    -------
    dict
        ``wall`` (first start to last end, seconds), ``steps`` (in :func:`step_order`) and
        ``ranks``: a list of ``{"rank", "host", "steps": {step: seconds}, "busy", "idle",
        "busy_fraction"}``, plus ``total``: the same sums over every rank (its ``idle`` is
        the ranks' wall time not spent in a unit).
    """
    records = list(records)
    timed = [r for r in records if _timed(r)]
    ran = {r.job for r in timed}
    steps = [s for s in step_order(records) if s in ran]
    wall = (max(r.end for r in timed) - min(r.start for r in timed)) if timed else 0.0
    per_rank: dict[int, dict[str, float]] = {}
    hosts: dict[int, str] = {}
    for rec in timed:
        per_rank.setdefault(rec.rank, dict.fromkeys(steps, 0.0))[rec.job] += max(
            rec.end - rec.start, 0.0)
        hosts[rec.rank] = rec.host

    def row(seconds: dict[str, float], span: float) -> dict[str, Any]:
        busy = sum(seconds.values())
        return {"steps": seconds, "busy": busy, "idle": max(span - busy, 0.0),
                "busy_fraction": busy / span if span > 0 else 0.0}

    ranks = [{"rank": rank, "host": hosts[rank], **row(per_rank[rank], wall)}
             for rank in sorted(per_rank)]
    total = row({s: sum(r["steps"][s] for r in ranks) for s in steps}, wall * len(ranks))
    return {"wall": wall, "steps": steps, "ranks": ranks, "total": total}


def busy_idle_table(summary: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    """:func:`busy_idle`'s summary as an HTML table: seconds per step, busy, idle, and a bar
    per rank made of its steps' colours and its idle time (white)."""
    esc = html.escape
    steps = summary["steps"]
    if not summary["ranks"]:
        return "<p>No unit ran.</p>"

    def bar(entry: Mapping[str, Any]) -> str:
        span = entry["busy"] + entry["idle"]
        if span <= 0:
            return ""
        parts = "".join(
            f'<span style="width:{100 * entry["steps"][s] / span:.3f}%;'
            f'background:{esc(colours.get(s, "#000000"))}" title="{esc(s)}: '
            f'{entry["steps"][s]:.2f} s"></span>' for s in steps if entry["steps"][s] > 0)
        return f"<div>{parts}</div>"

    def cells(entry: Mapping[str, Any]) -> str:
        return (f'<td class="hp-busy-bar">{bar(entry)}</td>'
                + f"<td>{entry['busy']:.2f}</td><td>{entry['idle']:.2f}</td>"
                + f"<td>{100 * entry['busy_fraction']:.0f}%</td>"
                + "".join(f"<td>{entry['steps'][s]:.2f}</td>" for s in steps))

    def breakable(name: str) -> str:  # camelCase step names may wrap before a capital
        return re.sub(r"(?<=[a-z])(?=[A-Z])", "<wbr>", esc(name))

    header = "".join(
        f'<th><span class="hp-tl-swatch" style="background:{esc(colours.get(s, "#000000"))}">'
        f"</span>{breakable(s)}</th>" for s in steps)
    body = "".join(f"<tr><th>rank&nbsp;{r['rank']}</th><td>{esc(r['host'])}</td>{cells(r)}</tr>"
                   for r in summary["ranks"])
    body += f"<tr><th>all&nbsp;ranks</th><td></td>{cells(summary['total'])}</tr>"
    return (f"<p>Seconds in each step on each rank over the run's {summary['wall']:.2f} s "
            "(idle: not in a unit, including waiting for inputs); the bar shows the steps in "
            "their colours and the idle time in white.</p>"
            f'<table class="hp-busy"><tr><th>rank</th><th>host</th><th></th><th>busy [s]</th>'
            f"<th>idle [s]</th><th>busy</th>{header}</tr>{body}</table>")
