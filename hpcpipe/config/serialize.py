"""Configs saved and loaded as readable Python (``config.x = ...`` lines).

A saved config starts with a comment naming its class; :func:`load_config` refuses a file
saved from another class. Retargeted subtasks are written as ``import`` lines followed by
``config.sub.retarget(package.module.Task)``, so that a saved config rebuilds the same task
hierarchy.

Layering: this module sits below :mod:`hpcpipe.config.config` (whose ``to_python``, ``save``
and ``load`` call it) and uses a config only through its ``_save_lines`` and
:func:`~hpcpipe.config.overrides.apply_override_file`.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from hpcpipe.config.errors import ConfigFileError
from hpcpipe.config.overrides import apply_override_file
from hpcpipe.io.atomic import atomic_path

if TYPE_CHECKING:  # type-only: the config core imports this module
    from hpcpipe.config.config import Config

__all__ = ["config_to_python", "save_config", "load_config", "HEADER", "qualified_name",
           "importable"]

#: The first line of a saved config, followed by the config class's qualified name.
HEADER = "# hpcpipe config: "
_HEADER_RE = re.compile(r"^# hpcpipe config: (\S+)\s*$", re.MULTILINE)


def qualified_name(obj: Any) -> str:
    """Return ``module.QualName`` of a class or function."""
    return f"{obj.__module__}.{obj.__qualname__}"


def importable(obj: Any) -> bool:
    """Whether ``obj`` can be found again from its module and qualified name."""
    try:
        found: Any = importlib.import_module(obj.__module__)
        for part in obj.__qualname__.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return False
    return found is obj


def config_to_python(config: Config, root: str = "config") -> str:
    """Return Python source that sets every field of ``config``.

    Parameters
    ----------
    config : Config
        The config to write.
    root : str, optional
        The name the source uses for the config (``config``; ``root`` works as well).

    Returns
    -------
    source : str
        A header comment naming the class, then a doc comment and an assignment per field.
    """
    lines = [f"{HEADER}{qualified_name(type(config))}",
             "# Load with config.load(path), or with -C path on the command line.",
             ""]
    lines.extend(config._save_lines(root))
    return "\n".join(lines) + "\n"


def save_config(config: Config, path: str | os.PathLike[str] | IO[str],
                root: str = "config") -> None:
    """Write :func:`config_to_python` to an open text stream or (atomically) to a file."""
    text = config_to_python(config, root)
    if hasattr(path, "write"):
        path.write(text)
        return
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def load_config(config: Config, path: str | os.PathLike[str]) -> None:
    """Apply a saved config or an override file to ``config``.

    Raises
    ------
    ConfigFileError
        If the file was saved from another config class, cannot be read, or raises.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    match = _HEADER_RE.search(text[:2000])
    if match is not None and match.group(1) != qualified_name(type(config)):
        line = text[:match.start()].count("\n") + 1
        raise ConfigFileError(str(path), line, f"saved from a {match.group(1)}, cannot be "
                              f"loaded into a {qualified_name(type(config))}")
    apply_override_file(config, path, text=text)
