"""The master-worker pool, serially (one process) and under mpirun (-n 2 and -n 3).

Each behaviour is written once as a ``check_*`` function run through ``Pool.run`` on every
rank, then collected twice: as a serial test and as an MPI test.
"""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pytest

from hpcpipe.comm.pool import LaunchError, Pool, check_launch
from hpcpipe.comm.records import UnitError, UnitFailure
from hpcpipe.comm.world import World


# --- unit functions (module level, so that workers can unpickle them) -------------------------
def square(cache, unit):
    return unit * unit


def where_am_i(cache, unit):
    return (unit, World().rank)


def fail_on_odd(cache, unit):
    if unit % 2:
        raise ValueError(f"unit {unit} is odd")
    return unit


def fail_first_attempt(cache, unit, directory):
    """Fails the first attempt at a unit (whichever rank makes it); a retry succeeds."""
    marker = os.path.join(directory, f"attempted-{unit}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"first attempt of {unit} on rank {World().rank}")
    return unit


def sleepy(cache, unit):
    time.sleep(unit)
    return unit


def big_array(cache, unit):
    return np.full((4096, 2048), unit, dtype=np.float64)  # 64 MiB


def read_shared(cache, unit, offset):
    return cache.skymap_name, cache.factor * unit + offset


def remember(cache, unit):
    cache.__dict__.setdefault("held", {})[unit] = np.arange(unit + 1)
    return World().rank


def use_remembered(cache, unit):
    held = cache.__dict__.get("held", {})
    return (World().rank, unit in held and held[unit].size == unit + 1)


# --- behaviours ----------------------------------------------------------------------------------
def run_everywhere(main, **kwargs):
    """Run ``main`` through a pool on every rank; the master's value (None on workers)."""
    return Pool(World(), **kwargs).run(main)


def check_map_in_order():
    def main(pool):
        for mode in ("dynamic", "static", "previous"):
            assert pool.map(square, range(50), mode=mode) == [i * i for i in range(50)]
        located = pool.map(where_am_i, range(40), mode="static")
        ranks = {rank for _unit, rank in located}
        expected = {0} if pool.world.size == 1 else set(range(1, pool.world.size))
        assert ranks == expected, ranks
        assert all(r.state == "done" for r in pool.records)
        return "ok"

    assert run_everywhere(main) in ("ok", None)


def check_failures_recorded_and_others_go_on():
    def main(pool):
        results = pool.map(fail_on_odd, range(10), keys=[f"visit={i}" for i in range(10)])
        assert [r for r in results if not isinstance(r, UnitFailure)] == [0, 2, 4, 6, 8]
        failed = [r for r in results if isinstance(r, UnitFailure)]
        assert [f.key for f in failed] == [f"visit={i}" for i in (1, 3, 5, 7, 9)]
        for f in failed:
            assert "ValueError: unit" in f.error and "fail_on_odd" in f.traceback
            assert f.host and f.rank == (0 if pool.world.size == 1 else f.rank)
            assert not f
        assert len(pool.failures()) == 5
        return "ok"

    run_everywhere(main)


def check_retries_elsewhere():
    def main(pool):
        import tempfile

        with tempfile.TemporaryDirectory() as directory:
            results = pool.map(fail_first_attempt, range(6), directory)
        assert results == list(range(6))
        for rec in pool.records:
            assert rec.attempts == 2 and rec.state == "done"
            if pool.world.size > 2:  # another worker was free: the retry went there
                assert rec.rank not in rec.excluded_ranks
        return "ok"

    run_everywhere(main, retries=1)


def check_doraise_stops_cleanly():
    def main(pool):
        with pytest.raises(UnitError, match="unit 3 failed"):
            pool.map(fail_on_odd, [0, 2, 3, 4])
        return "ok"

    run_everywhere(main, doraise=True)


def check_timeout_fails_hung_unit():
    def main(pool):
        results = pool.map(sleepy, [0.0, 5.0, 0.01])
        assert results[0] == 0.0 and results[2] == 0.01
        assert isinstance(results[1], UnitFailure)
        assert "timeout" in results[1].error
        assert pool.records[1].seconds < 3.0
        return "ok"

    run_everywhere(main, timeout=0.5)


def check_large_arrays_and_shared_state():
    def main(pool):
        arrays = pool.map(big_array, [1.0, 2.0])
        assert [a.shape for a in arrays] == [(4096, 2048)] * 2
        assert arrays[1][-1, -1] == 2.0 and arrays[0].sum() == 4096 * 2048
        pool.store(skymap_name="rings-120", factor=3)
        assert pool.map(read_shared, [1, 2], 10) == [("rings-120", 13), ("rings-120", 16)]
        # an item that cannot be pickled fails on the master; the workers are not left
        # waiting in a broadcast, and the pool goes on with its old state
        with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
            pool.store(skymap_name="lost", factor=lambda: 0)
        assert pool.map(read_shared, [1, 2], 10) == [("rings-120", 13), ("rings-120", 16)]
        return "ok"

    run_everywhere(main)


def check_cache_affinity():
    def main(pool):
        first = pool.map(remember, range(12), keys=[f"patch{i}" for i in range(12)])
        second = pool.map(use_remembered, range(12), keys=[f"patch{i}" for i in range(12)],
                          mode="previous")
        assert [rank for rank, _ in second] == first
        assert all(held for _, held in second)
        return "ok"

    run_everywhere(main)


def check_many_fast_units_are_chunked():
    def main(pool):
        start = time.perf_counter()
        assert pool.map(square, range(20000)) == [i * i for i in range(20000)]
        assert time.perf_counter() - start < 30.0  # one message per unit would still pass;
        return "ok"                                 # the benchmark measures the real rate

    run_everywhere(main)


def test_worker_methods_are_master_only():
    pool = Pool(World())
    pool.close()
    with pytest.raises(RuntimeError, match="closed pool"):
        pool.map(square, [1])
    with pytest.raises(ValueError, match="mode"):
        Pool(World()).map(square, [1], mode="round-robin")


def test_check_launch_catches_srun_without_pmi():
    world = World()
    check_launch(world, {})  # not under SLURM
    check_launch(world, {"SLURM_JOB_ID": "1", "SLURM_NTASKS": str(world.size)})
    with pytest.raises(LaunchError, match="SLURM asked for 4 tasks"):
        check_launch(world, {"SLURM_JOB_ID": "1", "SLURM_NTASKS": "4"})


# --- dependency graphs -----------------------------------------------------------------------
def visit_step(cache, visit):
    if visit == 3:
        raise RuntimeError("no stars on visit 3")
    time.sleep(0.01)
    return ("calexp", visit, time.time())


def patch_step(cache, patch):
    return ("coadd", patch, time.time())


def graph_nodes():
    """Visits 0..5, then patch A needs visits 0-2 and patch B visits 2-5 (3 fails)."""
    nodes = [(visit_step, v) for v in range(6)] + [(patch_step, "A"), (patch_step, "B"),
                                                     (patch_step, "AB")]
    deps = [[] for _ in range(6)] + [[0, 1, 2], [2, 3, 4, 5], [6, 7]]
    keys = [f"visit={v}" for v in range(6)] + ["patch=A", "patch=B", "patch=AB"]
    return nodes, deps, keys


def check_graph_runs_in_dependency_order():
    def main(pool):
        nodes, deps, keys = graph_nodes()
        results = pool.map_graph(nodes, deps, keys=keys, name="drp")
        assert [r[1] for r in results[:3]] == [0, 1, 2]
        assert isinstance(results[3], UnitFailure)
        assert results[6][0] == "coadd" and results[6][2] >= max(r[2] for r in results[:3])
        blocked = {r.key: r for r in pool.records if r.state == "blocked"}
        assert sorted(blocked) == ["patch=AB", "patch=B"]  # a descendant of a failure
        assert "visit=3" in blocked["patch=B"].error
        assert isinstance(results[7], UnitFailure) and isinstance(results[8], UnitFailure)
        return "ok"

    run_everywhere(main)


def check_graph_resume_skips_done_units():
    def main(pool):
        nodes, deps, keys = graph_nodes()
        results = pool.map_graph(nodes, deps, keys=keys, skip=[0, 1, 2, 3])
        states = {r.key: r.state for r in pool.records}
        assert states["visit=3"] == "skipped" and states["visit=0"] == "skipped"
        assert states["patch=A"] == states["patch=B"] == states["patch=AB"] == "done"
        assert results[0] is None and results[8][1] == "AB"
        return "ok"

    run_everywhere(main)




def test_graph_cycles_and_bad_dependencies_are_refused():
    pool = Pool(World())
    with pytest.raises(ValueError, match="cycle"):
        pool.map_graph([(square, 1), (square, 2)], [[1], [0]])
    with pytest.raises(ValueError, match="dependency 5"):
        pool.map_graph([(square, 1)], [[5]])


CHECKS = [check_map_in_order, check_failures_recorded_and_others_go_on, check_retries_elsewhere,
          check_doraise_stops_cleanly, check_timeout_fails_hung_unit,
          check_large_arrays_and_shared_state, check_cache_affinity,
          check_many_fast_units_are_chunked, check_graph_runs_in_dependency_order,
          check_graph_resume_skips_done_units]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_pool_serial(check):
    check()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_pool_mpi(check):
    check()
