"""Errors raised by configs: bad values, unknown fields, frozen configs and override files.

Each is an :class:`~hpcpipe.errors.HpcpipeError` and also derives from the closest built-in
exception (``ValueError`` for bad values, ``AttributeError`` for unknown fields), so that code
written against plain Python objects keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence

from hpcpipe.errors import HpcpipeError

__all__ = [
    "ConfigError",
    "FieldValidationError",
    "FrozenConfigError",
    "UnknownFieldError",
    "ConfigFileError",
]


class ConfigError(HpcpipeError):
    """Base class of the errors a config reports."""


class FieldValidationError(ConfigError, ValueError):
    """A value of the wrong type, out of range, not among the choices, or failing a check.

    Parameters
    ----------
    message : str
        What is wrong; it names the field.
    field : str, optional
        The dotted name of the field at fault.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class FrozenConfigError(FieldValidationError):
    """An attempt to change a config after :meth:`~hpcpipe.config.Config.freeze`."""


class UnknownFieldError(ConfigError, AttributeError):
    """A field name that the config does not define.

    Parameters
    ----------
    name : str
        The (dotted) name that was asked for.
    config_name : str
        The config class (and place) that does not have it.
    matches : sequence of str
        The close matches among the names the config does define.
    """

    def __init__(self, name: str, config_name: str, matches: Sequence[str] = ()) -> None:
        self.field = name
        self.config_name = config_name
        self.matches = list(matches)
        hint = f"; did you mean {' or '.join(repr(m) for m in self.matches)}?" if matches else ""
        super().__init__(f"{config_name} has no field {name!r}{hint}")


class ConfigFileError(ConfigError, ValueError):
    """A config override file that could not be read or raised while it ran.

    Parameters
    ----------
    path : str
        The file at fault.
    line : int or None
        The line of the file that raised, when known.
    reason : str
        What went wrong (the exception's type and message).
    """

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")
