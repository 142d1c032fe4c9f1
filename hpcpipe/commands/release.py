"""``hpcpipe release REPO [--output OUT] [--format hdf5|hats|both]``: the data release files.

Gathers a finished production into the parallel HDF5 release files
(:mod:`hpcpipe.drivers.release`; every rank writes its share, run it under ``mpiexec``), or
with ``--format hats`` the HATS catalogs (:mod:`hpcpipe.drivers.release_hats`) into
``OUT/release/hats``, or both; each run publishes one new generation of ``OUT/release``
(:mod:`hpcpipe.io.generation`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcpipe.commands.options import add_hats_options, hats_options, usage_error

if TYPE_CHECKING:
    from hpcpipe.io.generation import ReleaseGeneration

__all__ = ["add_release_command", "open_release_inputs", "print_release_files",
           "print_hats_results"]


def open_release_inputs(args: Any, world: Any) -> tuple[Any, Path, str] | None:
    """The butler of ``hpcpipe release REPO [--output OUT]``, the directory its release goes
    under and the command line to record; None (after one message on rank 0) when REPO or
    OUT is not a repository."""
    from hpcpipe.butler import Butler, ButlerError  # start-up cost

    try:
        butler = Butler(args.repo, outputs=args.output) if args.output else Butler(args.repo)
    except ButlerError as exc:
        if world.rank == 0:
            print(f"hpcpipe release: error: argument REPO: {exc}", file=sys.stderr)
        return None
    root = Path(args.output) if args.output else Path(args.repo)
    return butler, root, " ".join(["hpcpipe", "release", *sys.argv[2:]])


def run_release(args: argparse.Namespace) -> int:
    """Write the release (``--format``: HDF5 files, HATS catalogs or both) as one new
    generation; 2 for a usage error."""
    # MPI, the butler, h5py and the HATS writer are imported when the command runs:
    # start-up cost
    from hpcpipe.comm.world import World
    from hpcpipe.drivers.release import write_release
    from hpcpipe.io.generation import release_generation

    world = World()
    options = hats_options(args)
    if isinstance(options, str):
        if world.rank == 0:
            usage_error("release", options)
        return 2
    if args.format != "hdf5":
        return _write_hats(args, world, options)
    opened = open_release_inputs(args, world)
    if opened is None:
        return 2
    butler, root, command = opened
    # the HDF5 files of one run are published together; the HATS catalogs of the published
    # release (if any) are kept
    with release_generation(root / "release", world, carry=["hats"]) as generation:
        result = write_release(butler, generation.directory, world, mode=args.mode,
                               compression=args.compression, command=command)
    print_release_files(result, generation, world)
    return 0


def print_release_files(result: dict[str, Any], generation: ReleaseGeneration,
                        world: Any) -> None:
    """Rank 0: print each file of a published release (as readers see it) and its rows."""
    if world.rank == 0:
        for path in result["files"]:
            rows = result["rows"].get(path)
            print(f"{generation.published_path(path)}"
                  + (f": {rows} rows" if rows is not None else ""))


def add_release_command(subparsers: Any) -> None:
    """Add ``hpcpipe release REPO [--output OUT]`` to the command line."""
    release = subparsers.add_parser(
        "release", help="write a finished production into the HDF5 data release files",
        description="Gather the catalogs and coadds of a finished production into the "
        "parallel HDF5 release files (run under mpiexec: every rank writes its share).")
    release.add_argument("repo", metavar="REPO", help="the input repository")
    release.add_argument("--output", metavar="OUT",
                         help="the production's output repository (default: REPO); the files "
                         "go to OUT/release")
    release.add_argument("--mode", choices=["shared", "per-rank"], default="shared",
                         help="one shared file per table (MPI-IO), or per-rank parts under a "
                         "virtual dataset")
    release.add_argument("--compression", choices=["gzip"], default=None,
                         help="compress the tables (collective writes)")
    release.add_argument("--format", choices=["hdf5", "hats", "both"], default="hdf5",
                         help="HDF5 release files, HATS catalogs (OUT/release/hats), or both "
                         "(default hdf5)")
    add_hats_options(release)
    release.set_defaults(handler=run_release)


def _write_hats(args: argparse.Namespace, world: Any, options: dict[str, Any]) -> int:
    """``--format hats|both``: the HATS catalogs (and with ``both`` the HDF5 files) as one
    new generation of the release."""
    # start-up cost: imported when the command runs, so that --help answers at once
    from hpcpipe.drivers.release import write_release  # start-up cost, as in run_release
    from hpcpipe.drivers.release_hats import hats_directory, write_release_hats
    from hpcpipe.io.generation import release_generation

    opened = open_release_inputs(args, world)
    if opened is None:
        return 2
    butler, root, command = opened
    # one generation: what this run writes is published together; with --format hats
    # the HDF5 files of the published release are kept
    keep = None if args.format == "both" else ["hats"]
    with release_generation(root / "release", world, keep_all_but=keep) as generation:
        files = None
        if args.format == "both":
            files = write_release(butler, generation.directory, world, mode=args.mode,
                                  compression=args.compression, command=command)
        results = write_release_hats(butler, hats_directory(generation.directory), world,
                                     command=command, **options)
    if files is not None:
        print_release_files(files, generation, world)
    if world.rank == 0:
        print_hats_results(results, generation)
    return 0


def print_hats_results(results: dict[str, dict[str, Any]],
                       generation: ReleaseGeneration | None = None) -> None:
    """Rank 0: print each HATS catalog written (as readers see it) and its rows."""
    for name, result in results.items():
        directory = result["directory"]
        if generation is not None:  # as readers see it, through the release link
            directory = generation.published_path(directory)
        print(f"{directory}: {name}: {result['rows']} rows in "
              f"{len(result['pixels'])} HEALPix pixels, {result['margin_rows']} margin rows")
