"""The mapper base class, and finding a mapper by name.

A mapper is written by the people who know an instrument. It declares

* the data id keys, with their types and meaning (:meth:`Mapper.define_keys`);
* the dataset types, each with its Python type, formatter, path template and doc
  (:meth:`Mapper.define_dataset_types`), and families of them named by a pattern
  (:meth:`Mapper.define_patterns`, for ``<task>_config`` and the like);
* which keys the registry keeps for each raw exposure (:attr:`Mapper.exposure_keys`);
* how a raw or calibration file's header becomes a registry entry
  (:meth:`Mapper.translate_header`), with the keywords it reads (:attr:`Mapper.header_keywords`).

Repositories name their mapper in their ``_mapper`` file by a registered name only: a camera
(a camera file shipped with hpcpipe or registered by a package in the ``hpcpipe.cameras``
entry point group), a mapper class registered in this process with :func:`register_mapper` or
by a package in the ``hpcpipe.mappers`` entry point group, or ``_camera.yaml``, the camera
description stored in the repository itself. No class is imported by a name read from a
repository. Camera files become mappers through :data:`CAMERA_PROVIDER`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, ClassVar

from hpcpipe.butler.datasets import DataIdKey, DatasetType, DatasetTypePattern
from hpcpipe.butler.errors import (
    UnknownDataIdKeyError,
    UnknownDatasetTypeError,
    UnknownMapperError,
)
from hpcpipe.butler.headers import HeaderKeyword, read_fits_header

__all__ = ["Mapper", "IngestRecord", "register_mapper", "load_mapper", "mapper_names",
           "mapper_from_description", "CAMERA_PROVIDER"]

#: Mapper classes (or factories) registered in this process by :func:`register_mapper`.
_MAPPERS: dict[str, Callable[[], Mapper]] = {}
#: The object that turns camera names and camera descriptions into mappers: the module
#: attribute ``package.module:attribute`` is imported when a camera is first asked for (the
#: cameras sit above the butler; :mod:`hpcpipe.obs.registry`). It has ``names()`` (name to
#: file), ``mapper(name)`` (a Mapper or None) and ``from_description(text, source)``.
CAMERA_PROVIDER = "hpcpipe.obs.registry:PROVIDER"


@dataclass
class IngestRecord:
    """What ingest learnt from one file's header.

    Attributes
    ----------
    dataset_type : str
        ``"raw"`` or the calibration dataset type (``"bias"``, ``"dark"``, ``"flat"``).
    data_id : dict
        For raw files every key of :attr:`Mapper.exposure_keys`; for calibrations the keys of
        the calibration's template.
    valid_start, valid_end : str
        For calibrations: the first and last dates (``YYYY-MM-DD``, inclusive) of validity.
    """

    dataset_type: str
    data_id: dict[str, Any]
    valid_start: str = ""
    valid_end: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Mapper:
    """Base class of mappers: the data id keys and dataset types of one instrument.

    Subclasses set the class attributes and implement the ``define_*`` methods and
    :meth:`translate_header`. Instances are cheap and immutable once built.
    """

    #: The short name repositories use in their ``_mapper`` file.
    name: ClassVar[str] = ""
    #: One paragraph about the instrument and its conventions.
    doc: ClassVar[str] = ""
    #: Keys the registry keeps for every raw exposure (they complete partial data ids).
    exposure_keys: ClassVar[tuple[str, ...]] = ()
    #: Keys that identify one raw file (a second file with the same values is a conflict).
    exposure_unique: ClassVar[tuple[str, ...]] = ()
    #: The key holding an exposure's date (``YYYY-MM-DD``) for calibration look-ups.
    date_key: ClassVar[str] = "date"
    #: Header keywords read at ingest (documentation; :meth:`translate_header` uses them).
    header_keywords: ClassVar[Sequence[HeaderKeyword]] = ()
    #: Data units of known tasks, for ``<task>_metadata`` (see :meth:`task_unit`).
    task_units: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: The tasks added to :attr:`task_units` at run time by :meth:`register_task`.
    registered_tasks: ClassVar[frozenset[str]] = frozenset()
    #: Units tried, in order, for tasks without a declared unit: the first whose keys are all
    #: in the data id given is used.
    default_units: ClassVar[tuple[tuple[str, ...], ...]] = ((),)

    def __init__(self) -> None:
        self.keys: dict[str, DataIdKey] = {}
        for key in self.define_keys():
            if key.name in self.keys:
                raise ValueError(f"{type(self).__name__}: key {key.name!r} defined twice")
            self.keys[key.name] = key
        self.dataset_types: dict[str, DatasetType] = {}
        self.aliases: dict[str, str] = {}
        for dataset_type in self.define_dataset_types():
            self._add_dataset_type(dataset_type)
        self.patterns: list[DatasetTypePattern] = list(self.define_patterns())
        for key_name in (*self.exposure_keys, *self.exposure_unique):
            if key_name not in self.keys:
                raise ValueError(f"{type(self).__name__}: exposure key {key_name!r} is not a key")

    def _add_dataset_type(self, dataset_type: DatasetType) -> None:
        for name in (dataset_type.name, *dataset_type.aliases):
            if name in self.dataset_types or name in self.aliases:
                raise ValueError(f"{type(self).__name__}: dataset type {name!r} defined twice")
        unknown = [k for k in dataset_type.keys if k not in self.keys]
        if unknown:
            raise ValueError(f"{type(self).__name__}: the template of {dataset_type.name} uses "
                             f"unknown keys {unknown}")
        self.dataset_types[dataset_type.name] = dataset_type
        for alias in dataset_type.aliases:
            self.aliases[alias] = dataset_type.name

    # --- what subclasses declare ------------------------------------------------------------
    def define_keys(self) -> Sequence[DataIdKey]:
        """The data id keys (in the order they are documented)."""
        raise NotImplementedError

    def define_dataset_types(self) -> Sequence[DatasetType]:
        """The dataset types with fixed names (in the order they are documented)."""
        raise NotImplementedError

    def define_patterns(self) -> Sequence[DatasetTypePattern]:
        """The families of dataset types named by a pattern (none by default)."""
        return ()

    def translate_header(self, header: Mapping[str, Any], path: Path) -> IngestRecord:
        """Turn a raw or calibration file's header into a registry entry.

        Raises
        ------
        IngestError
            If a keyword is missing or its value is invalid (the message names the file).
        """
        raise NotImplementedError

    def read_header(self, path: Path) -> dict[str, Any]:
        """The header of a file to ingest (FITS primary HDU plus hpcpipe metadata)."""
        return read_fits_header(path)

    def ingest_records(self, path: Path) -> list[IngestRecord]:
        """The registry entries of one file to ingest: one per detector it holds.

        A file is accepted only if it can be read: mappers check its HDUs, shapes and
        sections here. The default reads the header and translates it (one entry).

        Raises
        ------
        IngestError
            Naming the file (and the HDU) and the keyword or section at fault.
        """
        return [self.translate_header(self.read_header(path), path)]

    # --- task data units ----------------------------------------------------------------------
    @classmethod
    def register_task(cls, task: str, keys: Sequence[str]) -> None:
        """Declare the data unit of a task, so that ``<task>_metadata`` has fixed keys.

        Parameters
        ----------
        task : str
            The task's name (``processCcd``).
        keys : sequence of str
            The keys of one of its runs (``("visit", "ccd")``); ``()`` for tasks run once.
        """
        units = dict(cls.task_units)
        units[task] = tuple(keys)
        cls.task_units = units  # per class: a subclass's registration leaves the base alone
        cls.registered_tasks = cls.registered_tasks | {task}

    def declared_task_units(self) -> dict[str, tuple[str, ...]]:
        """The task units the mapper itself declares (not those registered at run time by
        :meth:`register_task`, which depend on what ran in this process)."""
        return {task: unit for task, unit in self.task_units.items()
                if task not in self.registered_tasks}

    def task_unit(self, task: str, data_id: Mapping[str, Any]) -> tuple[str, ...]:
        """The keys of ``<task>_metadata``: declared for known tasks, else the first of
        :attr:`default_units` whose keys are all in ``data_id``."""
        if task in self.task_units:
            return self.task_units[task]
        for unit in self.default_units:
            if all(k in data_id for k in unit):
                return unit
        return ()

    # --- camera-level config defaults -----------------------------------------------------------
    def config_overrides(self, task_name: str) -> dict[str, Any]:
        """The camera's config defaults for a task, applied when a command-line task or
        ``hpcpipe drp`` builds its config: after the task's own defaults, before ``-C`` files
        and ``-c`` values.

        Parameters
        ----------
        task_name : str
            The task's name (``processCcd``, ``isr``, a production step).

        Returns
        -------
        dict of str to value
            Dotted field names of that task's config and their values, for example
            ``{"isr.doOverscan": False}`` for a camera without overscan (a name may also
            start with the task's own name; see
            :func:`hpcpipe.task.argparser.apply_camera_defaults`). None by default.
        """
        return {}

    # --- dataset types declared by tasks -----------------------------------------------------
    def user_template(self, name: str, keys: Sequence[str], extension: str) -> str:
        """The path template of a dataset type a task declares (see
        :mod:`hpcpipe.butler.userdatasets`): ``name/name_<key><value>....ext``, integer keys
        as ``{key:d}``. Cameras override it to follow their own layout.

        Parameters
        ----------
        name : str
            The dataset type.
        keys : sequence of str
            Its data id keys (all known to this mapper).
        extension : str
            The file extension of its storage format (``fits``, ``h5``, ``yaml``).
        """
        fields = "".join(f"_{k}{{{k}{':d' if self.keys[k].type is int else ''}}}"
                         for k in keys)
        return f"{name}/{name}{fields}.{extension}"

    # --- services ---------------------------------------------------------------------------
    @property
    def full_name(self) -> str:
        """The mapper class's dotted path."""
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}"

    def __str__(self) -> str:
        return self.name or self.full_name

    def dataset_type(self, name: str, data_id: Mapping[str, Any] | None = None) -> DatasetType:
        """The dataset type called ``name`` (an alias, or a member of a pattern family).

        Raises
        ------
        UnknownDatasetTypeError
            Listing the close matches among the known names.
        """
        if not isinstance(name, str):
            raise UnknownDatasetTypeError(repr(name), self.dataset_types, str(self),
                                          [p.display for p in self.patterns])
        target = self.aliases.get(name, name)
        if target in self.dataset_types:
            return self.dataset_types[target]
        for pattern in self.patterns:
            resolved = pattern.resolve(self, name, data_id or {})
            if resolved is not None:
                return resolved
        raise UnknownDatasetTypeError(name, [*self.dataset_types, *self.aliases], str(self),
                                      [p.display for p in self.patterns])

    def validate(self, data_id: Mapping[str, Any]) -> dict[str, Any]:
        """Check every key and value of ``data_id``; return it with values converted.

        Raises
        ------
        UnknownDataIdKeyError
            For a key the mapper does not define (listing the keys it does).
        DataIdValueError
            For a value of the wrong type or form.
        """
        out: dict[str, Any] = {}
        for key, value in data_id.items():
            spec = self.keys.get(key)
            if spec is None:
                raise UnknownDataIdKeyError(key, self.keys, str(self))
            out[key] = spec.validate(value)
        return out


