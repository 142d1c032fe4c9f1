"""Units per second the master hands out, beside mpi4py.futures, on the same ranks, same run.

Usage: mpirun -n 3 python perf/bench_dispatch.py [--units 200000] [--repeat 3]

Empty units measure the dispatch machinery alone. The peer is mpi4py.futures' executor
running inside the launched world (``MPICommExecutor``: the same master-worker code as
``MPIPoolExecutor``, without spawning), at chunksize 1 and 100. Our pool picks its chunk size
itself. Ratios above 1 mean our pool dispatches faster. The machine may be shared: compare
ratios, not absolute rates.
"""

from __future__ import annotations

import argparse
import time

from mpi4py import MPI
from mpi4py.futures import MPICommExecutor

from hpcpipe.comm.pool import Pool
from hpcpipe.comm.world import World


def empty_unit(cache, unit):
    return unit


def empty_task(unit):
    return unit


def time_pool(units: int, repeat: int) -> float | None:
    """Best units per second of our pool (on the master; None on workers)."""

    def main(pool: Pool) -> float:
        best = 0.0
        for _ in range(repeat):
            start = time.perf_counter()
            results = pool.map(empty_unit, range(units))
            rate = units / (time.perf_counter() - start)
            assert results[-1] == units - 1
            best = max(best, rate)
        return best

    return Pool(World()).run(main)


def time_futures(units: int, chunksize: int, repeat: int) -> float | None:
    best = 0.0
    with MPICommExecutor(MPI.COMM_WORLD, root=0) as executor:
        if executor is None:  # a worker: it served the master until the context closed
            return None
        for _ in range(repeat):
            start = time.perf_counter()
            results = list(executor.map(empty_task, range(units), chunksize=chunksize))
            rate = units / (time.perf_counter() - start)
            assert results[-1] == units - 1
            best = max(best, rate)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=200_000, help="units per map (200000)")
    parser.add_argument("--futures-units", type=int, default=20_000,
                        help="units per map for mpi4py.futures at chunksize 1 (20000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best counts (3)")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2:
        raise SystemExit("run under mpirun with at least 2 ranks: the master and a worker")
    ours = time_pool(args.units, args.repeat)
    peer1 = time_futures(args.futures_units, 1, args.repeat)
    peer100 = time_futures(args.units, 100, args.repeat)
    if comm.Get_rank() == 0:
        assert ours is not None and peer1 is not None and peer100 is not None
        print(f"ranks: {comm.Get_size()} (1 master, {comm.Get_size() - 1} workers); empty units")
        print(f"{'dispatcher':<40} {'units/s':>12} {'ours/peer':>10}")
        print(f"{'hpcpipe Pool.map (automatic chunks)':<40} {ours:12,.0f} {'':>10}")
        print(f"{'mpi4py.futures chunksize=1':<40} {peer1:12,.0f} {ours / peer1:10.1f}")
        print(f"{'mpi4py.futures chunksize=100':<40} {peer100:12,.0f} {ours / peer100:10.1f}")


if __name__ == "__main__":
    main()
