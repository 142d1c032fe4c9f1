"""The run report: JSON, timeline PNG and HTML from unit records."""

from __future__ import annotations

import json

from hpcpipe.comm.pool import Pool
from hpcpipe.comm.world import World
from hpcpipe.drivers.report import summarize, write_report


def maybe_fail(cache, unit):
    if unit == 3:
        raise KeyError("no calexp for visit=3")
    return unit


def test_report_from_a_real_pool_run(tmp_path):
    pool = Pool(World())
    pool.map(maybe_fail, range(6), keys=[f"visit={i}" for i in range(6)], name="processCcd")
    paths = write_report(pool.records, tmp_path, title="test run")
    data = json.loads(paths["json"].read_text())
    assert data["summary"]["states"] == {"done": 5, "failed": 1}
    assert data["summary"]["jobs"] == {"processCcd": {"done": 5, "failed": 1}}
    failed = [u for u in data["units"] if u["state"] == "failed"]
    assert failed[0]["key"] == "visit=3" and "no calexp" in failed[0]["error"]
    assert all(u["host"] and u["rank"] == 0 for u in data["units"])
    png = paths["png"].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 2000
    page = paths["html"].read_text()
    assert "visit=3" in page and "KeyError" in page and "data:image/png;base64," in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json",
                                                          "timeline.png"]


def test_summary_of_nothing():
    assert summarize([])["units"] == 0