def register_mapper(name: str, mapper: type[Mapper] | Callable[[], Mapper]) -> None:
    """Let repositories name the mapper class (or factory) ``mapper`` by ``name``.

    The registration lasts for this process; packages register for every process with the
    ``hpcpipe.mappers`` entry point group, or describe their camera in a camera file
    (``hpcpipe.cameras``).
    """
    if isinstance(mapper, str):
        raise TypeError("register_mapper takes the Mapper class (or a factory), not its dotted "
                        "path: mappers are never imported by a name")
    _MAPPERS[name] = mapper


def _provider() -> Any:
    module, _, attr = CAMERA_PROVIDER.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_points() -> dict[str, Any]:
    try:
        return {e.name: e for e in importlib_metadata.entry_points(group="hpcpipe.mappers")}
    except Exception:  # noqa: BLE001 - broken metadata must not break the butler
        return {}


def mapper_names() -> dict[str, str]:
    """Registered names and what they stand for (a camera file or a class)."""
    names = {name: f"{getattr(m, '__module__', '')}.{getattr(m, '__qualname__', m)}"
             for name, m in _MAPPERS.items()}
    for name, path in _provider().names().items():
        names.setdefault(name, path)
    for name, entry in _entry_points().items():
        names.setdefault(name, entry.value.replace(":", "."))
    return names


