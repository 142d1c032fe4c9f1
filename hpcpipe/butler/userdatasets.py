"""Dataset types (and data id keys) declared by users' tasks, stored as data in a repository.

A task lists the dataset types it writes with :class:`DatasetDeclaration` (name, keys,
storage format, doc) and, if its units are not identified by the camera's keys, the keys it
adds with :class:`KeyDeclaration`::

    class ObjectStatsTask(CmdLineTask):
        _DefaultName = "objectStats"
        declared_keys = (KeyDeclaration("object", int, "an object of my list"),)
        declared_datasets = (
            DatasetDeclaration("objectStats", ("object",), "yaml", "statistics of an object"),
            DatasetDeclaration("objectCutout", ("object",), "fits-exposure", "a cutout"),
        )

:func:`declare` checks them against the repository's mapper (a name already used by the
camera, by a dataset type pattern such as ``<task>_metadata``, or by another task with
another definition is refused, naming both), chooses each path template by the camera's
conventions (:meth:`~hpcpipe.butler.mapper.Mapper.user_template`) and records them in the
output repository's ``_datasets.yaml``::

    keys:
      object: {type: int, doc: an object of my list, task: objectStats}
    datasetTypes:
      objectStats: {keys: [object], storage: yaml, doc: ..., task: objectStats,
                    template: objectStats/objectStats_object{object:d}.yaml}

Every butler opened on a chain holding such files adds those keys and dataset types to its
mapper (:func:`load_declarations`): ``hpcpipe butler describe`` lists them, ``get``/``put``
use them like the camera's. The file is YAML read with a safe loader and checked field by
field; nothing in it is imported or run, and only the storage formats of
:data:`STORAGE_FORMATS` (hpcpipe's own formatters) can be named.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from hpcpipe.butler.datasets import DataIdKey, DatasetType, PathTemplate
from hpcpipe.butler.errors import ButlerError
from hpcpipe.butler.formatters import (
    CatalogFormatter,
    ExposureFormatter,
    Formatter,
    JsonLinesFormatter,
    MetadataFormatter,
)

if TYPE_CHECKING:
    from hpcpipe.butler.butler import Butler
    from hpcpipe.butler.mapper import Mapper
    from hpcpipe.butler.repository import Repository

__all__ = ["DatasetDeclaration", "KeyDeclaration", "DatasetDeclarationError", "declare",
           "load_declarations", "read_declarations", "DATASETS_FILE", "STORAGE_FORMATS"]

#: The file of a repository holding the dataset types and keys declared by tasks.
DATASETS_FILE = "_datasets.yaml"

#: The storage formats a declaration may name: (formatter factory, file extension).
STORAGE_FORMATS: dict[str, tuple[Callable[[], Formatter], str]] = {
    "fits-exposure": (lambda: ExposureFormatter("fits"), "fits"),
    "hdf5-exposure": (lambda: ExposureFormatter("hdf5"), "h5"),
    "fits-catalog": (lambda: CatalogFormatter("fits"), "fits"),
    "hdf5-catalog": (lambda: CatalogFormatter("hdf5"), "h5"),
    "yaml": (lambda: MetadataFormatter("yaml"), "yaml"),
    "json": (lambda: MetadataFormatter("json"), "json"),
    "jsonl": (lambda: JsonLinesFormatter(), "jsonl"),
}
_TYPES = {"int": int, "str": str, "float": float}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: Suffixes of the dataset type families every task has (``<task>_config``...).
_RESERVED_SUFFIXES = ("_config", "_metadata", "_log")


class DatasetDeclarationError(ButlerError):
    """A declared dataset type or key that is malformed or clashes with an existing one."""


@dataclass(frozen=True)
class KeyDeclaration:
    """A data id key a task adds to the camera's (``object``, ``field``...).

    Parameters
    ----------
    name : str
        The key.
    type : {int, str, float}
        The type of its values.
    doc : str
        What it means.
    """

    name: str
    type: type
    doc: str = ""


@dataclass(frozen=True)
class DatasetDeclaration:
    """A dataset type a task reads or writes.

    Parameters
    ----------
    name : str
        The dataset type's name (letters, digits and ``_``).
    keys : sequence of str
        The data id keys of one dataset: the camera's keys or declared ones. With ``visit``
        and ``ccd`` the camera's convention adds ``filter`` (as for ``calexp``).
    storage : str
        One of :data:`STORAGE_FORMATS`: ``fits-exposure``, ``hdf5-exposure``,
        ``fits-catalog``, ``hdf5-catalog``, ``yaml``/``json`` (a dict), ``jsonl`` (a list
        of dicts).
    doc : str
        What the dataset is.
    """

    name: str
    keys: tuple[str, ...]
    storage: str
    doc: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))


def _check_declaration(decl: DatasetDeclaration, where: str) -> None:
    if not isinstance(decl.name, str) or not _NAME.fullmatch(decl.name):
        raise DatasetDeclarationError(f"{where}: dataset type name {decl.name!r} must be "
                                      "letters, digits and '_', starting with a letter")
    if decl.name.endswith(_RESERVED_SUFFIXES):
        raise DatasetDeclarationError(
            f"{where}: dataset type {decl.name!r} clashes with the families every task has "
            f"(<task>{', <task>'.join(_RESERVED_SUFFIXES)}); choose another name")
    if decl.storage not in STORAGE_FORMATS:
        raise DatasetDeclarationError(
            f"{where}: dataset type {decl.name!r}: storage {decl.storage!r} is not one of "
            f"{', '.join(STORAGE_FORMATS)}")
    if not all(isinstance(k, str) for k in decl.keys):
        raise DatasetDeclarationError(f"{where}: dataset type {decl.name!r}: keys must be "
                                      f"names, not {list(decl.keys)!r}")


def _key_entry(key: KeyDeclaration, task: str) -> dict[str, Any]:
    if key.type not in (int, str, float):
        raise DatasetDeclarationError(f"task {task}: key {key.name!r}: type must be int, str "
                                      "or float")
    return {"type": key.type.__name__, "doc": str(key.doc), "task": task}


def read_declarations(repo: Repository) -> dict[str, dict[str, Any]]:
    """The ``keys`` and ``datasetTypes`` of a repository's ``_datasets.yaml`` (empty dicts
    when it has none), checked field by field.

    Raises
    ------
    DatasetDeclarationError
        Naming the file and the entry at fault.
    """
    empty: dict[str, dict[str, Any]] = {"keys": {}, "datasetTypes": {}}
    if not repo.storage.exists(DATASETS_FILE):
        return empty
    where = repo.storage.url(DATASETS_FILE)
    try:
        data = yaml.safe_load(repo.storage.read_text(DATASETS_FILE)) or {}
    except yaml.YAMLError as exc:
        raise DatasetDeclarationError(f"{where}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or set(data) - {"keys", "datasetTypes"}:
        raise DatasetDeclarationError(f"{where}: expected a mapping with 'keys' and "
                                      "'datasetTypes'")
    keys = data.get("keys") or {}
    types = data.get("datasetTypes") or {}
    if not isinstance(keys, dict) or not isinstance(types, dict):
        raise DatasetDeclarationError(f"{where}: 'keys' and 'datasetTypes' must be mappings")
    for name, entry in keys.items():
        if (not isinstance(entry, dict) or entry.get("type") not in _TYPES
                or not _NAME.fullmatch(str(name))):
            raise DatasetDeclarationError(f"{where}: key {name!r}: expected {{type: int|str|"
                                          "float, doc: ..., task: ...}")
    for name, entry in types.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("keys"), list) \
                or not isinstance(entry.get("template"), str):
            raise DatasetDeclarationError(f"{where}: dataset type {name!r}: expected {{keys: "
                                          "[...], storage: ..., template: ..., doc: ...}")
        _check_declaration(DatasetDeclaration(str(name), tuple(entry["keys"]),
                                              str(entry.get("storage"))), where)
    return {"keys": dict(keys), "datasetTypes": dict(types)}


def _dataset_type(name: str, entry: Mapping[str, Any]) -> DatasetType:
    factory, _ext = STORAGE_FORMATS[str(entry["storage"])]
    doc = str(entry.get("doc") or "")
    task = entry.get("task")
    origin = f"Declared by task {task} ({DATASETS_FILE})." if task else f"({DATASETS_FILE})"
    return DatasetType(name, factory(), PathTemplate(str(entry["template"])),
                       f"{doc} {origin}".strip())


def _apply(mapper: Mapper, data: Mapping[str, Mapping[str, Any]], where: str) -> None:
    for name, entry in data["keys"].items():
        known = mapper.keys.get(name)
        kind = _TYPES[entry["type"]]
        if known is None:
            mapper.keys[name] = DataIdKey(name, kind, str(entry.get("doc") or ""))
        elif known.type is not kind:
            raise DatasetDeclarationError(
                f"{where}: key {name!r} is declared {entry['type']} but the {mapper} mapper "
                f"has it as {known.type.__name__}")
    for name, entry in data["datasetTypes"].items():
        existing = mapper.dataset_types.get(name)
        new = _dataset_type(name, entry)
        if existing is not None:
            if existing.template == new.template and existing.formatter.name == \
                    new.formatter.name:
                continue  # the same declaration seen through two repositories of a chain
            raise DatasetDeclarationError(
                f"{where}: dataset type {name!r} clashes with the {mapper} mapper's "
                f"{name} ({existing.formatter.name} at {existing.template.text})")
        try:
            mapper._add_dataset_type(new)
        except ValueError as exc:
            raise DatasetDeclarationError(f"{where}: {exc}") from None


def load_declarations(mapper: Mapper, chain: Sequence[Repository]) -> None:
    """Add the keys and dataset types declared in a chain's ``_datasets.yaml`` files to
    ``mapper`` (parents first).

    Raises
    ------
    DatasetDeclarationError
        For a malformed file, or a declaration that clashes with the mapper's.
    """
    for repo in reversed(list(chain)):
        data = read_declarations(repo)
        if data["keys"] or data["datasetTypes"]:
            _apply(mapper, data, repo.storage.url(DATASETS_FILE))


def declare(butler: Butler, datasets: Iterable[DatasetDeclaration],
            keys: Iterable[KeyDeclaration] = (), task: str = "") -> list[str]:
    """Register a task's dataset types (and keys) in the butler's output repository.

    Declarations already recorded identically are left alone (a rerun); the file is
    rewritten atomically only when something is new.

    Parameters
    ----------
    butler : Butler
        The butler of the run; its mapper gains the new keys and dataset types.
    datasets : iterable of DatasetDeclaration
        The dataset types.
    keys : iterable of KeyDeclaration
        New data id keys the dataset types use.
    task : str
        The declaring task's name (recorded, and named in errors).

    Returns
    -------
    list of str
        The names newly recorded.

    Raises
    ------
    DatasetDeclarationError
        For a bad declaration, or one that clashes with the camera's dataset types or keys
        or with another declaration (the message names both).
    """
    who = f"task {task}" if task else "declaration"
    mapper = butler.mapper
    repo = butler.output
    data = read_declarations(repo)
    new_keys: dict[str, dict[str, Any]] = {}
    for key in keys:
        if not _NAME.fullmatch(key.name):
            raise DatasetDeclarationError(f"{who}: key name {key.name!r} is not a name")
        entry = _key_entry(key, task)
        known = mapper.keys.get(key.name)
        if known is not None:
            if known.type is not key.type:
                raise DatasetDeclarationError(
                    f"{who}: key {key.name!r} ({key.type.__name__}) clashes with the "
                    f"{mapper} mapper's key {key.name} ({known.type.__name__})")
            continue
        new_keys[key.name] = entry
    if new_keys:
        _apply(mapper, {"keys": new_keys, "datasetTypes": {}}, who)
    new_types: dict[str, dict[str, Any]] = {}
    for decl in datasets:
        _check_declaration(decl, who)
        unknown = [k for k in decl.keys if k not in mapper.keys]
        if unknown:
            raise DatasetDeclarationError(
                f"{who}: dataset type {decl.name!r} uses unknown keys {unknown} (the {mapper} "
                f"mapper's keys: {', '.join(mapper.keys)}; declare new ones with "
                "KeyDeclaration)")
        _factory, ext = STORAGE_FORMATS[decl.storage]
        template = mapper.user_template(decl.name, decl.keys, ext)
        entry = {"keys": list(decl.keys), "storage": decl.storage, "doc": decl.doc,
                 "task": task, "template": template}
        recorded = data["datasetTypes"].get(decl.name)
        if recorded is not None:
            same = (recorded.get("keys") == entry["keys"]
                    and recorded.get("storage") == entry["storage"]
                    and recorded.get("template") == entry["template"])
            if not same:
                raise DatasetDeclarationError(
                    f"{who}: dataset type {decl.name!r} ({decl.storage}, keys "
                    f"{list(decl.keys)}) clashes with the one task {recorded.get('task')} "
                    f"declared in {repo.storage.url(DATASETS_FILE)} ({recorded.get('storage')}"
                    f", keys {recorded.get('keys')})")
            continue
        existing = mapper.dataset_types.get(decl.name) or (
            mapper.dataset_types.get(mapper.aliases[decl.name])
            if decl.name in mapper.aliases else None)
        if existing is not None:
            raise DatasetDeclarationError(
                f"{who}: dataset type {decl.name!r} clashes with the {mapper} camera's "
                f"dataset type {existing.name} ({existing.formatter.name} at "
                f"{existing.template.text}); choose another name")
        new_types[decl.name] = entry
    if new_types:
        _apply(mapper, {"keys": {}, "datasetTypes": new_types}, who)
    if new_keys or new_types:
        data["keys"].update(new_keys)
        data["datasetTypes"].update(new_types)
        repo.storage.write_text(DATASETS_FILE, yaml.safe_dump(data, sort_keys=False))
    return [*new_keys, *new_types]
