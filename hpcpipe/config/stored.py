"""Configs stored as data: flattened ``name: value`` pairs, read back without running anything.

A repository's ``<task>_config`` records the config a task ran with. Repositories are shared
between users, so reading one must never execute what it holds: a stored config is a YAML
mapping (read with :func:`yaml.safe_load`, which builds only plain values) of the dotted
field names to their plain values, plus the config class's name as a string. It is never
imported nor instantiated from the file; comparing it with the config of a new run is a
comparison of plain data::

    format: hpcpipe-config-1
    config_class: hpcpipe.pipe.process_ccd.ProcessCcdConfig
    fields:
      isr.doBias: true
      detection.thresholdValue: 5.0
      calibrate (target): hpcpipe.pipe.calibrate.CalibrateTask

Only ``-C file.py`` config overrides are Python (:func:`hpcpipe.config.load_config`): the user
passes them on purpose, so they are trusted input, like the code of the pipeline itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from hpcpipe.config.compare import ConfigDifference
from hpcpipe.config.errors import ConfigError
from hpcpipe.config.fields import values_equal
from hpcpipe.config.serialize import qualified_name

if TYPE_CHECKING:
    from hpcpipe.config.config import Config

__all__ = ["FORMAT", "StoredConfig", "config_to_data", "is_stored_config_data"]

#: The ``format`` entry of a stored config.
FORMAT = "hpcpipe-config-1"

#: The first line of a stored config file.
HEADER = ("# hpcpipe stored config: data only (read with yaml.safe_load; nothing here is "
          "executed)\n")


def _plain(value: Any) -> Any:
    """``value`` as YAML-safe plain data: lists, dicts with str keys, scalars."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ConfigList":
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, complex):
        return {"real": value.real, "imag": value.imag}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def config_to_data(config: Config) -> dict[str, Any]:
    """Return ``config`` as the plain data a stored config holds.

    Returns
    -------
    data : dict
        ``format``, ``config_class`` (the class's qualified name) and ``fields``: every
        leaf field by dotted name (``isr.doBias``), plus ``<field> (target)`` and
        ``<field> (config class)`` for retargetable subtasks, in declaration order.
    """
    fields: dict[str, Any] = {}
    for field in config._fields.values():
        for name, value in field._flat_items(config, ""):
            fields[name] = _plain(value)
    return {"format": FORMAT, "config_class": qualified_name(type(config)), "fields": fields}


def is_stored_config_data(data: Any) -> bool:
    """Whether ``data`` (as YAML-loaded) is a stored config (has ``format: hpcpipe-config-1``)."""
    return isinstance(data, Mapping) and data.get("format") == FORMAT


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return values_equal(a, b)


class StoredConfig:
    """A config as stored in a repository: plain data, read-only.

    Attribute access reads the stored values (``stored.isr.doBias``; registry items with
    ``stored.plugins["name"].x``); :meth:`differences` compares with a live config.

    Parameters
    ----------
    config_class : str
        The qualified name of the config's class (a string: never imported).
    fields : mapping
        Dotted field names to plain values.
    """

    def __init__(self, config_class: str, fields: Mapping[str, Any], _prefix: str = "") -> None:
        object.__setattr__(self, "_class", str(config_class))
        object.__setattr__(self, "_fields", dict(fields))
        object.__setattr__(self, "_prefix", _prefix)

    @classmethod
    def from_config(cls, config: Config) -> StoredConfig:
        """The stored form of a live config."""
        data = config_to_data(config)
        return cls(data["config_class"], data["fields"])

    @classmethod
    def from_data(cls, data: Any, source: str = "<data>") -> StoredConfig:
        """Check and wrap data read from a stored config file.

        Raises
        ------
        ConfigError
            If ``data`` is not a stored config (the message names ``source``).
        """
        if not is_stored_config_data(data):
            raise ConfigError(f"{source}: not a stored config (no 'format: {FORMAT}')")
        config_class, fields = data.get("config_class"), data.get("fields")
        if not isinstance(config_class, str) or not isinstance(fields, Mapping):
            raise ConfigError(f"{source}: a stored config needs a 'config_class' string and a "
                              "'fields' mapping")
        if not all(isinstance(k, str) for k in fields):
            raise ConfigError(f"{source}: the field names of a stored config must be strings")
        return cls(config_class, fields)

    @property
    def config_class(self) -> str:
        """The qualified name of the class the config was saved from."""
        return self._class

    @property
    def fields(self) -> dict[str, Any]:
        """Every stored value by dotted name (a copy)."""
        return dict(self._fields)

    def to_data(self) -> dict[str, Any]:
        """The plain data written to the file."""
        return {"format": FORMAT, "config_class": self._class, "fields": dict(self._fields)}

    def to_yaml(self) -> str:
        """The file's text: a header comment, then YAML."""
        return HEADER + yaml.safe_dump(self.to_data(), sort_keys=False,
                                       default_flow_style=False)

    __str__ = to_yaml

    def _child(self, key: str) -> Any:
        if key in self._fields:
            return self._fields[key]
        if any(k.startswith((f"{key}.", f"{key}[")) for k in self._fields):
            return StoredConfig(self._class, self._fields, key)
        raise AttributeError(f"the stored {self._class} has no field {key!r}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._child(f"{self._prefix}.{name}" if self._prefix else name)

    def __getitem__(self, key: str) -> Any:
        try:
            return self._child(f"{self._prefix}[{key!r}]")
        except AttributeError as exc:
            raise KeyError(key) from exc

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a stored config is read-only")

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def differences(self, config: Config) -> list[ConfigDifference]:
        """Compare a live config with this stored one, field by field, as data.

        Returns
        -------
        differences : list of ConfigDifference
            ``value`` is the live config's, ``other`` the stored one; empty when equal
            (NaN equals NaN). Fields only one side has are reported with ``None`` on the
            other side.
        """
        current = config_to_data(config)
        if current["config_class"] != self._class:
            return [ConfigDifference("(config class)", current["config_class"], self._class)]
        mine, stored = current["fields"], self._fields
        out = [ConfigDifference(name, mine.get(name), stored.get(name))
               for name in [*mine, *(k for k in stored if k not in mine)]
               if name not in mine or name not in stored
               or not _equal(mine[name], stored[name])]
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredConfig):
            return NotImplemented
        return (self._class == other._class and self._fields.keys() == other._fields.keys()
                and all(_equal(v, other._fields[k]) for k, v in self._fields.items()))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        where = f", at {self._prefix!r}" if self._prefix else ""
        return f"StoredConfig({self._class!r}, {len(self._fields)} fields{where})"
