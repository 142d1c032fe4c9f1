"""Registries of configurables (measurement plugins, say) and the field that picks among them.

A :class:`Registry` maps names to targets, each with its config class. Third-party packages add
to a registry without editing hpcpipe, either by calling :meth:`Registry.register` on import or
through an entry point group that the registry reads when it is first looked in. A
:class:`RegistryField` holds one config per registered name and the name (or names, with
``multi=True``) of the active ones::

    plugins = Registry(entry_point_group="hpcpipe.measurement")

    @plugins.register("centroid")
    class CentroidPlugin:
        ConfigClass = CentroidConfig
        def __init__(self, config): ...

    class MeasureConfig(Config):
        algorithms = RegistryField("algorithms to run", plugins, default=["centroid"],
                                   multi=True)

    config.algorithms["centroid"].box = 7
    config.algorithms.names = ["centroid", "shape"]
"""

from __future__ import annotations

import ast
import difflib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hpcpipe.config import history
from hpcpipe.config.compare import ConfigDifference, compare_fields
from hpcpipe.config.config import Config
from hpcpipe.config.errors import ConfigError, FieldValidationError
from hpcpipe.config.fields import Field, py_literal

__all__ = ["Registry", "RegistryEntry", "RegistryField", "RegistryInstanceDict"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistryEntry:
    """A registered target and its config class."""

    target: Callable[..., Any]
    ConfigClass: type[Config]


class Registry(Mapping[str, RegistryEntry]):
    """Named configurables that a :class:`RegistryField` chooses among.

    Parameters
    ----------
    entry_point_group : str, optional
        An ``importlib.metadata`` entry point group whose entries (``name = package.module:
        Class``) are registered the first time the registry is looked in.
    """

    def __init__(self, entry_point_group: str | None = None) -> None:
        self._entries: dict[str, RegistryEntry] = {}
        self._group = entry_point_group
        self._loaded = entry_point_group is None

    def register(self, name: str, target: Callable[..., Any] | None = None,
                 ConfigClass: type[Config] | None = None) -> Any:  # noqa: N803
        """Register ``target`` under ``name``; without a target, return a class decorator.

        Raises
        ------
        ValueError
            If another target is registered under the name.
        TypeError
            If the target has no config class.
        """
        if target is None:
            def decorator(obj: Callable[..., Any]) -> Callable[..., Any]:
                self.register(name, obj, ConfigClass)
                return obj
            return decorator
        config_class = ConfigClass or getattr(target, "ConfigClass", None)
        if not (isinstance(config_class, type) and issubclass(config_class, Config)):
            raise TypeError(f"cannot register {name!r}: {target!r} has no ConfigClass")
        old = self._entries.get(name)
        if old is not None and old.target is not target:
            raise ValueError(f"{name!r} is already registered to {old.target!r}")
        self._entries[name] = RegistryEntry(target, config_class)
        return target

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        # start-up cost: importlib.metadata is read only when a registry is first looked in
        from importlib.metadata import entry_points

        for ep in entry_points(group=self._group or ""):
            if ep.name in self._entries:
                continue
            try:
                self.register(ep.name, ep.load())
            except Exception as exc:  # noqa: BLE001 (a broken plugin must not hide the others)
                _log.warning("entry point %s = %s (group %s) failed to load: %s",
                             ep.name, ep.value, self._group, exc)

    def __getitem__(self, name: str) -> RegistryEntry:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            matches = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {' or '.join(map(repr, matches))}?" if matches else ""
            raise KeyError(f"{name!r} is not registered{hint} (registered: "
                           f"{', '.join(sorted(self._entries)) or 'none'})") from None

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)


