"""Atomic file output: write under a temporary name, rename into place when complete.

A crash, a kill or an exception while writing never leaves a half-written file under the real
name: readers see either the old file or the complete new one (``os.replace`` is atomic on
POSIX file systems when both names are in the same directory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "fsync_directory", "remove_debris", "TEMP_PREFIX"]

#: Prefix of the temporary files; they are ignored by directory scans and safe to delete.
TEMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], sync_directory: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The parent directory is created if needed. If the block raises, the temporary file is
    removed and ``path`` is left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The final name of the file.
    sync_directory : bool, optional
        Also make the rename durable (an ``fsync`` of the directory). Without it the file's
        data is still synced before the rename (the file is never seen half-written or
        empty), but after a power cut the new name may be missing: for files whose loss
        is harmless, such as a completion marker whose unit is then simply redone.

    Yields
    ------
    pathlib.Path
        Where the block must write the file (it does not exist yet).

    Examples
    --------
    >>> with atomic_path("out.fits") as tmp:  # doctest: +SKIP
    ...     hdulist.writeto(tmp)
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name ends with the final name, so writers that choose their format
    # from the suffix (.fits, .h5) see the right one
    fd, tmpname = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix="." + final.name, dir=final.parent)
    os.close(fd)
    tmp = Path(tmpname)
    tmp.unlink()  # writers such as astropy and h5py want to create the file themselves
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{final}: the writer did not create {tmp}")
        with open(tmp, "rb") as handle:  # make the data durable before the rename
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        if sync_directory:
            fsync_directory(final.parent)  # make the rename itself durable
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (a rename or a new file in it) to stable storage.

    File systems that cannot open or sync a directory (some network ones) are skipped.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_debris(root: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files (``.tmp-*``) that killed writers left under ``root``.

    Only call it on a directory no other process is writing into (the output repository of
    a run being resumed, before its workers start).

    Returns
    -------
    list of Path
        The files removed.
    """
    removed: list[Path] = []
    for directory, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if d.startswith(TEMP_PREFIX)]:
            if name.startswith(TEMP_PREFIX):
                path = Path(directory) / name
                with contextlib.suppress(FileNotFoundError):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                    removed.append(path)
        dirnames[:] = [d for d in dirnames if not d.startswith(TEMP_PREFIX)]
    return removed
