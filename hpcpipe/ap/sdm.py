"""Rubin's data model for the alert production, read from Rubin's own packages.

* The APDB tables (``DiaObject``, ``DiaSource``, ``DiaForcedSource``) come from the Felis
  description ``apdb.yaml`` shipped by ``lsst-sdm-schemas``: column names, types, nullability
  and descriptions.
* The alert packet schema comes from ``lsst-alert-packet`` (:func:`alert_schema`): the
  package's ``Schema.from_file`` on ``lsst.v<major>_<minor>.alert.avsc``.

Rubin generates the alert schema's records from the same ``apdb.yaml``, so a row of the APDB
and a record of a packet have the same field names; :func:`record_fields` lists a record's
Avro fields, which the packets are filled from (:mod:`hpcpipe.ap.alerts`).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hpcpipe.errors import HpcpipeError

__all__ = ["ALERT_SCHEMA_MAJOR", "DEFAULT_ALERT_SCHEMA", "ColumnSpec", "SchemaNotFound",
           "alert_schema", "alert_schema_path", "apdb_columns", "apdb_schema_version",
           "available_alert_schemas", "numpy_dtype", "parse_version", "record_fields"]

#: The major version of Rubin's alert schema hpcpipe writes (pinned with lsst-alert-packet).
ALERT_SCHEMA_MAJOR = 11
#: The default alert schema version ("major.minor").
DEFAULT_ALERT_SCHEMA = "11.1"

#: numpy types of Felis datatypes (``short`` widened: numpy rows only, SQL keeps its type).
_NUMPY = {"long": np.int64, "int": np.int32, "short": np.int32, "float": np.float32,
          "double": np.float64, "boolean": np.bool_, "char": "U32", "string": "U32"}


class SchemaNotFound(HpcpipeError):
    """The requested Rubin schema version is not shipped by the installed package."""


class ColumnSpec:
    """One column of an APDB table as Felis describes it."""

    __slots__ = ("name", "datatype", "nullable", "description", "length")

    def __init__(self, name: str, datatype: str, nullable: bool, description: str,
                 length: int | None) -> None:
        self.name, self.datatype, self.nullable = name, datatype, nullable
        self.description, self.length = description, length

    def __repr__(self) -> str:
        return f"ColumnSpec({self.name!r}, {self.datatype!r}, nullable={self.nullable})"


@functools.lru_cache(maxsize=1)
def _apdb_yaml() -> dict[str, Any]:
    text = (importlib.resources.files("lsst.sdm.schemas") / "apdb.yaml").read_text()
    return yaml.safe_load(text)


def apdb_schema_version() -> str:
    """The version of the ``apdb.yaml`` in use (``lsst-sdm-schemas``)."""
    return str(_apdb_yaml().get("version", "unknown"))


@functools.cache
def apdb_columns(table: str) -> tuple[ColumnSpec, ...]:
    """The columns of Rubin's APDB table ``table`` (``DiaObject``, ``DiaSource``...)."""
    for spec in _apdb_yaml()["tables"]:
        if spec["name"] == table:
            return tuple(ColumnSpec(c["name"], c["datatype"], bool(c.get("nullable", True)),
                                    c.get("description", ""), c.get("length"))
                         for c in spec["columns"])
    raise KeyError(f"apdb.yaml (lsst-sdm-schemas) has no table {table!r}")


def numpy_dtype(table: str, names: tuple[str, ...] | None = None) -> np.dtype:
    """A numpy row of ``table`` with the columns ``names`` (all if None), in that order."""
    by_name = {c.name: c for c in apdb_columns(table)}
    names = tuple(by_name) if names is None else names
    missing = [n for n in names if n not in by_name]
    if missing:
        raise KeyError(f"apdb.yaml table {table} has no columns {missing}")
    return np.dtype([(n, _NUMPY[by_name[n].datatype]) for n in names])


def parse_version(version: str) -> tuple[int, int]:
    """``"11.1"`` as ``(11, 1)``; a clear error otherwise."""
    try:
        major, minor = (int(p) for p in str(version).split("."))
    except ValueError:
        raise SchemaNotFound(f"alert schema version {version!r}: expected MAJOR.MINOR") \
            from None
    return major, minor


def available_alert_schemas() -> list[str]:
    """The alert schema versions lsst-alert-packet ships (``"major.minor"``), oldest first."""
    # start-up cost: lsst.alert.packet (~0.1 s), alerts only
    from lsst.alert.packet import get_schema_root

    root = Path(get_schema_root())
    found = []
    for major in root.iterdir():
        if major.name.isdigit():
            for minor in major.iterdir():
                if minor.name.isdigit() and any(minor.glob("*.alert.avsc")):
                    found.append((int(major.name), int(minor.name)))
    return [f"{a}.{b}" for a, b in sorted(found)]


def alert_schema_path(version: str = DEFAULT_ALERT_SCHEMA) -> Path:
    """The ``lsst.vM_m.alert.avsc`` file of ``version`` in lsst-alert-packet."""
    # start-up cost: lsst.alert.packet (~0.1 s), alerts only
    from lsst.alert.packet import get_schema_path

    major, minor = parse_version(version)
    path = Path(get_schema_path(major, minor)) / f"lsst.v{major}_{minor}.alert.avsc"
    if not path.exists():
        raise SchemaNotFound(f"alert schema {version} is not shipped by the installed "
                             f"lsst-alert-packet (it has {', '.join(available_alert_schemas())})")
    return path


@functools.cache
def alert_schema(version: str = DEFAULT_ALERT_SCHEMA) -> Any:
    """Rubin's alert schema ``version``: an ``lsst.alert.packet.Schema``.

    Only major version :data:`ALERT_SCHEMA_MAJOR` is filled by hpcpipe (fields of other
    majors differ); another major is refused.
    """
    from lsst.alert.packet import Schema  # start-up cost: lsst.alert.packet (~0.1 s), alerts only

    major, _ = parse_version(version)
    if major != ALERT_SCHEMA_MAJOR:
        raise SchemaNotFound(f"alert schema {version}: hpcpipe writes major version "
                             f"{ALERT_SCHEMA_MAJOR} of Rubin's alert schema")
    return Schema.from_file(str(alert_schema_path(version)))


def record_fields(version: str, record: str) -> list[dict[str, Any]]:
    """The Avro fields of ``record`` (``diaSource``, ``diaObject``, ``diaForcedSource``) in
    the alert schema ``version``."""
    major, minor = parse_version(version)
    path = alert_schema_path(version).parent / f"lsst.v{major}_{minor}.{record}.avsc"
    return json.loads(path.read_text())["fields"]
