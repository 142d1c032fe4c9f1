"""`hpcpipe drp`: the unit graph, dependency order without barriers, failures, resume, configs.

The toy production of tests/production_tasks.py runs on a small simulated repository (two
visits per filter in g and r, two 64x64 CCDs): 8 toyIsr units, one toySkyMap, 4 toyCoadd
(2 patches x 2 filters) and 2 toyMerge. The same checks run serially and under mpirun; the
crash test kills a worker of an `mpirun -n 3` job with SIGKILL, from a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpi_helpers import mpirun_command, on_root, shared_dir, subprocess_env

from hpcpipe.butler import Butler
from hpcpipe.cli import main
from hpcpipe.comm.world import World
from hpcpipe.drivers.production import Production, ProductionError, ProductionStep
from hpcpipe.drivers.unitgraph import plan_stages

PRODUCTION = "production_tasks:TOY"
TESTS = Path(__file__).resolve().parent
VISITS = {"g": (1000, 1001), "r": (1100, 1101)}
CCDS = (0, 1)
PATCHES = ("0,0", "1,0")


def simulate(path: Path) -> Path:
    assert main(["simulate", str(path), "--visits", "2", "--ccds", "2", "--filters", "g,r",
                 "--size", "64", "--seed", "3"]) == 0
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("drp") / "repo")


def drp(repo, out, *argv, report=None):
    args = ["drp", str(repo), "--output", str(out), "--production", PRODUCTION,
            "--report", str(report or Path(out).parent / f"{Path(out).name}-report"),
            *map(str, argv)]
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


def units(out, report=None):
    """The report's units by key."""
    path = Path(report or Path(out).parent / f"{Path(out).name}-report") / "report.json"
    return {u["key"]: u for u in json.loads(path.read_text())["units"]}


def states(records, step=None):
    return {k: u["state"] for k, u in records.items() if step is None or u["job"] == step}


def isr_key(visit, ccd):
    return f"toyIsr visit={visit} ccd={ccd}"


def coadd_key(patch, band):
    return f"toyCoadd tract=0 patch={patch} filter={band}"


ALL_KEYS = ({isr_key(v, c) for vs in VISITS.values() for v in vs for c in CCDS}
            | {coadd_key(p, b) for p in PATCHES for b in VISITS}
            | {f"toyMerge tract=0 patch={p}" for p in PATCHES} | {"toySkyMap"})


def dataset_arrays(out):
    """Every output of the toy production, as arrays (pixels or catalog rows)."""
    butler = Butler(out)
    arrays = {}
    for band, visits in VISITS.items():
        for visit in visits:
            for ccd in CCDS:
                arrays[("postISRCCD", visit, ccd)] = butler.get(
                    "postISRCCD", visit=visit, ccd=ccd).image.array
        for patch in PATCHES:
            arrays[("deepCoadd", patch, band)] = butler.get(
                "deepCoadd", tract=0, patch=patch, filter=band).image.array
    for patch in PATCHES:
        catalog = butler.get("deepCoadd_ref", tract=0, patch=patch)
        arrays[("deepCoadd_ref", patch)] = np.column_stack(
            [catalog[name] for name in ("filter_index", "mean", "total")])
    return arrays


def assert_same_outputs(a, b):
    first, second = dataset_arrays(a), dataset_arrays(b)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=str(key))


# --- checks run serially and under MPI ------------------------------------------------------
def check_full_run_then_resume(repo, tmp):
    out = tmp / "out"
    code = drp(repo, out, "--id")
    records = units(out) if World().rank == 0 else {}

    def check():
        assert code == 0
        assert set(records) == ALL_KEYS
        assert set(states(records).values()) == {"done"}
        butler = Butler(out)
        assert butler.get("toyCoadd_metadata", tract=0, patch="1,0",
                          filter="r")["toyCoadd"]["nInputs"] == 2
        # every config is in the output repository before the first unit started
        first_start = min(u["start"] for u in records.values())
        for step in ("toyIsr", "toySkyMap", "toyCoadd", "toyMerge"):
            assert (out / "config" / f"{step}.yaml").stat().st_mtime <= first_start
        # the sky map is made first, on its own; coadds of one filter wait for its visits
        sky_end = records["toySkyMap"]["end"]
        for key, unit in records.items():
            if key != "toySkyMap":
                assert unit["start"] >= sky_end
        for band, visits in VISITS.items():
            for ccd, patch in zip(CCDS, PATCHES):  # patch "c,0" averages CCD c
                ends = [records[isr_key(v, ccd)]["end"] for v in visits]
                assert records[coadd_key(patch, band)]["start"] >= max(ends)
        assert (tmp / "out-report" / "timeline.png").stat().st_size > 0
    on_root(World(), check)
    # a second run finds everything done
    code = drp(repo, out, "--id")
    records = units(out) if World().rank == 0 else {}

    def check_resumed():
        assert code == 0
        assert set(states(records).values()) == {"skipped"}
    on_root(World(), check_resumed)


