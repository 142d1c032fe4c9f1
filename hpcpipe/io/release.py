"""Data release files in HDF5, written by many MPI ranks at once.

The layout is documented in ``docs/release_layout.md``. In short, every release file has root
attributes ``hpcpipe_format = "release"`` and ``hpcpipe_layout_version``, a ``provenance``
group, and either catalog datasets (compound rows with the schema as JSON, readable by
:func:`hpcpipe.io.hdf5_table.read_hdf5`) or coadd groups ``patch_<x>,<y>/<filter>`` laid out
as :mod:`hpcpipe.io.hdf5_exposure` lays out an exposure.

Catalogs are written in one of two modes:

* ``shared``: one file through h5py's ``mpio`` driver. The ranks agree on their offsets (a
  prefix sum of their row counts), create the dataset collectively and each writes its rows
  in collective calls of about 16 MB each (packed from its columns a block at a time, so no
  rank holds a second copy of its catalog); every rank makes the same number of calls, and
  one with no rows left takes part with an empty selection.
  Compression needs collective writes (HDF5 refuses independent writes through filters);
  whether this HDF5 can do it is probed once, and without it the data are written
  uncompressed with a warning.
* ``per-rank``: each rank writes a part file of its own; rank 0 then builds a virtual dataset
  (VDS) over the parts. A VDS reads a missing part as fill values without an error, so the
  file records every part and its row count, and :func:`read_release_table` checks them.

Every file is written under a temporary name, flushed to stable storage (``fsync``: MPI-IO
files too) and renamed when every rank is done; the rename is made durable by a ``fsync`` of
the directory. Part files are written under a directory of their own run
(``<file>.parts/run-<id>/``), never over the parts of the published file: a crash before the
rename leaves the previous release intact and readable, and the next write removes what the
crashed one left (its temporary file and parts).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

import hpcpipe
from hpcpipe.comm.world import World
from hpcpipe.errors import FileFormatError, HpcpipeError
from hpcpipe.io.atomic import TEMP_PREFIX, atomic_path, fsync_directory
from hpcpipe.io.hdf5_exposure import (
    exposure_attributes,
    exposure_planes,
    psf_attributes,
    read_exposure_group,
)
from hpcpipe.io.hdf5_table import (
    catalog_attributes,
    catalog_rows,
    pack_rows,
    read_hdf5,
    storage_dtype,
)
from hpcpipe.io.parallel_table import collective_write, open_for_write
from hpcpipe.table.catalog import Catalog

#: How ranks write a release table: one shared file written collectively, or a file per rank.
ReleaseMode = Literal["shared", "per-rank"]

__all__ = [
    "ReleaseMode",
    "LAYOUT_VERSION",
    "ReleaseError",
    "Provenance",
    "write_release_table",
    "read_release_table",
    "open_release",
    "parallel_compression_works",
    "write_release_coadds",
    "read_release_coadd",
]

#: The release layout version this hpcpipe writes and reads.
LAYOUT_VERSION = 1
FORMAT_NAME = "release"


class ReleaseError(HpcpipeError, ValueError):
    """Ranks that disagree (schemas, modes) or a release that cannot be written."""


class Provenance(dict):
    """What made a release file: software, time, host, command, configs and data ids."""

    @classmethod
    def now(cls, data_ids: Sequence[dict[str, Any]] = (),
            configs: dict[str, str] | None = None) -> Provenance:
        return cls(
            software=f"hpcpipe {hpcpipe.__version__}",
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            host=socket.gethostname(),
            command=" ".join(sys.argv),
            data_ids=json.dumps(list(data_ids)),
            configs=json.dumps(configs or {}),
        )


def _write_provenance(handle: h5py.File, provenance: dict[str, Any]) -> None:
    handle.attrs["hpcpipe_format"] = FORMAT_NAME
    handle.attrs["hpcpipe_layout_version"] = LAYOUT_VERSION
    group = handle.require_group("provenance")
    for key, value in provenance.items():
        group.attrs[key] = value


def _temp_name(world: World, final: Path) -> str:
    """A temporary name beside ``final``, agreed by every rank; rank 0 first removes the
    temporary files that an earlier, crashed write of ``final`` left."""
    name = None
    if world.rank == 0:
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f"{TEMP_PREFIX}{final.name}.*"):
            stale.unlink(missing_ok=True)
        name = str(final.with_name(f"{TEMP_PREFIX}{final.name}.{os.getpid()}"))
    return world.bcast(name)


def _fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a closed file's data to stable storage (files written through MPI-IO too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(world: World, tmp: str, final: Path) -> None:
    """Rank 0: fsync ``tmp``, rename it to ``final``, fsync the directory (every rank waits)."""
    world.barrier()
    if world.rank == 0:
        _fsync_path(tmp)
        os.replace(tmp, final)
        fsync_directory(final.parent)
    world.barrier()


def _agree(world: World, value: Any, what: str) -> None:
    values = world.allgather(value)
    if any(v != values[0] for v in values):
        raise ReleaseError(f"the ranks disagree on {what}: {values}")


_probe_cache: dict[int, bool] = {}


def parallel_compression_works(world: World, directory: str | os.PathLike[str]) -> bool:
    """Whether this HDF5 writes gzip-compressed datasets collectively (probed once, agreed)."""
    key = id(world.comm)
    if key in _probe_cache:
        return _probe_cache[key]
    if not world.is_parallel:
        _probe_cache[key] = True
        return True
    path = _temp_name(world, Path(directory) / "compression-probe.h5")
    ok = 1
    try:
        with h5py.File(path, "w", driver="mpio", comm=world.comm) as handle:
            ds = handle.create_dataset("x", shape=(4 * world.size,), dtype="f8",
                                       chunks=(4,), compression="gzip")
            with ds.collective:
                ds[4 * world.rank:4 * world.rank + 4] = np.arange(4.0)
    except Exception:  # noqa: BLE001 - any failure means: do not compress
        ok = 0
    ok = world.allreduce(ok, op="min")
    world.barrier()
    if world.rank == 0 and os.path.exists(path):
        os.unlink(path)
    _probe_cache[key] = bool(ok)
    return bool(ok)


#: Bytes of rows each rank packs and writes per collective call.
WRITE_BLOCK_BYTES = 16 << 20


def _chunk_rows(dtype: np.dtype, total: int) -> int:
    return int(max(1, min(total, (1 << 20) // max(dtype.itemsize, 1))))


def _write_shared(tmp: str, name: str, catalog: Catalog, attrs: dict[str, Any],
                  provenance: dict[str, Any], world: World, compression: str | None) -> None:
    """One shared file: every rank packs its rows and writes them collectively, in blocks of
    about :data:`WRITE_BLOCK_BYTES` (every rank makes the same number of collective calls;
    one with no rows left writes an empty selection), so that no rank holds a second copy of
    its whole catalog."""
    n = len(catalog)
    dtype = storage_dtype(catalog.schema)
    total = world.allreduce(n)
    offset = world.exscan_sum(n)
    kwargs: dict[str, Any] = {}
    if compression and total:
        kwargs = {"chunks": (_chunk_rows(dtype, total),), "compression": compression}
    step = max(1, WRITE_BLOCK_BYTES // max(1, dtype.itemsize))
    blocks = world.allreduce(-(-n // step), op="max") if world.is_parallel else 1
    buffer = np.empty(min(step, max(n, 1)), dtype)
    with open_for_write(tmp, world) as handle:
        _write_provenance(handle, provenance)
        dataset = handle.create_dataset(name, shape=(total,), dtype=dtype, **kwargs)
        for key, value in attrs.items():
            dataset.attrs[key] = value
        if not world.is_parallel:
            if total:
                dataset[...] = catalog_rows(catalog)
            return
        for k in range(blocks):
            start, stop = min(k * step, n), min((k + 1) * step, n)
            collective_write(dataset, pack_rows(catalog, start, stop, buffer), offset + start)


def _parts_dir(final: Path) -> Path:
    return final.with_name(f"{final.name}.parts")


def _part_path(final: Path, name: str, rank: int, run: str) -> Path:
    return _parts_dir(final) / f"run-{run}" / f"{name}.part-{rank:05d}.h5"


def _remove_other_parts(final: Path, run: str) -> None:
    """Rank 0, once ``final`` is published: remove the parts no published file refers to."""
    keep = f"run-{run}"
    parts = _parts_dir(final)
    if not parts.is_dir():
        return
    for entry in parts.iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    fsync_directory(parts)


def _write_per_rank(tmp: str, final: Path, name: str, rows: np.ndarray, attrs: dict[str, Any],
                    provenance: dict[str, Any], world: World) -> str:
    """Write this rank's part under a directory of this run, and rank 0 the virtual dataset;
    returns the run's id."""

    run = world.bcast(f"{time.time_ns()}-{os.getpid()}" if world.rank == 0 else None)
    part = _part_path(final, name, world.rank, run)
    with atomic_path(part) as part_tmp, h5py.File(part_tmp, "w") as handle:
        handle.create_dataset(name, data=rows)
    counts = world.allgather(int(rows.shape[0]))
    world.barrier()
    if world.rank != 0:
        return run
    fsync_directory(part.parent)
    total = sum(counts)
    layout = h5py.VirtualLayout(shape=(total,), dtype=rows.dtype)
    start = 0
    for rank, count in enumerate(counts):
        if count:
            source = h5py.VirtualSource(os.path.relpath(_part_path(final, name, rank, run),
                                                        final.parent), name, shape=(count,))
            layout[start:start + count] = source
        start += count
    with h5py.File(tmp, "w") as handle:
        _write_provenance(handle, provenance)
        dataset = handle.create_virtual_dataset(name, layout)
        for key, value in attrs.items():
            dataset.attrs[key] = value
        dataset.attrs["hpcpipe.parts"] = json.dumps(
            [[os.path.relpath(_part_path(final, name, r, run), final.parent), c]
             for r, c in enumerate(counts)])
    return run


