"""HATS catalogs written by the MPI ranks, each writing the HEALPix pixels it owns.

HATS (Hierarchical Adaptive Tiling Scheme) stores a catalog as Parquet files, one per HEALPix
pixel (NESTED numbering) of an order chosen per region so that no file holds more than a
threshold of rows, plus a *margin cache*: for every pixel, the rows of its neighbours within a
margin of its edge, so that crossmatches and cone searches near an edge need one pixel only.

The ranks build one catalog together (:func:`write_hats_catalog`, every rank with its own
rows, possibly none):

1. each rank computes the ``_healpix_29`` index (HEALPix order 29, NESTED) of its rows and a
   row-count histogram at ``highest_order``; the histograms are summed over the ranks;
2. rank 0 turns the histogram into the partition pixels with ``hats``' own
   :func:`hats.pixel_math.partition_stats.generate_alignment` (the same code hats-import
   runs) and deals the pixels out to the ranks, largest first to the least loaded;
3. each rank sends every row to the owner of its pixel, and every row that lies in the margin
   of another pixel (in one of the pixels of order ``margin_order`` bordering it, found with
   :func:`hats.pixel_math.pixel_margins.get_margin`, as hats-import's margin pipeline does)
   to the owner of that pixel too: one all-to-all exchange;
4. each rank writes its pixels' Parquet files (sorted by ``_healpix_29``, row groups of
   ``row_group_rows`` rows, so that Parquet statistics prune row groups by position) and
   their margin files;
5. rank 0 writes the catalog-level files with ``hats``' writers: ``dataset/_metadata`` and
   ``_common_metadata`` (:func:`hats.io.write_parquet_metadata`), ``partition_info.csv``
   (:class:`hats.catalog.PartitionInfo`), ``hats.properties``
   (:class:`hats.catalog.TableProperties`), ``skymap.fits`` (:func:`hats.io.skymap.write_skymap`),
   and the collection's ``collection.properties`` naming the catalog and its margin.

Everything is written under a temporary directory beside the final one and renamed into place
when complete: a crash leaves only ``.tmp-*`` directories, which a rerun ignores.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hats
import hats.pixel_math.healpix_shim as hp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io.votable.tree import VOTableFile
from astropy.table import Table
from hats.catalog import CatalogType, PartitionInfo, TableProperties
from hats.catalog.dataset.collection_properties import CollectionProperties
from hats.io import paths
from hats.io.file_io import get_parquet_write_table_kwargs
from hats.io.skymap import write_skymap
from hats.pixel_math import HealpixPixel
from hats.pixel_math.partition_stats import generate_alignment
from hats.pixel_math.pixel_margins import get_margin
from hats.pixel_math.spatial_index import (
    SPATIAL_INDEX_COLUMN,
    SPATIAL_INDEX_ORDER,
    compute_spatial_index,
)

import hpcpipe
from hpcpipe.catalog import DEFAULT_MARGIN_ARCSEC
from hpcpipe.catalog.columns import column_info, field_metadata
from hpcpipe.comm.world import World
from hpcpipe.errors import HpcpipeError
from hpcpipe.io.atomic import TEMP_PREFIX

__all__ = ["HatsWriteError", "write_hats_catalog", "votable_header", "margin_name",
           "DEFAULT_MARGIN_ARCSEC"]

_DEST = "_hpcpipe_dest"


class HatsWriteError(HpcpipeError, ValueError):
    """A HATS catalog that cannot be written (ranks that disagree, bad columns)."""


def margin_name(name: str, margin_arcsec: float) -> str:
    """The margin catalog's name: ``<name>_<margin>arcs`` (the hats-import convention)."""
    return f"{name}_{margin_arcsec:g}arcs"


def votable_header(schema: pa.Schema) -> str:
    """A VOTable (no rows) describing ``schema``: names, types, units, UCDs, descriptions.

    This is the IVOA VOTable-Parquet convention: the XML goes into the Parquet schema
    metadata under ``IVOA.VOTable-Parquet.content``.
    """
    info = column_info(schema)
    columns = {}
    for field in schema:
        kind = field.type
        if pa.types.is_fixed_size_list(kind):
            dtype = np.dtype((kind.value_type.to_pandas_dtype(), (kind.list_size,)))
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            dtype = np.dtype("U1")
        else:
            dtype = np.dtype(kind.to_pandas_dtype())
        columns[field.name] = np.zeros((0, *dtype.shape), dtype.base)
    table = Table(columns)
    for name, meta in info.items():
        table[name].description = meta["description"] or None
        if meta["unit"]:
            table[name].unit = meta["unit"]
    votable = VOTableFile.from_table(table)
    for vofield in votable.get_first_table().fields:
        vofield.ucd = info[vofield.name]["ucd"] or None
    out = io.BytesIO()
    votable.to_xml(out)
    return out.getvalue().decode()