def check_no_barrier_between_steps(repo, tmp):
    out = tmp / "slow"
    code = drp(repo, out, "--id", "-c", "toyIsr.slow_filter=r", "toyIsr.sleep=0.4")
    records = units(out) if World().rank == 0 else {}

    def check():
        assert code == 0
        r_isr_end = max(records[isr_key(v, c)]["end"] for v in VISITS["r"] for c in CCDS)
        g_coadd_start = min(records[coadd_key(p, "g")]["start"] for p in PATCHES)
        # a g coadd starts while r visits are still being processed: no step barrier
        assert g_coadd_start < r_isr_end
        if World().size > 2:
            # the 8 toyIsr units start at once, on as many workers as there are (up to 8)
            assert len({u["rank"] for u in records.values()}) >= min(World().size - 1, 8)
    on_root(World(), check)


def check_failures_block_descendants_then_resume(repo, tmp):
    out = tmp / "fail"
    code = drp(repo, out, "--id", "-c", "toyIsr.fail_visits=[1001]")
    first = units(out) if World().rank == 0 else {}

    def check():
        assert code == 2  # visit 1001 on two CCDs
        failed = {k for k, s in states(first).items() if s == "failed"}
        blocked = {k for k, s in states(first).items() if s == "blocked"}
        assert failed == {isr_key(1001, 0), isr_key(1001, 1)}
        assert blocked == {coadd_key(p, "g") for p in PATCHES} | {
            f"toyMerge tract=0 patch={p}" for p in PATCHES}
        assert all("fails on purpose" in first[k]["error"] for k in failed)
        assert all(first[k]["traceback"] and first[k]["host"] for k in failed)
        assert all("failed" in first[k]["error"] for k in blocked)
        assert states(first, "toyCoadd")[coadd_key("0,0", "r")] == "done"
        assert Butler(out).datasetExists("deepCoadd", tract=0, patch="0,0", filter="r")
    on_root(World(), check)
    # the cause fixed: only the failed and blocked units run
    code = drp(repo, out, "--id", "-c", "toyIsr.fail_visits=[]", "--clobber-config")
    second = units(out) if World().rank == 0 else {}

    def check_resumed():
        assert code == 0
        ran = {k for k, s in states(second).items() if s == "done"}
        assert ran == {k for k, s in states(first).items() if s in ("failed", "blocked")}
        assert {s for k, s in states(second).items() if k not in ran} == {"skipped"}
    on_root(World(), check_resumed)
    # --clobber-outputs redoes everything
    code = drp(repo, out, "--id", "--clobber-outputs")
    third = units(out) if World().rank == 0 else {}

    def check_clobbered():
        assert code == 0
        assert set(states(third).values()) == {"done"}
    on_root(World(), check_clobbered)


def check_doraise_stops(repo, tmp):
    out = tmp / "doraise"
    code = drp(repo, out, "--id", "-c", "toyIsr.fail_visits=[1000]", "--doraise")
    records = units(out) if World().rank == 0 else {}

    def check():
        counts = list(states(records).values())
        # units already running when the first failed finish (2 workers may fail at once)
        assert code == counts.count("failed") >= 1
        assert "pending" in counts  # the rest never ran
        assert "done" not in states(records, "toyMerge").values()
    on_root(World(), check)


CHECKS = [check_full_run_then_resume, check_no_barrier_between_steps,
          check_failures_block_descendants_then_resume, check_doraise_stops]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_drp_serial(check, repo, tmp_path):
    check(repo, tmp_path)


@pytest.fixture(scope="module")
def mpi_repo(tmp_path_factory):
    world = World()
    return simulate(Path(shared_dir(world, tmp_path_factory, "drp-mpi")) / "repo")


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_drp_mpi(check, mpi_repo, tmp_path_factory):
    world = World()
    check(mpi_repo, Path(shared_dir(world, tmp_path_factory, check.__name__)))


