"""Where repositories live: the storage interface and its local POSIX backend.

The butler never calls ``open`` or ``os`` on repository files itself: it goes through a
:class:`Storage`, which addresses files by their path *relative to the repository root*
(always with ``/`` separators) and hands formatters a local file to read or write. Another
backend (an object store, say) is added by subclassing :class:`Storage` and registering it for
its URL scheme with :func:`register_storage`; tasks and formatters need no change, since
formatters only ever see local paths (a remote backend downloads before reading and uploads
after writing).

:class:`PosixStorage` handles plain paths and ``file://`` URLs. Its writes are atomic: the
formatter writes a temporary file whose name starts with
:data:`hpcpipe.io.atomic.TEMP_PREFIX`, and :func:`hpcpipe.io.atomic.atomic_path` renames it into
place only once it is complete, so a crash never leaves a partial file under a dataset's name.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import unquote, urlparse

from hpcpipe.butler.errors import StorageError
from hpcpipe.io.atomic import TEMP_PREFIX, atomic_path

__all__ = ["Storage", "PosixStorage", "storage_for", "register_storage", "INGEST_MODES",
           "IngestMode"]

T = TypeVar("T")

#: How ingest places a file in a repository.
#: How ingest places a file in the repository.
IngestMode = Literal["copy", "link", "move"]
INGEST_MODES: tuple[IngestMode, ...] = ("copy", "link", "move")

#: Storage classes by URL scheme; each takes the location as its only argument.
_BACKENDS: dict[str, Callable[[str], Storage]] = {}


def register_storage(scheme: str, cls: Callable[[str], Storage]) -> None:
    """Make :func:`storage_for` use ``cls`` for URLs of ``scheme`` (such as ``"s3"``)."""
    _BACKENDS[scheme.lower()] = cls


def storage_for(location: str | os.PathLike[str] | Storage) -> Storage:
    """The storage of a repository given as a path, a URL or a :class:`Storage`.

    Raises
    ------
    StorageError
        If the URL's scheme has no registered backend.
    """
    if isinstance(location, Storage):
        return location
    text = os.fspath(location)
    scheme = urlparse(text).scheme.lower()
    if len(scheme) <= 1:  # no scheme, or a Windows drive letter
        scheme = "file"
    try:
        cls = _BACKENDS[scheme]
    except KeyError:
        raise StorageError(
            f"no storage backend for {text!r}: scheme {scheme!r} is not one of "
            f"{', '.join(sorted(_BACKENDS))}"
        ) from None
    return cls(text)


class Storage(ABC):
    """A repository's files, addressed by paths relative to its root.

    Subclasses take the location (path or URL) as their only constructor argument.
    """

    #: The canonical URL of the root (``file:///abs/path`` for local repositories).
    uri: str

    @abstractmethod
    def exists(self, relpath: str = "") -> bool:
        """Whether the file (or, for ``""``, the repository root) exists."""

    @abstractmethod
    def read(self, relpath: str, reader: Callable[[Path], T]) -> T:
        """Call ``reader`` with a local path holding the file's content; return its result."""

    @abstractmethod
    def write(self, relpath: str, writer: Callable[[Path], object]) -> None:
        """Call ``writer`` with a local path to create, then publish it atomically.

        The path given to ``writer`` does not exist yet and has the final name's suffix, so
        writers that choose the format by file name work. Nothing appears under ``relpath``
        unless ``writer`` returns normally. Backends may take ``sync_directory=False``
        (see :func:`hpcpipe.io.atomic.atomic_path`): the butler passes it only for files
        whose loss after a power cut is harmless (completion markers, logs).
        """

    @abstractmethod
    def glob(self, pattern: str) -> list[str]:
        """Relative paths of the files matching a ``fnmatch`` pattern (``*`` stays in a
        directory level), sorted; temporary files are never listed."""

    @abstractmethod
    def place(self, source: Path, relpath: str, mode: IngestMode) -> None:
        """Put a local file into the repository by ``copy``, ``link`` or ``move``."""

    def place_same(self, existing: str, relpath: str) -> None:
        """Put at ``relpath`` the content of the repository's file ``existing`` (a
        multi-extension raw registered once per detector); a copy by default."""
        self.read(existing, lambda path: self.place(path, relpath, "copy"))

    @abstractmethod
    def local_path(self, relpath: str) -> Path:
        """A local path for ``relpath`` that stays valid, for files that must be opened in
        place (the registry database). Backends without one raise StorageError."""

    @abstractmethod
    def sibling(self, reference: str) -> Storage:
        """The storage of another repository, named relative to this one or absolutely."""

    @abstractmethod
    def reference_to(self, other: Storage) -> str:
        """How this repository's configuration should name ``other`` (relative if possible)."""

    def url(self, relpath: str = "") -> str:
        """The URL of a file of the repository."""
        return self.uri.rstrip("/") + ("/" + relpath if relpath else "")

    def read_text(self, relpath: str) -> str:
        """The content of a text file (UTF-8)."""
        return self.read(relpath, lambda p: p.read_text(encoding="utf-8"))

    def write_text(self, relpath: str, text: str) -> None:
        """Write a text file (UTF-8), atomically."""
        self.write(relpath, lambda p: p.write_text(text, encoding="utf-8"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Storage) and self.uri == other.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class PosixStorage(Storage):
    """A repository in a local (or POSIX network-mounted) directory.

    Parameters
    ----------
    location : str or os.PathLike
        A path, or a ``file://`` URL (``file:///abs/path``; host empty or ``localhost``).
    """

    def __init__(self, location: str | os.PathLike[str]) -> None:
        text = os.fspath(location)
        parsed = urlparse(text)
        if parsed.scheme.lower() == "file":
            if parsed.netloc not in ("", "localhost"):
                raise StorageError(f"{text}: file URLs on another host ({parsed.netloc}) "
                                   "are not supported")
            text = unquote(parsed.path)
        self.root = Path(os.path.abspath(os.path.expanduser(text)))
        self.uri = self.root.as_uri()

    def _path(self, relpath: str) -> Path:
        if relpath.startswith("/") or ".." in relpath.split("/"):
            raise StorageError(f"{relpath!r} is not a path inside the repository {self.uri}")
        return self.root / relpath if relpath else self.root

    def exists(self, relpath: str = "") -> bool:
        return self._path(relpath).exists()

    def read(self, relpath: str, reader: Callable[[Path], T]) -> T:
        return reader(self._path(relpath))

    def write(self, relpath: str, writer: Callable[[Path], object],
              sync_directory: bool = True) -> None:
        final = self._path(relpath)
        # the temporary name keeps the final suffix
        with atomic_path(final, sync_directory=sync_directory) as tmp:
            writer(tmp)
            if not tmp.exists():
                raise StorageError(f"{self.url(relpath)}: the formatter wrote nothing")

    def glob(self, pattern: str) -> list[str]:
        parts = pattern.split("/")
        found: list[str] = []

        def walk(directory: Path, prefix: str, level: int) -> None:
            part = parts[level]
            last = level == len(parts) - 1
            if not any(c in part for c in "*?["):
                names: Iterator[str] = iter([part])
            else:
                try:
                    names = (n for n in sorted(os.listdir(directory))
                             if fnmatch.fnmatchcase(n, part))
                except (FileNotFoundError, NotADirectoryError):
                    return
            for name in names:
                if name.startswith(TEMP_PREFIX):
                    continue
                path = directory / name
                rel = f"{prefix}{name}"
                if last:
                    if path.is_file():
                        found.append(rel)
                elif path.is_dir():
                    walk(path, rel + "/", level + 1)

        walk(self.root, "", 0)
        return sorted(found)

    def place(self, source: Path, relpath: str, mode: IngestMode) -> None:
        if mode not in INGEST_MODES:
            raise StorageError(
                f"unknown ingest mode {mode!r}; use one of {', '.join(INGEST_MODES)}")
        source = Path(source)
        final = self._path(relpath)
        if not source.is_file():
            raise StorageError(f"{source}: no such file")
        with atomic_path(final) as tmp:
            if mode == "link":
                os.symlink(source.resolve(), tmp)
            elif mode == "move":
                try:  # same file system: a hard link, so that a failure loses nothing
                    os.link(source, tmp)
                except OSError:
                    shutil.copyfile(source, tmp)
            else:
                shutil.copyfile(source, tmp)
        if mode == "move":  # the file is in place: only now remove the original
            source.unlink()

    def place_same(self, existing: str, relpath: str) -> None:
        source = self._path(existing)
        with atomic_path(self._path(relpath)) as tmp:
            if source.is_symlink():  # ingested with --mode link: link the original too
                os.symlink(source.resolve(), tmp)
                return
            try:  # a hard link: one copy of the data for every detector of the file
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)

    def local_path(self, relpath: str) -> Path:
        return self._path(relpath)

    def sibling(self, reference: str) -> Storage:
        parsed = urlparse(reference)
        if len(parsed.scheme) > 1:
            return storage_for(reference)
        return PosixStorage(self.root / reference)

    def reference_to(self, other: Storage) -> str:
        if isinstance(other, PosixStorage):
            return os.path.relpath(other.root, self.root)
        return other.uri


register_storage("file", PosixStorage)
