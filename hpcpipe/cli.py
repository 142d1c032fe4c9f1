"""The ``hpcpipe`` command line.

Subcommands:

* ``hpcpipe demo``: the built-in demonstration (run it under ``mpiexec`` for several ranks).
* ``hpcpipe info``: versions, MPI and parallel HDF5 support, and which kernels are compiled.

Usage errors exit with status 2 and a message naming the option at fault.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpcpipe", description=__doc__.split("\n")[0])
    parser.add_argument("--loglevel", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="simulate a small star field and process it under MPI")
    demo.add_argument("--output", type=Path, default=Path("demo_output"),
                      help="output directory (default: demo_output)")
    demo.add_argument("--ccds", type=_positive_int, default=6, help="number of CCDs (default 6)")
    demo.add_argument("--size", type=_positive_int, default=1024,
                      help="CCD width and height in pixels (default 1024)")
    demo.add_argument("--seed", type=int, default=42, help="simulation seed (default 42)")

    sub.add_parser("info", help="show versions, MPI and HDF5 support, and the kernels in use")
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from hpcpipe.comm.world import World
    from hpcpipe.drivers.demo import format_summary, run_demo

    world = World()
    summary = run_demo(args.output, n_ccds=args.ccds, size=args.size, seed=args.seed,
                       world=world)
    if summary is not None:
        print(format_summary(summary))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import astropy
    import h5py
    import numpy

    import hpcpipe
    from hpcpipe.comm.world import World
    from hpcpipe.kernels import kernel_status

    world = World()
    print(f"hpcpipe {hpcpipe.__version__}")
    print(f"numpy {numpy.__version__}, astropy {astropy.__version__}, h5py {h5py.__version__} "
          f"(HDF5 {h5py.version.hdf5_version}, parallel: {h5py.get_config().mpi})")
    try:
        from mpi4py import MPI

        print(f"mpi4py: {MPI.Get_library_version().splitlines()[0]}; ranks: {world.size}")
    except ImportError:
        print("mpi4py: not installed; running serially")
    for name, impl in kernel_status().items():
        print(f"kernel {name}: {impl}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.loglevel,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    handlers = {"demo": _cmd_demo, "info": _cmd_info}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
