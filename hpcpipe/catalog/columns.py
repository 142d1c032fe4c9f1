"""hpcpipe catalogs as Arrow tables, with units, UCDs and descriptions in the schema metadata.

Every Arrow field carries the metadata keys ``unit``, ``ucd`` and ``description``; the HATS
writer also embeds the same facts as a VOTable header (the IVOA VOTable-Parquet convention,
``IVOA.VOTable-Parquet.content``), which TOPCAT and astropy (``format="votable.parquet"``)
read. Positions are added in degrees (``ra``, ``dec``) from the afw-style ``coord_ra`` and
``coord_dec`` (radians), since HATS, LSDB and ADQL work in degrees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from hpcpipe.table import Catalog

__all__ = ["ColumnInfo", "guess_ucd", "catalog_to_arrow", "column_info", "field_metadata"]

#: (pattern on the column name, UCD), first match wins.
_UCD_RULES: tuple[tuple[str, str], ...] = (
    (r"^ra$", "pos.eq.ra;meta.main"),
    (r"^dec$", "pos.eq.dec;meta.main"),
    (r"^coord_ra$", "pos.eq.ra"),
    (r"^coord_dec$", "pos.eq.dec"),
    (r"^_healpix_29$", "pos.healpix"),
    (r"^(id|objectId)$", "meta.id;meta.main"),
    (r"(^parent$|Id$|_id$)", "meta.id"),
    (r"^visit$", "meta.id;obs"),
    (r"^(ccd|detector)$", "meta.id;instr.det"),
    (r"^(tract|patch)$", "meta.id;obs.field"),
    (r"^(filter|band)$", "meta.id;instr.filter"),
    (r"(Err|_err|Sigma)$", "stat.error"),
    (r"(flag|Flag)", "meta.code"),
    (r"(Mag|_mag)", "phot.mag"),
    (r"(instFlux|Flux|_flux|flux)", "phot.flux"),
    (r"(_x|_y|centroid)", "pos.cartesian"),
    (r"(shape|_xx|_yy|_xy)", "src.morph"),
)


class ColumnInfo(dict):
    """``{column: {"unit": str, "ucd": str, "description": str}}`` for one table."""


def guess_ucd(name: str) -> str:
    """A UCD (IVOA Unified Content Descriptor) for a column, from its name ("" if unknown)."""
    for pattern, ucd in _UCD_RULES:
        if re.search(pattern, name):
            return ucd
    return ""


def field_metadata(unit: str, ucd: str, description: str) -> dict[bytes, bytes]:
    """The Arrow field metadata hpcpipe writes (keys ``unit``, ``ucd``, ``description``)."""
    return {b"unit": unit.encode(), b"ucd": ucd.encode(), b"description": description.encode()}


def column_info(schema: pa.Schema) -> ColumnInfo:
    """The units, UCDs and descriptions stored in an Arrow schema's field metadata."""
    info = ColumnInfo()
    for field in schema:
        meta = field.metadata or {}
        info[field.name] = {key: meta.get(key.encode(), b"").decode()
                            for key in ("unit", "ucd", "description")}
    return info


def _arrow_column(values: np.ndarray) -> pa.Array:
    if values.dtype.kind == "S":
        return pa.array(np.char.decode(values, "utf-8").astype(object), pa.string())
    if values.dtype.kind == "U":
        return pa.array(values.astype(object), pa.string())
    if values.ndim > 1:
        flat = np.ascontiguousarray(values).reshape(len(values), -1)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    return pa.array(np.ascontiguousarray(values))


def catalog_to_arrow(catalog: Catalog, extra: Mapping[str, tuple[Any, str, str]] | None = None,
                     *, add_degrees: bool = True) -> pa.Table:
    """An hpcpipe :class:`~hpcpipe.table.Catalog` as an Arrow table with column metadata.

    Parameters
    ----------
    catalog : Catalog
        The rows (scalar fields, fixed-size array fields as fixed-size lists, byte strings as
        UTF-8 strings).
    extra : mapping, optional
        Constant columns to put in front: ``{name: (value, unit, description)}`` (for
        example the filter of a forced-photometry catalog).
    add_degrees : bool
        Add ``ra`` and ``dec`` in degrees from ``coord_ra`` and ``coord_dec`` (radians).

    Returns
    -------
    pyarrow.Table
        With ``unit``, ``ucd`` and ``description`` in every field's metadata.
    """
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    n = len(catalog)

    def add(name: str, array: pa.Array, unit: str, doc: str) -> None:
        arrays.append(array)
        fields.append(pa.field(name, array.type, metadata=field_metadata(
            unit, guess_ucd(name), doc)))

    for name, (value, unit, doc) in (extra or {}).items():
        add(name, _arrow_column(np.full(n, value)), unit, doc)
    schema = catalog.schema
    if add_degrees and "coord_ra" in schema and "coord_dec" in schema:
        ra_unit = schema["coord_ra"].units or "rad"
        ra = np.asarray(catalog["coord_ra"], dtype=np.float64)
        dec = np.asarray(catalog["coord_dec"], dtype=np.float64)
        if ra_unit == "rad":
            ra, dec = np.degrees(ra), np.degrees(dec)
        add("ra", pa.array(np.mod(ra, 360.0)), "deg", "right ascension (ICRS)")
        add("dec", pa.array(dec), "deg", "declination (ICRS)")
    for field in schema:
        add(field.name, _arrow_column(np.asarray(catalog[field.name])), field.units, field.doc)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
