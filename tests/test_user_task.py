"""Level 3: a user's task with its own dataset types runs like a production step.

`hpcpipe run` registers the task's dataset types in the output repository (listed by
`butler describe`, refused on a clash), runs its units on the pool (serially, `-j 2`, or
under `mpirun -n 3`) with retries, resume and a report, records the versions, and every
unit's provenance (metadata with timings and resources, log records, lineage), which
`butler provenance` follows back to the raws.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mpi_helpers import require_mpirun, subprocess_env

from hpcpipe.butler import Butler, ButlerError
from hpcpipe.butler.provenance import trace
from hpcpipe.cli import main

TESTS = Path(__file__).resolve().parent
STATS = "user_tasks:ObjectStatsTask"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("level3") / "repo"
    assert main(["simulate", str(path), "--visits", "2", "--ccds", "2", "--filters", "g",
                 "--size", "48", "--seed", "5"]) == 0
    return path


def run(task, *argv):
    try:
        return main(["run", task, *map(str, argv)])
    except SystemExit as exc:
        return exc.code


def report_units(out: Path) -> dict[str, dict]:
    data = json.loads((out / "report" / "report.json").read_text())
    return {u["key"]: u for u in data["units"]}


def metadata_times(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "metadata" / "objectStats").glob("*")}


def test_declared_types_are_registered_described_and_clashes_refused(repo, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(STATS, repo, "--output", out, "--id", "object=0..5") == 0
    declared = yaml.safe_load((out / "_datasets.yaml").read_text())
    assert set(declared["datasetTypes"]) == {"objectStats", "objectProfile"}
    assert declared["keys"]["object"]["type"] == "int"
    butler = Butler(out)
    assert butler.get("objectStats", object=4)["visit"] == 1000 + (4 // 2) % 2
    assert butler.get("objectProfile", object=4)["radius"] == [0, 1, 2]
    assert butler.getKeys("objectStats") == {"object": int}
    capsys.readouterr()
    assert main(["butler", "describe", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| `objectStats` | object | `dict` |" in text
    assert "| `objectProfile` | object | `dict` |" in text
    assert "| `object` | int |" in text and "Declared by task objectStats" in text
    # a name the camera has, and a second declaration of objectStats in another format
    assert run("user_tasks:ClashingTask", repo, "--output", out, "--id", "visit=1000") == 2
    err = capsys.readouterr().err
    assert "calexp" in err and "clashes with the simcam camera's" in err
    assert run("user_tasks:RedeclaringTask", repo, "--output", out, "--id", "object=1") == 2
    err = capsys.readouterr().err
    assert "objectStats" in err and "clashes with the one task objectStats declared" in err
    assert not (out / "metadata" / "redeclaring").exists()


def test_a_repository_file_never_runs_code(repo, tmp_path):
    out = tmp_path / "out"
    assert run(STATS, repo, "--output", out, "--id", "object=0") == 0
    (out / "_datasets.yaml").write_text(
        "datasetTypes: !!python/object/apply:os.system ['touch /tmp/l3-pwned']\n")
    with pytest.raises(ButlerError, match="_datasets.yaml"):
        Butler(out)
    assert not Path("/tmp/l3-pwned").exists()


def test_serial_retry_resume_clobber_and_provenance(repo, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--output", out, "--id", "object=0..11", "--retries", "1", "--loglevel", "INFO",
            "-c", "fail_once=[3]",
            f"marker_dir={tmp_path}"]
    assert run(STATS, repo, *argv) == 0
    unit = report_units(out)["objectStats object=3"]
    assert unit["state"] == "done" and unit["attempts"] == 2
    meta = Butler(out).get("objectStats_metadata", object=3)
    info = meta["hpcpipe_unit"]
    assert info["cpuSeconds"] > 0 and info["maxRssBytes"] > 10_000_000
    assert info["end"] >= info["start"] and info["pid"] > 0
    assert info["inputs"] == [{"datasetType": "raw",
                               "dataId": {"visit": 1001, "filter": "g", "ccd": 1}}]
    assert [o["datasetType"] for o in meta["hpcpipe_outputs"]] == ["objectStats",
                                                                    "objectProfile"]
    log = Butler(out).get("objectStats_log", object=3)
    assert any(r["message"].startswith("object 3: mean") and r["level"] == "INFO" for r in log)
    # resume: nothing is redone
    before = metadata_times(out)
    assert len(before) == 12
    assert run(STATS, repo, *argv) == 0
    assert {u["state"] for u in report_units(out).values()} == {"skipped"}
    assert metadata_times(out) == before
    # --clobber-outputs redoes them
    assert run(STATS, repo, *argv, "--clobber-outputs") == 0
    assert {u["state"] for u in report_units(out).values()} == {"done"}
    assert all(metadata_times(out)[k] > v for k, v in before.items())
    # lineage: objectStats <- raw; the lineage of an output of a second task that lists
    # its units from the datasets of the first goes through it
    assert run("user_tasks:ObjectSummaryTask", repo, "--output", out, "--id") == 0
    assert Butler(out).get("objectSummary", object=5)["rounded"] > 0
    tree = trace(Butler(out), "objectSummary", {"object": 5})
    assert tree["task"] == "objectSummary"
    [stats] = tree["inputs"]
    assert (stats["datasetType"], stats["dataId"], stats["task"]) == ("objectStats",
                                                                      {"object": 5},
                                                                      "objectStats")
    [raw] = stats["inputs"]
    assert raw["datasetType"] == "raw" and raw["task"] is None
    assert raw["dataId"] == {"visit": 1000, "filter": "g", "ccd": 1}
    capsys.readouterr()
    assert main(["butler", "provenance", str(out), "objectSummary", "--id", "object=5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "objectSummary object=5  <- objectSummary"
    assert lines[1] == "  objectStats object=5  <- objectStats"
    assert lines[2].startswith("    raw ") and "visit=1000" in lines[2]


def test_versions_are_recorded_and_checked(repo, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(STATS, repo, "--output", out, "--id", "object=0") == 0
    packages = out / "packages.yaml"
    versions = yaml.safe_load(packages.read_text())
    assert versions["numpy"] and versions["python"] and versions["hpcpipe"]
    versions["numpy"] = "0.0.1"
    packages.write_text(yaml.safe_dump(versions))
    capsys.readouterr()
    assert run(STATS, repo, "--output", out, "--id", "object=1") == 2
    err = capsys.readouterr().err
    assert "numpy: 0.0.1 ->" in err and "--clobber-versions" in err
    assert not (out / "objectStats" / "objectStats_object1.yaml").exists()
    assert run(STATS, repo, "--output", out, "--id", "object=1", "--no-versions") == 0
    assert run(STATS, repo, "--output", out, "--id", "object=2", "--clobber-versions") == 0
    assert yaml.safe_load((out / "packages.yaml~1").read_text())["numpy"] == "0.0.1"
    assert yaml.safe_load(packages.read_text())["numpy"] != "0.0.1"


def test_id_file_and_j2_with_resume(repo, tmp_path, capsys):
    out = tmp_path / "out"
    ids = tmp_path / "ids.txt"
    ids.write_text("# my objects\nobject=1..3\n\nobject=10  # and one more\n")
    assert run(STATS, repo, "--output", out, "--id-file", ids, "-j", "2") == 0
    assert sorted(metadata_times(out)) == [f"object={i}.yaml" for i in (1, 10, 2, 3)]
    before = metadata_times(out)
    assert run(STATS, repo, "--output", out, "--id-file", ids, "--id", "object=4", "-j",
               "2") == 0
    after = metadata_times(out)
    assert set(after) == {*before, "object=4.yaml"}
    assert all(after[k] == v for k, v in before.items())
    bad = tmp_path / "bad.txt"
    bad.write_text("object=1\ncolour=red\n")
    capsys.readouterr()
    assert run(STATS, repo, "--output", out, "--id-file", bad) == 2
    assert "bad.txt line 2" in capsys.readouterr().err


# --- under mpirun -n 3 ------------------------------------------------------------------------

def test_1000_units_under_mpirun_killed_resumed_with_a_retry(repo, tmp_path, capsys):
    """The issue's "done when": 1,000 units of a user's task with two dataset types of its
    own under `mpirun -n 3`; the job is killed midway and resumed with nothing redone; one
    unit fails once and is done on its retry; `butler describe` lists the types and
    `butler provenance` traces an output to its raw. Every run is bounded."""
    out = tmp_path / "out"
    command = [*require_mpirun(3), sys.executable, "-m", "hpcpipe", "run", STATS, str(repo),
               "--output", str(out), "--id", "object=0..999", "--retries", "1",
               "--loglevel", "WARNING", "-c", "fail_once=[990]", f"marker_dir={tmp_path}",
               "sleep=0.01"]
    first = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    metadata = out / "metadata" / "objectStats"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and first.poll() is None:
            if metadata.is_dir() and len(os.listdir(metadata)) >= 150:
                break
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended before it could be killed"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # mpirun and its ranks
        first.wait(timeout=60)
    time.sleep(1.0)
    done_before = metadata_times(out)
    assert 150 <= len(done_before) < 1000
    second = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    units = report_units(out)
    assert len(units) == 1000
    skipped = {k for k, u in units.items() if u["state"] == "skipped"}
    assert skipped == {f"objectStats object={name[7:-5]}" for name in done_before}
    assert all(u["state"] == "done" for k, u in units.items() if k not in skipped)
    after = metadata_times(out)
    assert len(after) == 1000
    assert all(after[k] == v for k, v in done_before.items())  # nothing redone
    retried = units["objectStats object=990"]
    assert retried["state"] == "done" and retried["attempts"] == 2
    assert {u["rank"] for k, u in units.items() if k not in skipped} == {1, 2}
    butler = Butler(out)
    assert butler.get("objectStats", object=999)["visit"] == 1001
    capsys.readouterr()
    assert main(["butler", "describe", str(out)]) == 0
    text = capsys.readouterr().out
    assert "`objectStats`" in text and "`objectProfile`" in text
    assert main(["butler", "provenance", str(out), "objectProfile", "--id", "object=990"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "objectProfile object=990  <- objectStats"
    assert lines[1].startswith("  raw ") and "visit=1001" in lines[1] and "ccd=0" in lines[1]
    # the lineage of units done by the killed run (whose stage never ended) was recorded
    # from their metadata by the resumed run
    for name in sorted(done_before)[:20]:
        obj = int(name[7:-5])
        tree = trace(butler, "objectStats", {"object": obj})
        assert tree["task"] == "objectStats"
        assert [i["datasetType"] for i in tree["inputs"]] == ["raw"]
        assert tree["inputs"][0]["dataId"]["ccd"] == obj % 2


def test_a_user_step_appended_to_a_production(repo, tmp_path, capsys):
    """`hpcpipe drp --add-step`: the user's task runs as a step of the production, in the
    same job, on the production's fresh outputs; its lineage goes through them."""
    out = tmp_path / "out"
    argv = ["drp", str(repo), "--output", str(out), "--id", "--production",
            "production_tasks:TOY", "--add-step", "user_tasks:CcdStatsTask",
            "--steps", "toyIsr,ccdStats"]
    assert main(argv) == 0
    butler = Butler(out)
    assert butler.get("ccdStats", visit=1001, ccd=1)["median"] == pytest.approx(
        float(__import__("numpy").median(butler.get("postISRCCD", visit=1001,
                                                    ccd=1).image.array)))
    units = report_units(out)
    assert {k for k in units if k.startswith("ccdStats")} == {
        f"ccdStats visit={v} ccd={c}" for v in (1000, 1001) for c in (0, 1)}
    capsys.readouterr()
    assert main(["butler", "provenance", str(out), "ccdStats", "--id", "visit=1001",
                 "ccd=1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ccdStats ccd=1 filter=g visit=1001  <- ccdStats"
    assert lines[1] == "  postISRCCD ccd=1 filter=g visit=1001  <- toyIsr"
    assert lines[2].startswith("    raw ccd=1 filter=g visit=1001")
    assert main([*argv[:-2], "--add-step", "user_tasks:NoSuchTask"]) == 2
    assert "--add-step" in capsys.readouterr().err


def test_timeout_fails_a_unit_that_runs_too_long(repo, tmp_path):
    out = tmp_path / "out"
    assert run(STATS, repo, "--output", out, "--id", "object=0^1", "--timeout", "1", "-c",
               "sleep=4") == 2
    units = report_units(out)
    assert {u["state"] for u in units.values()} == {"failed"}
    assert all("1" in u["error"] and "time" in u["error"].lower() for u in units.values())
    assert not (out / "metadata" / "objectStats").exists()


FIRST_WRITERS = """
import sys
from pathlib import Path
from hpcpipe.butler.provenance import ProvenanceTable

path, k, start = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
import time
time.sleep(max(start - time.time(), 0.0))  # every process opens the new database at once
table = ProvenanceTable(path, busy_timeout=60.0)
for n in range(20):
    table.record("objectStats", [("objectStats", {"object": 100 * k + n})],
                 [("raw", {"visit": k, "ccd": n})], unit=f"objectStats object={100 * k + n}")
"""


def test_first_writers_of_a_new_lineage_table_wait_for_each_other(tmp_path):
    """Several processes writing the lineage of their first units into a database that does
    not exist yet (the -j N workers): none fails with "database is locked"."""
    from hpcpipe.butler.provenance import ProvenanceTable

    path = tmp_path / "provenance.sqlite3"
    start = time.time() + 1.0
    children = [subprocess.Popen([sys.executable, "-c", FIRST_WRITERS, str(path), str(k),
                                  str(start)], env=subprocess_env(), stderr=subprocess.PIPE,
                                 text=True) for k in range(6)]
    errors = [child.communicate(timeout=120)[1] for child in children]
    assert [child.returncode for child in children] == [0] * 6, errors
    assert len(ProvenanceTable(path).recorded_units()) == 6 * 20
