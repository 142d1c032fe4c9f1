"""``hpcpipe butler create|describe|provenance``: data repositories.

Added to the ``hpcpipe`` command by :func:`add_butler_command`; each action's parser sets
``handler`` to the function that runs it (it takes the parsed arguments and returns the exit
status)::

    hpcpipe butler create REPO --camera mycam.yaml|NAME [--parent DIR ...]
    hpcpipe butler create REPO --mapper simcam  # the same as --camera simcam
    hpcpipe butler describe REPO                # or: --mapper simcam
    hpcpipe butler provenance REPO DATASET --id KEY=VALUE ...

Errors of the butler (a missing repository, an unknown mapper) exit with status 2 and one line
on stderr (:func:`butler_errors_exit_2`; ``hpcpipe ingest``, :mod:`hpcpipe.commands.ingest`,
shares it).
"""

from __future__ import annotations

import argparse
import json  # only for --json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_butler_command", "cmd_butler_create", "cmd_butler_describe",
           "cmd_butler_provenance", "butler_errors_exit_2"]


def butler_errors_exit_2(function: Callable[[argparse.Namespace], int]
                         ) -> Callable[[argparse.Namespace], int]:
    """``function`` printing a :class:`~hpcpipe.butler.errors.ButlerError` on one line of
    stderr and returning 2."""
    def run(args: argparse.Namespace) -> int:
        # the butler is imported when a command runs: start-up cost
        from hpcpipe.butler.errors import ButlerError

        try:
            return function(args)
        except ButlerError as exc:
            print(f"hpcpipe {getattr(args, 'command', 'butler')}: {exc}", file=sys.stderr)
            return 2

    run.__name__ = function.__name__
    run.__doc__ = function.__doc__
    return run


def _is_camera_file(text: str) -> bool:
    """Whether ``--camera`` names a file (a path, or a name ending in .yaml/.yml) rather than
    a registered camera."""
    return text.endswith((".yaml", ".yml")) or "/" in text or os.path.isfile(text)


@butler_errors_exit_2
def cmd_butler_create(args: argparse.Namespace) -> int:
    """Create a repository for a camera (a camera file, stored in the repository, or a
    registered name), optionally reading through parent repositories."""
    # the butler is imported when the command runs: start-up cost
    from hpcpipe.butler.butler import create_repository

    name = args.camera or args.mapper
    if not name:
        print("hpcpipe butler create: give --camera mycam.yaml (a camera file) or --camera "
              "NAME (a registered camera)", file=sys.stderr)
        return 2
    description = None
    if _is_camera_file(name):
        try:
            description = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"hpcpipe butler create: {name}: cannot read the camera file ({exc})",
                  file=sys.stderr)
            return 2
        # start-up cost: imported when the command runs, so that --help answers at once
        from hpcpipe.butler.mapper import mapper_from_description

        mapper_from_description(description, name)  # errors name the user's file and line
    repo = create_repository(args.repo, name, parents=args.parent or (),
                             description=description)
    stored = " (camera description stored as _camera.yaml)" if description else ""
    print(f"repository {repo.uri} (mapper {repo.mapper_name}){stored}")
    return 0


@butler_errors_exit_2
def cmd_butler_describe(args: argparse.Namespace) -> int:
    """Print the dataset types and data id keys of a repository's (or a named) mapper."""
    # the butler is imported when the command runs: start-up cost
    from hpcpipe.butler.describe import describe
    from hpcpipe.butler.repository import Repository

    if args.mapper and _is_camera_file(args.mapper):  # a camera file, not yet in a repository
        # start-up cost: imported when the command runs, so that --help answers at once
        from hpcpipe.butler.mapper import mapper_from_description

        try:
            text = Path(args.mapper).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"hpcpipe butler describe: {args.mapper}: cannot read the camera file "
                  f"({exc})", file=sys.stderr)
            return 2
        mapper: Any = mapper_from_description(text, args.mapper)
    elif args.mapper:
        mapper = args.mapper
    elif args.repo:
        # start-up cost: imported when the command runs, so that --help answers at once
        from hpcpipe.butler.butler import Butler  # the chain's mapper, with declared types

        Repository.open(args.repo)  # a missing repository: MissingMapperError, exit 2
        mapper = Butler(args.repo).mapper
    else:
        print("hpcpipe butler describe: give a repository or --mapper NAME", file=sys.stderr)
        return 2
    sys.stdout.write(describe(mapper))
    return 0


@butler_errors_exit_2
def cmd_butler_provenance(args: argparse.Namespace) -> int:
    """Print the lineage of a dataset back to the inputs of the chain (the raws)."""
    # the butler is imported when the command runs: start-up cost
    from hpcpipe.butler.butler import Butler
    from hpcpipe.butler.provenance import format_trace, trace

    data_id: dict[str, Any] = {}
    for item in args.id or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"hpcpipe butler provenance: argument --id: {item!r} is not key=value",
                  file=sys.stderr)
            return 2
        data_id[key] = value
    butler = Butler(args.repo)
    for key, value in list(data_id.items()):  # the key's type (visit=12 is an int)
        spec = butler.mapper.keys.get(key)
        if spec is not None and spec.type is not str:
            try:
                data_id[key] = spec.parse(value)
            except ValueError:
                print(f"hpcpipe butler provenance: argument --id: {key}={value}: not a "
                      f"{spec.type.__name__}", file=sys.stderr)
                return 2
    kind, ident = butler.dataset_id(args.dataset, data_id)
    tree = trace(butler, kind, ident)
    if args.json:

        print(json.dumps(tree, indent=1))
    else:
        print(format_trace(tree))
    return 0


def add_butler_command(subparsers: Any) -> None:
    """Add ``butler`` (with ``create``, ``describe`` and ``provenance``) to a parser's
    sub-commands (the object ``ArgumentParser.add_subparsers`` returned). Each leaf parser
    has ``handler`` as a default: call ``args.handler(args)``."""
    butler = subparsers.add_parser("butler", help="create and describe data repositories")
    actions = butler.add_subparsers(dest="butler_command", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="create an empty repository")
    create.add_argument("repo", help="repository path or file:// URL")
    which = create.add_mutually_exclusive_group()
    which.add_argument("--camera", help="a camera file (mycam.yaml; stored in the repository) "
                       "or the name of a registered camera (simcam, generic, mosaic4)")
    which.add_argument("--mapper", help="the name of a registered camera or mapper (the same "
                       "as --camera NAME)")
    create.add_argument("--parent", action="append",
                        help="a repository to read through (repeat for several, in order)")
    create.set_defaults(handler=cmd_butler_create)

    desc = actions.add_parser("describe",
                              help="print the dataset types and data id keys of a mapper")
    desc.add_argument("repo", nargs="?", help="repository path or file:// URL")
    desc.add_argument("--mapper", "--camera", dest="mapper",
                      help="describe this camera (a registered name or a camera file) instead "
                      "of a repository's")
    desc.set_defaults(handler=cmd_butler_describe)

    prov = actions.add_parser("provenance", help="print the datasets a dataset was made from, "
                              "back to the raws")
    prov.add_argument("repo", help="repository path or file:// URL")
    prov.add_argument("dataset", metavar="DATASET", help="the dataset type")
    prov.add_argument("--id", nargs="*", metavar="KEY=VALUE", default=[],
                      help="the dataset's data id (missing keys completed from the registry)")
    prov.add_argument("--json", action="store_true", help="print the tree as JSON")
    prov.set_defaults(handler=cmd_butler_provenance)
