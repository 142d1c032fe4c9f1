"""Fields that hold a whole config: a nested one, or the config of a retargetable subtask."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from hpcpipe.config import history
from hpcpipe.config.compare import ConfigDifference, compare_fields
from hpcpipe.config.config import Config
from hpcpipe.config.errors import ConfigError, FieldValidationError
from hpcpipe.config.fields import Field
from hpcpipe.config.serialize import importable, qualified_name

__all__ = ["ConfigField", "ConfigurableField", "ConfigurableInstance", "qualified_name"]


class _GroupField(Field):
    """What :class:`ConfigField` and :class:`ConfigurableField` share: they hold a config."""

    is_group = True

    def __init__(self, doc: str, check: Callable[[Any], bool] | None) -> None:
        # no scalar dtype: set what Field.__init__ would
        self._init_common(doc, False, check)
        self.default = None

    def _config(self, instance: Config) -> Config:
        raise NotImplementedError

    def validate(self, instance: Config) -> None:
        sub = self._config(instance)
        sub.validate()
        if self.check is not None and not self.check(sub):
            raise self._fail(instance._full_name(self.name), "fails its check")

    def _freeze(self, instance: Config) -> None:
        self._config(instance).freeze()

    def _subconfigs(self, instance: Config) -> Iterator[tuple[str, Config]]:
        yield self.name, self._config(instance)

    def _leaf_names(self, instance: Config) -> list[str]:
        return [f"{self.name}.{n}" for n in self._config(instance).field_names()]

    def _to_plain(self, instance: Config) -> Any:
        return self._config(instance).to_dict()

    def _flat_items(self, instance: Config, prefix: str) -> Iterator[tuple[str, Any]]:
        sub = self._config(instance)
        for field in sub._fields.values():
            yield from field._flat_items(sub, f"{prefix}{self.name}.")

    def _parse_text(self, text: str, full_name: str) -> Any:
        raise self._fail(full_name, "is a group of fields; set one of them "
                         f"({full_name}.<field>=...) or use a -C config file")

    def _compare_nested(self, a: Config, b: Config, prefix: str) -> list[ConfigDifference]:
        return compare_fields(self._config(a), self._config(b), f"{prefix}{self.name}.")


class ConfigField(_GroupField):
    """A nested config.

    Parameters
    ----------
    doc : str
        What the group of fields controls.
    dtype : type
        The :class:`Config` subclass held.
    default : Config, optional
        A config to copy as the default (by default ``dtype()``).
    check : callable, optional
        ``check(config) -> bool``, run by validation after the nested config's own.
    """

    dtype: type[Config]

    def __init__(self, doc: str, dtype: type[Config], default: Config | None = None,
                 check: Callable[[Any], bool] | None = None) -> None:
        if not (isinstance(dtype, type) and issubclass(dtype, Config)):
            raise TypeError(f"ConfigField needs a Config subclass, not {dtype!r}")
        if default is not None and not isinstance(default, dtype):
            raise TypeError(f"ConfigField default must be a {dtype.__name__}")
        super().__init__(doc, check)
        self.dtype = dtype
        self.default = default

    def describe_type(self) -> str:
        return self.dtype.__name__

    def _config(self, instance: Config) -> Config:
        return instance._storage[self.name]

    def _init_value(self, instance: Config) -> None:
        sub = self.dtype() if self.default is None else self.default.copy()
        sub._set_path(instance._full_name(self.name))
        instance._storage[self.name] = sub
        instance._record(self.name, self._history_value(instance), "default", self.source)

    def _assign(self, instance: Config, value: Any) -> None:
        full_name = instance._full_name(self.name)
        if not isinstance(value, self.dtype):
            raise self._fail(full_name, f"expected a {self.dtype.__name__}, "
                             f"got {type(value).__name__}")
        sub = value.copy()
        sub._set_path(full_name)
        instance._storage[self.name] = sub

    def _history_value(self, instance: Config) -> Any:
        return history.Marker(f"<{self.dtype.__name__}>")

    def _save_lines(self, instance: Config, prefix: str) -> list[str]:
        return self._config(instance)._save_lines(f"{prefix}.{self.name}")

    def _compare(self, a: Config, b: Config, prefix: str) -> list[ConfigDifference]:
        return self._compare_nested(a, b, prefix)


class ConfigurableField(_GroupField):
    """The config of a subtask (or any configurable), which can be retargeted.

    The value is a :class:`ConfigurableInstance`: it reads and sets the subtask's config fields
    as its own attributes, knows the ``target`` to build, and can be retargeted to another
    target with the same interface::

        class ProcessConfig(Config):
            detection = ConfigurableField("source detection", target=DetectTask)

        config.detection.threshold = 4.0
        config.detection.retarget(MyDetectTask)     # a new config of MyDetectTask's class

    Parameters
    ----------
    doc : str
        What the subtask does.
    target : callable
        What :meth:`ConfigurableInstance.apply` builds (a Task class, usually), called as
        ``target(*args, config=config, **kwargs)``.
    ConfigClass : type, optional
        Its config class; by default ``target.ConfigClass``.
    check : callable, optional
        ``check(config) -> bool``, run by validation after the subtask config's own.
    """

    def __init__(self, doc: str, target: Callable[..., Any],
                 ConfigClass: type[Config] | None = None,  # noqa: N803 (LSST's name)
                 check: Callable[[Any], bool] | None = None) -> None:
        super().__init__(doc, check)
        self.target = target
        self.ConfigClass = _config_class_of(target, ConfigClass)
        self.dtype = self.ConfigClass

    def describe_type(self) -> str:
        return f"configurable {self.target.__name__}"

    def _config(self, instance: Config) -> Config:
        return instance._storage[self.name]._value

    def _init_value(self, instance: Config) -> None:
        sub = self.ConfigClass()
        sub._set_path(instance._full_name(self.name))
        instance._storage[self.name] = ConfigurableInstance(
            instance, self.name, self.target, self.ConfigClass, sub)
        instance._record(self.name, self._history_value(instance), "default", self.source)

    def _assign(self, instance: Config, value: Any) -> None:
        full_name = instance._full_name(self.name)
        current: ConfigurableInstance = instance._storage[self.name]
        if isinstance(value, ConfigurableInstance):
            target, config_class, sub = value._target, value._ConfigClass, value._value
        elif isinstance(value, Config):
            target, config_class, sub = current._target, current._ConfigClass, value
            if not isinstance(sub, config_class):
                raise self._fail(full_name, f"expected a {config_class.__name__}, got a "
                                 f"{type(sub).__name__}; retarget() to change its class")
        else:
            raise self._fail(full_name, f"expected a {current._ConfigClass.__name__}, got "
                             f"{type(value).__name__} {value!r}; use "
                             f"{full_name}.retarget(...) to change the target")
        sub = sub.copy()
        sub._set_path(full_name)
        instance._storage[self.name] = ConfigurableInstance(
            instance, self.name, target, config_class, sub)

    def _history_value(self, instance: Config) -> Any:
        return history.Marker(f"<{qualified_name(instance._storage[self.name]._target)}>")

    def _save_lines(self, instance: Config, prefix: str) -> list[str]:
        value: ConfigurableInstance = instance._storage[self.name]
        name = f"{prefix}.{self.name}"
        lines = [f"# {line}" for line in self.doc.strip().splitlines()]
        target, config_class = value._target, value._ConfigClass
        if importable(target) and importable(config_class):
            modules = sorted({target.__module__, config_class.__module__})
            lines.extend(f"import {m}" for m in modules)
            extra = ("" if config_class is _config_class_of(target, None, strict=False)
                     else f", ConfigClass={qualified_name(config_class)}")
            lines.append(f"{name}.retarget({qualified_name(target)}{extra})")
        elif target is self.target and config_class is self.ConfigClass:
            lines.append(f"# {name} targets {qualified_name(target)} (the default)")
        else:
            raise ConfigError(f"cannot save {name}: it is retargeted to "
                              f"{qualified_name(target)}, which cannot be imported by name")
        return lines + value._value._save_lines(name)

    def _flat_items(self, instance: Config, prefix: str) -> Iterator[tuple[str, Any]]:
        value: ConfigurableInstance = instance._storage[self.name]
        yield f"{prefix}{self.name} (target)", qualified_name(value._target)
        yield f"{prefix}{self.name} (config class)", qualified_name(value._ConfigClass)
        yield from super()._flat_items(instance, prefix)

    def _compare(self, a: Config, b: Config, prefix: str) -> list[ConfigDifference]:
        va: ConfigurableInstance = a._storage[self.name]
        vb: ConfigurableInstance = b._storage[self.name]
        out = []
        if va._target is not vb._target:
            out.append(ConfigDifference(f"{prefix}{self.name} (target)",
                                        qualified_name(va._target), qualified_name(vb._target)))
        if va._ConfigClass is not vb._ConfigClass:
            out.append(ConfigDifference(f"{prefix}{self.name} (config class)",
                                        qualified_name(va._ConfigClass),
                                        qualified_name(vb._ConfigClass)))
            return out
        return out + self._compare_nested(a, b, prefix)


def _config_class_of(target: Any, config_class: Any, strict: bool = True) -> Any:
    if config_class is None:
        config_class = getattr(target, "ConfigClass", None)
    if not callable(target):
        raise TypeError(f"target {target!r} is not callable")
    if not (isinstance(config_class, type) and issubclass(config_class, Config)):
        if not strict:
            return None
        raise TypeError(f"target {target!r} has no ConfigClass (a Config subclass); "
                        "give ConfigClass=")
    return config_class


class ConfigurableInstance:
    """The value of a :class:`ConfigurableField`: a subtask's target and config.

    Attribute access reads and sets the fields of the config (``config.detection.threshold``).
    """

    def __init__(self, owner: Config, name: str, target: Callable[..., Any],
                 ConfigClass: type[Config], value: Config) -> None:  # noqa: N803
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_ConfigClass", ConfigClass)
        object.__setattr__(self, "_value", value)

    @property
    def target(self) -> Callable[..., Any]:
        """What :meth:`apply` builds."""
        return self._target

    @property
    def ConfigClass(self) -> type[Config]:  # noqa: N802 (LSST's name)
        """The class of :attr:`value`."""
        return self._ConfigClass

    @property
    def value(self) -> Config:
        """The subtask's config."""
        return self._value

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        """Build the target with this config: ``target(*args, config=value, **kwargs)``."""
        return self._target(*args, config=self._value, **kwargs)

    def retarget(self, target: Callable[..., Any],
                 ConfigClass: type[Config] | None = None) -> None:  # noqa: N803
        """Build another target, with the same interface, from this field.

        The config is replaced by a new one of the target's config class, unless the class is
        the same, in which case its values are kept.

        Parameters
        ----------
        target : callable
            The new target (a Task class).
        ConfigClass : type, optional
            Its config class; by default ``target.ConfigClass``.

        Raises
        ------
        FrozenConfigError
            If the config is frozen.
        FieldValidationError
            If the target is not callable or has no config class.
        """
        owner = self._owner
        owner._check_not_frozen(self._name)
        full_name = owner._full_name(self._name)
        try:
            config_class = _config_class_of(target, ConfigClass)
        except TypeError as exc:
            raise FieldValidationError(f"cannot retarget {full_name!r}: {exc}", full_name) from None
        kind, location = history.current_label()
        if config_class is not self._ConfigClass:
            value = config_class()
            value._set_path(full_name)
            object.__setattr__(self, "_value", value)
            object.__setattr__(self, "_ConfigClass", config_class)
        object.__setattr__(self, "_target", target)
        owner._record(self._name, history.Marker(f"retarget({qualified_name(target)})"),
                      kind, location)

    def _dotted_child(self, attr: str, key: str | None) -> Any:
        """The node ``attr`` (or ``attr[key]``) names in the subtask's config."""
        return self._value._dotted_child(attr, key)

    def _dotted_field(self, attr: str, key: str | None) -> tuple[Config, Field]:
        """The subtask's config and its field ``attr``, the last part of a dotted name."""
        return self._value._dotted_field(attr, key)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._value, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._value, name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._value._fields))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfigurableInstance):
            return NotImplemented
        return self._target is other._target and self._value == other._value

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{qualified_name(self._target)}: {self._value!r}>"
