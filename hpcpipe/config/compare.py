"""Field-by-field comparison of two configs.

This module sits below the config core (:mod:`hpcpipe.config.config` and the field modules
import it, never the other way round): :class:`ConfigDifference` is what every field's
``_compare`` returns, and :func:`compare_fields` walks a config through its ``_fields``, so it
needs nothing from the classes it compares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type-only: the config core imports this module
    from hpcpipe.config.config import Config

__all__ = ["ConfigDifference", "compare_configs", "compare_fields", "format_differences"]


@dataclass(frozen=True)
class ConfigDifference:
    """One field whose value differs between two configs.

    Attributes
    ----------
    name : str
        The dotted field name (``"isr.doBias"``); for a retargeted subtask, the field name
        followed by ``" (target)"``; for configs of different classes, ``"(config class)"``.
    value : object
        The value in the config that was compared (``self``).
    other : object
        The value in the other config.
    """

    name: str
    value: Any
    other: Any

    def __str__(self) -> str:
        return f"{self.name}: {self.value!r} != {self.other!r}"


def compare_configs(a: Config, b: Config) -> list[ConfigDifference]:
    """List the differences between two configs, field by field, in declaration order.

    Parameters
    ----------
    a, b : Config
        The configs; if their classes differ that is the only difference reported.

    Returns
    -------
    differences : list of ConfigDifference
        Empty when every field is equal (NaN equals NaN).
    """
    if type(a) is not type(b):
        return [ConfigDifference("(config class)", _class_name(type(a)), _class_name(type(b)))]
    return compare_fields(a, b, "")


def compare_fields(a: Config, b: Config, prefix: str) -> list[ConfigDifference]:
    """Compare the fields of two configs of the same class; names get ``prefix`` in front."""
    out: list[ConfigDifference] = []
    for field in a._fields.values():
        out.extend(field._compare(a, b, prefix))
    return out


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def format_differences(differences: list[ConfigDifference]) -> str:
    """Return the differences as text, one per line."""
    return "\n".join(str(d) for d in differences)