def _with_index(table: pa.Table, ra_column: str, dec_column: str) -> pa.Table:
    for column in (ra_column, dec_column):
        if column not in table.column_names:
            raise HatsWriteError(f"no column {column!r} to partition on (has: "
                                 f"{', '.join(table.column_names)})")
    ra = table[ra_column].to_numpy(zero_copy_only=False).astype(np.float64)
    dec = table[dec_column].to_numpy(zero_copy_only=False).astype(np.float64)
    if len(ra) and (not np.all(np.isfinite(ra)) or not np.all(np.isfinite(dec))):
        bad = int(np.count_nonzero(~(np.isfinite(ra) & np.isfinite(dec))))
        raise HatsWriteError(f"{bad} rows have a non-finite {ra_column}/{dec_column}")
    index = compute_spatial_index(ra, dec) if len(ra) else np.zeros(0, np.int64)
    field = pa.field(SPATIAL_INDEX_COLUMN, pa.int64(), metadata=field_metadata(
        "", "pos.healpix", "HEALPix index of the position at order 29 (NESTED)"))
    if SPATIAL_INDEX_COLUMN in table.column_names:
        table = table.drop_columns([SPATIAL_INDEX_COLUMN])
    return table.add_column(0, field, pa.array(index, pa.int64()))


#: Bytes sent to each rank per round of the all-to-all exchange (MPI counts are 32-bit).
EXCHANGE_BYTES = 1 << 28