# --- serial only ----------------------------------------------------------------------------
def test_selection_by_id_and_steps(repo, tmp_path):
    out = tmp_path / "sel"
    assert drp(repo, out, "--id", "visit=1000") == 0
    records = units(out)
    assert set(states(records, "toyIsr")) == {isr_key(1000, 0), isr_key(1000, 1)}
    assert set(states(records, "toyCoadd")) == {coadd_key(p, "g") for p in PATCHES}
    out = tmp_path / "sel2"
    assert drp(repo, out, "--id", "filter=r", "patch=1,0", "--steps", "toyIsr,toySkyMap,toyCoadd"
               ) == 0
    records = units(out)
    assert set(states(records, "toyIsr")) == {isr_key(v, c) for v in VISITS["r"] for c in CCDS}
    assert set(states(records, "toyCoadd")) == {coadd_key("1,0", "r")}
    assert not states(records, "toyMerge")


def test_timeout_and_retries(repo, tmp_path):
    out = tmp_path / "slow"
    assert drp(repo, out, "--id", "filter=r", "--steps", "toyIsr", "--timeout", "0.2",
               "--retries", "1", "-c", "toyIsr.slow_filter=r", "toyIsr.sleep=5") == 4
    records = units(out)
    assert {u["state"] for u in records.values()} == {"failed"}
    assert all("timeout" in u["error"] and u["attempts"] == 2 for u in records.values())


def test_config_refused_when_different_then_clobbered(repo, tmp_path, capsys):
    out = tmp_path / "cfg"
    assert drp(repo, out, "--id", "visit=1000", "ccd=0", "--steps", "toyIsr") == 0
    meta = out / "metadata" / "toyIsr" / "visit=1000" / "ccd=0.yaml"
    before = meta.stat().st_mtime_ns
    capsys.readouterr()
    assert drp(repo, out, "--id", "visit=1000", "ccd=0", "--steps", "toyIsr", "--clobber-outputs",
               "-c", "toyIsr.scale=2.0") == 2
    err = capsys.readouterr().err
    assert "toyIsr" in err and "scale" in err and "--clobber-config" in err
    assert meta.stat().st_mtime_ns == before  # nothing ran
    assert drp(repo, out, "--id", "visit=1000", "ccd=0", "--steps", "toyIsr", "--clobber-outputs",
               "-c", "toyIsr.scale=2.0", "--clobber-config") == 0
    assert Butler(out).get("toyIsr_config").scale == 2.0
    assert (out / "config" / "toyIsr.yaml~1").exists()


def test_config_file_override(repo, tmp_path):
    overrides = tmp_path / "drp_overrides.py"
    overrides.write_text("config.toyIsr.scale = 3.0\nconfig.toyMerge.filters = ['r']\n")
    out = tmp_path / "file"
    assert drp(repo, out, "--id", "visit=1100", "-C", overrides) == 0
    butler = Butler(out)
    assert butler.get("toyIsr_config").scale == 3.0
    assert list(butler.get("toyMerge_config").filters) == ["r"]


@pytest.mark.parametrize("argv, word", [
    (["--id", "--steps", "toyIsr,nope"], "--steps"),
    (["--id", "visit=99"], "visit=99"),
    (["--id", "colour=red"], "colour"),
    (["--id", "-c", "nosuch.scale=1"], "nosuch"),
    (["--id", "-c", "toyIsr.nosuch=1"], "nosuch"),
    (["--id", "--retries", "-1"], "--retries"),
    (["--id", "--timeout", "0"], "--timeout"),
    (["--id", "-j", "2"], "-j"),
    ([], "--id"),
])
def test_usage_errors_exit_2(repo, tmp_path, argv, word, capsys):
    assert drp(repo, tmp_path / "out", *argv) == 2
    assert word in capsys.readouterr().err
    assert not (tmp_path / "out" / "metadata").exists()


def test_unknown_production_and_repository(repo, tmp_path, capsys):
    assert main(["drp", str(repo), "--id", "--production", "no_such_module:X"]) == 2
    assert "--production" in capsys.readouterr().err
    assert main(["drp", str(tmp_path / "nothing"), "--id"]) == 2
    assert "REPO" in capsys.readouterr().err