class RegistryField(Field):
    """A choice among the entries of a :class:`Registry`, with a config for each.

    Parameters
    ----------
    doc : str
        What the choice controls.
    registry : Registry
        The configurables to choose from.
    default : str or list of str, optional
        The active name (a list of names with ``multi=True``).
    optional : bool, optional
        Whether nothing active passes validation.
    multi : bool, optional
        Whether several entries are active at once (:attr:`RegistryInstanceDict.names`).
    """

    is_group = True

    def __init__(self, doc: str, registry: Registry, default: str | Iterable[str] | None = None,
                 optional: bool = False, multi: bool = False) -> None:
        self._init_common(doc, optional, None)
        self.registry = registry
        self.multi = multi
        self.dtype = str
        if multi:
            self.default = None if default is None else list(default)
        else:
            self.default = default

    def describe_type(self) -> str:
        return "registry choice" + (" (several)" if self.multi else "")

    def _init_value(self, instance: Config) -> None:
        value = RegistryInstanceDict(instance, self.name)
        instance._storage[self.name] = value
        value._active = self._check_names(self.default, instance._full_name(self.name), False)
        instance._record(self.name, value._active_plain(), "default", self.source)

    def _check_names(self, names: Any, full_name: str, check_registered: bool = True) -> Any:
        if names is None:
            return [] if self.multi else None
        if self.multi:
            if isinstance(names, str) or not isinstance(names, Iterable):
                raise self._fail(full_name, f"expected a list of names, got {names!r}")
            names = [str(n) for n in names]
        elif not isinstance(names, str):
            raise self._fail(full_name, f"expected a name, got {names!r}")
        if check_registered:
            for n in [names] if isinstance(names, str) else names:
                if n not in self.registry:
                    try:
                        self.registry[n]
                    except KeyError as exc:
                        raise self._fail(full_name, str(exc.args[0])) from None
        return names

    def _assign(self, instance: Config, value: Any) -> None:
        full_name = instance._full_name(self.name)
        current: RegistryInstanceDict = instance._storage[self.name]
        if not isinstance(value, RegistryInstanceDict):
            raise self._fail(full_name, f"set {full_name}.{'names' if self.multi else 'name'} "
                             "to choose, or an item to change a config")
        current._active = self._check_names(value._active, full_name)
        for name, sub in value._configs.items():
            current[name] = sub

    def _history_value(self, instance: Config) -> Any:
        return instance._storage[self.name]._active_plain()

    def validate(self, instance: Config) -> None:
        value: RegistryInstanceDict = instance._storage[self.name]
        full_name = instance._full_name(self.name)
        if not value._active and not self.optional:
            raise self._fail(full_name, "nothing is active")
        self._check_names(value._active, full_name)
        for name in value._active_names():
            value[name].validate()

    def _freeze(self, instance: Config) -> None:
        for sub in instance._storage[self.name]._configs.values():
            sub.freeze()

    def _subconfigs(self, instance: Config) -> Iterator[tuple[str, Config]]:
        for name, sub in instance._storage[self.name]._configs.items():
            yield f"{self.name}[{name!r}]", sub

    def _leaf_names(self, instance: Config) -> list[str]:
        value: RegistryInstanceDict = instance._storage[self.name]
        out = [f"{self.name}.{'names' if self.multi else 'name'}"]
        for name in value._active_names():
            out.extend(f"{self.name}[{name!r}].{n}" for n in value[name].field_names())
        return out

    def _to_plain(self, instance: Config) -> Any:
        value: RegistryInstanceDict = instance._storage[self.name]
        return {"active": value._active_plain(),
                "configs": {n: value[n].to_dict() for n in value._active_names()}}

    def _flat_items(self, instance: Config, prefix: str) -> Iterator[tuple[str, Any]]:
        value: RegistryInstanceDict = instance._storage[self.name]
        name = f"{prefix}{self.name}"
        yield f"{name}.{'names' if self.multi else 'name'}", value._active_plain()
        for key in value._active_names():
            sub = value[key]
            for field in sub._fields.values():
                yield from field._flat_items(sub, f"{name}[{key!r}].")

    def _parse_text(self, text: str, full_name: str) -> Any:
        raise self._fail(full_name, f"set {full_name}.{'names' if self.multi else 'name'}=... "
                         "to choose, or a field of an item")

    def _override(self, instance: Config, attr: str, text: str) -> None:
        if attr not in ("name", "names"):
            super()._override(instance, attr, text)  # the field itself: _parse_text refuses
            return
        value: Any = _parse_names(text) if self.multi else text.strip()
        if value == "None":
            value = None
        setattr(instance._storage[self.name], "names" if self.multi else "name", value)

    def _resolve_child(self, instance: Config, key: str | None) -> Any:
        value: RegistryInstanceDict = instance._storage[self.name]
        return value if key is None else value[key]

    def _save_lines(self, instance: Config, prefix: str) -> list[str]:
        value: RegistryInstanceDict = instance._storage[self.name]
        name = f"{prefix}.{self.name}"
        lines = [f"# {line}" for line in self.doc.strip().splitlines()]
        lines.append(f"{name}.{'names' if self.multi else 'name'} = "
                     f"{py_literal(value._active_plain())}")
        for key, sub in value._configs.items():
            lines.extend(sub._save_lines(f"{name}[{key!r}]"))
        return lines

    def _compare(self, a: Config, b: Config, prefix: str) -> list[ConfigDifference]:
        va: RegistryInstanceDict = a._storage[self.name]
        vb: RegistryInstanceDict = b._storage[self.name]
        name = f"{prefix}{self.name}"
        if va._active_plain() != vb._active_plain():
            return [ConfigDifference(f"{name}.{'names' if self.multi else 'name'}",
                                     va._active_plain(), vb._active_plain())]
        out: list[ConfigDifference] = []
        for key in va._active_names():
            out.extend(compare_fields(va[key], vb[key], f"{name}[{key!r}]."))
        return out


