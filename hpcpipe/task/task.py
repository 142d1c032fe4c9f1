"""The :class:`Task` base class: configured algorithm code with subtasks, a logger and metadata."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from hpcpipe.config import Config, ConfigurableInstance
from hpcpipe.errors import HpcpipeError
from hpcpipe.task import debug as _debug
from hpcpipe.task.struct import Struct
from hpcpipe.task.timing import timed_block

__all__ = ["Task", "TaskError", "LOGGER_ROOT"]

#: Loggers of tasks are named ``hpcpipe.task.<full name>``.
LOGGER_ROOT = "hpcpipe.task"


class TaskError(HpcpipeError, ValueError):
    """A task built wrongly: no name, a name used twice, a subtask field that is not one."""


class Task:
    """Algorithm code configured by a :class:`~hpcpipe.config.Config`.

    A task works on objects, not files; :meth:`run` returns a :class:`Struct` of named
    results. Subtasks come from :class:`~hpcpipe.config.ConfigurableField` s of the config
    (:meth:`make_subtask`) and form a hierarchy with dotted names (``process.detection``); each
    task logs through a standard ``logging`` logger named ``hpcpipe.task.<full name>`` and
    records timing and memory in :attr:`metadata` (:func:`~hpcpipe.task.timed_method`)::

        class DetectConfig(Config):
            threshold = Field("threshold, in sigma", float, default=5.0)

        class DetectTask(Task):
            ConfigClass = DetectConfig
            _DefaultName = "detect"

            @timed_method
            def run(self, image):
                self.log.info("thresholding at %g sigma", self.config.threshold)
                return Struct(n_sources=...)

    Parameters
    ----------
    config : Config, optional
        The configuration; by default the parent's field of the same name for a subtask, or a
        new ``ConfigClass()`` for a top-level task.
    name : str, optional
        The task's name in the hierarchy (no dots); ``_DefaultName`` for a top-level task.
        Required for a subtask.
    parent_task : Task, optional
        The parent, for a subtask.
    log : logging.Logger, optional
        A logger to put this task's logger under (``log.getChild(name)``); by default the
        parent's logger, or ``hpcpipe.task`` for a top-level task.

    Raises
    ------
    TaskError
        Without a name, with a dotted name, or if the hierarchy already has the full name.
    """

    #: The config class of the task.
    ConfigClass: ClassVar[type[Config]] = Config
    #: The name of a top-level task when none is given.
    _DefaultName: ClassVar[str | None] = None

    config: Config
    log: logging.Logger

    def __init__(self, config: Config | None = None, name: str | None = None,
                 parent_task: Task | None = None, log: logging.Logger | None = None) -> None:
        cls = type(self).__name__
        if parent_task is None:
            name = name if name is not None else self._DefaultName
            if not name:
                raise TaskError(f"{cls} needs a name: pass name= or define _DefaultName")
            full_name = name
            self._task_dict: dict[str, Task] = {}
            if config is None:
                config = self.ConfigClass()
            parent_log = log if log is not None else logging.getLogger(LOGGER_ROOT)
        else:
            if not name:
                raise TaskError(f"{cls}: a subtask needs a name")
            full_name = f"{parent_task.full_name}.{name}"
            self._task_dict = parent_task._task_dict
            if config is None:
                config = getattr(parent_task.config, name)
            parent_log = log if log is not None else parent_task.log
        if "." in name:
            raise TaskError(f"{cls}: task name {name!r} may not contain '.'")
        if isinstance(config, ConfigurableInstance):
            config = config.value
        if not isinstance(config, Config):
            raise TaskError(f"{cls}: config must be a Config, not {type(config).__name__}")
        if full_name in self._task_dict:
            raise TaskError(f"{cls}: the task hierarchy already has a task {full_name!r}")
        self.config = config
        self._name = name
        self._full_name = full_name
        self._parent = parent_task
        self.log = parent_log.getChild(name)
        self.metadata: dict[str, Any] = {}
        self._task_dict[full_name] = self

    @property
    def name(self) -> str:
        """The task's own name (``detection``)."""
        return self._name

    @property
    def full_name(self) -> str:
        """The dotted name in the hierarchy (``process.detection``)."""
        return self._full_name

    @property
    def parent(self) -> Task | None:
        """The parent task, or ``None`` for a top-level task."""
        return self._parent

    @property
    def debug(self) -> Any:
        """The task module's debug switches (set by ``--debug``; all ``False`` otherwise)."""
        return _debug.get_debug_info(type(self).__module__)

    def run(self, *args: Any, **kwargs: Any) -> Struct:
        """Process the inputs and return the results as a :class:`Struct`."""
        raise NotImplementedError(f"{type(self).__name__} does not implement run()")

    def make_subtask(self, name: str, **kwargs: Any) -> Task:
        """Build the subtask of the config's ``ConfigurableField`` called ``name``.

        The subtask is also set as the attribute ``name`` of this task.

        Parameters
        ----------
        name : str
            The name of a :class:`~hpcpipe.config.ConfigurableField` of this task's config;
            it is also the subtask's name.
        **kwargs
            Further arguments of the subtask's constructor.

        Raises
        ------
        TaskError
            If the config has no such ``ConfigurableField``.
        """
        value = getattr(self.config, name, None)
        if not isinstance(value, ConfigurableInstance):
            raise TaskError(f"{type(self).__name__}: config field {name!r} is not a "
                            "ConfigurableField")
        subtask = value.apply(name=name, parent_task=self, **kwargs)
        setattr(self, name, subtask)
        return subtask

    def _hierarchy(self) -> Iterator[Task]:
        prefix = self._full_name + "."
        for full_name, task in self._task_dict.items():
            if full_name == self._full_name or full_name.startswith(prefix):
                yield task

    def get_task_dict(self) -> dict[str, Task]:
        """Return this task and its subtasks (all levels), by full name."""
        return {task.full_name: task for task in self._hierarchy()}

    def get_full_metadata(self) -> dict[str, dict[str, Any]]:
        """Return the metadata of this task and its subtasks, by full name (copies)."""
        return {task.full_name: dict(task.metadata) for task in self._hierarchy()}

    def reset_metadata(self) -> None:
        """Empty the metadata of this task and its subtasks."""
        for task in self._hierarchy():
            task.metadata.clear()

    def timer(self, name: str) -> Any:
        """Time a block into :attr:`metadata` under ``name``, as :func:`timed_method` does.

        Examples
        --------
        >>> with self.timer("background"):  # doctest: +SKIP
        ...     bg = self.estimate(image)
        """
        return timed_block(self, name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._full_name!r}>"
