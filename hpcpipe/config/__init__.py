"""Configuration of tasks: typed fields with defaults, docs, validation and history.

A :class:`Config` subclass declares its fields; values are type-checked when set, checked as a
whole by :meth:`Config.validate`, and made read-only by :meth:`Config.freeze` before a task
runs. Every assignment is recorded with where it was made (the field's default, a file and
line, or the command line). Configs save and load as readable Python and compare field by
field::

    from hpcpipe.config import Config, Field, RangeField, ConfigurableField

    class DetectConfig(Config):
        threshold = RangeField("threshold in sigma", float, default=5.0, min=0.0)
        grow = Field("grow footprints by this many pixels", int, default=2)

    config = DetectConfig()
    config.load("overrides.py")              # python: config.threshold = 4.0
    apply_override(config, "grow=3")         # what -c grow=3 does
    config.validate(); config.freeze()
    print(config.format_history("threshold"))
"""

from __future__ import annotations

from hpcpipe.config.compare import ConfigDifference, compare_configs, format_differences
from hpcpipe.config.config import Config, config_fields
from hpcpipe.config.configurable import ConfigField, ConfigurableField, ConfigurableInstance
from hpcpipe.config.errors import (
    ConfigError,
    ConfigFileError,
    FieldValidationError,
    FrozenConfigError,
    UnknownFieldError,
)
from hpcpipe.config.fields import (
    ChoiceField,
    ConfigDict,
    ConfigList,
    DictField,
    Field,
    ListField,
    RangeField,
)
from hpcpipe.config.history import HistoryEntry
from hpcpipe.config.overrides import (
    apply_override,
    apply_override_file,
    apply_overrides,
    close_field_names,
    resolve_field,
    resolve_value,
)
from hpcpipe.config.registry import Registry, RegistryEntry, RegistryField, RegistryInstanceDict
from hpcpipe.config.serialize import config_to_python, load_config, save_config
from hpcpipe.config.stored import StoredConfig, config_to_data

__all__ = [
    "ChoiceField",
    "Config",
    "ConfigDict",
    "ConfigDifference",
    "ConfigError",
    "ConfigField",
    "ConfigFileError",
    "ConfigList",
    "ConfigurableField",
    "ConfigurableInstance",
    "DictField",
    "Field",
    "FieldValidationError",
    "FrozenConfigError",
    "HistoryEntry",
    "ListField",
    "RangeField",
    "Registry",
    "RegistryEntry",
    "RegistryField",
    "RegistryInstanceDict",
    "StoredConfig",
    "UnknownFieldError",
    "apply_override",
    "apply_override_file",
    "apply_overrides",
    "close_field_names",
    "compare_configs",
    "config_fields",
    "config_to_data",
    "config_to_python",
    "format_differences",
    "load_config",
    "resolve_field",
    "resolve_value",
    "save_config",
]
