"""Rows from many ranks into one HDF5 dataset, in one collective write (h5py ``mpio``).

The ranks agree on their offsets (an exclusive prefix sum of their row counts), create the
dataset collectively and each writes its slice in one collective call. A rank with no rows
still takes part with an explicit empty selection: h5py skips zero-length selections, which
leaves the other ranks waiting in the collective call for ever (h5py issue 965).

The file is written under a temporary name and renamed by rank 0 when every rank is done, so
a crash never leaves a half-written file under its real name.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from hpcpipe.comm.world import World
from hpcpipe.io.atomic import TEMP_PREFIX, atomic_path

__all__ = ["write_rows_collectively", "mpio_available", "collective_write", "open_for_write"]


def mpio_available() -> bool:
    """Whether h5py was built against a parallel HDF5 (the ``mpio`` driver)."""
    return bool(h5py.get_config().mpi)


def collective_write(dataset: h5py.Dataset, rows: np.ndarray, offset: int) -> None:
    """Write ``rows`` at ``offset`` collectively; an empty ``rows`` selects nothing."""
    n = rows.shape[0]
    file_space = dataset.id.get_space()
    if n:
        file_space.select_hyperslab((offset,), (n,))
        mem_space = h5py.h5s.create_simple((n,))
        buffer = np.ascontiguousarray(rows)
    else:
        file_space.select_none()
        mem_space = h5py.h5s.create_simple((1,))
        mem_space.select_none()
        buffer = np.zeros(1, dtype=rows.dtype)
    transfer = h5py.h5p.create(h5py.h5p.DATASET_XFER)
    transfer.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
    dataset.id.write(mem_space, file_space, buffer, dxpl=transfer)


def open_for_write(path: str | os.PathLike[str], world: World) -> h5py.File:
    """A new HDF5 file, opened by every rank through MPI-IO (or plainly, with one rank)."""
    if world.is_parallel:
        return h5py.File(path, "w", driver="mpio", comm=world.comm)
    return h5py.File(path, "w")


def write_rows_collectively(path: str | os.PathLike[str], name: str, rows: np.ndarray,
                            world: World | None = None) -> int:
    """Write every rank's ``rows`` into dataset ``name`` of a new file ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create (replaced if it exists).
    name : str
        The dataset's name.
    rows : numpy.ndarray
        This rank's rows (a 1-D structured array; the dtype must be the same on every rank).
    world : World, optional
        The ranks taking part (all must call); default the launch world.

    Returns
    -------
    int
        This rank's offset: its rows are ``[offset, offset + len(rows))`` in the dataset.
    """
    world = world or World()
    rows = np.asarray(rows)
    total = world.allreduce(int(rows.shape[0]))
    offset = world.exscan_sum(int(rows.shape[0]))
    if not world.is_parallel:
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
            handle.create_dataset(name, data=rows)
        return 0
    if not mpio_available():
        raise RuntimeError("h5py was built without MPI: parallel HDF5 writes are impossible")
    final = Path(path)
    tmp = world.bcast(str(final.with_name(f"{TEMP_PREFIX}{final.name}.{os.getpid()}"))
                      if world.rank == 0 else None)
    if world.rank == 0:
        final.parent.mkdir(parents=True, exist_ok=True)
    world.barrier()
    with open_for_write(tmp, world) as handle:
        dataset = handle.create_dataset(name, shape=(total,), dtype=rows.dtype)
        collective_write(dataset, rows, offset)
    world.barrier()
    if world.rank == 0:
        os.replace(tmp, final)
    world.barrier()
    return offset
