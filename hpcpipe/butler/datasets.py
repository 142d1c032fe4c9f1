"""Data id keys, path templates, dataset types and dataset type patterns.

These are the declarations a mapper is made of:

* a :class:`DataIdKey` names one key of the data ids (``visit``, ``ccd``, ``filter``...) with
  its Python type, its meaning and the values it accepts;
* a :class:`PathTemplate` turns a data id into a path inside the repository, with
  :meth:`str.format` fields (``calexp/v{visit:07d}/{filter}/calexp_c{ccd:03d}.fits``), and
  parses paths back into data ids;
* a :class:`DatasetType` ties a name to its Python type, formatter, template and doc;
* a :class:`DatasetTypePattern` resolves a whole family of names (``<task>_config``) whose
  members are not known in advance, since users add tasks.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.butler.errors import DataIdValueError
from hpcpipe.butler.formatters import Formatter

if TYPE_CHECKING:
    from hpcpipe.butler.mapper import Mapper

__all__ = ["DataIdKey", "PathTemplate", "DatasetType", "DatasetTypePattern", "KEY_TYPES"]

#: The Python types a data id key may have.
KEY_TYPES = (int, float, str)


@dataclass(frozen=True)
class DataIdKey:
    """One key of a mapper's data ids.

    Parameters
    ----------
    name : str
        The key (``visit``).
    type : {int, float, str}
        The type of its values. ints are accepted for float keys; bools never are.
    doc : str
        What the key means, with units and conventions.
    example : object, optional
        A typical value, for the documentation.
    pattern : str, optional
        A regular expression that string values must match completely.
    choices : tuple, optional
        The only values accepted (empty: any value).
    normalize : callable, optional
        Applied to a value first (for example ``(1, 2)`` to ``"1,2"`` for patches).
    """

    name: str
    type: type
    doc: str
    example: Any = None
    pattern: str | None = None
    choices: tuple[Any, ...] = ()
    normalize: Callable[[Any], Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.type not in KEY_TYPES:
            raise TypeError(f"data id key {self.name!r}: type must be int, float or str")

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to the key's type, or raise DataIdValueError."""
        if self.normalize is not None:
            value = self.normalize(value)
        ok: bool
        if isinstance(value, (bool, np.bool_)):
            ok = False
        elif self.type is int:
            ok = isinstance(value, (int, np.integer))
        elif self.type is float:
            ok = isinstance(value, (int, float, np.integer, np.floating))
        else:
            ok = isinstance(value, str)
        if not ok:
            example = f" (for example {self.example!r})" if self.example is not None else ""
            raise DataIdValueError(
                f"data id key {self.name!r} takes {self.type.__name__} values{example}, "
                f"not {type(value).__name__} {value!r}"
            )
        value = self.type(value)
        if self.pattern is not None and not re.fullmatch(self.pattern, str(value)):
            raise DataIdValueError(
                f"data id key {self.name!r}: {value!r} is not of the form {self.pattern!r}"
                + (f" (for example {self.example!r})" if self.example is not None else "")
            )
        if self.choices and value not in self.choices:
            raise DataIdValueError(
                f"data id key {self.name!r}: {value!r} is not one of "
                f"{', '.join(repr(c) for c in self.choices)}"
            )
        return value

    def parse(self, text: str) -> Any:
        """Convert the text of a path or command-line argument to the key's type."""
        return self.type(text)


