"""The command-line options shared by every task (``hpcpipe run TASK REPO ...``).

:func:`build_argument_parser` makes a :class:`TaskArgumentParser` with the options of a
command-line task; :meth:`TaskArgumentParser.parse_task_args` parses them, expands the data
ids, applies the camera's config defaults (``camera_defaults``, from the repository's mapper)
and then the ``-C``/``-c`` config overrides in the order given (recording their history),
validates and freezes the config, sets the log levels, imports ``debug.py`` for ``--debug``,
and prints what ``--show`` asks for. Every usage error prints one message naming the option at
fault and exits with status 2, before any data is touched.

What needs a data repository is left to the caller: the data id keys the mapper knows
(``known_id_keys``, a collection or a function of the parsed namespace), ``--show data``
(``namespace.show_data``, then exit if ``namespace.exit_after_show``), and ``--output``,
``--rerun``, ``-j``, ``--profile``, ``--doraise`` and ``--clobber-config``, which are only
parsed and checked here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Union

from hpcpipe.argtypes import non_negative_int, positive_float, positive_int
from hpcpipe.config import Config, ConfigError, apply_override, close_field_names, load_config
from hpcpipe.config import history as _history
from hpcpipe.config.overrides import resolve_field
from hpcpipe.task import show as _show
from hpcpipe.task.dataid import DataIdError, expand_data_ids
from hpcpipe.task.debug import DebugModuleError, load_debug_module
from hpcpipe.task.task import LOGGER_ROOT

__all__ = ["build_argument_parser", "TaskArgumentParser", "apply_log_levels", "parse_log_level",
           "LOG_LEVELS", "positive_int", "non_negative_int", "positive_float",
           "apply_camera_defaults"]

_log = logging.getLogger(__name__)

#: The level names ``--loglevel`` takes (any case), besides numbers.
LOG_LEVELS = {"TRACE": 5, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
              "WARNING": logging.WARNING, "WARN": logging.WARNING, "ERROR": logging.ERROR,
              "CRITICAL": logging.CRITICAL, "FATAL": logging.CRITICAL}

KnownKeys = Union[Collection[str], Callable[[argparse.Namespace], Collection[str]], None]
#: Applies a camera's config defaults to a new config (see ``parse_task_args``).
CameraDefaults = Union[Callable[[argparse.Namespace, Config], None], None]


def apply_camera_defaults(config: Config, overrides: Mapping[str, Any], task_name: str,
                          source: str) -> list[str]:
    """Apply a camera's config defaults for one task (its mapper's ``config_overrides``).

    Parameters
    ----------
    config : Config
        The task's config, with the task's own defaults.
    overrides : mapping of str to value
        Dotted field names of the task's config and their values (``{"isr.doOverscan":
        False}`` for processCcd). A name that starts with the task's own name is also taken
        relative to the task (``isr.doOverscan`` is ``doOverscan`` for the isr task), so a
        camera may give one dict for every task; a dotted name whose first part is not a
        field of this config (an ``isr.*`` default given to ``calibrate``) addresses another
        task and is left out. A name without a dot must be a field of this config.
    task_name : str
        The task's name.
    source : str
        Where the defaults come from (``camera simcam``), recorded in the config's history.

    Returns
    -------
    list of str
        The names applied, in the config's terms.

    Raises
    ------
    UnknownFieldError, FieldValidationError
        For a name of this config's subtasks that does not exist, or a bad value; the
        message names the field.
    """
    applied = []
    for name, value in overrides.items():
        first = name.split(".", 1)[0].split("[", 1)[0]
        if first not in config._fields and "." in name:
            if first != task_name:
                continue
            name = name.split(".", 1)[1]
        owner, field = resolve_field(config, name)
        with _history.recording("camera", source):
            setattr(owner, field.name, value)
        applied.append(name)
    return applied


def parse_log_level(text: str) -> tuple[str | None, int]:
    """Parse a ``--loglevel`` value: ``LEVEL`` or ``component=LEVEL``.

    Returns
    -------
    component : str or None
        The logger (a task's dotted full name, or a logger name starting with ``hpcpipe``);
        ``None`` for the default level.
    level : int
        The ``logging`` level.

    Raises
    ------
    argparse.ArgumentTypeError
        For an unknown level or an empty component.
    """
    component, sep, level_text = text.rpartition("=")
    if sep and not component:
        raise argparse.ArgumentTypeError(f"{text!r}: empty component before '='")
    level_text = level_text.strip()
    if level_text.upper() in LOG_LEVELS:
        level = LOG_LEVELS[level_text.upper()]
    elif level_text.isdigit():
        level = int(level_text)
    else:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown level {level_text!r} (choose from "
            f"{', '.join(k for k in LOG_LEVELS if k not in ('WARN', 'FATAL'))} or a number)")
    return (component or None), level


def logger_for(component: str | None) -> logging.Logger:
    """Return the logger a ``--loglevel`` component names (``None``: the ``hpcpipe`` logger)."""
    if component is None:
        return logging.getLogger("hpcpipe")
    if component == "hpcpipe" or component.startswith("hpcpipe."):
        return logging.getLogger(component)
    return logging.getLogger(f"{LOGGER_ROOT}.{component}")


def apply_log_levels(levels: Sequence[tuple[str | None, int]]) -> None:
    """Set the levels of ``--loglevel``, in order (a task's component under ``hpcpipe.task``)."""
    for component, level in levels:
        logger_for(component).setLevel(level)


def _show_item(text: str) -> str:
    what, sep, pattern = text.partition("=")
    if what == "config" or (what == "history" and sep and pattern):
        return text
    if what in ("data", "tasks", "run") and not sep:
        return text
    if what == "history":
        raise argparse.ArgumentTypeError(f"{text!r}: history needs a field, history=PATTERN")
    raise argparse.ArgumentTypeError(
        f"{text!r} is not one of config[=PATTERN], data, tasks, history=PATTERN, run")


def _rerun(text: str) -> str:
    pieces = text.split(":")
    if len(pieces) > 2 or not all(pieces):
        raise argparse.ArgumentTypeError(f"{text!r} is not OUTPUT or INPUT:OUTPUT")
    return text


class _OverrideAction(argparse.Action):
    """Collect ``-C`` and ``-c`` values, in command-line order, into ``config_overrides``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                  values: Any, option_string: str | None = None) -> None:
        items = list(getattr(namespace, "config_overrides", None) or [])
        option = "/".join(self.option_strings)
        for value in values:
            if self.const == "value" and "=" not in value:
                raise argparse.ArgumentError(self, f"{value!r} is not name=value")
            items.append((self.const, value, option))
        namespace.config_overrides = items


class TaskArgumentParser(argparse.ArgumentParser):
    """An argument parser for a command-line task; see :func:`build_argument_parser`.

    Parameters
    ----------
    config_class : type, optional
        The task's config class, made when :meth:`parse_task_args` is given no config.
    task_name : str, optional
        The task's name, for ``--show tasks``.
    known_id_keys : collection of str or callable, optional
        The data id keys allowed in ``--id``, or a function of the parsed namespace returning
        them (so that a caller can open ``namespace.repo`` first); ``None`` allows any key.
    *args, **kwargs
        As for ``argparse.ArgumentParser``.
    """

    def __init__(self, *args: Any, config_class: type[Config] | None = None,
                 task_name: str | None = None, known_id_keys: KnownKeys = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_class = config_class
        self.task_name = task_name
        self.known_id_keys = known_id_keys

    def parse_task_args(self, args: Sequence[str] | None = None, *, config: Config | None = None,
                        known_id_keys: KnownKeys = None, freeze: bool = True,
                        namespace: argparse.Namespace | None = None,
                        camera_defaults: CameraDefaults = None) -> argparse.Namespace:
        """Parse the command line and prepare the config; exit 2 on a usage error.

        Parameters
        ----------
        args : sequence of str, optional
            The arguments (by default ``sys.argv[1:]``).
        config : Config, optional
            The config to apply the overrides to (by default ``config_class()``).
        known_id_keys : collection of str or callable, optional
            Overrides the parser's ``known_id_keys``.
        freeze : bool, optional
            Freeze the config once it is valid (the default).
        namespace : argparse.Namespace, optional
            Where to put the results.
        camera_defaults : callable, optional
            ``camera_defaults(namespace, config)`` applies the camera's defaults (from the
            repository ``namespace.repo`` names) to the new config, after the task's own
            defaults and before ``-C`` and ``-c`` (see :func:`apply_camera_defaults`); it
            may raise ``ConfigError``, ``ValueError``, ``TypeError`` or ``KeyError``, reported
            as a usage error.

        Returns
        -------
        namespace : argparse.Namespace
            The options, and: ``config`` (validated, frozen), ``id_strings`` (one string per
            ``--id``, ``None`` without ``--id``), ``data_ids`` (their expansion; a bare
            ``--id`` gives ``[{}]``, all data), ``rerun_input``/``rerun_output``,
            ``show_data`` and ``exit_after_show`` (for ``--show data``, which needs the
            repository).

        Raises
        ------
        SystemExit
            Status 2 with a message naming the option on a usage error; status 0 after
            printing what ``--show`` asked for, unless ``--show run`` (or ``data``) is given.
        """
        ns = self.parse_args(args, namespace)
        self._data_ids(ns, known_id_keys if known_id_keys is not None else self.known_id_keys)
        self._output(ns)
        apply_log_levels(ns.loglevel)
        if ns.debug:
            self._debug()
        ns.config = self._config(ns, config, camera_defaults)
        if freeze:
            ns.config.freeze()
        self._show(ns)
        return ns

    # steps --------------------------------------------------------------------------------

    def _data_ids(self, ns: argparse.Namespace, known_id_keys: KnownKeys) -> None:
        ns.id_strings = None if ns.id is None else [" ".join(tokens) for tokens in ns.id]
        keys = known_id_keys(ns) if callable(known_id_keys) else known_id_keys
        try:
            ns.data_ids = expand_data_ids(ns.id_strings or [], known_keys=keys)
        except DataIdError as exc:
            self.error(f"argument --id: {exc}")

    def _output(self, ns: argparse.Namespace) -> None:
        ns.rerun_input = ns.rerun_output = None
        if ns.rerun is not None:
            if ns.output is not None:
                self.error("argument --rerun: not allowed with --output (a rerun is an output "
                           "repository under REPO/rerun)")
            pieces = ns.rerun.split(":")
            ns.rerun_input, ns.rerun_output = (pieces if len(pieces) == 2 else (None, pieces[0]))

    def _debug(self) -> None:
        try:
            module = load_debug_module()
        except DebugModuleError as exc:
            self.error(f"argument --debug: {exc}")
        if module is None:
            _log.warning("--debug: no debug.py on the Python path; debug switches stay off")

    def _config(self, ns: argparse.Namespace, config: Config | None,
                camera_defaults: CameraDefaults = None) -> Config:
        if config is None:
            if self.config_class is None:
                if ns.config_overrides:
                    self.error(f"argument {ns.config_overrides[0][2]}: this command has no "
                               "config to override")
                config = Config()
            else:
                config = self.config_class()
        if camera_defaults is not None:
            try:
                camera_defaults(ns, config)
            except (ConfigError, ValueError, TypeError, KeyError) as exc:
                self.error(f"argument REPO: the camera's config defaults: {_message(exc)}")
        for kind, text, option in ns.config_overrides:
            try:
                if kind == "file":
                    load_config(config, text)
                else:
                    apply_override(config, text)
            except (ConfigError, ValueError, TypeError, KeyError) as exc:
                self.error(f"argument {option}: {_message(exc)}")
        try:
            config.validate()
        except (ConfigError, ValueError, TypeError) as exc:
            self.error(f"invalid config after the -C/-c overrides: {_message(exc)}")
        return config

    def _show(self, ns: argparse.Namespace) -> None:
        show: list[str] = ns.show or []
        ns.show_data = "data" in show
        ns.exit_after_show = bool(show) and "run" not in show
        for item in show:
            what, _, pattern = item.partition("=")
            if what == "config":
                text = _show.format_config(ns.config, pattern or None)
                if pattern and not text:
                    self._no_match(ns.config, item, pattern)
                print(text)
            elif what == "history":
                text = _show.format_history(ns.config, pattern)
                if not text:
                    self._no_match(ns.config, item, pattern)
                print(text)
            elif what == "tasks":
                print(_show.format_tasks(ns.config, self.task_name))
        sys.stdout.flush()
        if ns.exit_after_show and not ns.show_data:
            self.exit(0)

    def _no_match(self, config: Config, item: str, pattern: str) -> None:
        close = close_field_names(config, pattern)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        self.error(f"argument --show: {item}: no config field matches {pattern!r}{hint}")


def _message(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    return text


def build_argument_parser(prog: str | None = None, *, description: str | None = None,
                          config_class: type[Config] | None = None,
                          task_name: str | None = None, known_id_keys: KnownKeys = None,
                          repo: bool = True) -> TaskArgumentParser:
    """Build the argument parser of a command-line task.

    Parameters
    ----------
    prog : str, optional
        The program name in messages (``hpcpipe run processCcd``).
    description : str, optional
        The help text's description.
    config_class : type, optional
        The task's config class.
    task_name : str, optional
        The task's name, for ``--show tasks``.
    known_id_keys : collection of str or callable, optional
        See :class:`TaskArgumentParser`.
    repo : bool, optional
        Whether to take the positional ``REPO`` (the input repository).

    Returns
    -------
    parser : TaskArgumentParser
        With ``REPO``, ``--id``, ``--output``, ``--rerun``, ``--show``, ``--loglevel``,
        ``--debug``, ``--doraise``, ``-j``, ``--profile``, ``--clobber-config``, ``-C`` and
        ``-c``.
    """
    parser = TaskArgumentParser(
        prog=prog, description=description, config_class=config_class, task_name=task_name,
        known_id_keys=known_id_keys, fromfile_prefix_chars="@",
        epilog="Data ids: key=value pairs separated by spaces; 1..5 is an inclusive range, "
               "1..9:2 one with a stride, g^r alternatives; keys combine as a cross product. "
               "@FILE reads more arguments from FILE, one a line.")
    if repo:
        parser.add_argument("repo", metavar="REPO", help="the input data repository")
    parser.add_argument("--id", nargs="*", action="append", metavar="KEY=VALUE",
                        help="data ids to process (repeatable; bare --id means all data)")
    parser.add_argument("--output", metavar="OUT",
                        help="a new output repository chained to REPO")
    parser.add_argument("--rerun", type=_rerun, metavar="[INPUT:]OUTPUT",
                        help="output to REPO/rerun/OUTPUT (reading INPUT's rerun)")
    parser.add_argument("--show", nargs="+", action="extend", type=_show_item, default=[],
                        metavar="ITEM",
                        help="print config[=PATTERN], data, tasks or history=PATTERN, then "
                             "exit unless 'run' is given as well")
    parser.add_argument("--loglevel", nargs="+", action="extend", type=parse_log_level,
                        default=[], metavar="[COMPONENT=]LEVEL",
                        help="logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL), for "
                             "everything or for one task (process.detection=DEBUG)")
    parser.add_argument("--debug", action="store_true",
                        help="import debug.py from the Python path to switch on debug output")
    parser.add_argument("--doraise", action="store_true",
                        help="stop at the first failing data id instead of going on")
    parser.add_argument("-j", "--processes", type=positive_int, default=1, metavar="N",
                        help="process N data ids at once on this machine (default 1)")
    parser.add_argument("--profile", metavar="FILE", help="write cProfile statistics to FILE")
    parser.add_argument("--clobber-config", action="store_true",
                        help="replace a different config already in the output repository "
                             "(keeping a backup) instead of refusing to run")
    parser.add_argument("-C", "--config-file", nargs="+", action=_OverrideAction, const="file",
                        dest="config_overrides", metavar="FILE.py",
                        help="config override file(s): Python setting config.NAME = VALUE")
    parser.add_argument("-c", "--config", nargs="+", action=_OverrideAction, const="value",
                        dest="config_overrides", metavar="NAME=VALUE",
                        help="config override(s), applied in order with -C")
    parser.set_defaults(config_overrides=[])
    return parser