def _alltoall(world: World, items: list[Any]) -> list[Any]:
    """``items[r]`` to rank ``r``; what every rank sent here, in rank order.

    The items are pickled (Arrow tables pickle as their buffers) and sent in rounds of at
    most :data:`EXCHANGE_BYTES` per destination, so that no MPI message or displacement
    reaches 2 GiB however large the catalog.
    """
    if world.comm is None or world.size == 1:
        return items
    blobs = [pickle.dumps(item, protocol=5) for item in items]
    step = max(1, min(EXCHANGE_BYTES, (1 << 30) // world.size))
    rounds = world.allreduce(max(1, -(-max(len(b) for b in blobs) // step)), op="max")
    received = [bytearray() for _ in range(world.size)]
    for k in range(rounds):
        parts = world.comm.alltoall([b[k * step:(k + 1) * step] for b in blobs])
        for rank, part in enumerate(parts):
            received[rank] += part
    del blobs
    return [pickle.loads(bytes(blob)) for blob in received]


def _deal(counts: np.ndarray, ranks: int) -> np.ndarray:
    """Owner rank of each pixel: largest first to the least loaded rank."""
    owner = np.zeros(len(counts), np.int64)
    load = np.zeros(ranks, np.int64)
    for k in np.argsort(-counts, kind="stable"):
        rank = int(np.argmin(load))
        owner[k] = rank
        load[rank] += counts[k]
    return owner


def _margin_pairs(pixels: list[HealpixPixel], margin_order: int) -> tuple[np.ndarray, np.ndarray]:
    """(margin pixel at ``margin_order``, index of the partition pixel it borders), sorted."""
    margin, dest = [], []
    for k, pixel in enumerate(pixels):
        around = np.asarray(get_margin(pixel.order, pixel.pixel, margin_order - pixel.order),
                            np.int64)
        margin.append(around)
        dest.append(np.full(len(around), k, np.int64))
    if not margin:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    m, d = np.concatenate(margin), np.concatenate(dest)
    order = np.argsort(m, kind="stable")
    return m[order], d[order]


def _write_parquet(table: pa.Table, path: Path, row_group_rows: int, header: str,
                   compression_level: int | None) -> None:
    table = table.sort_by(SPATIAL_INDEX_COLUMN)
    meta = dict(table.schema.metadata or {})
    meta[b"IVOA.VOTable-Parquet.version"] = b"1.0"
    meta[b"IVOA.VOTable-Parquet.content"] = header.encode()
    table = table.replace_schema_metadata(meta)
    kwargs = get_parquet_write_table_kwargs(table.schema)
    kwargs["row_group_size"] = row_group_rows
    if compression_level is not None:
        kwargs["compression_level"] = compression_level
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path), **kwargs)


def _finish_catalog(directory: Path, pixels: list[HealpixPixel], counts: list[int],
                    properties: dict[str, Any], histogram: np.ndarray | None) -> None:
    hats.io.write_parquet_metadata(directory)
    PartitionInfo.from_healpix(pixels).write_to_file(directory / "partition_info.csv")
    if histogram is not None:
        write_skymap(histogram, directory)
    props = dict(properties)
    props.update(total_rows=int(sum(counts)), hats_max_rows=int(max(counts)),
                 hats_order=max(p.order for p in pixels))
    props.update(TableProperties.new_provenance_dict(
        directory, builder=f"hpcpipe {hpcpipe.__version__}"))
    TableProperties(**props).to_properties_file(directory)


def write_hats_catalog(table: pa.Table, directory: str | os.PathLike[str], name: str,
                       world: World | None = None, *, catalog_type: str = "object",
                       ra_column: str = "ra", dec_column: str = "dec",
                       pixel_threshold: int = 1_000_000, highest_order: int = 7,
                       margin_arcsec: float = DEFAULT_MARGIN_ARCSEC,
                       row_group_rows: int = 65536, compression_level: int | None = 3,
                       properties: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Write every rank's rows as one HATS catalog collection (catalog + margin cache).

    Every rank of ``world`` calls this with its own rows of the same schema.

    Parameters
    ----------
    table : pyarrow.Table
        This rank's rows, with ``ra_column`` and ``dec_column`` in degrees (field metadata
        ``unit``, ``ucd``, ``description`` is kept; see :mod:`hpcpipe.catalog.columns`).
    directory : str or os.PathLike
        The collection directory (replaced when complete). It holds ``collection.properties``,
        the catalog ``<name>/`` and its margin cache ``<name>_<margin>arcs/``.
    name : str
        The catalog name (``objects``, ``sources``, ``forced``).
    world : World, optional
        The ranks (default: the launch world).
    catalog_type : {"object", "source"}
        The HATS catalog type.
    ra_column, dec_column : str
        The position columns (degrees).
    pixel_threshold : int
        Most rows in one partition pixel.
    highest_order : int
        Highest HEALPix order of a partition pixel.
    margin_arcsec : float
        Width of the margin cache.
    row_group_rows : int
        Rows per Parquet row group.
    compression_level : int, optional
        zstd level of the Parquet files (None: hats' default, 15). Level 3 is the default
        here: on catalog columns level 15 took 18 times the CPU of level 3 for files 6%
        smaller (``docs/release_database.md``).
    properties : mapping, optional
        Extra ``hats.properties`` entries (provenance: ``hpcpipe_command``...).

    Returns
    -------
    dict
        ``rows`` (total), ``pixels`` (partition pixels as ``(order, pixel)``),
        ``margin_rows`` and ``directory``; a catalog without rows is not written
        (``pixels`` empty).
    """
    world = world or World()
    final = Path(directory)
    table = _with_index(table, ra_column, dec_column)
    schemas = world.allgather(table.schema.remove_metadata().to_string(show_field_metadata=False))
    if any(s != schemas[0] for s in schemas):
        raise HatsWriteError(f"{final}: the ranks disagree on the schema of {name!r}")
    schema = world.bcast(table.schema)
    table = table.cast(schema)
    npix = hp.order2npix(highest_order)
    index = table[SPATIAL_INDEX_COLUMN].to_numpy()
    coarse = index >> (2 * (SPATIAL_INDEX_ORDER - highest_order))
    histogram = world.allreduce(np.bincount(coarse, minlength=npix).astype(np.int64))
    total = int(histogram.sum())
    if total == 0:
        return {"rows": 0, "pixels": [], "margin_rows": 0, "directory": str(final)}
    plan: Any = None  # an error message, or the plan; broadcast to every rank
    if world.rank == 0 and histogram.max() > pixel_threshold:
        plan = (f"{final}: {int(histogram.max())} rows of {name!r} fall in one HEALPix pixel "
                f"of order {highest_order}, more than the pixel threshold {pixel_threshold}: "
                "raise the threshold or the highest order")
    elif world.rank == 0:
        alignment = generate_alignment(histogram, highest_order=highest_order,
                                       threshold=pixel_threshold, drop_empty_siblings=True)
        destinations = sorted({(int(a[0]), int(a[1])) for a in alignment if a is not None})
        lookup = {d: k for k, d in enumerate(destinations)}
        dest_of = np.full(npix, -1, np.int64)
        counts = np.zeros(len(destinations), np.int64)
        for pix in np.flatnonzero(histogram):
            k = lookup[(int(alignment[pix][0]), int(alignment[pix][1]))]
            dest_of[pix] = k
            counts[k] += histogram[pix]
        plan = (destinations, dest_of, counts, _deal(counts, world.size))
    plan = world.bcast(plan)
    if isinstance(plan, str):
        raise HatsWriteError(plan)
    destinations, dest_of, counts, owner = plan
    pixels = [HealpixPixel(o, p) for o, p in destinations]
    margin_order = max(int(hp.margin2order(np.asarray(margin_arcsec / 60.0))),
                       max(p.order for p in pixels) + 1)
    pair_margin, pair_dest = _margin_pairs(pixels, margin_order)

    # what goes where: own rows to their pixel's owner, margin rows to the bordered pixel's
    dest = dest_of[coarse]
    fine = index >> (2 * (SPATIAL_INDEX_ORDER - margin_order))
    lo = np.searchsorted(pair_margin, fine, side="left")
    hi = np.searchsorted(pair_margin, fine, side="right")
    per_row = hi - lo
    rows = np.repeat(np.arange(len(index)), per_row)
    before = np.cumsum(per_row) - per_row  # pairs of the rows before this one
    within = np.arange(len(rows)) - np.repeat(before, per_row)
    margin_dest = pair_dest[np.repeat(lo, per_row) + within]
    keep = margin_dest != dest[rows]
    rows, margin_dest = rows[keep], margin_dest[keep]
    outgoing = []
    for rank in range(world.size):
        main_rows = np.flatnonzero(owner[dest] == rank)
        main = table.take(main_rows).append_column(_DEST, pa.array(dest[main_rows]))
        sel = owner[margin_dest] == rank
        margin = table.take(rows[sel]).append_column(_DEST, pa.array(margin_dest[sel]))
        outgoing.append((main, margin))
    incoming = _alltoall(world, outgoing)
    del outgoing

    tmp = None
    if world.rank == 0:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{TEMP_PREFIX}{final.name}.{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    tmp = Path(world.bcast(str(tmp)))
    catalog_dir = tmp / name
    margin_dir = tmp / margin_name(name, margin_arcsec)
    header = votable_header(schema)
    mains = pa.concat_tables([part[0] for part in incoming])
    margins = pa.concat_tables([part[1] for part in incoming])
    del incoming
    mine = np.flatnonzero(owner == world.rank)
    margin_pixels: list[tuple[int, int, int]] = []
    margin_rows = 0
    main_dest = mains[_DEST].to_numpy()
    margin_dest_in = margins[_DEST].to_numpy()
    for k in mine.tolist():
        pixel = pixels[k]
        rows_k = mains.filter(pa.array(main_dest == k)).drop_columns([_DEST])
        if len(rows_k) != counts[k]:
            raise HatsWriteError(f"{final}: pixel {pixel} got {len(rows_k)} rows, "
                                 f"expected {counts[k]}")
        _write_parquet(rows_k, Path(paths.pixel_catalog_file(catalog_dir, pixel).path),
                       row_group_rows, header, compression_level)
        edge = margins.filter(pa.array(margin_dest_in == k)).drop_columns([_DEST])
        if len(edge):
            _write_parquet(edge, Path(paths.pixel_catalog_file(margin_dir, pixel).path),
                           row_group_rows, header, compression_level)
            margin_pixels.append((pixel.order, pixel.pixel, len(edge)))
            margin_rows += len(edge)
    margin_pixels = sorted(p for part in world.allgather(margin_pixels) for p in part)
    margin_rows = world.allreduce(margin_rows)
    world.barrier()
    if world.rank == 0:
        extra = dict(properties or {})
        base = {"catalog_name": name, "catalog_type": catalog_type, "ra_column": ra_column,
                "dec_column": dec_column, "healpix_column": SPATIAL_INDEX_COLUMN,
                "healpix_order": SPATIAL_INDEX_ORDER, **extra}
        _finish_catalog(catalog_dir, pixels, [int(c) for c in counts], base, histogram)
        margin_props = {"catalog_name": margin_name(name, margin_arcsec),
                        "catalog_type": CatalogType.MARGIN, "ra_column": ra_column,
                        "dec_column": dec_column, "healpix_column": SPATIAL_INDEX_COLUMN,
                        "healpix_order": SPATIAL_INDEX_ORDER, "primary_catalog": name,
                        "margin_threshold": margin_arcsec, **extra}
        if margin_pixels:
            _finish_catalog(margin_dir, [HealpixPixel(o, p) for o, p, _ in margin_pixels],
                            [n for _, _, n in margin_pixels], margin_props, None)
        collection: dict[str, Any] = {"name": name, "hats_primary_table_url": name}
        if margin_pixels:
            collection.update(all_margins=[margin_name(name, margin_arcsec)],
                              default_margin=margin_name(name, margin_arcsec))
        CollectionProperties(**collection).to_properties_file(tmp)
        _publish(tmp, final)
    world.barrier()
    return {"rows": total, "pixels": [(p.order, p.pixel) for p in pixels],
            "margin_rows": margin_rows, "directory": str(final)}


def _publish(tmp: Path, final: Path) -> None:
    """Put the finished directory ``tmp`` in place of ``final`` (renames only)."""
    old = None
    if final.exists():
        old = final.with_name(f"{TEMP_PREFIX}{final.name}.old.{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old)
