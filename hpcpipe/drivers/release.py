"""``hpcpipe release``: gather a finished production into the parallel HDF5 release files.

Every rank takes part (run it under ``mpiexec``; it also runs on one process). The units of
each file are shared out among the ranks (rank ``r`` takes every ``size``-th one), each rank
reads its units' catalogs or coadds through the butler, and the ranks write them together
with :mod:`hpcpipe.io.release` (one collective write per file, or per-rank parts under a
virtual dataset). The layout is ``docs/release_layout.md``:

* ``sources/visit-<visit>.h5``: dataset ``sources``, the ``src`` rows of every CCD of the
  visit, with ``visit`` and ``ccd`` columns;
* ``objects/tract-<tract>.h5``: dataset ``objects``, the ``deepCoadd_ref`` rows of every
  patch of the tract, with a ``patch`` column;
* ``multifit/tract-<tract>.h5``: dataset ``multifit``, the ``deepCoadd_multifit`` rows of every
  patch (where the production ran ``multifit``), with a ``patch`` column;
* ``forced/tract-<tract>-<filter>.h5``: dataset ``forced``, the ``deepCoadd_forced_src`` rows
  of every patch in one filter;
* ``coadds/tract-<tract>.h5``: every ``deepCoadd_calexp`` of the tract.

Each file is written under a temporary name and renamed when complete, and the files of one
run are published together (:mod:`hpcpipe.io.generation`: ``OUT/release`` is a link switched
to the new generation in one rename); running the command again after a crash rewrites the
files from the per-unit outputs, which are untouched.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.comm.world import World
from hpcpipe.io.release import Provenance, ReleaseMode, write_release_coadds, write_release_table
from hpcpipe.table import Catalog, Schema

if TYPE_CHECKING:
    from hpcpipe.butler import Butler


log = logging.getLogger("hpcpipe.drivers.release")


def with_columns(catalog: Catalog, columns: dict[str, tuple[Any, str, str]]) -> Catalog:
    """A copy of ``catalog`` with constant columns in front: ``{name: (value, type, doc)}``."""
    schema = Schema()
    for name, (_, kind, doc) in columns.items():
        schema.add_field(name, kind, doc=doc)
    schema.extend(list(catalog.schema))
    data: dict[str, Any] = {name: np.full(len(catalog), value)
                            for name, (value, _, _) in columns.items()}
    data.update({name: catalog[name] for name in catalog.schema.names})
    return Catalog.from_columns(schema, data, metadata=catalog.metadata)


def release_units(butler: Butler) -> dict[str, Any]:
    """What the release will hold, as found in the repository (the same on every rank).

    Returns
    -------
    dict
        ``visits``: ``{visit: [ccd, ...]}`` with a ``src``; ``patches``: ``{tract: [patch,
        ...]}`` with a ``deepCoadd_ref``; ``multifit``: the same for ``deepCoadd_multifit``;
        ``filters``: the repository's filters.
    """
    visits: dict[int, list[int]] = {}
    for visit, ccd in butler.queryMetadata("raw", ["visit", "ccd"]):
        if butler.datasetExists("src", visit=visit, ccd=ccd):
            visits.setdefault(int(visit), []).append(int(ccd))
    patches: dict[int, list[str]] = {}
    multifit: dict[int, list[str]] = {}
    if butler.datasetExists("skyMap"):
        for tract in butler.get("skyMap"):
            for patch_info in tract:
                patch = "{},{}".format(*patch_info.index)
                if butler.datasetExists("deepCoadd_ref", tract=tract.tract_id, patch=patch):
                    patches.setdefault(tract.tract_id, []).append(patch)
                    if butler.datasetExists("deepCoadd_multifit", tract=tract.tract_id,
                                            patch=patch):
                        multifit.setdefault(tract.tract_id, []).append(patch)
    filters = sorted(str(f) for f in butler.queryMetadata("raw", "filter"))
    return {"visits": visits, "patches": patches, "filters": filters, "multifit": multifit}


def _mine(items: Sequence[Any], world: World) -> list[Any]:
    return list(items[world.rank::world.size])


def _gather_table(world: World, schema_of: Callable[..., Catalog], parts: list[Catalog]
                  ) -> Catalog:
    if parts:
        return Catalog.concatenate(parts) if len(parts) > 1 else parts[0]
    return Catalog(schema_of().schema)


def write_release(butler: Butler, directory: str | Path, world: World | None = None, *,
                  mode: ReleaseMode = "shared", compression: str | None = None,
                  command: str = "") -> dict[str, Any]:
    """Write the release files of a finished production (every rank calls this).

    Parameters
    ----------
    butler : Butler
        The production's output butler (every rank opens its own).
    directory : str or Path
        Where the release files go.
    world : World, optional
        The ranks (default: the launch world).
    mode, compression : str
        As :func:`hpcpipe.io.release.write_release_table`.
    command : str
        Recorded in each file's provenance.

    Returns
    -------
    dict
        ``files`` (paths written, in order) and ``rows`` (rows per file).
    """
    world = world or World()
    directory = Path(directory)
    units = world.bcast(release_units(butler) if world.rank == 0 else None)
    configs = {}
    if world.rank == 0:
        for name in ("processCcd", "assembleCoadd", "measureCoaddSources", "forcedPhotCoadd"):
            if butler.datasetExists(f"{name}_config"):
                config = butler.get(f"{name}_config")
                if hasattr(config, "save"):
                    text = io.StringIO()
                    config.save(text)
                    configs[name] = text.getvalue()
                else:
                    configs[name] = str(config)
    configs = world.bcast(configs)
    written: list[str] = []
    rows: dict[str, int] = {}

    def provenance(data_ids: list[dict[str, Any]]) -> dict[str, Any]:
        prov = dict(Provenance.now())
        prov["command"] = command
        prov["data_ids"] = json.dumps(data_ids)
        prov["configs"] = json.dumps(configs)
        return prov

    # single-frame sources, one file per visit
    for visit, ccds in sorted(units["visits"].items()):
        parts = [with_columns(butler.get("src", visit=visit, ccd=ccd),
                              {"visit": (visit, "L", "visit"), "ccd": (ccd, "I", "CCD")})
                 for ccd in _mine(sorted(ccds), world)]
        first = units["visits"][visit][0]
        table = _gather_table(world, lambda v=visit, c=first: with_columns(
            butler.get("src_schema"), {"visit": (v, "L", "visit"), "ccd": (c, "I", "CCD")}),
            parts)
        path = directory / "sources" / f"visit-{visit}.h5"
        rows[str(path)] = write_release_table(
            path, "sources", table, world, mode=mode, compression=compression,
            provenance=provenance([{"visit": visit, "ccd": c} for c in ccds]))
        written.append(str(path))
    # objects and forced photometry, per tract
    for tract, patches in sorted(units["patches"].items()):
        ids = [{"tract": tract, "patch": p} for p in patches]

        def ref_of(patch: str, t: int = tract) -> Catalog:
            return with_columns(butler.get("deepCoadd_ref", tract=t, patch=patch),
                                {"patch": (patch, "S8", "patch x,y")})

        table = _gather_table(world, lambda first=patches[0]: ref_of(first),
                              [ref_of(p) for p in _mine(patches, world)])
        path = directory / "objects" / f"tract-{tract}.h5"
        rows[str(path)] = write_release_table(path, "objects", table, world, mode=mode,
                                              compression=compression,
                                              provenance=provenance(ids))
        written.append(str(path))
        # the multifit models, where the production ran that step
        fitted = units.get("multifit", {}).get(tract, [])
        if fitted:

            def multifit_of(patch: str, t: int = tract) -> Catalog:
                return with_columns(butler.get("deepCoadd_multifit", tract=t, patch=patch),
                                    {"patch": (patch, "S8", "patch x,y")})

            table = _gather_table(world, lambda first=fitted[0]: multifit_of(first),
                                  [multifit_of(p) for p in _mine(fitted, world)])
            path = directory / "multifit" / f"tract-{tract}.h5"
            rows[str(path)] = write_release_table(
                path, "multifit", table, world, mode=mode, compression=compression,
                provenance=provenance([{"tract": tract, "patch": p} for p in fitted]))
            written.append(str(path))
        for band in units["filters"]:
            have = [p for p in patches if butler.datasetExists(
                "deepCoadd_forced_src", tract=tract, patch=p, filter=band)]
            if not have:
                continue

            def forced_of(patch: str, t: int = tract, b: str = band) -> Catalog:
                return with_columns(butler.get("deepCoadd_forced_src", tract=t, patch=patch,
                                               filter=b), {"patch": (patch, "S8", "patch x,y")})

            table = _gather_table(world, lambda h=have: forced_of(h[0]),
                                  [forced_of(p) for p in _mine(have, world)])
            path = directory / "forced" / f"tract-{tract}-{band}.h5"
            rows[str(path)] = write_release_table(
                path, "forced", table, world, mode=mode, compression=compression,
                provenance=provenance([dict(i, filter=band) for i in ids]))
            written.append(str(path))
        coadds = {}
        keys = [(p, b) for p in patches for b in units["filters"]]
        for patch, band in _mine(keys, world):
            if butler.datasetExists("deepCoadd_calexp", tract=tract, patch=patch, filter=band):
                coadds[(patch, band)] = butler.get("deepCoadd_calexp", tract=tract,
                                                   patch=patch, filter=band)
        path = directory / "coadds" / f"tract-{tract}.h5"
        write_release_coadds(path, coadds, world, provenance=provenance(ids))
        written.append(str(path))
    if world.rank == 0:
        log.info("release: %d files in %s", len(written), directory)
    return {"files": written, "rows": rows}
