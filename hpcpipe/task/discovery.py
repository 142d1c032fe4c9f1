"""Finding a task class by registered name or by import path.

Packages outside hpcpipe register their tasks as entry points in the group ``hpcpipe.tasks``
(in ``pyproject.toml``)::

    [project.entry-points."hpcpipe.tasks"]
    myDetect = "mypackage.detect:MyDetectTask"

after which ``hpcpipe run myDetect REPO ...`` and :func:`find_task` ``("myDetect")`` find it. A
task that is not registered is found by its import path, ``package.module:Class`` or
``package.module.Class``. hpcpipe's own command-line tasks (:data:`BUILTIN_TASKS`) are found
without any installed metadata (a fresh checkout on ``PYTHONPATH``); setup.py registers the
same names as entry points.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from hpcpipe.errors import HpcpipeError
from hpcpipe.task.task import Task

__all__ = ["BUILTIN_TASKS", "ENTRY_POINT_GROUP", "TaskNotFoundError", "find_task",
           "registered_tasks", "import_object"]

#: The entry point group of registered tasks.
ENTRY_POINT_GROUP = "hpcpipe.tasks"

#: hpcpipe's own command-line tasks, by name (the same as its ``hpcpipe.tasks`` entry points
#: in setup.py), found even where hpcpipe's package metadata is not installed.
BUILTIN_TASKS: dict[str, str] = {
    "processCcd": "hpcpipe.pipe.process_ccd:ProcessCcdTask",
    "isr": "hpcpipe.pipe.isr:IsrTask",
    "characterizeImage": "hpcpipe.pipe.characterize:CharacterizeImageTask",
    "calibrate": "hpcpipe.pipe.calibrate:CalibrateTask",
    "imageDifference": "hpcpipe.diffim.image_difference:ImageDifferenceTask",
}


class TaskNotFoundError(HpcpipeError, LookupError):
    """No task is registered under a name and it is not an import path of one."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def registered_tasks(group: str = ENTRY_POINT_GROUP) -> dict[str, EntryPoint]:
    """Return the entry points of the registered tasks, by name.

    In the default group, hpcpipe's :data:`BUILTIN_TASKS` come first, then the installed
    entry points (hpcpipe's own, when installed, are the same).

    Raises
    ------
    TaskNotFoundError
        If two installed distributions (or one and hpcpipe) register different tasks under
        one name.
    """
    found: dict[str, EntryPoint] = {}
    if group == ENTRY_POINT_GROUP:
        found = {name: EntryPoint(name, value, group) for name, value in BUILTIN_TASKS.items()}
    for ep in entry_points(group=group):
        old = found.get(ep.name)
        if old is not None and old.value != ep.value:
            raise TaskNotFoundError(f"task name {ep.name!r} is registered twice, as "
                                    f"{old.value} and {ep.value}")
        found[ep.name] = ep
    return dict(sorted(found.items()))


def import_object(path: str) -> Any:
    """Import ``package.module:Name`` or ``package.module.Name`` (``Name`` may be dotted).

    Raises
    ------
    ImportError
        If no prefix of the path is an importable module holding the rest; the message names
        the path. An error raised by the module itself while it is imported propagates.
    """
    if ":" in path:
        module_name, _, attr = path.partition(":")
        candidates = [(module_name, attr)]
    else:
        pieces = path.split(".")
        candidates = [(".".join(pieces[:i]), ".".join(pieces[i:]))
                      for i in range(len(pieces) - 1, 0, -1)]
    last_error = f"{path!r} is not an import path (package.module:Class)"
    for module_name, attr in candidates:
        if not module_name or not attr:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not module_name.startswith(exc.name) and \
                    not exc.name.startswith(module_name):  # the module imports a missing one
                raise ImportError(f"cannot import {path!r}: importing {module_name!r} "
                                  f"failed: {exc}") from exc
            last_error = f"no module named {module_name!r}"
            continue
        obj: Any = module
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            last_error = f"module {module_name!r} has no attribute {attr!r}"
            continue
        return obj
    raise ImportError(f"cannot import {path!r}: {last_error}")


def find_task(name: str, group: str = ENTRY_POINT_GROUP) -> type:
    """Return the task class registered as ``name``, or at the import path ``name``.

    Parameters
    ----------
    name : str
        A registered task name, ``package.module:Class`` or ``package.module.Class``.
    group : str, optional
        The entry point group of registered tasks.

    Returns
    -------
    task_class : type
        A :class:`~hpcpipe.task.Task` subclass.

    Raises
    ------
    TaskNotFoundError
        If the name is neither registered nor an import path of a Task subclass; the message
        lists the registered names (and the close ones).
    """
    registered = registered_tasks(group)
    if name in registered:
        ep = registered[name]
        try:
            obj = ep.load()
        except (ImportError, AttributeError) as exc:
            raise TaskNotFoundError(f"task {name!r} is registered as {ep.value} but cannot be "
                                    f"loaded: {exc}") from exc
        where = f"registered task {name!r} ({ep.value})"
    elif "." in name or ":" in name:
        try:
            obj = import_object(name)
        except ImportError as exc:
            raise TaskNotFoundError(f"{exc}{_known(registered)}") from exc
        where = f"{name!r}"
    else:
        close = difflib.get_close_matches(name, list(registered), n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise TaskNotFoundError(f"no task is registered as {name!r}{hint}"
                                f"{_known(registered)}")
    if not (isinstance(obj, type) and issubclass(obj, Task)):
        raise TaskNotFoundError(f"{where} is {obj!r}, not a Task subclass")
    return obj


def _known(registered: dict[str, EntryPoint]) -> str:
    names = ", ".join(registered) if registered else "none"
    return (f" (registered tasks: {names}; or give an import path such as "
            "package.module:TaskClass)")
