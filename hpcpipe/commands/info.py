"""``hpcpipe info``: versions, MPI and parallel HDF5 support, and the kernels in use."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_info_command"]


def add_info_command(subparsers: Any) -> None:
    """Add ``hpcpipe info`` to the command line."""
    info = subparsers.add_parser(
        "info", help="show versions, MPI and HDF5 support, and the kernels in use")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    """Print the versions, the MPI library, parallel HDF5 and each kernel's implementation."""
    # what it reports on is imported when the command runs: start-up cost
    import astropy
    import h5py
    import numpy

    # start-up cost: imported when the command runs, so that --help answers at once
    import hpcpipe
    from hpcpipe.comm.world import World
    from hpcpipe.kernels import kernel_status

    world = World()
    print(f"hpcpipe {hpcpipe.__version__}")
    print(f"numpy {numpy.__version__}, astropy {astropy.__version__}, h5py {h5py.__version__} "
          f"(HDF5 {h5py.version.hdf5_version}, parallel: {h5py.get_config().mpi})")
    try:
        # start-up cost: importing mpi4py.MPI initialises MPI; only where MPI is used
        from mpi4py import MPI

        print(f"mpi4py: {MPI.Get_library_version().splitlines()[0]}; ranks: {world.size}")
    except ImportError:
        print("mpi4py: not installed; running serially")
    for name, impl in kernel_status().items():
        print(f"kernel {name}: {impl}")
    return 0
