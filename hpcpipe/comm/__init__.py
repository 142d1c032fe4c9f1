"""MPI communication: the world of ranks a run was launched with."""

from hpcpipe.comm.world import World

__all__ = ["World"]
