"""Debug switches of tasks, set by a user's ``debug.py`` (the ``--debug`` option).

A task asks for its switches with :func:`get_debug_info` (or :attr:`Task.debug`), by its
module's name; every switch not set is ``False``. With ``--debug``, the command line imports a
module called ``debug`` from ``sys.path`` (``PYTHONPATH`` or the current directory) and, if it
defines ``DebugInfo``, calls that instead to make each module's switches::

    # debug.py
    from hpcpipe.task.debug import DebugInfo as _Default

    def DebugInfo(name):
        info = _Default(name)
        if name == "mytasks.detect":
            info.display = True        # DetectTask shows its footprints
            info.dump_dir = "/tmp/dbg"
        return info
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from hpcpipe.errors import HpcpipeError

__all__ = ["DebugInfo", "get_debug_info", "set_debug_info", "load_debug_module",
           "DebugModuleError"]


class DebugInfo:
    """Debug switches of one module: any switch that was not set is ``False``.

    Parameters
    ----------
    name : str
        The module (``type(task).__module__``) the switches are for.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return False

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"DebugInfo({items})"


_factory: Callable[[str], Any] = DebugInfo


def get_debug_info(name: str) -> Any:
    """Return the debug switches of module ``name`` (every switch ``False`` by default)."""
    return _factory(name)


def set_debug_info(factory: Callable[[str], Any] | None) -> None:
    """Make ``factory(name)`` the source of debug switches (``None``: all off again)."""
    global _factory
    _factory = DebugInfo if factory is None else factory


class DebugModuleError(HpcpipeError, ImportError):
    """A ``debug.py`` that raised while it was imported (message: file, line, exception)."""


def load_debug_module(name: str = "debug") -> ModuleType | None:
    """Import the user's debug module and install its ``DebugInfo``.

    Returns
    -------
    module : module or None
        The module, or ``None`` if there is none on ``sys.path``.

    Raises
    ------
    DebugModuleError
        If the module raises while it is imported.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 (the user's file: report where it failed)
        del sys.modules[name]
        where = spec.origin or name
        line = exc.lineno if isinstance(exc, SyntaxError) else None
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            if frame.f_code.co_filename == spec.origin:
                line = lineno
        at = f"{where}, line {line}" if line is not None else where
        raise DebugModuleError(f"{at}: {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, "DebugInfo", None)
    if callable(factory):
        set_debug_info(factory)
    return module
