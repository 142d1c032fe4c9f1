"""Tasks: configured algorithm code, its discovery, and the command line shared by all tasks.

* :class:`Task`, :class:`Struct` and :func:`timed_method` (:mod:`~hpcpipe.task.task`,
  :mod:`~hpcpipe.task.timing`): the unit of algorithm code, its results and its metadata.
* :func:`find_task` (:mod:`~hpcpipe.task.discovery`): a task by registered entry point
  (group ``hpcpipe.tasks``) or by import path.
* :func:`expand_data_ids` (:mod:`~hpcpipe.task.dataid`): the ``--id`` grammar.
* :func:`build_argument_parser` (:mod:`~hpcpipe.task.argparser`): the task command line.
* :mod:`~hpcpipe.task.debug`: debug switches set by a user's ``debug.py``.
"""

from __future__ import annotations

from hpcpipe.task.argparser import TaskArgumentParser, apply_log_levels, build_argument_parser
from hpcpipe.task.dataid import DataIdError, expand_data_ids, parse_data_id
from hpcpipe.task.debug import DebugInfo, get_debug_info, set_debug_info
from hpcpipe.task.discovery import (
    ENTRY_POINT_GROUP,
    TaskNotFoundError,
    find_task,
    import_object,
    registered_tasks,
)
from hpcpipe.task.struct import Struct
from hpcpipe.task.task import Task, TaskError
from hpcpipe.task.timing import timed_method

__all__ = [
    "DataIdError",
    "DebugInfo",
    "ENTRY_POINT_GROUP",
    "Struct",
    "Task",
    "TaskArgumentParser",
    "TaskError",
    "TaskNotFoundError",
    "apply_log_levels",
    "build_argument_parser",
    "expand_data_ids",
    "find_task",
    "get_debug_info",
    "import_object",
    "parse_data_id",
    "registered_tasks",
    "set_debug_info",
    "timed_method",
]
