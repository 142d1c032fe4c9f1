"""Where a release's HATS catalogs are, for ``hpcpipe query``, ``serve`` and ``crossmatch``
(:mod:`hpcpipe.commands.query` and its neighbours): REPO is a repository (or production
output) whose ``release/hats`` holds the catalogs, a release directory, or the HATS directory
itself.
"""

from __future__ import annotations

from pathlib import Path

from hpcpipe.errors import HpcpipeError

__all__ = ["find_hats_directory"]


def find_hats_directory(repo: str | Path) -> Path:
    """The HATS directory of a repository, production output or release directory."""
    root = Path(repo)
    for candidate in (root / "release" / "hats", root / "hats", root):
        if any((candidate / name / "collection.properties").exists()
               for name in ("objects", "sources", "forced", "multifit")):
            return candidate
    raise HpcpipeError(f"{repo}: no HATS catalogs in REPO/release/hats, REPO/hats or REPO; write "
                     "them with `hpcpipe release REPO --format hats` or `hpcpipe "
                     "release-convert RELEASE`")
