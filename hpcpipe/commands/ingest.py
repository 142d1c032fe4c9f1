"""``hpcpipe ingest REPO FILE... [--mode copy|link|move]``: raw and calibration files into a
repository.

Exits with 2 when some files were refused (each is listed by name with its reason; the files
that could be read are ingested) or for an error of the butler (a missing repository).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hpcpipe.commands.butler import butler_errors_exit_2

__all__ = ["add_ingest_command", "cmd_ingest", "INGEST_MODES"]

#: The ``--mode`` choices: :data:`hpcpipe.butler.storage.INGEST_MODES`, written out here so
#: that the parser is built without importing the butler (tests/test_cli_startup.py checks
#: that they agree).
INGEST_MODES = ("copy", "link", "move")


@butler_errors_exit_2
def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest raw and calibration files into a repository."""
    from hpcpipe.butler.ingest import ingest  # start-up cost

    report = ingest(args.repo, args.files, mode=args.mode)
    print(report.summary())
    if not report.ok:
        # bad input: each refused file is named above with its reason (the others are in)
        print(f"hpcpipe ingest: {len(report.failed)} file(s) refused (listed above)",
              file=sys.stderr)
        return 2
    return 0


def add_ingest_command(subparsers: Any) -> None:
    """Add ``hpcpipe ingest REPO FILE... [--mode MODE]`` to the command line."""
    ing = subparsers.add_parser("ingest", help="ingest raw and calibration files")
    ing.add_argument("repo", help="repository path or file:// URL")
    ing.add_argument("files", nargs="+", help="FITS files to ingest")
    ing.add_argument("--mode", choices=INGEST_MODES, default="copy",
                     help="copy (default), link (symbolic link) or move the files")
    ing.set_defaults(handler=cmd_ingest)
