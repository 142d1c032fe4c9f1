"""Run pytest on every MPI rank; rank 0 prints to the terminal, the others to log files.

Usage: mpirun -n N python scripts/mpi_pytest.py LOGDIR [pytest arguments...]
Every rank runs the same tests (pytest-mpi's model); the exit status is the worst rank's.
"""

from __future__ import annotations

import faulthandler
import os
import sys

import pytest
from mpi4py import MPI


def main() -> int:
    logdir, args = sys.argv[1], sys.argv[2:]
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    # each rank its own pytest temporary directory: pytest's clean-up of old numbered
    # directories must not remove one that another rank is using
    args = [f"--basetemp={os.path.join(logdir, f'tmp-rank-{rank}')}", *args]
    if rank != 0:
        log = open(os.path.join(logdir, f"rank-{rank}.log"), "w")  # noqa: SIM115
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        args = ["-q", *args]
    # A test that fails on one rank only can leave the others waiting in a collective call
    # for ever: after HPCPIPE_MPI_TEST_TIMEOUT seconds, print every thread's stack and exit.
    faulthandler.dump_traceback_later(float(os.environ.get("HPCPIPE_MPI_TEST_TIMEOUT", 900)),
                                      exit=True)
    code = int(pytest.main(args))
    faulthandler.cancel_dump_traceback_later()
    sys.stdout.flush()
    worst = comm.allreduce(code, op=MPI.MAX)
    return worst


if __name__ == "__main__":
    sys.exit(main())
