"""``hpcpipe release-convert RELEASE [--output DIR]``: the HATS catalogs of an HDF5 release.

The work is :func:`hpcpipe.drivers.release_hats.convert_release` (every rank reads a share of
the files and writes the HEALPix pixels it owns); without ``--output`` the catalogs go into a
new generation of the release, with its HDF5 files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpcpipe.commands.options import add_hats_options, hats_options, usage_error
from hpcpipe.commands.release import print_hats_results

__all__ = ["add_release_convert_command"]


def run_release_convert(args: argparse.Namespace) -> int:
    """Write the HATS catalogs of an HDF5 release; 2 for a usage error."""
    from hpcpipe.comm.world import World  # MPI: start-up cost

    world = World()
    options = hats_options(args)
    if isinstance(options, str):
        if world.rank == 0:
            usage_error("release-convert", options)
        return 2
    # the HATS writer (hats, pyarrow, pandas) is imported when the command runs: start-up cost
    from hpcpipe.catalog.hats_write import HatsWriteError
    from hpcpipe.drivers.release_hats import convert_release, hats_directory, release_files
    from hpcpipe.errors import FileFormatError
    from hpcpipe.io.generation import GENERATIONS_SUFFIX, release_generation

    command = " ".join(["hpcpipe", "release-convert", *sys.argv[2:]])
    release = Path(args.release)
    try:
        release_files(release)  # every rank: a usage error is found by all of them
        if args.output is None and release.parent.name.endswith(GENERATIONS_SUFFIX):
            raise FileFormatError(str(release), "is one generation of a release; give the "
                                  "release itself (OUT/release) or --output")
    except FileFormatError as exc:
        if world.rank == 0:
            usage_error("release-convert", f"argument RELEASE: {exc}")
        return 2
    try:
        if args.output is not None:
            results = convert_release(release, args.output, world, command=command, **options)
            generation = None
        else:
            # the HATS catalogs go into a new generation of the release, with its HDF5 files
            with release_generation(release, world, keep_all_but=["hats"]) as generation:
                assert generation.previous is not None
                results = convert_release(generation.previous,
                                          hats_directory(generation.directory), world,
                                          command=command, **options)
    except (FileFormatError, HatsWriteError) as exc:
        if world.rank == 0:
            usage_error("release-convert", f"argument RELEASE: {exc}")
        return 2
    if world.rank == 0:
        print_hats_results(results, generation)
    return 0


def add_release_convert_command(subparsers: Any) -> None:
    """Add ``hpcpipe release-convert RELEASE [--output DIR]`` to the command line."""
    parser = subparsers.add_parser(
        "release-convert", help="write the HATS catalogs of an existing HDF5 release",
        description="Read the catalogs of an HDF5 release (OUT/release) and write them as "
        "HATS catalogs with margin caches (run under mpiexec: every rank reads a share of "
        "the files and writes the HEALPix pixels it owns).")
    parser.add_argument("release", metavar="RELEASE", help="the HDF5 release directory")
    parser.add_argument("--output", metavar="DIR", help="the HATS directory (default "
                        "RELEASE/hats)")
    add_hats_options(parser)
    parser.set_defaults(handler=run_release_convert)
