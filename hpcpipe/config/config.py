"""The :class:`Config` base class: a set of typed fields with history, freezing and validation.

The package is layered; each module imports only those above it in this list, never one below
(type-only imports under ``TYPE_CHECKING`` aside)::

    errors, history          what went wrong; where each value was set
    compare                  ConfigDifference, the field-by-field walk
    fields                   Field and the scalar, list and dict fields
    overrides                dotted names and -c/-C overrides (duck-typed: no config class)
    serialize                configs as Python source, saved atomically (hpcpipe.io.atomic)
    config                   Config (this module)
    configurable, registry   the fields that hold configs: subtasks, registry choices
    stored                   configs stored as YAML data

Like LSST's pex_config, the behaviour lives on the nodes: each field knows how to compare,
save, freeze and parse its values, and each node of a config tree resolves the next part of a
dotted name itself (``_dotted_child``, ``_dotted_field``), so the modules below this one use a
config only through those methods.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Iterator
from typing import IO, Any, ClassVar

from hpcpipe.config.compare import ConfigDifference, compare_configs
from hpcpipe.config.errors import FrozenConfigError, UnknownFieldError
from hpcpipe.config.fields import Field
from hpcpipe.config.history import HistoryEntry, format_history_entries
from hpcpipe.config.overrides import resolve_field
from hpcpipe.config.serialize import config_to_python, load_config, save_config

__all__ = ["Config", "config_fields"]

#: Names of Config methods, which fields may not shadow (filled in below the class).
_RESERVED: frozenset[str] = frozenset()


class Config:
    """A set of typed fields: the parameters of a task.

    Declare fields in the class body; give a subclass a :meth:`set_defaults` to change the
    defaults of the fields it inherits or holds, and a :meth:`validate` to check fields against
    each other (call ``super()`` in both)::

        class DetectConfig(Config):
            threshold = RangeField("detection threshold, in sigma", float, default=5.0, min=0)
            planes = ListField("mask planes to ignore", str, default=["BAD", "SAT"])

        config = DetectConfig(threshold=4.0)
        config.planes.append("CR")

    Setting a name that is not a field raises :class:`~hpcpipe.config.UnknownFieldError` with
    the close matches; setting a value of the wrong type raises
    :class:`~hpcpipe.config.FieldValidationError`. Every assignment is recorded with where it
    was made (:meth:`history`); :meth:`field_names` lists them all.

    Parameters
    ----------
    **values
        Field values to set after the defaults.
    """

    _fields: ClassVar[dict[str, Field]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, Field] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(getattr(base, "_fields", {}))
        for name, value in vars(cls).items():
            if isinstance(value, Field):
                if name in _RESERVED or name.startswith("_"):
                    raise TypeError(f"{cls.__name__}: {name!r} cannot be a field name (it is "
                                    "private or a Config method)")
                fields[name] = value
            elif name in fields:
                del fields[name]
        cls._fields = fields

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_storage", {})
        object.__setattr__(self, "_history", {})
        object.__setattr__(self, "_frozen", False)
        object.__setattr__(self, "_path", "")
        for field in self._fields.values():
            field._init_value(self)
        self.set_defaults()
        for name, value in values.items():
            setattr(self, name, value)

    def set_defaults(self) -> None:
        """Change the defaults of a new config; override in subclasses and call ``super()``."""

    # attribute access ---------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        if (name in self._fields or name.startswith("_")
                or isinstance(getattr(type(self), name, None), property)):
            object.__setattr__(self, name, value)
        else:
            raise self._unknown(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise self._unknown(name)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete config field {name!r}")

    def _unknown(self, name: str) -> UnknownFieldError:
        matches = difflib.get_close_matches(name, list(self._fields), n=3, cutoff=0.6)
        return UnknownFieldError(name, self._describe(), matches)

    def _describe(self) -> str:
        where = f" (at {self._path!r})" if self._path else ""
        return f"{type(self).__name__}{where}"

    # internals used by the fields --------------------------------------------------------

    def _full_name(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def _check_not_frozen(self, name: str) -> None:
        if self._frozen:
            full = self._full_name(name)
            raise FrozenConfigError(f"cannot set {full!r}: the config is frozen", full)

    def _record(self, name: str, value: Any, kind: str, location: str) -> None:
        self._history.setdefault(name, []).append(HistoryEntry(value, kind, location))

    def _set_path(self, path: str) -> None:
        object.__setattr__(self, "_path", path)
        for sub_name, sub in self._subconfigs():
            sub._set_path(self._full_name(sub_name))

    def _subconfigs(self) -> Iterator[tuple[str, Config]]:
        for field in self._fields.values():
            yield from field._subconfigs(self)

    # dotted names (hpcpipe.config.overrides walks a config tree through these) ------------

    def _dotted_child(self, attr: str, key: str | None) -> Any:
        """The node that ``attr`` (or ``attr[key]``) names in this config.

        Raises
        ------
        KeyError
            If there is no such field, or it takes no ``[key]``.
        """
        if attr not in self._fields:
            raise KeyError(attr)
        return self._fields[attr]._resolve_child(self, key)

    def _dotted_field(self, attr: str, key: str | None) -> tuple[Config, Field]:
        """This config and its field ``attr``, the last part of a dotted name.

        Raises
        ------
        KeyError
            If there is no such field (or a ``[key]`` is given).
        """
        if key is not None or attr not in self._fields:
            raise KeyError(attr)
        return self, self._fields[attr]

    # public API ---------------------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        """Whether the config (and every config it holds) refuses changes."""
        return self._frozen

    def freeze(self) -> None:
        """Make the config and every config it holds read-only."""
        object.__setattr__(self, "_frozen", True)
        for field in self._fields.values():
            field._freeze(self)

    def validate(self) -> None:
        """Check every field, nested configs included.

        Override in subclasses to check fields against each other (call ``super()`` first).

        Raises
        ------
        FieldValidationError
            Naming the first field at fault.
        """
        for field in self._fields.values():
            field.validate(self)

    def field_names(self) -> list[str]:
        """Return the dotted names of every value-holding field, nested configs included."""
        out: list[str] = []
        for field in self._fields.values():
            out.extend(field._leaf_names(self))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the values as nested plain dicts, lists and scalars."""
        return {name: field._to_plain(self) for name, field in self._fields.items()}

    def history(self, name: str) -> list[HistoryEntry]:
        """Return where a field was set, oldest first.

        Parameters
        ----------
        name : str
            A dotted field name relative to this config (``"isr.doBias"``).

        Raises
        ------
        UnknownFieldError
            If there is no such field (with the close matches).
        """
        owner, field = resolve_field(self, name)
        return list(owner._history.get(field.name, []))

    def format_history(self, name: str) -> str:
        """Return the history of a field as text: one line per assignment, oldest first."""
        return format_history_entries(name, self.history(name))

    def compare(self, other: Config) -> list[ConfigDifference]:
        """List the fields whose values differ between this config and ``other``.

        Returns
        -------
        differences : list of ConfigDifference
            Each with the dotted ``name`` and both values; empty when the configs are equal.
        """
        return compare_configs(self, other)

    def to_python(self, root: str = "config") -> str:
        """Return the config as Python source (``config.x = ...`` lines) that :meth:`load` reads."""
        return config_to_python(self, root)

    def save(self, path: str | os.PathLike[str] | IO[str], root: str = "config") -> None:
        """Write the config as readable Python to a file (atomically) or an open text stream."""
        save_config(self, path, root)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Apply a saved config or an override file (Python setting ``config.x = ...``).

        Raises
        ------
        ConfigFileError
            If the file cannot be read, was saved from another config class, or raises; the
            message names the file and the line.
        """
        load_config(self, path)

    def copy(self) -> Config:
        """Return an independent, unfrozen copy (history included)."""
        dup = copy.deepcopy(self)
        dup._unfreeze()
        return dup

    def _unfreeze(self) -> None:
        object.__setattr__(self, "_frozen", False)
        for _, sub in self._subconfigs():
            sub._unfreeze()

    def _save_lines(self, prefix: str) -> list[str]:
        lines: list[str] = []
        for field in self._fields.values():
            lines.extend(field._save_lines(self, prefix))
        return lines

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return type(self) is type(other) and not self.compare(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({values})"


_RESERVED = frozenset(name for name in vars(Config) if not name.startswith("_"))


def config_fields(config: Config | type[Config]) -> dict[str, Field]:
    """Return the fields of a config (or config class) by name, in declaration order."""
    return dict(config._fields)
