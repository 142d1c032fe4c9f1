"""Publish every file of a release at once: write a new generation, then switch one link.

Each release file is already written under a temporary name and renamed when complete, so no
file is ever half-written under its real name. A release is many files, though (one per visit,
per tract, per filter, plus the HATS catalogs), and a crash between two renames would publish
a mix of two runs. So a release is written as a *generation*:

* ``OUT/release-runs/<run>/`` receives every file of one run (``<run>`` is the UTC time and the
  process id of rank 0);
* ``OUT/release`` is a symbolic link to the published generation, replaced in one
  ``os.replace`` (atomic on POSIX file systems) once every file of the new generation is
  written and fsynced; the directory holding the link is fsynced after the switch;
* the generations that are not published any more (the previous one, or the debris of a run
  that crashed before its switch) are removed by the next write, after its own switch.

Readers go through ``OUT/release``, as before (butler templates, ``hpcpipe query``...): they
see the previous release whole until the switch and the new one whole after it. A reader that
keeps a file of the previous generation open goes on reading it (POSIX keeps a removed file's
data until it is closed); files it opens after the switch come from the new generation.

What one run does not rewrite is carried over from the published generation by hard links
(``carry``; a copy where the file system refuses hard links): ``hpcpipe release --format
hdf5`` keeps the HATS catalogs of the published release, ``--format hats`` keeps its HDF5
files. Writers never modify a file in place (they write a new file and rename it), so a hard
link shared by two generations is never changed under a reader.

An ``OUT/release`` that is still a plain directory (written before generations) is moved into
``OUT/release-runs`` at the switch and removed with the other unpublished generations; the
move and the switch are two renames, so a crash exactly between them leaves no
``OUT/release`` link (the data is then in ``OUT/release-runs/``; the next write publishes a
new generation).

Only one release writer may run at a time on one output repository.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from hpcpipe.comm.world import World
from hpcpipe.io.atomic import TEMP_PREFIX, fsync_directory

__all__ = ["ReleaseGeneration", "release_generation", "published_generation",
           "GENERATIONS_SUFFIX"]

#: ``<release>`` links to ``<release><GENERATIONS_SUFFIX>/<run>``.
GENERATIONS_SUFFIX = "-runs"


def _generations_dir(release: Path) -> Path:
    return release.with_name(release.name + GENERATIONS_SUFFIX)


def published_generation(release: str | os.PathLike[str]) -> Path | None:
    """The directory the release ``release`` serves now (None if there is none).

    For a release written in generations this is the target of the ``release`` link; for an
    older release (a plain directory) it is the directory itself.
    """
    release = Path(release)
    if release.is_symlink():
        target = release.parent / os.readlink(release)
        return target if target.is_dir() else None
    return release if release.is_dir() else None


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` to stable storage (files first)."""
    directories = []
    for directory, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(directory) / name
            if path.is_symlink():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        directories.append(directory)
    for directory in reversed(directories):  # the deepest entries first
        fsync_directory(directory)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # no hard links across devices or on this file system: copy
        shutil.copy2(source, destination)


