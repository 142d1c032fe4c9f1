"""Formatters: how a dataset's Python object becomes a file and back.

A formatter reads and writes *local* paths only; the storage backend decides where those live
and makes writes atomic (see :mod:`hpcpipe.butler.storage`). Each formatter checks the object
it is given before anything is written, so a ``put`` of the wrong kind of object fails with a
:class:`~hpcpipe.butler.errors.DatasetObjectTypeError` and leaves the repository untouched.

=================  =========================================  ==============================
formatter          Python type                                file
=================  =========================================  ==============================
``fits-exposure``  :class:`hpcpipe.image.Exposure`            multi-extension FITS
``hdf5-exposure``  :class:`hpcpipe.image.Exposure`            HDF5
``fits-catalog``   :class:`hpcpipe.table.Catalog`             FITS binary table
``hdf5-catalog``   :class:`hpcpipe.table.Catalog`             HDF5 compound dataset
``schema``         :class:`hpcpipe.table.Catalog` (empty)     FITS binary table, no rows
``yaml-config``    mapping, or object with ``to_dict()``      YAML
``config-data``    ``hpcpipe.config.Config``, dict or str      YAML (read as data, never run)
``python-config``  ``hpcpipe.config.Config``, dict or str      Python source (read as text)
``yaml-metadata``  dict                                       YAML
``json-metadata``  dict                                       JSON
``yaml-skymap``    :class:`hpcpipe.skymap.BaseSkyMap`         YAML of ``to_dict()``
=================  =========================================  ==============================
"""

from __future__ import annotations

import ast
import importlib
import json
import pprint
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hpcpipe.butler.errors import DatasetObjectTypeError
from hpcpipe.config.errors import ConfigError
from hpcpipe.config.stored import StoredConfig, is_stored_config_data
from hpcpipe.errors import FileFormatError

__all__ = [
    "JsonLinesFormatter",
    "Formatter",
    "ExposureFormatter",
    "CatalogFormatter",
    "SchemaFormatter",
    "YamlConfigFormatter",
    "PythonConfigFormatter",
    "ConfigDataFormatter",
    "MetadataFormatter",
    "SkyMapFormatter",
    "ReleaseTableFormatter",
    "to_plain",
]

#: The key a YAML config uses to record the class that ``from_dict`` rebuilds it with.
CLASS_KEY = "__class__"
#: The first line of a Python config file names the class that loads it.
CLASS_COMMENT = "# hpcpipe config class: "


