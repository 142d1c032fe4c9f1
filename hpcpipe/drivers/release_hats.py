"""The release as HATS catalogs: ``hpcpipe release --format hats`` and ``hpcpipe release-convert``.

Three HATS collections go under ``<release>/hats`` (layout: ``docs/release_database.md``):

* ``objects``: the ``deepCoadd_ref`` rows of every patch of every tract, with ``tract`` and
  ``patch`` columns (the HDF5 ``objects/tract-<tract>.h5`` files, together);
* ``sources``: the ``src`` rows of every CCD of every visit, with ``visit`` and ``ccd``;
* ``forced``: the ``deepCoadd_forced_src`` rows, with ``tract``, ``filter`` and ``patch``;
* ``multifit``: the ``deepCoadd_multifit`` rows (where the production ran ``multifit``), with
  ``tract`` and ``patch``.

Each has ``ra`` and ``dec`` in degrees (from ``coord_ra``, ``coord_dec``), the
``_healpix_29`` index, a margin cache, and units, UCDs and descriptions in the Parquet
metadata. They are written either from the production's per-unit outputs through the butler
(every rank reads its share of the units, as the HDF5 release does) or from an existing HDF5
release (every rank reads its share of the files); both give the same rows as the HDF5 files.
The ranks then write the catalogs together
(:func:`hpcpipe.catalog.hats_write.write_hats_catalog`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from hpcpipe.catalog.columns import catalog_to_arrow
from hpcpipe.catalog.hats_write import write_hats_catalog
from hpcpipe.comm.world import World
from hpcpipe.drivers.release import release_units, with_columns
from hpcpipe.errors import FileFormatError
from hpcpipe.io.release import read_release_table
from hpcpipe.table import Catalog

if TYPE_CHECKING:
    from hpcpipe.butler import Butler

__all__ = ["HATS_TABLES", "write_release_hats", "convert_release", "hats_directory",
           "release_files"]

#: The HATS catalogs of a release and their HATS catalog types.
HATS_TABLES = {"objects": "object", "sources": "source", "forced": "source",
               "multifit": "object"}


def hats_directory(release: str | Path) -> Path:
    """Where the HATS catalogs of the release directory ``release`` go."""
    return Path(release) / "hats"


def _objects_extra(tract: int) -> dict[str, tuple[Any, str, str]]:
    return {"tract": (tract, "", "tract of the sky map")}


def _forced_extra(tract: int, band: str) -> dict[str, tuple[Any, str, str]]:
    return {"tract": (tract, "", "tract of the sky map"),
            "filter": (band, "", "filter of the coadd measured")}


def _concat(parts: list[pa.Table], empty: Callable[[], pa.Table] | None) -> pa.Table | None:
    if parts:
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    return empty() if empty is not None else None


def _write_tables(tables: dict[str, pa.Table | None], out: Path, world: World,
                  properties: dict[str, str], **options: Any) -> dict[str, dict[str, Any]]:
    results = {}
    for name, kind in HATS_TABLES.items():
        table = tables.get(name)
        # a rank without rows of a table still needs its schema: take another rank's
        schemas = world.allgather(None if table is None else table.schema)
        schema = next((s for s in schemas if s is not None), None)
        if schema is None:
            continue
        if table is None:
            table = schema.empty_table()
        results[name] = write_hats_catalog(table, out / name, name, world, catalog_type=kind,
                                           properties=properties, **options)
    return results


def write_release_hats(butler: Butler, directory: str | Path, world: World | None = None, *,
                       command: str = "", **options: Any) -> dict[str, dict[str, Any]]:
    """Write the HATS catalogs of a finished production (every rank calls this).

    Parameters
    ----------
    butler : Butler
        The production's output butler.
    directory : str or Path
        The HATS directory (``<release>/hats``).
    world : World, optional
        The ranks (default: the launch world).
    command : str
        Recorded in ``hats.properties`` (``hpcpipe_command``).
    **options
        Passed to :func:`~hpcpipe.catalog.hats_write.write_hats_catalog`
        (``pixel_threshold``, ``margin_arcsec``...).

    Returns
    -------
    dict
        Per catalog name, the writer's result (``rows``, ``pixels``, ``margin_rows``...).
    """
    world = world or World()
    units = world.bcast(release_units(butler) if world.rank == 0 else None)
    source_units = [(v, c) for v, ccds in sorted(units["visits"].items()) for c in sorted(ccds)]
    object_units = [(t, p) for t, patches in sorted(units["patches"].items()) for p in patches]
    forced_units = [(t, p, b) for t, p in object_units for b in units["filters"]]
    parts: dict[str, list[pa.Table]] = {name: [] for name in HATS_TABLES}
    for visit, ccd in source_units[world.rank::world.size]:
        parts["sources"].append(catalog_to_arrow(with_columns(
            butler.get("src", visit=visit, ccd=ccd),
            {"visit": (visit, "L", "visit"), "ccd": (ccd, "I", "CCD")})))
    for tract, patch in object_units[world.rank::world.size]:
        parts["objects"].append(catalog_to_arrow(with_columns(
            butler.get("deepCoadd_ref", tract=tract, patch=patch),
            {"patch": (patch, "S8", "patch x,y")}), _objects_extra(tract)))
    multifit_units = [(t, p) for t, patches in sorted(units.get("multifit", {}).items())
                      for p in patches]
    for tract, patch in multifit_units[world.rank::world.size]:
        parts["multifit"].append(catalog_to_arrow(with_columns(
            butler.get("deepCoadd_multifit", tract=tract, patch=patch),
            {"patch": (patch, "S8", "patch x,y")}), _objects_extra(tract)))
    for tract, patch, band in forced_units[world.rank::world.size]:
        if butler.datasetExists("deepCoadd_forced_src", tract=tract, patch=patch, filter=band):
            parts["forced"].append(catalog_to_arrow(with_columns(
                butler.get("deepCoadd_forced_src", tract=tract, patch=patch, filter=band),
                {"patch": (patch, "S8", "patch x,y")}), _forced_extra(tract, band)))
    tables = {name: _concat(p, None) for name, p in parts.items()}
    return _write_tables(tables, Path(directory), world, {"hpcpipe_command": command},
                         **options)


_SOURCES = re.compile(r"visit-(\d+)\.h5$")
_OBJECTS = re.compile(r"tract-(\d+)\.h5$")
_FORCED = re.compile(r"tract-(\d+)-(\w+)\.h5$")


def release_files(release: str | Path) -> list[tuple[str, Path, dict[str, Any]]]:
    """The catalog files of an HDF5 release: ``(table, path, extra columns)``, sorted.

    Raises
    ------
    FileFormatError
        If the directory holds no release catalog file.
    """
    release = Path(release)
    found: list[tuple[str, Path, dict[str, Any]]] = []
    for path in sorted((release / "sources").glob("visit-*.h5")):
        if _SOURCES.search(path.name):
            found.append(("sources", path, {}))
    for path in sorted((release / "objects").glob("tract-*.h5")):
        match = _OBJECTS.search(path.name)
        if match:
            found.append(("objects", path, _objects_extra(int(match.group(1)))))
    for path in sorted((release / "multifit").glob("tract-*.h5")):
        match = _OBJECTS.search(path.name)
        if match:
            found.append(("multifit", path, _objects_extra(int(match.group(1)))))
    for path in sorted((release / "forced").glob("tract-*-*.h5")):
        match = _FORCED.search(path.name)
        if match:
            found.append(("forced", path, _forced_extra(int(match.group(1)), match.group(2))))
    if not found:
        raise FileFormatError(str(release), "no release catalog files (sources/visit-*.h5, "
                              "objects/tract-*.h5, forced/tract-*-*.h5)")
    return found


def convert_release(release: str | Path, directory: str | Path | None = None,
                    world: World | None = None, *, command: str = "",
                    **options: Any) -> dict[str, dict[str, Any]]:
    """Write the HATS catalogs of an existing HDF5 release (every rank calls this).

    Parameters
    ----------
    release : str or Path
        The HDF5 release directory (``OUT/release``).
    directory : str or Path, optional
        The HATS directory (default ``<release>/hats``).
    world : World, optional
        The ranks; rank ``r`` reads every ``size``-th file.
    command : str
        Recorded in ``hats.properties``.
    **options
        Passed to :func:`~hpcpipe.catalog.hats_write.write_hats_catalog`.
    """
    world = world or World()
    files = world.bcast(release_files(release) if world.rank == 0 else None)
    parts: dict[str, list[pa.Table]] = {name: [] for name in HATS_TABLES}
    for name, path, extra in files[world.rank::world.size]:
        catalog: Catalog = read_release_table(path, name)
        parts[name].append(catalog_to_arrow(catalog, extra))
    tables = {name: _concat(p, None) for name, p in parts.items()}
    out = Path(directory) if directory is not None else hats_directory(release)
    return _write_tables(tables, out, world, {"hpcpipe_command": command}, **options)
