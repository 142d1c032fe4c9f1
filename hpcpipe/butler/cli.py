"""Command-line commands of the butler: ``butler describe``, ``butler create``, ``ingest``.

They are added to the ``hpcpipe`` command by :func:`add_butler_commands`; each sub-parser sets
``handler`` to the function that runs it (it takes the parsed arguments and returns the exit
status)::

    hpcpipe butler create REPO --camera mycam.yaml|NAME [--parent DIR ...]
    hpcpipe butler create REPO --mapper simcam  # the same as --camera simcam
    hpcpipe butler describe REPO                # or: --mapper simcam
    hpcpipe butler provenance REPO DATASET --id KEY=VALUE ...
    hpcpipe ingest REPO FILE... [--mode copy|link|move]

Errors of the butler (a missing repository, an unknown mapper) exit with status 2 and one line
on stderr; ``ingest`` exits with 2 when some files were refused (each is listed by name with
its reason; the files that could be read are ingested).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hpcpipe.butler.butler import Butler, create_repository
from hpcpipe.butler.describe import describe
from hpcpipe.butler.errors import ButlerError
from hpcpipe.butler.ingest import ingest
from hpcpipe.butler.mapper import mapper_from_description
from hpcpipe.butler.provenance import format_trace, trace
from hpcpipe.butler.repository import Repository
from hpcpipe.butler.storage import INGEST_MODES

__all__ = ["add_butler_commands", "cmd_butler_create", "cmd_butler_describe", "cmd_ingest",
           "cmd_butler_provenance",
           "HANDLERS", "main"]


def _guarded(function: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace],
                                                                         int]:
    def run(args: argparse.Namespace) -> int:
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


@_guarded
def cmd_butler_create(args: argparse.Namespace) -> int:
    """Create a repository for a camera (a camera file, stored in the repository, or a
    registered name), optionally reading through parent repositories."""
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

        mapper_from_description(description, name)  # errors name the user's file and line
    repo = create_repository(args.repo, name, parents=args.parent or (),
                             description=description)
    stored = " (camera description stored as _camera.yaml)" if description else ""
    print(f"repository {repo.uri} (mapper {repo.mapper_name}){stored}")
    return 0


@_guarded
def cmd_butler_describe(args: argparse.Namespace) -> int:
    """Print the dataset types and data id keys of a repository's (or a named) mapper."""
    if args.mapper and _is_camera_file(args.mapper):  # a camera file, not yet in a repository
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
        Repository.open(args.repo)  # a missing repository: MissingMapperError, exit 2
        mapper = Butler(args.repo).mapper
    else:
        print("hpcpipe butler describe: give a repository or --mapper NAME", file=sys.stderr)
        return 2
    sys.stdout.write(describe(mapper))
    return 0


@_guarded
def cmd_butler_provenance(args: argparse.Namespace) -> int:
    """Print the lineage of a dataset back to the inputs of the chain (the raws)."""
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


@_guarded
def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest raw and calibration files into a repository."""
    report = ingest(args.repo, args.files, mode=args.mode)
    print(report.summary())
    if not report.ok:
        # bad input: each refused file is named above with its reason (the others are in)
        print(f"hpcpipe ingest: {len(report.failed)} file(s) refused (listed above)",
              file=sys.stderr)
        return 2
    return 0


#: The handler of each command added by :func:`add_butler_commands`.
HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "butler create": cmd_butler_create,
    "butler describe": cmd_butler_describe,
    "butler provenance": cmd_butler_provenance,
    "ingest": cmd_ingest,
}


def add_butler_commands(subparsers: Any) -> None:
    """Add ``butler`` (with ``create`` and ``describe``) and ``ingest`` to a parser's
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

    ing = subparsers.add_parser("ingest", help="ingest raw and calibration files")
    ing.add_argument("repo", help="repository path or file:// URL")
    ing.add_argument("files", nargs="+", help="FITS files to ingest")
    ing.add_argument("--mode", choices=INGEST_MODES, default="copy",
                     help="copy (default), link (symbolic link) or move the files")
    ing.set_defaults(handler=cmd_ingest)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the butler commands alone (``python -m hpcpipe.butler.cli``)."""
    parser = argparse.ArgumentParser(prog="hpcpipe", description="hpcpipe data butler")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_butler_commands(sub)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