def _parse_names(text: str) -> list[str]:
    """The names of a ``-c plugins.names=...`` override: ``a,b`` or ``['a', 'b']``."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        value = None
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [v.strip() for v in text.split(",") if v.strip()]


class RegistryInstanceDict(Mapping[str, Config]):
    """The value of a :class:`RegistryField`: a config per registered name, and the active ones.

    ``value[name]`` is the config of a registered name (made when first asked for); ``name``
    (single choice) or ``names`` (several) selects the active entries; :meth:`apply` builds the
    active target(s).
    """

    def __init__(self, owner: Config, field_name: str) -> None:
        self._owner = owner
        self._field_name = field_name
        self._configs: dict[str, Config] = {}
        self._active: Any = None

    def _field(self) -> RegistryField:
        return type(self._owner)._fields[self._field_name]  # type: ignore[return-value]

    def _dotted_child(self, attr: str, key: str | None) -> Config:
        """The config of the registered name ``attr`` (``plugins.centroid.x``)."""
        if key is not None:
            raise KeyError(key)
        return self[attr]

    def _dotted_field(self, attr: str, key: str | None) -> tuple[Config, Field]:
        """The owner and the field for ``plugins.name`` / ``plugins.names`` (the choice)."""
        if key is not None or attr not in ("name", "names"):
            raise KeyError(attr)
        return self._owner, self._field()

    def _active_names(self) -> list[str]:
        if self._active is None:
            return []
        return [self._active] if isinstance(self._active, str) else list(self._active)

    def _active_plain(self) -> Any:
        return list(self._active) if isinstance(self._active, list) else self._active

    @property
    def registry(self) -> Registry:
        """The registry the field chooses from."""
        return self._field().registry

    def __getitem__(self, name: str) -> Config:
        if name not in self._configs:
            try:
                entry = self.registry[name]
            except KeyError as exc:
                full = self._owner._full_name(self._field_name)
                raise KeyError(f"{full}: {exc.args[0]}") from None
            sub = entry.ConfigClass()
            sub._set_path(f"{self._owner._full_name(self._field_name)}[{name!r}]")
            if self._owner._frozen:
                sub.freeze()
            self._configs[name] = sub
        return self._configs[name]

    def __setitem__(self, name: str, value: Config) -> None:
        self._owner._check_not_frozen(self._field_name)
        entry_class = self.registry[name].ConfigClass
        if not isinstance(value, entry_class):
            raise FieldValidationError(f"{self._owner._full_name(self._field_name)}[{name!r}]: "
                                       f"expected a {entry_class.__name__}, got "
                                       f"{type(value).__name__}")
        sub = value.copy()
        sub._set_path(f"{self._owner._full_name(self._field_name)}[{name!r}]")
        self._configs[name] = sub

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry)

    def __len__(self) -> int:
        return len(self.registry)

    def _set_active(self, names: Any) -> None:
        field = self._field()
        self._owner._check_not_frozen(self._field_name)
        kind, location = history.current_label()
        self._active = field._check_names(names, self._owner._full_name(self._field_name))
        self._owner._record(self._field_name, self._active_plain(), kind, location)

    @property
    def name(self) -> str | None:
        """The active name (single choice)."""
        if self._field().multi:
            raise AttributeError("this registry field takes several names: use .names")
        return self._active

    @name.setter
    def name(self, value: str | None) -> None:
        if self._field().multi:
            raise AttributeError("this registry field takes several names: use .names")
        self._set_active(value)

    @property
    def names(self) -> list[str]:
        """The active names (a list for ``multi=True``, else a list of zero or one)."""
        return self._active_names()

    @names.setter
    def names(self, value: Iterable[str]) -> None:
        if not self._field().multi:
            raise AttributeError("this registry field takes one name: use .name")
        self._set_active(value)

    @property
    def active(self) -> Config | list[Config] | None:
        """The active config (or a list of them with ``multi=True``)."""
        configs = [self[n] for n in self._active_names()]
        if self._field().multi:
            return configs
        return configs[0] if configs else None

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        """Build the active target(s): ``target(*args, config=..., **kwargs)`` for each.

        Returns one object for a single choice and a dict from name to object for several.
        """
        built = {n: self.registry[n].target(*args, config=self[n], **kwargs)
                 for n in self._active_names()}
        if self._field().multi:
            return built
        if not built:
            raise ConfigError(f"{self._owner._full_name(self._field_name)}: nothing is active")
        return next(iter(built.values()))

    def __repr__(self) -> str:
        return f"<registry choice {self._active_plain()!r}>"
