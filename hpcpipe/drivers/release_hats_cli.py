"""Command line of the HATS release: ``hpcpipe release --format`` and ``hpcpipe release-convert``.

The work is :mod:`hpcpipe.drivers.release_hats`; this module only adds the options and is
light to import (the HATS libraries load when a command runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpcpipe.catalog import DEFAULT_MARGIN_ARCSEC
from hpcpipe.comm.world import World
from hpcpipe.io.generation import GENERATIONS_SUFFIX, ReleaseGeneration, release_generation

__all__ = ["add_release_convert_command", "extend_release_command"]


def _add_hats_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pixel-threshold", type=int, default=1_000_000, metavar="ROWS",
                        help="most rows in one HATS partition pixel (default 1000000)")
    parser.add_argument("--margin-arcsec", type=float, default=DEFAULT_MARGIN_ARCSEC,
                        metavar="ARCSEC", help="width of the margin caches (default "
                        f"{DEFAULT_MARGIN_ARCSEC:g} arcsec)")


def _hats_options(args: argparse.Namespace) -> dict[str, Any] | str:
    if args.pixel_threshold < 1:
        return f"argument --pixel-threshold: {args.pixel_threshold} is not a positive count"
    if not 0 < args.margin_arcsec <= 3600:
        return f"argument --margin-arcsec: {args.margin_arcsec} is not in (0, 3600]"
    return {"pixel_threshold": args.pixel_threshold, "margin_arcsec": args.margin_arcsec}


def _print_results(results: dict[str, dict[str, Any]],
                   generation: ReleaseGeneration | None = None) -> None:
    for name, result in results.items():
        directory = result["directory"]
        if generation is not None:  # as readers see it, through the release link
            directory = generation.published_path(directory)
        print(f"{directory}: {name}: {result['rows']} rows in "
              f"{len(result['pixels'])} HEALPix pixels, {result['margin_rows']} margin rows")


def _cmd_release_convert(args: argparse.Namespace) -> int:
    world = World()
    options = _hats_options(args)
    if isinstance(options, str):
        if world.rank == 0:
            print(f"hpcpipe release-convert: error: {options}", file=sys.stderr)
        return 2
    # the HATS writer (hats, pyarrow, pandas) is imported when the command runs: start-up cost
    from hpcpipe.catalog.hats_write import HatsWriteError
    from hpcpipe.drivers.release_hats import convert_release, hats_directory, release_files
    from hpcpipe.errors import FileFormatError

    command = " ".join(["hpcpipe", "release-convert", *sys.argv[2:]])
    release = Path(args.release)
    try:
        release_files(release)  # every rank: a usage error is found by all of them
        if args.output is None and release.parent.name.endswith(GENERATIONS_SUFFIX):
            raise FileFormatError(str(release), "is one generation of a release; give the "
                                  "release itself (OUT/release) or --output")
    except FileFormatError as exc:
        if world.rank == 0:
            print(f"hpcpipe release-convert: error: argument RELEASE: {exc}", file=sys.stderr)
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
            print(f"hpcpipe release-convert: error: argument RELEASE: {exc}", file=sys.stderr)
        return 2
    if world.rank == 0:
        _print_results(results, generation)
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
    _add_hats_options(parser)
    parser.set_defaults(handler=_cmd_release_convert)


def extend_release_command(subparsers: Any) -> None:
    """Give ``hpcpipe release`` the options ``--format hdf5|hats|both`` and the HATS ones.

    ``--format hdf5`` (the default) is the HDF5 release alone; ``hats`` writes the HATS
    catalogs (from the per-unit outputs) into ``OUT/release/hats``; ``both`` does both.
    """
    release = subparsers.choices["release"]
    hdf5_handler = release.get_default("handler")
    release.add_argument("--format", choices=["hdf5", "hats", "both"], default="hdf5",
                         help="HDF5 release files, HATS catalogs (OUT/release/hats), or both "
                         "(default hdf5)")
    _add_hats_options(release)

    def handler(args: argparse.Namespace) -> int:
        # the butler and the HATS writer are imported when the command runs: start-up cost
        from hpcpipe.drivers.release import open_release_inputs, print_release_files, write_release
        from hpcpipe.drivers.release_hats import hats_directory, write_release_hats

        world = World()
        options = _hats_options(args)
        if isinstance(options, str):
            if world.rank == 0:
                print(f"hpcpipe release: error: {options}", file=sys.stderr)
            return 2
        if args.format == "hdf5":
            return hdf5_handler(args)
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
            _print_results(results, generation)
        return 0

    release.set_defaults(handler=handler)
