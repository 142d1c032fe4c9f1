"""Where each config value was set: the default, a file and line, or the command line.

Every assignment to a field appends a :class:`HistoryEntry` to its config's history. The place
is found by walking up the stack to the first frame outside :mod:`hpcpipe.config`, so an
assignment in an override file is recorded with that file and line. Code that applies values
on a user's behalf (the ``-c`` option) labels them with :func:`recording`.
"""

from __future__ import annotations

import _collections_abc
import contextlib
import contextvars
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HistoryEntry", "Marker", "recording", "caller_location", "format_history_entries"]

_CONFIG_DIRS = tuple({str(Path(__file__).parent) + os.sep,
                      str(Path(__file__).resolve().parent) + os.sep})
#: collections.abc's mixin methods (``append`` on a list field) are not the caller either.
_ABC_FILE = getattr(_collections_abc, "__file__", "<frozen _collections_abc>")

#: The (kind, location) label of assignments made inside :func:`recording`, if any.
_label: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "hpcpipe_config_history_label", default=None)


@dataclass(frozen=True)
class HistoryEntry:
    """One assignment of a config field.

    Attributes
    ----------
    value : object
        The value as it was set (a copy for lists and dicts).
    kind : str
        ``"default"``, ``"python"`` (code), ``"file"`` (an override or saved config file) or
        ``"command line"``.
    location : str
        ``file:line`` of the assignment, or the command-line argument.
    """

    value: Any
    kind: str
    location: str

    def __str__(self) -> str:
        return f"{self.value!r}  [{self.kind}] {self.location}"


def caller_location(skip_dirs: tuple[str, ...] = _CONFIG_DIRS) -> str:
    """Return ``file:line`` of the innermost frame outside ``skip_dirs``.

    Parameters
    ----------
    skip_dirs : tuple of str
        Directories whose frames are not the caller (by default this package).

    Returns
    -------
    location : str
        ``"path:line"``, or ``"<unknown>"`` when every frame is inside ``skip_dirs``.
    """
    frame: Any = sys._getframe(1)  # a FrameType, then None past the outermost
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith("<frozen") or filename == _ABC_FILE
                or any(filename.startswith(d) for d in skip_dirs)):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def current_label() -> tuple[str, str]:
    """Return the (kind, location) of an assignment being made now."""
    label = _label.get()
    if label is None:
        return "python", caller_location()
    kind, location = label
    return kind, location if location is not None else caller_location()


@contextlib.contextmanager
def recording(kind: str, location: str | None = None) -> Iterator[None]:
    """Label the config assignments made inside the block.

    Parameters
    ----------
    kind : str
        The kind of every entry recorded inside the block (``"file"``, ``"command line"``).
    location : str, optional
        A fixed location (``"-c x=1"``); by default the caller's ``file:line`` is found for
        each assignment.
    """
    token = _label.set((kind, location))
    try:
        yield
    finally:
        _label.reset(token)


def format_history_entries(name: str, entries: list[HistoryEntry]) -> str:
    """Format the history of one field, oldest first, one assignment a line.

    Parameters
    ----------
    name : str
        The dotted field name, printed as the heading.
    entries : list of HistoryEntry
        Its assignments.

    Returns
    -------
    text : str
        The heading and one indented line per assignment.
    """
    values = [repr(e.value) for e in entries]
    width = min(max((len(v) for v in values), default=0), 40)
    kinds = max((len(e.kind) for e in entries), default=0)
    lines = [name]
    for value, entry in zip(values, entries):
        lines.append(f"    {value:<{width}}  {entry.kind:<{kinds}}  {entry.location}")
    return "\n".join(lines)


class Marker:
    """A history value that prints as its text (``<SubConfig>``, ``retarget(pkg.Task)``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Marker) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __getstate__(self) -> str:
        return self.text

    def __setstate__(self, state: str) -> None:
        self.text = state
