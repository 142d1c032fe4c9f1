"""The ranks a run was launched with, or a single process when there is no MPI.

hpcpipe code talks to :class:`World` rather than to ``MPI.COMM_WORLD`` directly, so that the
same code runs under ``mpiexec``/``srun`` and as a plain serial process (mpi4py missing, or
``HPCPIPE_NO_MPI=1``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["World"]


class World:
    """A communicator with the few collective operations hpcpipe needs.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The communicator (default ``MPI.COMM_WORLD``, or none at all without MPI).
    """

    def __init__(self, comm: Any = None) -> None:
        if comm is None and os.environ.get("HPCPIPE_NO_MPI") != "1":
            try:
                # start-up cost: importing mpi4py.MPI initialises MPI; only where MPI is used
                from mpi4py import MPI
            except ImportError:
                comm = None
            else:
                comm = MPI.COMM_WORLD
        self.comm = comm

    @property
    def rank(self) -> int:
        """This process's rank (0 without MPI)."""
        return 0 if self.comm is None else self.comm.Get_rank()

    @property
    def size(self) -> int:
        """The number of ranks (1 without MPI)."""
        return 1 if self.comm is None else self.comm.Get_size()

    @property
    def is_parallel(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.comm is not None:
            self.comm.Barrier()

    def bcast(self, value: Any, root: int = 0) -> Any:
        return value if self.comm is None else self.comm.bcast(value, root=root)

    def gather(self, value: Any, root: int = 0) -> list[Any] | None:
        """Every rank's value, in rank order, on ``root`` (None elsewhere)."""
        return [value] if self.comm is None else self.comm.gather(value, root=root)

    def allgather(self, value: Any) -> list[Any]:
        return [value] if self.comm is None else self.comm.allgather(value)

    def allreduce(self, value: Any, op: str = "sum") -> Any:
        """Reduce over all ranks with ``op`` in ``sum``, ``max``, ``min``."""
        if self.comm is None:
            return value
        # start-up cost: importing mpi4py.MPI initialises MPI; only where MPI is used
        from mpi4py import MPI

        ops: dict[str, Callable[..., Any]] = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
        return self.comm.allreduce(value, op=ops[op])

    def exscan_sum(self, value: int) -> int:
        """The sum of ``value`` over the ranks below this one (0 on rank 0)."""
        if self.comm is None:
            return 0
        result = self.comm.exscan(value)
        return 0 if result is None else int(result)