def test_submit_writes_configs_before_submitting(repo, tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/bash\necho "$@" > {bin_dir}/sbatch.args\n'
                                    'echo "Submitted batch job 42"\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    out = tmp_path / "out"
    submit = ["submit", "--batch-type", "slurm", "--time", "10", "--batch-output",
              str(tmp_path / "batch"), "drp", str(repo), "--output", str(out), "--id",
              "--production", PRODUCTION]
    assert main(["submit", "--dry-run", *submit[1:]]) == 0
    assert not (out / "config").exists()  # a dry run writes nothing
    assert main(submit) == 0
    assert (bin_dir / "sbatch.args").exists()
    assert Butler(out).get("toyIsr_config").scale == 1.0
    (bin_dir / "sbatch.args").unlink()
    capsys.readouterr()
    assert main([*submit, "-c", "toyIsr.scale=5"]) == 2
    assert "--clobber-config" in capsys.readouterr().err
    assert not (bin_dir / "sbatch.args").exists()  # refused before submission


def test_plan_stages_and_bad_declarations():
    from production_tasks import STEPS, TOY, ToyIsrTask

    assert [[s.name for s in stage] for stage in plan_stages(TOY.steps)] == [
        ["toySkyMap"], ["toyIsr", "toyCoadd", "toyMerge"]]
    assert [[s.name for s in stage] for stage in plan_stages(TOY.select(["toyIsr"]))] == [
        ["toyIsr"]]
    with pytest.raises(ProductionError, match="not an earlier step"):
        Production("bad", [STEPS[2], STEPS[0], STEPS[1]])
    with pytest.raises(ProductionError, match="named 'toyIsr'"):
        ProductionStep("isr", ToyIsrTask, ("visit", "ccd"))
    with pytest.raises(ProductionError, match="no step 'nope'"):
        TOY.select(["nope"])


# --- the crash test --------------------------------------------------------------------------
@pytest.mark.slow
def test_killed_worker_then_rerun_gives_the_undisturbed_outputs(repo, tmp_path):
    mpirun = mpirun_command(3)
    if mpirun is None:
        pytest.skip("no mpirun")
    reference = tmp_path / "reference"
    assert drp(repo, reference, "--id") == 0
    marker = tmp_path / "crash-now"
    marker.touch()
    out = tmp_path / "crashed"
    command = [*mpirun, sys.executable, "-m", "hpcpipe", "drp", str(repo), "--output", str(out),
               "--id", "--production", PRODUCTION, "--report", str(tmp_path / "report"),
               "-c", f"toyIsr.crash_file={marker}", "toyIsr.crash_visit=1100",
               "toyIsr.crash_ccd=1"]
    first = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True,
                           timeout=300)
    assert first.returncode != 0, first.stdout + first.stderr
    butler = Butler(out)
    assert not butler.datasetExists("toyIsr_metadata", visit=1100, ccd=1)
    assert not butler.datasetExists("toyMerge_metadata", tract=0, patch="1,0")
    done_before = {(v, c) for vs in VISITS.values() for v in vs for c in CCDS
                   if butler.datasetExists("toyIsr_metadata", visit=v, ccd=c)}
    marker.unlink()  # the cause of the crash is gone: the same command completes
    second = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    records = units(out, tmp_path / "report")
    assert set(records) == ALL_KEYS
    skipped = {k for k, s in states(records).items() if s == "skipped"}
    assert skipped >= {isr_key(v, c) for v, c in done_before} and skipped
    assert states(records)[isr_key(1100, 1)] == "done"
    assert_same_outputs(reference, out)


@pytest.mark.slow
def test_one_rank_under_mpirun_runs_the_whole_production(repo, tmp_path):
    """``mpirun -n 1``: the master does the work itself, with the same outputs."""
    mpirun = mpirun_command(1)
    if mpirun is None:
        pytest.skip("no mpirun")
    reference = tmp_path / "reference"
    assert drp(repo, reference, "--id") == 0
    out = tmp_path / "one-rank"
    command = [*mpirun, sys.executable, "-m", "hpcpipe", "drp", str(repo), "--output", str(out),
               "--id", "--production", PRODUCTION, "--report", str(tmp_path / "report")]
    run = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    records = units(out, tmp_path / "report")
    assert set(records) == ALL_KEYS
    assert set(states(records).values()) == {"done"}
    assert_same_outputs(reference, out)


def test_show_data_lists_units_without_running(repo, tmp_path, capsys):
    out = tmp_path / "show"
    capsys.readouterr()
    assert drp(repo, out, "--id", "visit=1000", "--show", "data") == 0
    printed = capsys.readouterr().out.splitlines()
    assert isr_key(1000, 0) in printed and isr_key(1000, 1) in printed
    assert any(line.startswith("toyCoadd: units listed when") for line in printed)
    assert not (out / "metadata").exists() and not (out / "config").exists()
