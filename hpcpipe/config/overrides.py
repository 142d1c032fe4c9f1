"""Overrides of config values: Python files (``-C``) and ``name=value`` strings (``-c``).

An override file is Python run with ``config`` (also called ``root``) bound to the config;
its assignments are recorded in the history with the file and line. ``name=value`` strings
take dotted names (``isr.do_bias=False``; ``plugins['centroid'].box=7`` or
``plugins.centroid.box=7`` for registry items) and parse the value for the field's type.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcpipe.config import history
from hpcpipe.config.errors import ConfigError, ConfigFileError, UnknownFieldError

if TYPE_CHECKING:
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


def resolve_value(config: Config, name: str) -> Any:
    """Return the value of a dotted field name (a config or registry value for a group).

    Raises
    ------
    UnknownFieldError
        If there is no such field; the message lists the close matches.
    """
    from hpcpipe.config.config import Config
    from hpcpipe.config.configurable import ConfigurableInstance
    from hpcpipe.config.registry import RegistryInstanceDict

    node: Any = config
    for attr, key in _split_or_unknown(config, name):
        holder = node.value if isinstance(node, ConfigurableInstance) else node
        try:
            if isinstance(holder, RegistryInstanceDict) and key is None:
                node = holder[attr]  # plugins.centroid.x
                continue
            if not isinstance(holder, Config) or attr not in holder._fields:
                raise KeyError(attr)
            node = getattr(holder, attr)
            if key is not None:
                if not isinstance(node, RegistryInstanceDict):
                    raise KeyError(key)
                node = node[key]
        except KeyError:
            raise _unknown(config, name) from None
    return node


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
    from hpcpipe.config.config import Config
    from hpcpipe.config.configurable import ConfigurableInstance
    from hpcpipe.config.registry import RegistryInstanceDict

    parts = _split_or_unknown(config, name)
    prefix = ".".join(_join(p) for p in parts[:-1])
    owner: Any = resolve_value(config, prefix) if prefix else config
    if isinstance(owner, ConfigurableInstance):
        owner = owner.value
    attr, key = parts[-1]
    if isinstance(owner, RegistryInstanceDict) and attr in ("name", "names") and key is None:
        return owner._owner, owner._field()
    if not isinstance(owner, Config) or attr not in owner._fields or key is not None:
        raise _unknown(config, name)
    return owner, owner._fields[attr]


def _join(part: tuple[str, str | None]) -> str:
    attr, key = part
    return attr if key is None else f"{attr}[{key!r}]"


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
    from hpcpipe.config.registry import RegistryField

    name, sep, value_text = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ConfigError(f"{text!r} is not name=value")
    location = location or f"-c {text}"
    owner, field = resolve_field(config, name)
    if isinstance(field, RegistryField) and _split(name)[-1][0] in ("name", "names"):
        holder = owner._storage[field.name]
        attr = "names" if field.multi else "name"
        value: Any = _parse_names(value_text) if field.multi else value_text.strip()
        if value == "None":
            value = None
        with history.recording(kind, location):
            setattr(holder, attr, value)
        return
    value = field._parse_text(value_text, owner._full_name(field.name))
    with history.recording(kind, location):
        setattr(owner, field.name, value)


def _parse_names(text: str) -> list[str]:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        value = None
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [v.strip() for v in text.split(",") if v.strip()]


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
