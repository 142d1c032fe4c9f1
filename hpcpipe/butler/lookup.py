"""Completing partial data ids: from the registries, by calibration rendezvous, or from files.

A data id only needs the keys that make it unique; :class:`DataIdResolver` finds the rest:

1. keys the registry keeps for raw exposures (``visit``, ``ccd``, ``filter``, ``date``...) come
   from the ``exposure`` table rows that agree with the keys given;
2. calibrations (bias, dark, flat) are found by rendezvous: the exposure's date and
   calibration keys (from the id, or from its registry row) choose the calibration product
   whose validity range contains the date (see :mod:`hpcpipe.butler.calibs`);
3. other keys (``tract``, ``patch``) come from the files of the dataset type that exist in
   the chain of repositories.

Several matches are an :class:`~hpcpipe.butler.errors.AmbiguousDataIdError` listing them;
none is a :class:`~hpcpipe.butler.errors.NoSuchDatasetError` (or, when writing,
:class:`~hpcpipe.butler.errors.IncompleteDataIdError`). Every registry of the chain is read;
a child's row shadows a parent's row for the same raw file or calibration product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hpcpipe.butler.calibs import CalibEntry, select_calibration
from hpcpipe.butler.datasets import DatasetType
from hpcpipe.butler.errors import (
    AmbiguousDataIdError,
    IncompleteDataIdError,
    NoSuchDatasetError,
    StorageError,
    format_data_id,
)
from hpcpipe.butler.mapper import Mapper
from hpcpipe.butler.registry import Registry
from hpcpipe.butler.repository import Repository

__all__ = ["DataIdResolver"]


def _distinct(records: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The distinct projections of ``records`` onto ``keys``, in first-seen order."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        value = tuple(record[k] for k in keys)
        seen.setdefault(value, {k: record[k] for k in keys})
    return list(seen.values())


class DataIdResolver:
    """Completes data ids and lists datasets for one chain of repositories.

    Parameters
    ----------
    mapper : Mapper
        The chain's mapper.
    chain : sequence of Repository
        The repositories, in search order.
    """

    def __init__(self, mapper: Mapper, chain: Sequence[Repository]) -> None:
        self.mapper = mapper
        self.chain = list(chain)
        self.registries: list[Registry] = []
        for repo in self.chain:
            try:
                self.registries.append(repo.registry(mapper))
            except StorageError:  # a backend without local files: no registry there
                continue

    @property
    def searched(self) -> list[str]:
        """The URLs of the chain's repositories, in order (for error messages)."""
        return [repo.uri for repo in self.chain]

    # --- sources ------------------------------------------------------------------------------
    def has_registry(self) -> bool:
        """Whether any repository of the chain has a registry (else files are listed)."""
        return any(registry.exists() for registry in self.registries)

    def exposure_rows(self, where: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The registered raw exposures agreeing with ``where``, over the chain."""
        unique = self.mapper.exposure_unique
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for registry in self.registries:
            for row in registry.exposures(where):
                rows.setdefault(tuple(row[k] for k in unique), row)
        return [rows[k] for k in sorted(rows)]

    def calib_entries(self, dataset_type: str) -> list[CalibEntry]:
        """The calibration products of a dataset type, over the chain."""
        entries: dict[str, CalibEntry] = {}
        for registry in self.registries:
            for entry in registry.calibrations(dataset_type):
                entries.setdefault(CalibEntry.encode(entry.data_id), entry)
        return [entries[k] for k in sorted(entries)]

    def scan(self, dataset_type: DatasetType, data_id: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The complete data ids of the dataset type's files that exist in the chain and
        agree with ``data_id``."""
        template = dataset_type.template
        known = {k: v for k, v in data_id.items() if k in template.keys}
        pattern = template.glob(known)
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        for repo in self.chain:
            for relpath in repo.storage.glob(pattern):
                texts = template.parse(relpath)
                if texts is None:
                    continue
                try:
                    values = {k: self.mapper.keys[k].parse(t) for k, t in texts.items()}
                except ValueError:
                    continue
                if any(values[k] != v for k, v in known.items()):
                    continue
                found.setdefault(tuple(values[k] for k in template.keys), values)
        return [found[k] for k in sorted(found, key=repr)]

    # --- completion ---------------------------------------------------------------------------
    def _missing(self, dataset_type: DatasetType, data_id: Mapping[str, Any]) -> list[str]:
        return [k for k in dataset_type.keys if k not in data_id]

    def _fail(self, dataset_type: DatasetType, data_id: Mapping[str, Any], reason: str,
              for_write: bool) -> Exception:
        if for_write:
            return IncompleteDataIdError(
                f"cannot write {dataset_type.name} for data id {format_data_id(data_id)}: "
                f"{reason}; give every key of {', '.join(dataset_type.keys)}")
        return NoSuchDatasetError(dataset_type.name, data_id, self.searched, reason)

    def complete(self, dataset_type: DatasetType, data_id: Mapping[str, Any],
                 for_write: bool = False) -> dict[str, Any]:
        """``data_id`` with every key of ``dataset_type`` (validated ids only).

        Raises
        ------
        AmbiguousDataIdError
            If several datasets match.
        NoSuchDatasetError
            If none does (reading).
        IncompleteDataIdError
            If none does (``for_write``).
        """
        result = dict(data_id)
        missing = self._missing(dataset_type, result)
        if not missing:
            return result
        if dataset_type.is_calibration:
            return self._rendezvous(dataset_type, result, for_write)
        registry_keys = [k for k in missing if k in self.mapper.exposure_keys]
        if registry_keys:
            combos = _distinct(self.exposure_rows(result), registry_keys)
            if len(combos) > 1:
                raise AmbiguousDataIdError(dataset_type.name, result,
                                           [{**result, **c} for c in combos])
            if combos:
                result.update(combos[0])
        missing = self._missing(dataset_type, result)
        if missing:
            found = self.scan(dataset_type, result)
            if len(found) > 1:
                raise AmbiguousDataIdError(dataset_type.name, result,
                                           [{**result, **f} for f in found])
            if not found:
                raise self._fail(dataset_type, result,
                                 f"the data id lacks {', '.join(missing)} and no registry "
                                 "entry or existing file matches it", for_write)
            result.update(found[0])
        return result

    def _exposure_for(self, dataset_type: DatasetType, data_id: Mapping[str, Any],
                      keys: Sequence[str], for_write: bool) -> dict[str, Any]:
        """The values of ``keys`` of the one registered exposure matching ``data_id``."""
        rows = self.exposure_rows(data_id)
        combos = _distinct(rows, keys)
        if not combos:
            raise self._fail(dataset_type, data_id,
                             f"no raw exposure in the registry matches it, so its "
                             f"{', '.join(keys)} are unknown", for_write)
        if len(combos) > 1:
            raise AmbiguousDataIdError(dataset_type.name, data_id,
                                       [{**data_id, **c} for c in combos])
        return combos[0]

    def _rendezvous(self, dataset_type: DatasetType, data_id: dict[str, Any],
                    for_write: bool) -> dict[str, Any]:
        calib_keys = tuple(dataset_type.calib_keys or ())
        own_keys = [k for k in dataset_type.keys if k not in calib_keys]
        entries = self.calib_entries(dataset_type.name)
        if any(k in data_id for k in own_keys):  # a product named by its own keys
            matches = [e for e in entries if e.matches(data_id)]
            if len(matches) > 1:
                raise AmbiguousDataIdError(dataset_type.name, data_id,
                                           [{**data_id, **e.data_id} for e in matches])
            if not matches:
                raise self._fail(dataset_type, data_id,
                                 f"no {dataset_type.name} in the calibration registry matches "
                                 "it", for_write)
            return {**data_id, **matches[0].data_id}
        date_key = self.mapper.date_key
        needed = [k for k in (*calib_keys, date_key) if k not in data_id]
        exposure = dict(data_id)
        if needed:
            exposure.update(self._exposure_for(dataset_type, data_id, needed, for_write))
        keys = {k: exposure[k] for k in calib_keys}
        date = exposure[date_key]
        chosen, candidates = select_calibration(entries, date, keys)
        if chosen is None:
            listing = "; ".join(e.describe() for e in candidates) or "none"
            wanted = ", ".join(f"{k}={v!r}" for k, v in keys.items())
            raise self._fail(
                dataset_type, exposure,
                f"no {dataset_type.name} is valid on {date} for {wanted} (the calibration "
                f"registry has for these keys: {listing})", for_write)
        return {**exposure, **chosen.data_id}

    # --- listing ------------------------------------------------------------------------------
    def _registry_listed(self, dataset_type: DatasetType) -> bool:
        """Whether the registry lists the datasets of a type: a type whose keys are all
        exposure keys (one dataset per raw exposure, or per visit...), in a chain with a
        registry. Other types are listed from their files."""
        return (not dataset_type.is_calibration and bool(dataset_type.keys)
                and all(k in self.mapper.exposure_keys for k in dataset_type.keys)
                and self.has_registry())

    def candidates(self, dataset_type: DatasetType, data_id: Mapping[str, Any]
                   ) -> list[dict[str, Any]]:
        """The complete data ids of the dataset type that agree with ``data_id``.

        Dataset types whose keys are all exposure keys (raw, calexp, src...) list the
        registry's exposures, whether or not the dataset itself exists yet; calibrations list
        the calibration registry (or, given exposure keys, each exposure's calibration);
        other types (coadds, warps, forced_src), and every type in a chain without a
        registry, list their existing files.
        """
        given = dict(data_id)
        if not self._missing(dataset_type, given):
            return [given]
        exposure_keys = self.mapper.exposure_keys
        if dataset_type.is_calibration:
            own = set(dataset_type.keys)
            if any(k in exposure_keys and k not in own for k in given):
                out: dict[str, dict[str, Any]] = {}
                for row in self.exposure_rows(given):
                    try:
                        found = self._rendezvous(dataset_type, {**given, **row}, False)
                    except NoSuchDatasetError:
                        continue
                    out.setdefault(CalibEntry.encode({k: found[k] for k in dataset_type.keys}),
                                   {**given, **{k: found[k] for k in dataset_type.keys}})
                return list(out.values())
            return [{**given, **e.data_id} for e in self.calib_entries(dataset_type.name)
                    if e.matches(given)]
        if self._registry_listed(dataset_type):
            rows = self.exposure_rows(given)
            if set(self.mapper.exposure_unique) <= set(dataset_type.keys):
                return [{**given, **row} for row in rows]
            return [{**given, **c} for c in _distinct(rows, dataset_type.keys)]
        return [{**given, **f} for f in self.scan(dataset_type, given)]

    def query(self, dataset_type: DatasetType, keys: Sequence[str],
              data_id: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The distinct values of ``keys`` among the datasets agreeing with ``data_id``."""
        if (self._registry_listed(dataset_type)
                and all(k in self.mapper.exposure_keys for k in keys)):
            records = self.exposure_rows(data_id)
        else:
            records = self.candidates(dataset_type, data_id)
        values = {tuple(r.get(k) for k in keys) for r in records if all(k in r for k in keys)}
        return sorted(values, key=lambda v: tuple((x is None, x) for x in v))
