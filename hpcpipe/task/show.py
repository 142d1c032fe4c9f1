"""What ``--show config``, ``--show history`` and ``--show tasks`` print."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator

from hpcpipe.config import (
    Config,
    ConfigField,
    ConfigurableField,
    RegistryField,
    config_fields,
)
from hpcpipe.config.configurable import qualified_name

__all__ = ["match_field_names", "format_config", "format_history", "format_tasks",
           "task_targets"]

_GLOB = re.compile(r"[*?\[]")
_ASSIGN = re.compile(r"^\w+\.(.+?)(?: = |\.retarget\()")


def _matches(name: str, pattern: str) -> bool:
    name, pattern = name.lower(), pattern.lower()
    if _GLOB.search(pattern):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


def match_field_names(config: Config, pattern: str, exact_first: bool = False) -> list[str]:
    """Return the dotted field names matching ``pattern``.

    A pattern with ``*``, ``?`` or ``[`` is a case-insensitive glob; any other is a
    case-insensitive substring. With ``exact_first``, a pattern that is exactly a field name
    matches that field only.
    """
    names = config.field_names()
    if exact_first and pattern in names:
        return [pattern]
    return [n for n in names if _matches(n, pattern)]


def format_config(config: Config, pattern: str | None = None) -> str:
    """Return the config as saved Python, or only the assignments of fields matching ``pattern``.

    Returns an empty string when no field matches.
    """
    text = config.to_python()
    if pattern is None:
        return text.rstrip("\n")
    out = []
    for line in text.splitlines():
        match = _ASSIGN.match(line)
        if match is not None and _matches(match.group(1), pattern):
            out.append(line)
    return "\n".join(out)


def format_history(config: Config, pattern: str) -> str:
    """Return the history of every field matching ``pattern`` (empty if none matches)."""
    names = match_field_names(config, pattern, exact_first=True)
    return "\n".join(config.format_history(n) for n in names)


def task_targets(config: Config, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(dotted name, target)`` for each subtask a config builds, at every level."""
    for name, field in config_fields(config).items():
        full = prefix + name
        value = getattr(config, name)
        if isinstance(field, ConfigurableField):
            yield full, qualified_name(value.target)
            yield from task_targets(value.value, full + ".")
        elif isinstance(field, ConfigField):
            yield from task_targets(value, full + ".")
        elif isinstance(field, RegistryField):
            for key in value.names:
                item = f"{full}[{key!r}]"
                yield item, qualified_name(value.registry[key].target)
                yield from task_targets(value[key], item + ".")


def format_tasks(config: Config, task_name: str | None = None) -> str:
    """Return the subtask hierarchy a config builds: one ``name: package.module.Class`` a line."""
    root = f" of {task_name}" if task_name else ""
    lines = [f"Subtasks{root}:"]
    targets = list(task_targets(config))
    lines.extend(f"  {name}: {target}" for name, target in targets)
    if not targets:
        lines.append("  (none)")
    return "\n".join(lines)