class PathTemplate:
    """A repository path with :meth:`str.format` fields named after data id keys.

    Parameters
    ----------
    text : str
        For example ``"calexp/v{visit:07d}/{filter}/calexp_c{ccd:03d}.fits"``. Fields must be
        plain names (no attribute or index access); a key may appear several times.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._parts: list[tuple[str, str | None, str]] = []  # (literal, key, spec)
        keys: list[str] = []
        for literal, name, spec, conversion in string.Formatter().parse(text):
            if name is not None and (not name.isidentifier() or conversion):
                raise ValueError(f"template {text!r}: field {name!r} must be a plain key name")
            self._parts.append((literal, name, spec or ""))
            if name is not None and name not in keys:
                keys.append(name)
        self.keys: tuple[str, ...] = tuple(keys)
        pieces, counts = [], dict.fromkeys(keys, 0)
        for literal, name, spec in self._parts:
            pieces.append(re.escape(literal))
            if name is not None:
                group = f"{name}__{counts[name]}"
                counts[name] += 1
                value = r"-?\d+" if spec.endswith("d") else r"[^/]+?"
                pieces.append(f"(?P<{group}>{value})")
        self._regex = re.compile("".join(pieces))

    def format(self, data_id: Mapping[str, Any]) -> str:
        """The path of a complete data id (extra keys are ignored)."""
        return self.text.format(**{k: data_id[k] for k in self.keys})

    def glob(self, data_id: Mapping[str, Any]) -> str:
        """A glob pattern matching the paths of every data id that agrees with ``data_id``."""
        out = []
        for literal, name, spec in self._parts:
            out.append(re.sub(r"([*?\[])", r"[\1]", literal))
            if name is not None:
                out.append(format(data_id[name], spec) if name in data_id else "*")
        return "".join(out)

    def parse(self, path: str) -> dict[str, str] | None:
        """The key values (as text) of a path made from this template, or None."""
        match = self._regex.fullmatch(path)
        if match is None:
            return None
        values: dict[str, str] = {}
        for group, text in match.groupdict().items():
            key = group.rsplit("__", 1)[0]
            values.setdefault(key, text)
        return values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathTemplate) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"PathTemplate({self.text!r})"


@dataclass(frozen=True)
class DatasetType:
    """A named kind of dataset: its Python type, storage format, path template and doc.

    Parameters
    ----------
    name : str
        The name tasks use (``calexp``).
    formatter : Formatter
        Reads and writes the files (it knows the Python type).
    template : PathTemplate or str
        The path inside a repository; its fields are the dataset type's keys.
    doc : str
        What the dataset is.
    calib_keys : tuple of str, optional
        For calibration products only: the keys a science exposure and its calibration must
        share (``("ccd", "filter")`` for flats); the calibration is chosen by date among those
        whose validity range contains the exposure's date.
    aliases : tuple of str, optional
        Other names of the dataset type (Gen2 names, for example).
    """

    name: str
    formatter: Formatter
    template: PathTemplate
    doc: str
    calib_keys: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    pattern: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.template, str):
            object.__setattr__(self, "template", PathTemplate(self.template))

    @property
    def keys(self) -> tuple[str, ...]:
        """The data id keys that identify one dataset (the template's fields)."""
        return self.template.keys

    @property
    def python_type(self) -> str:
        """The Python type of the objects, as a dotted name."""
        return self.formatter.python_type

    @property
    def is_calibration(self) -> bool:
        """Whether datasets are found by rendezvous in the calibration registry."""
        return self.calib_keys is not None


@dataclass(frozen=True)
class DatasetTypePattern:
    """A family of dataset types named by a pattern, such as ``<task>_config``.

    Parameters
    ----------
    display : str
        The pattern as documented (``<task>_config``).
    regex : str
        A regular expression matching the names; its named groups are passed to ``make``.
    doc : str
        What the datasets are and how their keys are chosen.
    formatter : Formatter
        The formatter of every member (for the documentation).
    template_doc : str
        The path template, as documented (``config/<task>.yaml``).
    make : callable
        ``make(mapper, name, groups, data_id)`` returns the :class:`DatasetType` of ``name``;
        ``data_id`` (possibly empty) lets the keys depend on the id given (task metadata).
    """

    display: str
    regex: str
    doc: str
    formatter: Formatter
    template_doc: str
    make: Callable[[Mapper, str, dict[str, str], Mapping[str, Any]], DatasetType] = field(
        compare=False)

    def resolve(self, mapper: Mapper, name: str, data_id: Mapping[str, Any]
                ) -> DatasetType | None:
        """The dataset type of ``name`` if it matches this pattern, else None."""
        match = re.fullmatch(self.regex, name)
        if match is None:
            return None
        return self.make(mapper, name, match.groupdict(), data_id)
