"""The interactive run timeline of report.html: its data, its busy/idle summary, the escaping
of what the units carry, and the page itself in headless Chromium (offline)."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
from headless_chromium import Browser, find_chromium
from test_sky_pictures import _quality

from hpcpipe.comm.journal import Journal
from hpcpipe.comm.pool import Pool
from hpcpipe.comm.records import UnitRecord
from hpcpipe.comm.world import World
from hpcpipe.drivers.quality_figure import write_quality_figure
from hpcpipe.drivers.report import JOURNAL_NAME, rebuild_report, step_colours, write_report
from hpcpipe.drivers.timeline_html import (
    busy_idle,
    busy_idle_table,
    embed_json,
    timeline_data,
    timeline_section,
)

#: Data ids and errors that would break a page that did not escape them.
NASTY_KEY = 'patch=<1,2> filter="g&r" </script><script>window.owned=1</script> \u2028 \'x\''
NASTY_ERROR = "<b>bold</b> & </script><!-- \u2029"


def _unit(cache, unit):
    """Unit 'fail' always fails, 'flaky' fails on its first attempt only."""
    if unit == "fail":
        raise ValueError(NASTY_ERROR)
    if unit == "flaky" and not getattr(cache, "flaky_seen", False):
        cache.flaky_seen = True
        raise RuntimeError("transient: try again")
    time.sleep(0.02)
    return unit


def _pool_records() -> list[UnitRecord]:
    """A real (serial) pool run with a failed unit, the unit it blocks, a retried unit."""
    pool = Pool(World(), retries=1)
    units = ["a", "b", "flaky", "fail", "after-fail", "c"]
    keys = ["processCcd visit=1 ccd=0", "processCcd visit=1 ccd=1", "processCcd visit=2 ccd=0",
            f"assembleCoadd {NASTY_KEY}", "detectCoaddSources patch=1,2", "makeSkyMap"]
    jobs = ["processCcd", "processCcd", "processCcd", "assembleCoadd", "detectCoaddSources",
            "makeSkyMap"]
    deps = [[], [], [], [0], [3], []]
    pool.map_graph([(_unit, u) for u in units], deps, keys=keys, jobs=jobs)
    return pool.records


def test_timeline_data_from_a_pool_run():
    records = _pool_records()
    states = {r.key: r.state for r in records}
    assert states[f"assembleCoadd {NASTY_KEY}"] == "failed"
    assert states["detectCoaddSources patch=1,2"] == "blocked"
    colours = step_colours(["processCcd", "assembleCoadd", "detectCoaddSources", "makeSkyMap"])
    data = timeline_data(records, colours)
    assert data["steps"][0] == "processCcd"
    assert data["colours"] == [colours[s] for s in data["steps"]]
    assert len(set(data["colours"])) == len(data["steps"])
    assert data["ranks"] == [0] and data["skipped"] == 0
    by_key = {u["k"]: u for u in data["units"]}
    assert len(by_key) == len(records)
    failed = by_key[f"assembleCoadd {NASTY_KEY}"]
    assert failed["st"] == "failed" and failed["a"] == 2
    assert failed["e"] == f"ValueError: {NASTY_ERROR}"
    assert by_key["processCcd visit=2 ccd=0"]["a"] == 2
    assert by_key["processCcd visit=2 ccd=0"]["st"] == "done"
    # the blocked unit never ran: it sits where its failed input ended, on no rank
    blocked = by_key["detectCoaddSources patch=1,2"]
    assert blocked["b"] == 1 and blocked["r"] == -1 and blocked["d"] == 0
    assert blocked["t"] == pytest.approx(failed["t"] + failed["d"], abs=1e-5)
    # times are seconds since the first start; the run's wall time spans them all
    assert min(u["t"] for u in data["units"]) == 0.0
    assert data["wall"] == pytest.approx(max(u["t"] + u["d"] for u in data["units"]), abs=1e-5)


def test_embedded_json_cannot_end_the_script_element():
    value = {"k": NASTY_KEY, "e": NASTY_ERROR, "nan": float("nan")}
    text = embed_json(value)
    for forbidden in ("<", ">", "&", "\u2028", "\u2029"):
        assert forbidden not in text
    assert json.loads(text) == {**value, "nan": None}  # strict JSON, same strings
    record = UnitRecord("assembleCoadd", 0, NASTY_KEY, "failed", 1, "h<o>st", 0.0, 1.0, 1,
                        NASTY_ERROR)
    section = timeline_section([record], step_colours(["assembleCoadd"]))
    # two scripts (data, code) and nothing from the data ends one early or opens a comment
    assert section.lower().count("</script") == 2
    assert section.count("<script") == 2 and "<!--" not in section
    payload = re.search(r'<script type="application/json" id="hp-tl-data">(.*?)</script>',
                        section, re.S).group(1)
    data = json.loads(payload)
    assert data["units"][0]["k"] == NASTY_KEY and data["hosts"] == {"1": "h<o>st"}


def test_busy_and_idle_time_per_rank_and_step():
    records = [
        UnitRecord("processCcd", 0, "v=1", "done", 1, "n1", 100.0, 102.0, 1),
        UnitRecord("processCcd", 1, "v=2", "done", 2, "n1", 100.0, 103.0, 1),
        UnitRecord("assembleCoadd", 2, "p=0", "failed", 1, "n1", 104.0, 107.0, 2, "boom"),
        UnitRecord("makeSkyMap", 3, "once", "done", 2, "n1", 105.0, 110.0, 1),
        UnitRecord("detectCoaddSources", 4, "p=0", "blocked", error="blocked: input p=0 failed"),
        UnitRecord("makeSkyMap", 5, "old", "skipped"),
    ]
    summary = busy_idle(records)
    assert summary["wall"] == pytest.approx(10.0)
    assert summary["steps"] == ["processCcd", "assembleCoadd", "makeSkyMap"]
    rank1, rank2 = summary["ranks"]
    assert rank1["rank"] == 1 and rank1["steps"] == {"processCcd": 2.0, "assembleCoadd": 3.0,
                                                     "makeSkyMap": 0.0}
    assert rank1["busy"] == pytest.approx(5.0) and rank1["idle"] == pytest.approx(5.0)
    assert rank2["busy"] == pytest.approx(8.0) and rank2["busy_fraction"] == pytest.approx(0.8)
    total = summary["total"]
    assert total["busy"] == pytest.approx(13.0) and total["idle"] == pytest.approx(7.0)
    assert total["steps"]["makeSkyMap"] == pytest.approx(5.0)
    table = busy_idle_table(summary, step_colours(summary["steps"]))
    assert "<th>rank&nbsp;2</th>" in table and "<td>8.00</td>" in table and "80%" in table


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    records = _pool_records()
    # a second rank's units, and a skipped one, beside the pool's
    t0 = min(r.start for r in records)
    records += [UnitRecord("processCcd", 100 + i, f"processCcd visit=9 ccd={i}", "done", 2,
                           "node-b", t0 + 0.01 * i, t0 + 0.01 * i + 0.008, 1) for i in range(3)]
    records.append(UnitRecord("makeSkyMap", 200, "makeSkyMap earlier", "skipped"))
    paths = write_report(records, out, title="timeline <test>")
    return records, paths["html"]


@pytest.fixture()
def browser(tmp_path):
    if find_chromium() is None:
        pytest.skip("no chromium (apt-get install chromium)")
    with Browser(tmp_path / "profile", timeout=60) as opened:
        yield opened


def test_report_page_offline_hover_shows_the_data_id(report_page, browser):
    records, page = report_page
    browser.open(page.as_uri())
    # self-contained: nothing but the page itself (and its inline picture) was requested
    assert [u for u in browser.requests if not u.startswith("data:")] == [page.as_uri()]
    assert browser.evaluate("window.owned === undefined")  # nothing injected ran
    assert browser.evaluate("typeof window.hpcpipeTimeline") == "object"
    tip = "document.querySelector('.hp-tl-tip')"
    for rec in records:
        if rec.state == "skipped":
            continue
        where = browser.evaluate(f"hpcpipeTimeline.locate({json.dumps(rec.key)})")
        assert where is not None, rec.key
        browser.mouse("mouseMoved", where["x"], where["y"])
        assert browser.evaluate(f"{tip}.style.display") == "block", rec.key
        lines = browser.evaluate(f"{tip}.innerText").split("\n")
        assert f"data id: {rec.key}" in lines, lines
        assert browser.evaluate(f"{tip}.querySelector('.hp-tl-key').textContent") == rec.key
        assert f"step: {rec.job}" in lines
        assert any(line.startswith(f"state: {rec.state}") for line in lines), lines
        if rec.state == "blocked":
            assert "rank: none (never ran)" in lines
        else:
            assert f"rank: {rec.rank}" in lines and f"host: {rec.host}" in lines
            assert f"duration: {rec.end - rec.start:.3f} s" in lines
        if rec.error:
            assert any(line.startswith("error: ") and rec.error.split("\n")[0][:40] in line
                       for line in lines), lines
    # away from every bar the tooltip goes
    browser.mouse("mouseMoved", 5, 5)
    assert browser.evaluate(f"{tip}.style.display") == "none"
    assert browser.exceptions == []


def test_report_page_zoom_pan_and_filters(report_page, browser):
    records, page = report_page
    browser.open(page.as_uri())
    view = "[hpcpipeTimeline.view.t0, hpcpipeTimeline.view.t1]"
    before = browser.evaluate(view)
    box = browser.evaluate("(() => { const b = document.querySelector('#hp-tl canvas')"
                           ".getBoundingClientRect(); return {x: b.left, y: b.top, w: b.width};"
                           " })()")
    x, y = box["x"] + box["w"] * 0.6, box["y"] + 40
    browser.mouse("mouseWheel", x, y, deltaX=0, deltaY=-240)
    zoomed = browser.evaluate(view)
    assert zoomed[1] - zoomed[0] < 0.9 * (before[1] - before[0])
    # dragging to the right shows earlier times
    browser.mouse("mousePressed", x, y, button="left", clickCount=1)
    browser.mouse("mouseMoved", x + 100, y, button="left")
    browser.mouse("mouseReleased", x + 100, y, button="left", clickCount=1)
    panned = browser.evaluate(view)
    assert panned[0] < zoomed[0] and panned[1] - panned[0] == pytest.approx(zoomed[1] - zoomed[0])
    browser.evaluate("hpcpipeTimeline.reset()")
    assert browser.evaluate(view) == pytest.approx(before)
    # unchecking a step's box hides its units (nothing to hover), checking it shows them
    key = json.dumps("processCcd visit=9 ccd=1")
    assert browser.evaluate(f"hpcpipeTimeline.locate({key})") is not None
    label = ("[...document.querySelectorAll('.hp-tl-steps label')]"
             ".find(l => l.textContent.startsWith('processCcd ')).querySelector('input')")
    browser.evaluate(f"{label}.click()")
    assert browser.evaluate(f"hpcpipeTimeline.locate({key})") is None
    browser.evaluate(f"{label}.click()")
    assert browser.evaluate(f"hpcpipeTimeline.locate({key})") is not None
    # and by state: hiding "failed" hides the failed unit only
    failed = next(r for r in records if r.state == "failed")
    state = ("[...document.querySelectorAll('.hp-tl-states label')]"
             ".find(l => l.textContent.startsWith('failed ')).querySelector('input')")
    browser.evaluate(f"{state}.click()")
    assert browser.evaluate(f"hpcpipeTimeline.locate({json.dumps(failed.key)})") is None
    assert browser.evaluate(f"hpcpipeTimeline.locate({key})") is not None
    assert browser.exceptions == []


def test_kernels_used_go_through_the_journal_into_the_report(tmp_path):
    journal = Journal(tmp_path / JOURNAL_NAME, title="kernels")
    journal.unit(UnitRecord("processCcd", 0, "visit=1 ccd=0", "done", 1, "node-a", 10.0, 11.0, 1))
    journal.kernels(1, "node-a", {"isr": "pythran", "measure": "pythran"})
    journal.kernels(2, "node-b", {"isr": "pythran", "measure": "numpy"})
    journal.kernels(1, "node-a", {"warp": "pythran"})  # a later stage adds to rank 1's
    journal.close()
    paths = rebuild_report(tmp_path)
    kernels = json.loads(paths["json"].read_text())["kernels"]
    assert kernels["by_rank"] == {
        "1": {"host": "node-a", "kernels": {"isr": "pythran", "measure": "pythran",
                                            "warp": "pythran"}},
        "2": {"host": "node-b", "kernels": {"isr": "pythran", "measure": "numpy"}}}
    assert kernels["modules"]["measure"] == {"pythran": [1], "numpy": [2]}
    assert kernels["modules"]["isr"] == {"pythran": [1, 2]}
    assert kernels["slow"] == ["measure"]
    page = paths["html"].read_text()
    section = page.split("<h2>Kernels</h2>")[1]
    assert "numpy (rank 2)" in section and "pythran (ranks 1, 2)" in section
    assert "NumPy references of measure" in section


def test_report_without_kernels_says_so(tmp_path):
    paths = write_report([UnitRecord("a", 0, "k", "done", 0, "h", 0.0, 1.0, 1)], tmp_path)
    assert json.loads(paths["json"].read_text())["kernels"] == {}
    assert "Not recorded" in paths["html"].read_text().split("<h2>Kernels</h2>")[1]


def test_a_quality_figure_beside_the_report_is_shown(tmp_path):
    record = UnitRecord("a", 0, "k", "done", 0, "h", 0.0, 1.0, 1)
    page = write_report([record], tmp_path)["html"].read_text()
    assert "<h2>Quality</h2>" not in page
    png = write_quality_figure(_quality(), tmp_path / "quality.png").read_bytes()
    page = write_report([record], tmp_path)["html"].read_text()
    section = page.split("<h2>Quality</h2>")[1]
    assert base64.b64encode(png).decode() in section
