"""The versions of the software a run used, recorded in its output repository.

As the LSST Gen2 middleware did with its ``packages`` dataset: the first run into an output
repository writes ``packages.yaml`` there (Python, hpcpipe with its git commit when run from
a checkout, and every installed distribution); a later run compares its own versions with
it and refuses to mix outputs of different software unless ``--clobber-versions`` (the file
is replaced, the old one kept as a backup) or ``--no-versions`` (nothing is checked or
written). Packages present in only one of the two runs are recorded, not refused.
"""

from __future__ import annotations

import functools
import logging
import platform
import subprocess
from importlib.metadata import distributions
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

import hpcpipe

if TYPE_CHECKING:
    from hpcpipe.butler import Butler

__all__ = ["PACKAGES_FILE", "package_versions", "version_differences", "check_versions"]

log = logging.getLogger("hpcpipe.task.versions")

#: The file of an output repository recording the software versions of its runs.
PACKAGES_FILE = "packages.yaml"


def _git_commit() -> str | None:
    root = Path(hpcpipe.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """The versions of Python, hpcpipe (and its git commit) and every installed
    distribution, by name (lower case), sorted."""
    found: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            found[str(name).lower()] = str(dist.version)
    found["python"] = platform.python_version()
    found["hpcpipe"] = hpcpipe.__version__
    commit = _git_commit()
    if commit:
        found["hpcpipe-git"] = commit
    return dict(sorted(found.items()))


def version_differences(old: dict[str, Any], new: dict[str, str]) -> list[str]:
    """``name: old -> new`` for every package both record with different versions."""
    return [f"{name}: {old[name]} -> {new[name]}" for name in sorted(set(old) & set(new))
            if str(old[name]) != new[name]]


def check_versions(butler: Butler, clobber: bool = False, skip: bool = False) -> str | None:
    """Compare this process's versions with the output repository's ``packages.yaml``.

    Writes the file on a first run (and on ``clobber``, keeping the old one as
    ``packages.yaml~N``); with ``skip`` does nothing.

    Returns
    -------
    str or None
        Why the run is refused (the differences, naming ``--clobber-versions``), or None.
    """
    if skip:
        return None
    storage = butler.output.storage
    current = package_versions()
    if storage.exists(PACKAGES_FILE):
        try:
            stored = yaml.safe_load(storage.read_text(PACKAGES_FILE)) or {}
        except yaml.YAMLError as exc:
            return f"{storage.url(PACKAGES_FILE)}: not valid YAML ({exc})"
        if not isinstance(stored, dict):
            return f"{storage.url(PACKAGES_FILE)}: not a mapping of package versions"
        diffs = version_differences(stored, current)
        if not diffs:
            added = {k: v for k, v in current.items() if k not in stored}
            if added:
                storage.write_text(PACKAGES_FILE, yaml.safe_dump({**stored, **added}))
            return None
        if not clobber:
            return ("the software versions differ from those of the earlier run(s) into this "
                    "output repository (use --clobber-versions to go on and record the new "
                    "ones, or --no-versions to skip the check):\n  " + "\n  ".join(diffs))
        k = 1
        while storage.exists(f"{PACKAGES_FILE}~{k}"):
            k += 1
        storage.write_text(f"{PACKAGES_FILE}~{k}", storage.read_text(PACKAGES_FILE))
        log.warning("replacing the recorded versions (%s); the old ones are kept as %s~%d",
                    "; ".join(diffs), PACKAGES_FILE, k)
    storage.write_text(PACKAGES_FILE, yaml.safe_dump(current))
    return None