def mapper_from_description(text: str, source: str) -> Mapper:
    """The mapper of a camera description (the YAML text of a camera file).

    Raises
    ------
    ButlerError
        (a CameraError) naming the source, the key and the line of an error.
    """
    mapper: Mapper = _provider().from_description(text, source)
    return mapper


def load_mapper(name: str | Mapper | type[Mapper]) -> Mapper:
    """A mapper instance from a registered name, a Mapper class or an instance.

    Raises
    ------
    UnknownMapperError
        If the name is not registered (names are never imported as dotted paths).
    """
    if isinstance(name, Mapper):
        return name
    if isinstance(name, type) and issubclass(name, Mapper):
        return name()
    text = str(name).strip()
    factory = _MAPPERS.get(text)
    if factory is not None:
        return factory()
    found: Mapper | None = _provider().mapper(text)
    if found is not None:
        return found
    entry = _entry_points().get(text)
    if entry is not None:
        cls = entry.load()
        if isinstance(cls, type) and issubclass(cls, Mapper):
            return cls()
        raise UnknownMapperError(f"mapper {text!r}: the entry point {entry.value} is not a "
                                 "hpcpipe.butler.Mapper subclass")
    raise UnknownMapperError(
        f"unknown mapper {text!r}: give a registered camera or mapper name "
        f"({', '.join(sorted(mapper_names()))}) or a camera file (--camera mycam.yaml)"
    )
