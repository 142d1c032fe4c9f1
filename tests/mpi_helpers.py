"""Helpers for MPI tests: a shared directory, rank-0 checks that fail on every rank, and
launching ``mpirun`` from a serial test."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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


TESTS = Path(__file__).resolve().parent


def mpirun_command(n: int) -> list[str] | None:
    """``mpirun`` with the flags this machine needs (as scripts/mpirun_flags.sh) and ``-n n``;
    None when there is no mpirun."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        return None
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    flags = []
    if "open mpi" in version.lower():
        flags.append("--oversubscribe")
        if os.getuid() == 0:
            flags.append("--allow-run-as-root")
    return [mpirun, *flags, "-n", str(n)]


def subprocess_env() -> dict[str, str]:
    """This process's environment for a child ``mpirun``/``python -m hpcpipe``: without the
    variables of this process's own MPI (singleton) start, with the checkout and the tests on
    the path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMIX_", "PRTE_", "OPAL_", "HYDRA_", "PMI_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), str(TESTS),
                                         env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env.pop("HPCPIPE_NO_MPI", None)
    return env


def require_mpirun(n: int) -> list[str]:
    """:func:`mpirun_command`, or skip the test when there is no mpirun."""
    command = mpirun_command(n)
    if command is None:
        pytest.skip("no mpirun")
    return command