def write_release_table(path: str | os.PathLike[str], name: str, catalog: Catalog,
                        world: World | None = None, *, mode: ReleaseMode = "shared",
                        compression: str | None = None,
                        provenance: dict[str, Any] | None = None) -> int:
    """Write every rank's catalog into dataset ``name`` of the release file ``path``.

    Every rank of ``world`` calls this with its own rows (possibly none) of the same schema.

    Parameters
    ----------
    path : str or os.PathLike
        The release file (replaced atomically when every rank is done).
    name : str
        The dataset (``sources``, ``objects``, ``forced``...).
    catalog : Catalog
        This rank's rows.
    world : World, optional
        The ranks (default: the launch world).
    mode : {"shared", "per-rank"}
        One shared file through MPI-IO, or part files under a virtual dataset.
    compression : str, optional
        ``"gzip"`` for compressed chunks (shared mode; falls back to none with a warning
        where this HDF5 cannot compress collectively).
    provenance : dict, optional
        Stored in the ``provenance`` group (default :meth:`Provenance.now`, from rank 0).

    Returns
    -------
    int
        The total number of rows.
    """
    world = world or World()
    if mode not in ("shared", "per-rank"):
        raise ReleaseError(f"mode must be 'shared' or 'per-rank', not {mode!r}")
    _agree(world, (mode, compression, name), "the mode, compression and dataset name")
    _agree(world, json.dumps(catalog.schema.to_dict(), sort_keys=True), "the schema")
    final = Path(path)
    attrs = world.bcast(catalog_attributes(catalog))  # rank 0's metadata for the dataset
    provenance = world.bcast(dict(provenance) if provenance is not None else Provenance.now())
    if compression and mode == "shared" and world.is_parallel and not \
            parallel_compression_works(world, final.parent):
        if world.rank == 0:
            warnings.warn(f"{final}: this HDF5 cannot write compressed datasets collectively; "
                          "writing uncompressed", stacklevel=2)
        compression = None
    tmp = _temp_name(world, final)
    run = None
    if mode == "shared":
        _write_shared(tmp, name, catalog, attrs, provenance, world, compression)
    else:
        run = _write_per_rank(tmp, final, name, catalog_rows(catalog), attrs, provenance,
                              world)
    _publish(world, tmp, final)
    if world.rank == 0 and run is not None:
        _remove_other_parts(final, run)
    elif world.rank == 0 and _parts_dir(final).is_dir():  # a shared file: no parts any more
        shutil.rmtree(_parts_dir(final), ignore_errors=True)
    return world.allreduce(len(catalog))


