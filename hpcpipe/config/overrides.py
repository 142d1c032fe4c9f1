"""Overrides of config values: Python files (``-C``) and ``name=value`` strings (``-c``).

An override file is Python run with ``config`` (also called ``root``) bound to the config;
its assignments are recorded in the history with the file and line. ``name=value`` strings
take dotted names (``isr.doBias=False``; ``plugins['centroid'].box=7`` or
``plugins.centroid.box=7`` for registry items) and parse the value for the field's type.

Layering: this module sits below the config core and knows none of its classes. A dotted name
is resolved one step at a time by the nodes themselves: a config, a subtask's config
(:class:`~hpcpipe.config.ConfigurableInstance`) and a registry choice
(:class:`~hpcpipe.config.RegistryInstanceDict`) each have ``_dotted_child(attr, key)`` (the
next node) and ``_dotted_field(attr, key)`` (the config and field a last name sets); the field
then parses and sets the text itself (``Field._override``).
"""

from __future__ import annotations

import difflib
import os
import re
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcpipe.config import history
from hpcpipe.config.errors import ConfigError, ConfigFileError, UnknownFieldError

if TYPE_CHECKING:  # type-only: the config core imports this module
    from hpcpipe.config.config import Config
    from hpcpipe.config.fields import Field

__all__ = ["apply_override_file", "apply_override", "apply_overrides", "resolve_field",
           "resolve_value", "close_field_names"]

_PART_RE = re.compile(r"""^([A-Za-z_]\w*)(?:\[(['"])(.+?)\2\])?$""")


def _split(name: str) -> list[tuple[str, str | None]]:
    """Split ``a.b['key'].c`` into ``[("a", None), ("b", "key"), ("c", None)]``."""
    parts = []
    for piece in re.split(r"\.(?![^\[]*\])", name):
        match = _PART_RE.match(piece)
        if match is None:
            raise ValueError(f"{name!r} is not a dotted field name")
        parts.append((match.group(1), match.group(3)))
    return parts


def close_field_names(config: Config, name: str, n: int = 3) -> list[str]:
    """Return the field names of ``config`` (dotted, nested included) closest to ``name``."""
    names = config.field_names()
    groups = {p for full in names for p in _prefixes(full)}
    candidates = sorted(set(names) | groups)
    matches = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    last = name.rsplit(".", 1)[-1]
    for full in names:
        if len(matches) >= n:
            break
        tail = full.rsplit(".", 1)[-1]
        if full not in matches and difflib.SequenceMatcher(None, last, tail).ratio() >= 0.8:
            matches.append(full)
    return matches


def _prefixes(full: str) -> list[str]:
    pieces = re.split(r"\.(?![^\[]*\])", full)
    return [".".join(pieces[:i]) for i in range(1, len(pieces))]


def _walk(config: Config, name: str, parts: list[tuple[str, str | None]]) -> Any:
    """Follow ``parts`` down from ``config``, each node resolving the next name itself."""
    node: Any = config
    for attr, key in parts:
        step = getattr(node, "_dotted_child", None)  # None: a value, not a node
        try:
            if step is None:
                raise KeyError(attr)
            node = step(attr, key)
        except KeyError:
            raise _unknown(config, name) from None
    return node


def resolve_value(config: Config, name: str) -> Any:
    """Return the value of a dotted field name (a config or registry value for a group).

    Each node on the way (a config, a subtask's config, a registry choice) resolves the next
    name with its ``_dotted_child(attr, key)`` method, so this function needs to know none of
    their classes.

    Raises
    ------
    UnknownFieldError
        If there is no such field; the message lists the close matches.
    """
    return _walk(config, name, _split_or_unknown(config, name))


def resolve_field(config: Config, name: str) -> tuple[Config, Field]:
    """Find the config that holds a dotted field name, and the field.

    Parameters
    ----------
    config : Config
        The root config.
    name : str
        ``a.b.c``; registry items as ``plugins['name'].x`` or ``plugins.name.x``; the choice
        of a registry field as ``plugins.names`` (or ``.name``).

    Returns
    -------
    owner : Config
        The (nested) config whose field it is.
    field : Field
        The field.

    Raises
    ------
    UnknownFieldError
        If there is no such field; the message lists the close matches.
    """
    parts = _split_or_unknown(config, name)
    parent = _walk(config, name, parts[:-1])
    attr, key = parts[-1]
    step = getattr(parent, "_dotted_field", None)  # None: a value, not a node
    try:
        if step is None:
            raise KeyError(attr)
        return step(attr, key)
    except KeyError:
        raise _unknown(config, name) from None


def _unknown(config: Config, name: str) -> UnknownFieldError:
    return UnknownFieldError(name, type(config).__name__, close_field_names(config, name))


def apply_override(config: Config, text: str, kind: str = "command line",
                   location: str | None = None) -> None:
    """Apply one ``name=value`` override, parsing the value for the field's type.

    Parameters
    ----------
    config : Config
        The root config.
    text : str
        ``name=value``: a dotted field name and the value as it would be typed on a command
        line (``3``, ``4.5``, ``True``, ``a,b`` or ``['a', 'b']`` for a list, ``None``).
    kind, location : str, optional
        The history label (by default ``command line`` and ``-c name=value``).

    Raises
    ------
    UnknownFieldError
        For a name the config does not have (with the close matches).
    FieldValidationError
        For a value of the wrong type or out of range, or a frozen config.
    ConfigError
        If ``text`` is not ``name=value``.
    """
    name, sep, value_text = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ConfigError(f"{text!r} is not name=value")
    location = location or f"-c {text}"
    owner, field = resolve_field(config, name)
    with history.recording(kind, location):
        field._override(owner, _split(name)[-1][0], value_text)


def _split_or_unknown(config: Config, name: str) -> list[tuple[str, str | None]]:
    try:
        return _split(name)
    except ValueError:
        raise _unknown(config, name) from None


def apply_overrides(config: Config, texts: Iterable[str]) -> None:
    """Apply several ``name=value`` overrides in order (see :func:`apply_override`)."""
    for text in texts:
        apply_override(config, text)


def apply_override_file(config: Config, path: str | os.PathLike[str],
                        text: str | None = None) -> None:
    """Run a Python override file with ``config`` (and ``root``) bound to the config.

    Parameters
    ----------
    config : Config
        The config to change.
    path : str or os.PathLike
        The file; assignments are recorded in the history with its name and line.
    text : str, optional
        The file's contents, if already read.

    Raises
    ------
    ConfigFileError
        If the file cannot be read, is not valid Python, or raises; the message names the file,
        the line and the exception (an unknown field comes with its close matches).
    """
    filename = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigFileError(filename, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        code = compile(text, filename, "exec")
    except SyntaxError as exc:
        raise ConfigFileError(filename, exc.lineno, f"SyntaxError: {exc.msg}") from None
    namespace = {"config": config, "root": config, "__file__": filename,
                 "__name__": "__hpcpipe_config__"}
    try:
        with history.recording("file"):
            exec(code, namespace)
    except Exception as exc:  # noqa: BLE001 (any error in a user's file is reported with its line)
        line = None
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            if frame.f_code.co_filename == filename:
                line = lineno
        raise ConfigFileError(filename, line, f"{type(exc).__name__}: {exc}") from exc
