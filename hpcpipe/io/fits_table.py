"""Catalogs as FITS binary tables (``BinTableHDU``), written atomically, read back losslessly.

Layout of the table HDU (after an empty primary HDU):

* one column per field: ``TTYPEn`` is the field name, ``TUNITn`` its units, array fields are
  vector columns with ``TDIMn``; flags are logical (``L``) columns; unsigned and 8-bit signed
  integers use the standard ``TZEROn`` offsets; unicode strings are stored UTF-8 encoded;
* ``TDOCn``: the field documentation (long strings use ``CONTINUE`` cards);
* ``TDTYPn``: the NumPy dtype string of the field, so every dtype comes back exactly;
* one header card per metadata item (``HIERARCH`` for keys that are not 8-character
  upper-case FITS keywords, which keeps their case);
* ``CHECKSUM``/``DATASUM``, verified on reading.

FITS limits: trailing spaces of string values (column entries and metadata) are not
significant and are dropped; metadata values must be bool, int, finite float or printable
ASCII strings; docs must be printable ASCII.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from hpcpipe import formats
from hpcpipe.errors import FileFormatError, SchemaError
from hpcpipe.io.atomic import atomic_path
from hpcpipe.table.catalog import Catalog
from hpcpipe.table.schema import Field, Schema, TableError, resolve_dtype

__all__ = ["write_fits", "read_fits", "EXTNAME", "SUFFIXES"]

#: File name endings recognised as FITS tables when ``Catalog.read``/``write`` get no format.
SUFFIXES = (".fits", ".fit")

#: ``EXTNAME`` of the table HDU written by :func:`write_fits`.
EXTNAME = "CATALOG"

_RESERVED = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|TFIELDS|EXTNAME|EXTVER|EXTLEVEL"
    r"|CHECKSUM|DATASUM|THEAP|COMMENT|HISTORY|CONTINUE|END"
    r"|(TTYPE|TFORM|TUNIT|TDIM|TNULL|TSCAL|TZERO|TDISP|TBCOL|TDOC|TDTYP)\d+)$"
)
_STANDARD_KEY = re.compile(r"^[A-Z0-9_-]{1,8}$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")

# (FITS code, TZERO) for each integer/float/complex dtype.
_CODES: dict[str, tuple[str, int | None]] = {
    "b1": ("L", None),
    "i1": ("B", -128),
    "u1": ("B", None),
    "i2": ("I", None),
    "u2": ("I", 1 << 15),
    "i4": ("J", None),
    "u4": ("J", 1 << 31),
    "i8": ("K", None),
    "u8": ("K", 1 << 63),
    "f4": ("E", None),
    "f8": ("D", None),
    "c8": ("C", None),
    "c16": ("M", None),
}


def _column(f: Field, data: np.ndarray) -> fits.Column:
    repeat = int(np.prod(f.shape)) if f.shape else 1
    dim_shape: tuple[int, ...] = tuple(reversed(f.shape))
    if f.dtype.kind in "SU":
        if f.dtype.kind == "U":
            width = 4 * (f.dtype.itemsize // 4)
            data = np.char.encode(data, "utf-8").astype(f"S{max(width, 1)}")
        width = data.dtype.itemsize
        fmt, bzero = f"{width * repeat}A", None
        dim_shape = (width, *dim_shape) if f.shape else ()
    else:
        code, bzero = _CODES[f"{f.dtype.kind}{f.dtype.itemsize}"]
        fmt = f"{repeat}{code}" if f.shape else code
    dim = "(" + ",".join(str(n) for n in dim_shape) + ")" if dim_shape else None
    return fits.Column(
        name=f.name, format=fmt, unit=f.units or None, dim=dim, bzero=bzero, array=data
    )


def _check_metadata(key: Any, value: Any) -> tuple[str, Any]:
    if not isinstance(key, str) or not key or not _PRINTABLE.match(key) or "=" in key:
        raise TableError(f"metadata key {key!r} cannot be a FITS keyword")
    if _RESERVED.match(key.upper()):
        raise TableError(f"metadata key {key!r} is reserved by the FITS table layout")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise TableError(f"metadata {key!r}: integer {value} does not fit in 64 bits")
    elif isinstance(value, float):
        if not np.isfinite(value):
            raise TableError(f"metadata {key!r}: FITS headers cannot hold {value}")
    elif isinstance(value, str):
        if not _PRINTABLE.match(value):
            raise TableError(f"metadata {key!r}: FITS strings must be printable ASCII")
    else:
        raise TableError(
            f"metadata {key!r}: FITS headers hold bool, int, float or str, not "
            f"{type(value).__name__}"
        )
    keyword = key if _STANDARD_KEY.match(key) else "HIERARCH " + key
    return keyword, value


def _table_hdu(catalog: Catalog) -> fits.BinTableHDU:
    schema = catalog.schema
    hdu = fits.BinTableHDU.from_columns([_column(f, catalog[f.name]) for f in schema], name=EXTNAME)
    header = hdu.header
    for n, f in enumerate(schema, start=1):
        if f.doc:
            if not _PRINTABLE.match(f.doc):
                raise TableError(f"field {f.name!r}: FITS docs must be printable ASCII")
            header[f"TDOC{n}"] = f.doc
        header[f"TDTYP{n}"] = f.dtype.str
    seen: dict[str, str] = {}
    for key, value in catalog.metadata.items():
        keyword, value = _check_metadata(key, value)
        if key.upper() in seen:
            raise TableError(
                f"metadata keys {seen[key.upper()]!r} and {key!r} collide (FITS ignores case)"
            )
        seen[key.upper()] = key
        try:
            header[keyword] = value
        except ValueError as err:
            raise TableError(f"metadata {key!r} cannot be written to FITS: {err}") from err
    return hdu


def write_fits(catalog: Catalog, path: str | os.PathLike[str]) -> None:
    """Write ``catalog`` to ``path`` as a FITS binary table, atomically.

    Parameters
    ----------
    catalog : Catalog
        The catalog; schema (names, dtypes, units, docs, shapes) and metadata are stored.
    path : str or os.PathLike
        Output file, replaced if it exists; it only appears once completely written.

    Raises
    ------
    TableError
        If a doc or metadata item cannot be represented in a FITS header (nothing is
        written then).
    """
    hdul = fits.HDUList([fits.PrimaryHDU(), _table_hdu(catalog)])
    with atomic_path(path) as tmp:
        hdul.writeto(tmp, checksum=True)


def read_fits(path: str | os.PathLike[str], hdu: int | str | None = None) -> Catalog:
    """Read a catalog from a FITS binary table.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    hdu : int or str, optional
        Index or ``EXTNAME`` of the table HDU; by default the first binary table.

    Returns
    -------
    Catalog
        With the stored schema and metadata (for files from other writers: dtypes as read,
        units from ``TUNITn``, and every non-structural header card as metadata).

    Raises
    ------
    FileFormatError
        If the file is missing, empty, not FITS, truncated, fails its checksum, has no such
        binary table HDU, or holds columns a catalog cannot represent.
    """
    p = Path(path)
    if not p.exists():
        raise FileFormatError(str(path), "no such file")
    if p.is_dir():
        raise FileFormatError(str(path), "is a directory, not a FITS file")
    if p.stat().st_size == 0:
        raise FileFormatError(str(path), "file is empty, not a FITS file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", AstropyWarning)
            # Our own handle: astropy leaves its file open when it fails half-way through.
            with open(p, "rb") as handle, fits.open(handle, memmap=False, checksum=True) as hdul:
                table = _select_hdu(hdul, str(path), hdu)
                return _catalog_from_hdu(table)
    except FileFormatError:
        raise
    except (TableError, SchemaError) as err:
        raise FileFormatError(str(path), f"cannot be read as a catalog: {err}") from err
    except (OSError, ValueError, TypeError, KeyError, IndexError, EOFError, AstropyWarning) as err:
        raise FileFormatError(str(path), f"corrupt, truncated or not a FITS file ({err})") from err


def _select_hdu(hdul: fits.HDUList, path: str, hdu: int | str | None) -> fits.BinTableHDU:
    if hdu is None:
        for h in hdul:
            if isinstance(h, fits.BinTableHDU):
                return h
        kinds = ", ".join(type(h).__name__ for h in hdul)
        raise FileFormatError(path, f"no binary table HDU (found: {kinds})")
    try:
        h = hdul[hdu]
    except (KeyError, IndexError) as err:
        raise FileFormatError(path, f"no HDU {hdu!r} ({len(hdul)} HDUs)") from err
    if not isinstance(h, fits.BinTableHDU):
        raise FileFormatError(path, f"HDU {hdu!r} is a {type(h).__name__}, not a binary table")
    return h


def _catalog_from_hdu(hdu: fits.BinTableHDU) -> Catalog:
    header = hdu.header
    data = hdu.data
    raw = np.asarray(data).view(np.ndarray) if data is not None else None
    schema = Schema()
    columns: dict[str, np.ndarray] = {}
    for n, col in enumerate(hdu.columns, start=1):
        stored = header.get(f"TDTYP{n}")
        if raw is None:
            values = np.zeros((0,), dtype=stored or "f8")
        elif col.format.format == "A":
            values = np.char.rstrip(raw[raw.dtype.names[n - 1]], b" ")
        else:
            values = np.asarray(data.field(n - 1))
        dtype = resolve_dtype(stored if stored else values.dtype)
        if dtype.kind == "U" and values.dtype.kind == "S":
            values = np.char.decode(values, "utf-8")
        schema.add_field(
            col.name,
            dtype,
            doc=header.get(f"TDOC{n}", ""),
            units=col.unit or "",
            shape=values.shape[1:],
        )
        columns[col.name] = values.astype(dtype)
    metadata: dict[str, Any] = {}
    for card in header.cards:
        key = card.keyword
        if not key or _RESERVED.match(key.upper()) or isinstance(card.value, fits.card.Undefined):
            continue
        metadata[key] = card.value
    return Catalog.from_columns(schema, columns, metadata=metadata)


# --- registration: Catalog.read/write/read_fits/write_fits find this format through
# hpcpipe.formats ------------------------------------------------------------------------------
formats.register_reader("fits", Catalog, read_fits)
formats.register_writer("fits", Catalog, write_fits)
formats.register_identifier("fits", Catalog, formats.suffix_identifier(*SUFFIXES))