def open_release(path: str | os.PathLike[str]) -> h5py.File:
    """Open a release file for reading (no MPI needed), checking its format and version."""
    path = str(path)
    if not os.path.exists(path):
        raise FileFormatError(path, "no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(path, f"not an HDF5 file ({exc})") from exc
    fmt = handle.attrs.get("hpcpipe_format")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    version = handle.attrs.get("hpcpipe_layout_version")
    if fmt != FORMAT_NAME:
        handle.close()
        raise FileFormatError(path, "not an hpcpipe release file (no hpcpipe_format='release')")
    if version != LAYOUT_VERSION:
        handle.close()
        raise FileFormatError(path, f"release layout version {version} is unknown (this "
                              f"hpcpipe reads version {LAYOUT_VERSION})")
    return handle


def read_release_table(path: str | os.PathLike[str], name: str) -> Catalog:
    """Read dataset ``name`` of a release file as a :class:`Catalog` (no MPI needed).

    For a per-rank file, every part is checked first: a missing or short part raises
    :class:`FileFormatError` instead of being read as fill values.
    """
    with open_release(path) as handle:
        if name not in handle:
            raise FileFormatError(str(path), f"no dataset {name!r} (has: {', '.join(handle)})")
        dataset = handle[name]
        if "hpcpipe.parts" in dataset.attrs:
            base = Path(path).parent
            for part, count in json.loads(dataset.attrs["hpcpipe.parts"]):
                part_path = base / part
                if not part_path.exists():
                    raise FileFormatError(str(path), f"part {part_path} is missing")
                with h5py.File(part_path, "r") as part_file:
                    if part_file[name].shape[0] != count:
                        raise FileFormatError(str(path), f"part {part_path} has "
                                              f"{part_file[name].shape[0]} rows, not {count}")
        return read_hdf5(handle, name)


def _coadd_group_name(patch: str, band: str) -> str:
    return f"patch_{patch}/{band}"


def write_release_coadds(path: str | os.PathLike[str], coadds: dict[tuple[str, str], Any],
                         world: World | None = None,
                         provenance: dict[str, Any] | None = None) -> list[str]:
    """Write every rank's coadds of one tract into the release file ``path``.

    Parameters
    ----------
    coadds : dict
        This rank's coadds: ``{(patch, filter): Exposure}``, with ``patch`` as ``"x,y"``.
        No (patch, filter) may be held by two ranks.

    Returns
    -------
    list of str
        The coadd groups in the file (``patch_<x>,<y>/<filter>``), sorted.

    Notes
    -----
    All ranks learn every coadd's shapes and attributes (an allgather of a few hundred bytes
    each) and create every group, dataset and attribute collectively, as parallel HDF5
    requires of metadata; each rank then writes its own pixels (contiguous datasets,
    independent writes).
    """

    world = world or World()
    mine = {}
    for (patch, band), exposure in coadds.items():
        planes = exposure_planes(exposure)
        mine[_coadd_group_name(patch, band)] = {
            "planes": {k: (v.shape, v.dtype.str) for k, v in planes.items()},
            "attrs": exposure_attributes(exposure),
            "psf": psf_attributes(exposure),
        }
    everything: dict[str, Any] = {}
    clash = []
    for part in world.allgather(mine):
        for key, value in part.items():
            if key in everything:
                clash.append(key)
            everything[key] = value
    if clash:
        raise ReleaseError(f"{path}: coadds held by more than one rank: {sorted(clash)}")
    final = Path(path)
    provenance = world.bcast(dict(provenance) if provenance is not None else Provenance.now())
    tmp = _temp_name(world, final)
    with open_for_write(tmp, world) as handle:
        _write_provenance(handle, provenance)
        for key in sorted(everything):
            group = handle.create_group(key)
            for plane, (shape, dtype) in everything[key]["planes"].items():
                group.create_dataset(plane, shape=shape, dtype=np.dtype(dtype))
            for attr, value in everything[key]["attrs"].items():
                group.attrs[attr] = value
            if everything[key]["psf"]:
                psf_group = group.require_group("psf")
                for attr, value in everything[key]["psf"].items():
                    psf_group.attrs[attr] = value
        for (patch, band), exposure in coadds.items():
            group = handle[_coadd_group_name(patch, band)]
            for plane, array in exposure_planes(exposure).items():
                group[plane][...] = array
    _publish(world, tmp, final)
    return sorted(everything)


def read_release_coadd(path: str | os.PathLike[str], patch: str, band: str) -> Any:
    """Read the coadd of ``patch`` (``"x,y"``) and ``band`` from a release file."""

    key = _coadd_group_name(patch, band)
    with open_release(path) as handle:
        if key not in handle:
            have = [f"{p}/{b}" for p in handle if p.startswith("patch_") for b in handle[p]]
            raise FileFormatError(str(path), f"no coadd {key} (has: {', '.join(have)})")
        return read_exposure_group(handle[key], where=f"{path}:{key}")