def to_plain(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays, tuples and paths made plain YAML/JSON types."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


class Formatter(ABC):
    """Reads and writes one kind of object as one kind of file."""

    #: Short name shown by ``hpcpipe butler describe``.
    name: str = ""
    #: The Python type of the objects, as a dotted name (for documentation and messages).
    python_type: str = ""
    #: What the file holds, in a few words.
    description: str = ""

    def _check_type(self, obj: Any, expected: tuple[type, ...], dataset_type: str) -> None:
        if not isinstance(obj, expected):
            raise DatasetObjectTypeError(
                f"{dataset_type} stores {self.python_type} objects, not "
                f"{type(obj).__module__}.{type(obj).__qualname__}"
            )

    @abstractmethod
    def check(self, obj: Any, dataset_type: str) -> None:
        """Raise DatasetObjectTypeError if ``obj`` cannot be stored."""

    @abstractmethod
    def write(self, obj: Any, path: Path) -> None:
        """Write ``obj`` to the local ``path`` (which does not exist yet)."""

    @abstractmethod
    def read(self, path: Path) -> Any:
        """Read the object stored at the local ``path``."""

    def read_dataset(self, path: Path, data_id: Mapping[str, Any]) -> Any:
        """Read the dataset of ``data_id`` stored at ``path`` (a file may hold several, as a
        multi-extension raw holds one detector per HDU); :meth:`read` by default."""
        return self.read(path)

    def read_box(self, path: Path, data_id: Mapping[str, Any], bbox: Any,
                 dataset_type: str) -> Any:
        """Read only the box ``bbox`` (a :class:`~hpcpipe.geom.Box2I` of parent pixels) of
        the dataset: exposure formatters only (``butler.get(..., bbox=)``, Gen2's
        ``<datasetType>_sub``)."""
        raise DatasetObjectTypeError(
            f"{dataset_type} stores {self.python_type} objects: it has no sub-region read "
            "(bbox is for exposure datasets)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ExposureFormatter(Formatter):
    """Exposures through :meth:`hpcpipe.image.Exposure.write` and ``read`` (FITS or HDF5).

    Parameters
    ----------
    kind : {"fits", "hdf5"}
        The file format (the path template's suffix must match it).
    """

    python_type = "hpcpipe.image.Exposure"

    def __init__(self, kind: str = "fits") -> None:
        if kind not in ("fits", "hdf5"):
            raise ValueError(f"kind must be 'fits' or 'hdf5', not {kind!r}")
        self.kind = kind
        self.name = f"{kind}-exposure"
        self.description = ("multi-extension FITS exposure" if kind == "fits"
                            else "HDF5 exposure")

    def check(self, obj: Any, dataset_type: str) -> None:
        from hpcpipe.image import Exposure  # start-up cost: astropy.wcs (~0.7 s)

        self._check_type(obj, (Exposure,), dataset_type)

    def write(self, obj: Any, path: Path) -> None:
        obj.write(path)

    def read(self, path: Path) -> Any:
        from hpcpipe.image import Exposure  # start-up cost: astropy.wcs (~0.7 s)

        return Exposure.read(path)

    def read_box(self, path: Path, data_id: Mapping[str, Any], bbox: Any,
                 dataset_type: str) -> Any:
        from hpcpipe.image import Exposure  # start-up cost: astropy.wcs (~0.7 s)

        return Exposure.read(path, bbox)


class CatalogFormatter(Formatter):
    """Catalogs as FITS binary tables or HDF5 compound datasets.

    Parameters
    ----------
    kind : {"fits", "hdf5"}
        The file format.
    """

    python_type = "hpcpipe.table.Catalog"

    def __init__(self, kind: str = "fits") -> None:
        if kind not in ("fits", "hdf5"):
            raise ValueError(f"kind must be 'fits' or 'hdf5', not {kind!r}")
        self.kind = kind
        self.name = f"{kind}-catalog"
        self.description = "FITS binary table" if kind == "fits" else "HDF5 compound dataset"

    def check(self, obj: Any, dataset_type: str) -> None:
        from hpcpipe.table import Catalog  # start-up cost: astropy (~0.4 s)

        self._check_type(obj, (Catalog,), dataset_type)

    def write(self, obj: Any, path: Path) -> None:
        if self.kind == "fits":
            obj.write_fits(path)
        else:
            obj.write_hdf5(path)

    def read(self, path: Path) -> Any:
        from hpcpipe.table import Catalog  # start-up cost: astropy (~0.4 s)

        return Catalog.read_fits(path) if self.kind == "fits" else Catalog.read_hdf5(path)


class SchemaFormatter(Formatter):
    """A catalog schema, stored as an empty FITS catalog (names, types, units and docs).

    ``put`` accepts a :class:`~hpcpipe.table.Schema`, a :class:`~hpcpipe.table.Catalog` (its
    rows are not stored) or a schema's ``to_dict()``; ``get`` returns an empty Catalog, whose
    ``schema`` attribute is the schema (as Gen2 did).
    """

    name = "schema"
    python_type = "hpcpipe.table.Catalog"
    description = "empty FITS catalog (the schema)"

    def check(self, obj: Any, dataset_type: str) -> None:
        from hpcpipe.table import Catalog, Schema  # start-up cost: astropy (~0.4 s)

        if not isinstance(obj, Mapping):
            self._check_type(obj, (Catalog, Schema), dataset_type)

    def write(self, obj: Any, path: Path) -> None:
        from hpcpipe.table import Catalog, Schema  # start-up cost: astropy (~0.4 s)

        if isinstance(obj, Mapping):
            obj = Schema.from_dict(obj)
        schema = obj if isinstance(obj, Schema) else obj.schema
        Catalog(schema).write_fits(path)

    def read(self, path: Path) -> Any:
        from hpcpipe.table import Catalog  # start-up cost: astropy (~0.4 s)

        return Catalog.read_fits(path)


def _qualified_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_class(dotted: str, path: Path, method: str = "from_dict") -> Any:
    """The class a file names, only from hpcpipe or a module already imported.

    A file's content is data: it may not make the reader import (run) an arbitrary module.
    """
    module, _, name = dotted.rpartition(".")
    if module != "hpcpipe" and not module.startswith("hpcpipe.") and module not in sys.modules:
        raise FileFormatError(str(path), f"the class {dotted!r} is not part of hpcpipe nor of a "
                              "module already imported; a file cannot make the reader import "
                              "a module")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise FileFormatError(str(path), f"cannot import the config class {dotted!r} ({exc})"
                              ) from exc
    if not hasattr(cls, method):
        raise FileFormatError(str(path), f"the config class {dotted!r} has no {method}()")
    return cls


def _load_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise FileFormatError(str(path), f"not valid YAML ({exc})") from exc


#: libyaml's safe dumper when PyYAML was built with it (the same output, 5-10x faster).
_SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump_yaml(data: Any, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        yaml.dump(to_plain(data), handle, Dumper=_SAFE_DUMPER, sort_keys=False,
                  default_flow_style=False)


class YamlConfigFormatter(Formatter):
    """A task configuration as YAML.

    A mapping is stored as it is and read back as a dict. An object with ``to_dict()`` is
    stored as its dictionary plus a ``__class__`` entry naming its class, and read back
    through that class's ``from_dict()``.
    """

    name = "yaml-config"
    python_type = "dict or a config object with to_dict()/from_dict()"
    description = "YAML"

    def check(self, obj: Any, dataset_type: str) -> None:
        if not isinstance(obj, Mapping) and not callable(getattr(obj, "to_dict", None)):
            raise DatasetObjectTypeError(
                f"{dataset_type} stores a mapping or an object with to_dict(), not "
                f"{_qualified_name(obj)}"
            )

    def write(self, obj: Any, path: Path) -> None:
        if isinstance(obj, Mapping):
            data = dict(obj)
        else:
            data = {CLASS_KEY: _qualified_name(obj), **obj.to_dict()}
        _dump_yaml(data, path)

    def read(self, path: Path) -> Any:
        data = _load_yaml(path)
        if isinstance(data, dict) and CLASS_KEY in data:
            cls = _import_class(str(data.pop(CLASS_KEY)), path)
            return cls.from_dict(data)
        return data


class ConfigDataFormatter(Formatter):
    """A task configuration stored as data (:mod:`hpcpipe.config.stored`): YAML, never run.

    ``put`` accepts

    * an :mod:`hpcpipe.config` ``Config`` (or a :class:`~hpcpipe.config.StoredConfig`): its
      fields are stored flattened (``isr.doBias: true``) with its class name, and ``get``
      returns a :class:`~hpcpipe.config.StoredConfig` (plain values, attribute access,
      compared with a live config by ``differences()``); the class is never imported;
    * a mapping of plain values, or a str: stored as YAML, read back as they were.

    The file is read with :func:`yaml.safe_load`, which builds only plain values: nothing in
    a repository's config runs when it is read.
    """

    name = "config-data"
    python_type = "hpcpipe.config.Config (read back as StoredConfig), dict or str"
    description = "YAML of the flattened fields (data: never executed)"

    def check(self, obj: Any, dataset_type: str) -> None:
        if isinstance(obj, (str, Mapping, StoredConfig)):
            return
        if not callable(getattr(obj, "field_names", None)):
            raise DatasetObjectTypeError(
                f"{dataset_type} stores an hpcpipe.config Config, a mapping or a str, not "
                f"{_qualified_name(obj)}")

    def write(self, obj: Any, path: Path) -> None:
        if isinstance(obj, StoredConfig):
            text = obj.to_yaml()
        elif isinstance(obj, (str, Mapping)):
            text = yaml.safe_dump(to_plain(obj if isinstance(obj, str) else dict(obj)),
                                  sort_keys=False, default_flow_style=False)
        else:
            text = StoredConfig.from_config(obj).to_yaml()
        path.write_text(text, encoding="utf-8")

    def read(self, path: Path) -> Any:
        data = _load_yaml(path)
        if not is_stored_config_data(data):
            return data
        try:
            return StoredConfig.from_data(data, str(path))
        except ConfigError as exc:
            raise FileFormatError(str(path), str(exc)) from exc


class PythonConfigFormatter(Formatter):
    """A task configuration as Python source, kept as *text* (older repositories).

    ``put`` accepts

    * a config object with ``to_python()``: its source is stored after a comment line
      naming its class;
    * a mapping of plain values: stored as a Python literal, read back (with
      :func:`ast.literal_eval`, never executed) as a dict;
    * a str: Python source stored as it is.

    ``get`` never executes the file: a config's source comes back as a str (load it with
    ``config.load(path)`` only if you trust whoever wrote it). Repositories store configs
    through :class:`ConfigDataFormatter`.
    """

    name = "python-config"
    python_type = "hpcpipe.config.Config (or dict, or str)"
    description = "Python source"

    def check(self, obj: Any, dataset_type: str) -> None:
        if isinstance(obj, (str, Mapping)):
            return
        if not (callable(getattr(obj, "to_python", None)) and callable(getattr(obj, "load",
                                                                                None))):
            raise DatasetObjectTypeError(
                f"{dataset_type} stores a config with to_python() and load(), a mapping or "
                f"Python source text, not {_qualified_name(obj)}"
            )

    def write(self, obj: Any, path: Path) -> None:
        if isinstance(obj, str):
            text = obj
        elif isinstance(obj, Mapping):
            text = f"{CLASS_COMMENT}dict\n{pprint.pformat(to_plain(obj), sort_dicts=False)}\n"
        else:
            text = f"{CLASS_COMMENT}{_qualified_name(obj)}\n{obj.to_python()}"
        path.write_text(text, encoding="utf-8")

    def read(self, path: Path) -> Any:
        text = path.read_text(encoding="utf-8")
        first, _, rest = text.partition("\n")
        if not first.startswith(CLASS_COMMENT):
            return text
        dotted = first[len(CLASS_COMMENT):].strip()
        if dotted == "dict":
            try:
                return ast.literal_eval(rest)
            except (ValueError, SyntaxError) as exc:
                raise FileFormatError(str(path), f"not a Python literal ({exc})") from exc
        return rest


class MetadataFormatter(Formatter):
    """Task metadata (a dict of plain values) as YAML or JSON.

    Parameters
    ----------
    kind : {"yaml", "json"}
    """

    python_type = "dict"

    def __init__(self, kind: str = "yaml") -> None:
        if kind not in ("yaml", "json"):
            raise ValueError(f"kind must be 'yaml' or 'json', not {kind!r}")
        self.kind = kind
        self.name = f"{kind}-metadata"
        self.description = kind.upper()

    def check(self, obj: Any, dataset_type: str) -> None:
        self._check_type(obj, (Mapping,), dataset_type)

    def write(self, obj: Any, path: Path) -> None:
        if self.kind == "yaml":
            _dump_yaml(dict(obj), path)
        else:
            path.write_text(json.dumps(to_plain(dict(obj)), indent=1), encoding="utf-8")

    def read(self, path: Path) -> Any:
        if self.kind == "yaml":
            return _load_yaml(path)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise FileFormatError(str(path), f"not valid JSON ({exc})") from exc


class JsonLinesFormatter(Formatter):
    """A list of dicts of plain values (log records, rows) as JSON lines, one per line.

    Lines are strict JSON (NaN and infinities become null). A last line cut short is a
    :class:`~hpcpipe.errors.FileFormatError` naming the file and the line.
    """

    name = "jsonl"
    python_type = "list of dict"
    description = "JSON lines"

    def check(self, obj: Any, dataset_type: str) -> None:
        if not isinstance(obj, (list, tuple)) or not all(isinstance(r, Mapping) for r in obj):
            raise DatasetObjectTypeError(
                f"{dataset_type} stores a list of dicts, not {type(obj).__name__}")

    def write(self, obj: Any, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            for record in obj:
                handle.write(json.dumps(_strict(to_plain(dict(record))), allow_nan=False))
                handle.write("\n")

    def read(self, path: Path) -> Any:
        out = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise FileFormatError(str(path), f"line {number}: not JSON ({exc})"
                                          ) from exc
        return out


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


class SkyMapFormatter(Formatter):
    """A sky map as the YAML of its ``to_dict()``; read back with ``BaseSkyMap.from_dict``."""

    name = "yaml-skymap"
    python_type = "hpcpipe.skymap.BaseSkyMap"
    description = "YAML"

    def check(self, obj: Any, dataset_type: str) -> None:
        from hpcpipe.skymap import BaseSkyMap  # start-up cost: skymap imports scipy (~0.9 s)

        self._check_type(obj, (BaseSkyMap,), dataset_type)

    def write(self, obj: Any, path: Path) -> None:
        _dump_yaml(obj.to_dict(), path)

    def read(self, path: Path) -> Any:
        from hpcpipe.skymap import BaseSkyMap  # start-up cost: skymap imports scipy (~0.9 s)

        return BaseSkyMap.from_dict(_load_yaml(path))


class ReleaseTableFormatter(Formatter):
    """A catalog dataset of a data release HDF5 file (:mod:`hpcpipe.io.release`), read-only.

    Release files are written by every rank at once (``hpcpipe release``), never by one
    ``put``; the butler reads them (without MPI) as catalogs.

    Parameters
    ----------
    dataset : str
        The dataset in the file (``sources``, ``objects``, ``forced``).
    """

    python_type = "hpcpipe.table.Catalog"
    description = "HDF5 data release file (read-only: written by hpcpipe release)"

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.name = f"release-{dataset}"

    def check(self, obj: Any, dataset_type: str) -> None:
        raise DatasetObjectTypeError(
            f"{dataset_type} is a data release file, written collectively by `hpcpipe "
            "release`; it cannot be put through the butler")

    def write(self, obj: Any, path: Path) -> None:
        self.check(obj, self.name)

    def read(self, path: Path) -> Any:
        from hpcpipe.io.release import read_release_table  # start-up cost: h5py

        return read_release_table(path, self.dataset)
