"""File formats of the data model: a registry of readers, writers and identifiers.

This is hpcpipe's version of astropy's unified I/O (``astropy.io.registry``): the data model
(:class:`~hpcpipe.image.Exposure`, :class:`~hpcpipe.table.Catalog`) reads and writes itself by
looking its formats up here, and the modules that implement a format register themselves when
they are imported::

    # hpcpipe/io/fits_table.py
    register_reader("fits", Catalog, read_fits)
    register_writer("fits", Catalog, write_fits)
    register_identifier("fits", Catalog, suffix_identifier(".fits", ".fit", ...))

so that imports go one way: :mod:`hpcpipe.io` imports :mod:`hpcpipe.image` and
:mod:`hpcpipe.table`, never the reverse. This module imports nothing of hpcpipe but
:mod:`hpcpipe.errors`.

The formats hpcpipe ships are listed by module name in :data:`DEFAULT_PROVIDERS` and imported
the first time a class of theirs is read or written, so ``Exposure.read(path)`` works without
importing :mod:`hpcpipe.io` first. Other packages register their own formats by calling
:func:`register_reader` and friends when imported.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from hpcpipe.errors import FileFormatError

__all__ = [
    "DEFAULT_PROVIDERS",
    "FormatError",
    "Origin",
    "get_formats",
    "get_reader",
    "get_writer",
    "identify_format",
    "read",
    "register_identifier",
    "register_reader",
    "register_writer",
    "suffix_identifier",
    "unregister_identifier",
    "unregister_reader",
    "unregister_writer",
    "write",
]

T = TypeVar("T")

#: Whether an identifier is asked about a file to read or a file to write.
Origin = Literal["read", "write"]

#: The modules that register the formats hpcpipe ships, by the class (``module:name``) they
#: read and write. They are imported on the first read or write of that class, not when the
#: data model is imported (start-up cost: they import astropy.io.fits and h5py; and they sit
#: above the data model, whose modules do not import them).
DEFAULT_PROVIDERS: dict[str, tuple[str, ...]] = {
    "hpcpipe.image.exposure:Exposure": ("hpcpipe.io.fits_exposure", "hpcpipe.io.hdf5_exposure"),
    "hpcpipe.table.catalog:Catalog": ("hpcpipe.io.fits_table", "hpcpipe.io.hdf5_table"),
}

_readers: dict[tuple[str, type], Callable[..., Any]] = {}
_writers: dict[tuple[str, type], Callable[..., Any]] = {}
_identifiers: dict[tuple[str, type], Callable[[Origin, Any], bool]] = {}
_loaded: set[str] = set()
_lock = threading.RLock()


class FormatError(FileFormatError):
    """No format, or more than one, fits a file; or the format asked for has no reader or
    writer for the class. A :class:`~hpcpipe.errors.FileFormatError` naming the file (or the
    format, when no file is at hand)."""


def _class_key(data_class: type) -> str:
    return f"{data_class.__module__}:{data_class.__qualname__}"


def _load_defaults(data_class: type) -> None:
    """Import the shipped format modules of ``data_class`` and its bases, once."""
    for klass in data_class.__mro__:
        key = _class_key(klass)
        modules = DEFAULT_PROVIDERS.get(key)
        if not modules or key in _loaded:
            continue
        with _lock:
            if key in _loaded:
                continue
            for module in modules:
                importlib.import_module(module)
            _loaded.add(key)


def _register(table: dict[tuple[str, type], Any], what: str, data_format: str,
              data_class: type, function: Any, force: bool) -> None:
    if not isinstance(data_class, type):
        raise TypeError(f"register_{what}: data_class must be a class, not {data_class!r}")
    key = (data_format, data_class)
    with _lock:
        if key in table and table[key] is not function and not force:
            raise ValueError(f"a {what} of format {data_format!r} for {data_class.__name__} is "
                             "already registered (pass force=True to replace it)")
        table[key] = function


def _unregister(table: dict[tuple[str, type], Any], what: str, data_format: str,
                data_class: type) -> None:
    with _lock:
        if table.pop((data_format, data_class), None) is None:
            raise KeyError(f"no {what} of format {data_format!r} for {data_class.__name__}")


def register_reader(data_format: str, data_class: type, function: Callable[..., Any],
                    force: bool = False) -> None:
    """Register ``function(path, *args, **kwargs) -> data_class instance`` as the reader of
    ``data_format`` for ``data_class`` (and its subclasses, unless they have their own).

    Raises
    ------
    ValueError
        If another reader is registered for that format and class and ``force`` is False.
    """
    _register(_readers, "reader", data_format, data_class, function, force)


def register_writer(data_format: str, data_class: type, function: Callable[..., Any],
                    force: bool = False) -> None:
    """Register ``function(obj, path, *args, **kwargs)`` as the writer of ``data_format`` for
    ``data_class`` (and its subclasses, unless they have their own)."""
    _register(_writers, "writer", data_format, data_class, function, force)


def register_identifier(data_format: str, data_class: type,
                        function: Callable[[Origin, Any], bool], force: bool = False) -> None:
    """Register ``function(origin, target) -> bool``: whether ``target`` (a path, or an open
    object such as an ``h5py.Group``) is in ``data_format``, for reading or writing
    (``origin``). Used when ``format`` is not given."""
    _register(_identifiers, "identifier", data_format, data_class, function, force)


def unregister_reader(data_format: str, data_class: type) -> None:
    """Remove a reader registered by :func:`register_reader`."""
    _unregister(_readers, "reader", data_format, data_class)


def unregister_writer(data_format: str, data_class: type) -> None:
    """Remove a writer registered by :func:`register_writer`."""
    _unregister(_writers, "writer", data_format, data_class)


def unregister_identifier(data_format: str, data_class: type) -> None:
    """Remove an identifier registered by :func:`register_identifier`."""
    _unregister(_identifiers, "identifier", data_format, data_class)


def suffix_identifier(*suffixes: str) -> Callable[[Origin, Any], bool]:
    """An identifier that recognises paths by their (case-insensitive) file name endings."""
    lowered = tuple(s.lower() for s in suffixes)

    def identify(origin: Origin, target: Any) -> bool:
        if not isinstance(target, (str, os.PathLike)):
            return False
        return Path(target).name.lower().endswith(lowered)

    identify.suffixes = lowered  # type: ignore[attr-defined]
    return identify


def _lookup(table: dict[tuple[str, type], T], what: str, data_format: str,
            data_class: type, target: Any = None) -> T:
    _load_defaults(data_class)
    for klass in data_class.__mro__:  # the most specific class first
        found = table.get((data_format, klass))
        if found is not None:
            return found
    known = sorted({f for f, c in table if issubclass(data_class, c)})
    if known:
        hint = f"known formats: {', '.join(known)}"
    else:
        hint = ("no format is registered for it; formats register themselves when their "
                "module is imported (hpcpipe's own are in hpcpipe.io)")
    where = str(target) if target is not None else f"format {data_format!r}"
    raise FormatError(where,
                      f"no {what} of format {data_format!r} for {data_class.__name__} ({hint})")


def get_reader(data_format: str, data_class: type) -> Callable[..., Any]:
    """The reader of ``data_format`` for ``data_class``.

    Raises
    ------
    FormatError
        If there is none; the message lists the formats there are.
    """
    return _lookup(_readers, "reader", data_format, data_class)


def get_writer(data_format: str, data_class: type) -> Callable[..., Any]:
    """The writer of ``data_format`` for ``data_class`` (see :func:`get_reader`)."""
    return _lookup(_writers, "writer", data_format, data_class)


def identify_format(origin: Origin, data_class: type, target: Any) -> list[str]:
    """The formats whose identifier recognises ``target`` for ``data_class``, sorted."""
    _load_defaults(data_class)
    with _lock:
        items = list(_identifiers.items())
    found = set()
    for (data_format, klass), identify in items:
        if issubclass(data_class, klass) and identify(origin, target):
            found.add(data_format)
    return sorted(found)


def _describe_suffixes(data_class: type) -> str:
    parts = []
    for (data_format, klass), identify in sorted(_identifiers.items(), key=lambda i: i[0][0]):
        suffixes = getattr(identify, "suffixes", None)
        if issubclass(data_class, klass) and suffixes:
            parts.append(f"{', '.join(suffixes)} ({data_format.upper()})")
    return " or ".join(parts)


def _format_for(origin: Origin, data_class: type, target: Any) -> str:
    formats = identify_format(origin, data_class, target)
    if len(formats) == 1:
        return formats[0]
    if not formats:
        names = _describe_suffixes(data_class)
        hint = f"name it {names}" if names else "pass format="
        raise FormatError(str(target), f"unknown file type for {data_class.__name__}: {hint}")
    raise FormatError(str(target), f"the file type is ambiguous for {data_class.__name__} "
                      f"(formats {', '.join(formats)}); pass format=")


def read(data_class: type[T], target: Any, *args: Any, format: str | None = None,
         **kwargs: Any) -> T:
    """Read a ``data_class`` from ``target`` (a path, or what the format's reader accepts).

    Parameters
    ----------
    data_class : type
        The class to read (e.g. :class:`~hpcpipe.image.Exposure`).
    target : str, os.PathLike or object
        Passed to the reader first, then ``args`` and ``kwargs``.
    format : str, optional
        The format's name; found from ``target`` by the identifiers if not given.

    Raises
    ------
    FormatError
        If no format, or several, recognise ``target`` and ``format`` is not given, or the
        format has no reader for ``data_class`` (a :class:`~hpcpipe.errors.FileFormatError`).
    """
    data_format = format if format is not None else _format_for("read", data_class, target)
    reader = _lookup(_readers, "reader", data_format, data_class, target)
    data = reader(target, *args, **kwargs)
    if not isinstance(data, data_class):
        raise TypeError(f"the {data_format!r} reader for {data_class.__name__} returned a "
                        f"{type(data).__name__}")
    return data


def write(data: Any, target: Any, *args: Any, format: str | None = None,
          **kwargs: Any) -> None:
    """Write ``data`` to ``target`` with the writer of its class (see :func:`read`)."""
    data_class = type(data)
    data_format = format if format is not None else _format_for("write", data_class, target)
    writer = _lookup(_writers, "writer", data_format, data_class, target)
    writer(data, target, *args, **kwargs)


def get_formats(data_class: type | None = None) -> list[tuple[str, str, bool, bool]]:
    """The registered formats as ``(format, class name, can read, can write)``, sorted; only
    those of ``data_class`` if given (its shipped formats are loaded first)."""
    if data_class is not None:
        _load_defaults(data_class)
    with _lock:
        keys = set(_readers) | set(_writers) | set(_identifiers)
    rows = [(f, c.__name__, (f, c) in _readers, (f, c) in _writers) for f, c in keys
            if data_class is None or issubclass(data_class, c)]
    return sorted(rows)