class ReleaseGeneration:
    """One generation of a release, written by every rank and published by rank 0.

    Parameters
    ----------
    release : str or os.PathLike
        The release as readers see it (``OUT/release``).
    world : World, optional
        The ranks writing it (default: the launch world). Every rank constructs the object,
        and every rank calls :meth:`publish`.
    carry : iterable of str, optional
        Entries of the published generation (top-level names, such as ``"hats"``) that this
        run does not rewrite and the new generation keeps.
    keep_all_but : iterable of str, optional
        Carry every top-level entry of the published generation except these (the run
        rewrites them). Use either ``carry`` or ``keep_all_but``.

    Attributes
    ----------
    directory : Path
        Where this run writes (``OUT/release-runs/<run>``); the same on every rank.
    previous : Path or None
        The generation published when the run started (read inputs from it, not from the
        link, which may switch).
    """

    def __init__(self, release: str | os.PathLike[str], world: World | None = None, *,
                 carry: Iterable[str] = (), keep_all_but: Iterable[str] | None = None) -> None:
        self.world = world or World()
        self.release = Path(release)
        self.generations = _generations_dir(self.release)
        self.published = False
        carry = list(carry)
        begun: tuple[str, str | None] | BaseException | None = None
        if self.world.rank == 0:
            try:
                begun = self._begin(carry, keep_all_but)
            except OSError as exc:  # every rank raises it, not only rank 0
                begun = exc
        begun = self.world.bcast(begun)
        if isinstance(begun, BaseException):
            raise begun
        assert begun is not None
        self.directory = Path(begun[0])
        self.previous = Path(begun[1]) if begun[1] is not None else None

    def _begin(self, carry: list[str], keep_all_but: Iterable[str] | None
               ) -> tuple[str, str | None]:
        """Rank 0: create the new generation and carry over what it keeps."""
        previous = published_generation(self.release)
        if previous is None and not self.release.is_symlink():
            # a crash between moving a plain release aside and the first switch
            plain = sorted(_generations_dir(self.release).glob(f"{TEMP_PREFIX}plain-*"))
            previous = plain[-1] if plain else None
        if self.release.exists() and not self.release.is_symlink() \
                and not self.release.is_dir():
            raise FileExistsError(f"{self.release}: exists and is not a release directory")
        self.generations.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for attempt in range(1000):  # two runs within one second: a further suffix
            suffix = f"-{attempt}" if attempt else ""
            directory = self.generations / f"{stamp}-{os.getpid()}{suffix}"
            try:
                directory.mkdir()
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"{self.generations}: no free name for a new generation")
        if previous is not None:
            if keep_all_but is not None:
                skip = set(keep_all_but)
                carry = [entry.name for entry in previous.iterdir()
                         if entry.name not in skip and not entry.name.startswith(TEMP_PREFIX)]
            for name in carry:
                source = previous / name
                if source.is_dir():
                    shutil.copytree(source, directory / name, symlinks=True,
                                    copy_function=_link_or_copy)
                elif source.is_file():
                    _link_or_copy(str(source), str(directory / name))
        return str(directory), None if previous is None else str(previous)

    def path(self, published: str | os.PathLike[str]) -> Path:
        """Where this run writes the file readers will see as ``published`` (a path under
        the release)."""
        return self.directory / Path(published).relative_to(self.release)

    def published_path(self, written: str | os.PathLike[str]) -> Path:
        """The path readers will see for a file this run wrote at ``written``."""
        return self.release / Path(written).relative_to(self.directory)

    def publish(self) -> None:
        """Make the new generation the release (every rank calls it, after writing).

        Rank 0 fsyncs every file and directory of the generation, switches the link with one
        ``os.replace``, fsyncs the directory of the link, then removes the generations that
        are no longer published.
        """
        self.world.barrier()
        error: BaseException | None = None
        if self.world.rank == 0:
            try:
                self._switch()
            except OSError as exc:
                error = exc
        error = self.world.bcast(error)
        if error is not None:
            raise error
        self.published = True

    def _switch(self) -> None:
        _fsync_tree(self.directory)
        fsync_directory(self.generations)
        parent = self.release.parent
        if self.release.is_dir() and not self.release.is_symlink():
            # a release written before generations: it becomes an old generation
            os.replace(self.release, self.generations / f"{TEMP_PREFIX}plain-{os.getpid()}")
        for stale in parent.glob(f"{TEMP_PREFIX}{self.release.name}.*"):
            if stale.is_symlink():  # the link of a switch that was killed
                stale.unlink(missing_ok=True)
        link = parent / f"{TEMP_PREFIX}{self.release.name}.{os.getpid()}"
        os.symlink(os.path.relpath(self.directory, parent), link)
        os.replace(link, self.release)
        fsync_directory(parent)
        for entry in self.generations.iterdir():
            if entry != self.directory:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        fsync_directory(self.generations)


@contextlib.contextmanager
def release_generation(release: str | os.PathLike[str], world: World | None = None, *,
                       carry: Iterable[str] = (), keep_all_but: Iterable[str] | None = None
                       ) -> Iterator[ReleaseGeneration]:
    """Write a release generation in a ``with`` block and publish it when the block succeeds.

    If the block raises, nothing is published: the previous release stays as it was, and the
    next write removes what this one left.

    Examples
    --------
    >>> with release_generation("out/release", world, carry=["hats"]) as gen:  # doctest: +SKIP
    ...     write_release(butler, gen.directory, world)
    """
    generation = ReleaseGeneration(release, world, carry=carry, keep_all_but=keep_all_but)
    yield generation
    generation.publish()
