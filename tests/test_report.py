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


def test_timeline_has_one_colour_per_step_and_marks_failures(tmp_path):
    """Every step its own colour in the PNG (20 steps: 20 colours), failed, blocked and retried
    units marked over it, and the legend inside the figure whatever the number of steps."""
    from matplotlib.image import imread

    from hpcpipe.comm.records import UnitRecord
    from hpcpipe.drivers.report import STATE_MARKS, step_colours

    jobs = [f"step{i}" for i in range(20)]
    colours = step_colours(jobs)
    assert len(set(colours.values())) == 20
    states = ["done", "failed", "blocked", "done"]
    records = [UnitRecord(job, i, f"{job}:{i}", states[i % 4], rank=1 + i % 3, host="h",
                          start=float(i), end=i + 0.8, attempts=2 if i % 4 == 3 else 1)
               for i, job in enumerate(jobs)]
    paths = write_report(records, tmp_path, title="twenty steps")
    image = imread(paths["png"])
    height, width = image.shape[:2]
    pixels = {tuple(int(round(255 * v)) for v in px[:3]) for px in image.reshape(-1, 4)}
    # each step's colour appears (bars and legend), and the failure mark's edge colour
    for hex_colour in [*colours.values(), STATE_MARKS["failed"][1]]:
        rgb = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
        assert rgb in pixels, hex_colour
    assert width == 1100 and height < 400
