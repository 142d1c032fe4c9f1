"""Helpers for MPI tests: a shared directory, and rank-0 checks that fail on every rank."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hpcpipe.comm.world import World


def on_root(world: World, check: Callable[[], Any]) -> None:
    """Run ``check()`` on rank 0 and raise its failure on every rank, so none is left waiting
    in a later collective call."""
    error = None
    if world.rank == 0:
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - reported on every rank below
            error = f"{type(exc).__name__}: {exc}"
    error = world.bcast(error)
    if error is not None:
        raise AssertionError(f"rank 0: {error}")


def shared_dir(world: World, factory: Any, name: str = "shared") -> str:
    """A directory every rank agrees on: rank 0's pytest temporary directory."""
    return world.bcast(str(factory.mktemp(name)) if world.rank == 0 else None)
