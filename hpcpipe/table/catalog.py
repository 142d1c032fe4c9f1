"""Columnar catalogs: one NumPy array per schema field, grown geometrically on append.

:class:`Catalog` is the columnar counterpart of ``lsst.afw.table.SourceCatalog``: columns are
contiguous arrays (fast vectorised access, ``catalog["flux"]`` is a writable view), and rows
are available as lightweight :class:`Record` views.
"""

from __future__ import annotations

import copy as _copy
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.units import Quantity, Unit

from hpcpipe import formats
from hpcpipe.errors import SchemaError
from hpcpipe.table.join import join
from hpcpipe.table.schema import Field, Schema, TableError, fill_value

if TYPE_CHECKING:
    import astropy.table
    import h5py

__all__ = ["Catalog", "Record", "fill_value"]

_MIN_CAPACITY = 8


class Record(Mapping[str, Any]):
    """A view of one row of a :class:`Catalog`.

    ``record["flux"]`` reads and ``record["flux"] = 2.0`` writes the catalog's storage;
    ``dict(record)`` copies the row. Array fields come back as writable views. A record refers
    to a row position: after :meth:`Catalog.sort` it sees whatever row moved there.
    """

    __slots__ = ("_catalog", "_index")

    def __init__(self, catalog: Catalog, index: int) -> None:
        self._catalog = catalog
        self._index = index

    @property
    def catalog(self) -> Catalog:
        """Catalog: The catalog this record belongs to."""
        return self._catalog

    @property
    def index(self) -> int:
        """int: The row number in the catalog."""
        return self._index

    @property
    def schema(self) -> Schema:
        """Schema: The catalog's schema."""
        return self._catalog.schema

    def __getitem__(self, name: str) -> Any:
        try:
            column = self._catalog._data[name]
        except (KeyError, TypeError):
            self._catalog.schema[name]  # raises SchemaError with suggestions
            raise
        return column[self._index]

    def __setitem__(self, name: str, value: Any) -> None:
        try:
            column = self._catalog._data[name]
        except (KeyError, TypeError):
            self._catalog.schema[name]
            raise
        column[self._index] = value

    def __iter__(self) -> Iterator[str]:
        return iter(self._catalog.schema.names)

    def __len__(self) -> int:
        return len(self._catalog.schema)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={self[k]!r}" for k in self)
        return f"Record(index={self._index}, {items})"


class Catalog:
    """A table of rows sharing a :class:`~hpcpipe.table.schema.Schema`, stored by column.

    Parameters
    ----------
    schema : Schema
        The fields. The catalog keeps a read-only copy (``catalog.schema``).
    capacity : int, optional
        Rows to reserve; the catalog starts empty (``len(catalog) == 0``) either way.
    metadata : mapping, optional
        Header key/value pairs (str, int, float or bool values to be writable to FITS/HDF5).

    Notes
    -----
    Columns are grown geometrically (doubling) when rows are appended, so appending is
    amortized O(1). Column arrays obtained before a reallocation stay valid but no longer
    share memory with the catalog.
    """

    __hash__ = None  # type: ignore[assignment]

    def __init__(
        self,
        schema: Schema,
        capacity: int = 0,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(schema, Schema):
            raise TypeError(f"schema must be a Schema, not {type(schema).__name__}")
        self._schema = schema.copy().freeze()
        self._size = 0
        capacity = max(int(capacity), 0)
        self._data: dict[str, np.ndarray] = {
            f.name: np.zeros((capacity, *f.shape), dtype=f.dtype) for f in self._schema
        }
        self._capacity = capacity
        self.metadata: dict[str, Any] = dict(metadata or {})

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_columns(
        cls,
        schema: Schema | None,
        columns: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
    ) -> Catalog:
        """Build a catalog from one array per field (copied, cast to the field dtypes).

        Parameters
        ----------
        schema : Schema or None
            The fields; every one must be in ``columns``. If None, a schema is inferred from
            the arrays (dtype, and shape from the trailing dimensions).
        columns : mapping of str to array_like
            Column data, all with the same length.
        metadata : mapping, optional
            Header key/value pairs.

        Raises
        ------
        SchemaError
            If a field has no column or a column has no field.
        TableError
            If the columns have different lengths or the wrong per-row shape.
        """
        arrays = {name: np.asarray(values) for name, values in columns.items()}
        if schema is None:
            schema = Schema(Field(n, a.dtype, shape=a.shape[1:]) for n, a in arrays.items())
        missing = [n for n in schema.names if n not in arrays]
        extra = [n for n in arrays if n not in schema]
        if missing or extra:
            raise SchemaError(
                f"columns do not match the schema: missing {missing}, not in schema {extra}"
            )
        lengths = {n: (len(a) if a.ndim else -1) for n, a in arrays.items()}
        if len(set(lengths.values())) > 1 or -1 in lengths.values():
            raise TableError(f"columns must be arrays of equal length; got lengths {lengths}")
        n = next(iter(lengths.values()), 0)
        cat = cls(schema, capacity=n, metadata=metadata)
        for f in cat._schema:
            a = arrays[f.name]
            if a.shape[1:] != f.shape:
                raise TableError(
                    f"column {f.name!r} has per-row shape {a.shape[1:]}, schema says {f.shape}"
                )
            cat._data[f.name][:n] = a
        cat._size = n
        return cat

    @classmethod
    def from_records(
        cls,
        schema: Schema,
        records: Iterable[Mapping[str, Any]],
        metadata: Mapping[str, Any] | None = None,
    ) -> Catalog:
        """Build a catalog from an iterable of mappings (dicts or :class:`Record` objects).

        Fields missing from a mapping are zero (empty/False); unknown keys raise SchemaError.
        """
        rows = list(records)
        cat = cls(schema, capacity=len(rows), metadata=metadata)
        for row in rows:
            cat.append(row)
        return cat

    # -- size and storage ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        """int: Rows that fit before the columns are reallocated."""
        return self._capacity

    def reserve(self, capacity: int) -> None:
        """Make room for at least ``capacity`` rows (growing at least geometrically)."""
        if capacity <= self._capacity:
            return
        new = max(int(capacity), 2 * self._capacity, _MIN_CAPACITY)
        for f in self._schema:
            old = self._data[f.name]
            grown = np.zeros((new, *f.shape), dtype=f.dtype)
            grown[: self._size] = old[: self._size]
            self._data[f.name] = grown
        self._capacity = new

    @property
    def schema(self) -> Schema:
        """Schema: The (read-only) schema; use ``schema.copy()`` to derive a new one."""
        return self._schema

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """dict of str to numpy.ndarray: Writable views of every column, in schema order."""
        return {name: col[: self._size] for name, col in self._data.items()}

    # -- rows ---------------------------------------------------------------------------------

    def _set_row(self, index: int, row: Mapping[str, Any]) -> None:
        for name in row:
            if name not in self._data:
                self._schema[name]  # SchemaError with suggestions
        for name, value in row.items():
            self._data[name][index] = value

    def add_record(self) -> Record:
        """Append a zeroed row and return it as a :class:`Record` view."""
        self.reserve(self._size + 1)
        for col in self._data.values():
            col[self._size] = col.dtype.type()
        self._size += 1
        return Record(self, self._size - 1)

    def append(self, row: Mapping[str, Any]) -> Record:
        """Append one row given as a mapping or :class:`Record`; missing fields are zero.

        Returns
        -------
        Record
            The new row.

        Raises
        ------
        SchemaError
            If the mapping has a key that is not a field (nothing is appended then).
        """
        if not isinstance(row, Mapping):
            raise TypeError(f"append expects a mapping or Record, not {type(row).__name__}")
        unknown = [k for k in row if k not in self._data]
        if unknown:
            self._schema[unknown[0]]
        rec = self.add_record()
        try:
            self._set_row(rec.index, row)
        except BaseException:
            self._size -= 1
            raise
        return rec

    def extend(self, rows: Catalog | Iterable[Mapping[str, Any]]) -> None:
        """Append the rows of another catalog or of an iterable of mappings.

        Raises
        ------
        TableError
            If ``rows`` is a catalog whose fields differ (names, dtypes, shapes or units); the
            message names the differing fields.
        """
        if not isinstance(rows, Catalog):
            rows = Catalog.from_records(self._schema, rows)
        self._check_compatible(rows, "extend")
        n, m = self._size, len(rows)
        self.reserve(n + m)
        for name, col in rows._data.items():
            self._data[name][n : n + m] = col[:m]
        self._size = n + m

    def _check_compatible(self, other: Catalog, what: str) -> None:
        diff = self._schema.differences(other.schema)
        if diff:
            raise TableError(f"cannot {what}: schemas differ: " + "; ".join(diff))

    def __iter__(self) -> Iterator[Record]:
        for i in range(self._size):
            yield Record(self, i)

    # -- indexing -----------------------------------------------------------------------------

    def _row_index(self, key: int | np.integer) -> int:
        i = int(key)
        if i < 0:
            i += self._size
        if not 0 <= i < self._size:
            raise IndexError(f"row {int(key)} out of range for a catalog of {self._size} rows")
        return i

    def _selection(self, key: Any) -> slice | np.ndarray:
        if isinstance(key, slice):
            return key
        sel = np.asarray(key)
        if sel.dtype == bool:
            if sel.shape != (self._size,):
                raise TableError(
                    f"boolean selection has shape {sel.shape}, catalog has {self._size} rows"
                )
            return sel
        if sel.size == 0:
            return sel.astype(np.intp)
        if sel.dtype.kind not in "iu" or sel.ndim != 1:
            raise TableError(
                f"cannot select rows with {sel.dtype} array of shape {sel.shape}; use a slice, "
                "a boolean mask or a 1-d integer array"
            )
        if sel.max() >= self._size or sel.min() < -self._size:
            raise IndexError(f"row index out of range for a catalog of {self._size} rows")
        return sel

    def __getitem__(self, key: Any) -> Any:
        """Return a column view (str), a :class:`Record` (int) or a new Catalog (slice/array)."""
        if isinstance(key, str):
            if key not in self._data:
                self._schema[key]
            return self._data[key][: self._size]
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            return Record(self, self._row_index(key))
        sel = self._selection(key)
        return self._take(sel)

    def _take(self, sel: slice | np.ndarray) -> Catalog:
        columns = {name: col[: self._size][sel] for name, col in self._data.items()}
        return Catalog.from_columns(self._schema, columns, metadata=_copy.deepcopy(self.metadata))

    def __setitem__(self, key: Any, value: Any) -> None:
        """Set a whole column (str key, broadcast) or a row (int key, from a mapping)."""
        if isinstance(key, str):
            if key not in self._data:
                self._schema[key]
            try:
                self._data[key][: self._size] = value
            except ValueError as err:
                raise TableError(f"cannot set column {key!r}: {err}") from err
        elif isinstance(key, (int, np.integer)):
            self._set_row(self._row_index(key), value)
        else:
            raise TypeError(f"catalog keys must be column names or row numbers, not {key!r}")

    def where(self, mask: Any) -> Catalog:
        """Return the rows where the boolean ``mask`` (one entry per row) is true."""
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise TableError(f"where() needs a boolean mask, got dtype {mask.dtype}")
        return self._take(self._selection(mask))

    # -- ordering -----------------------------------------------------------------------------

    def argsort(self, keys: str | Sequence[str], reverse: bool = False) -> np.ndarray:
        """Return the stable ordering by ``keys`` (first key most significant).

        With ``reverse=True`` the order is descending but rows with equal keys keep their
        original relative order (as Python's ``sorted(..., reverse=True)``). NaNs sort last
        (first when reversed).
        """
        names = [keys] if isinstance(keys, str) else list(keys)
        if not names:
            raise TableError("sort needs at least one key")
        cols = []
        for name in names:
            f = self._schema[name]
            if f.shape:
                raise TableError(f"cannot sort by array field {name!r} with shape {f.shape}")
            cols.append(self[name])
        if len(cols) == 1 and not reverse:
            return np.argsort(cols[0], kind="stable")
        ranks = [np.unique(c, return_inverse=True)[1].reshape(-1) for c in cols]
        if reverse:
            ranks = [-r for r in ranks]
        return np.lexsort(ranks[::-1])

    def sort(self, keys: str | Sequence[str], reverse: bool = False) -> None:
        """Sort the rows in place, stably, by one key or a list of keys (see :meth:`argsort`)."""
        order = self.argsort(keys, reverse)
        for col in self._data.values():
            col[: self._size] = col[: self._size][order]

    def sorted(self, keys: str | Sequence[str], reverse: bool = False) -> Catalog:
        """Return a sorted copy (see :meth:`sort`)."""
        return self._take(self.argsort(keys, reverse))

    # -- whole-catalog operations -------------------------------------------------------------

    def copy(self) -> Catalog:
        """Return a deep copy (columns and metadata)."""
        return self._take(slice(None))

    def equals(self, other: Catalog, check_metadata: bool = True) -> bool:
        """Whether ``other`` has the same schema (incl. docs/units), rows and metadata.

        NaNs compare equal to NaNs.
        """
        if not isinstance(other, Catalog) or self._schema != other._schema:
            return False
        if len(self) != len(other):
            return False
        if check_metadata and self.metadata != other.metadata:
            return False
        for name in self._schema.names:
            a, b = self[name], other[name]
            nan = a.dtype.kind in "fc"
            if not np.array_equal(a, b, equal_nan=nan):
                return False
        return True

    @staticmethod
    def concatenate(catalogs: Sequence[Catalog]) -> Catalog:
        """Return a new catalog with the rows of all ``catalogs`` (first one's schema/metadata).

        Raises
        ------
        TableError
            If the list is empty or the schemas are incompatible.
        """
        catalogs = list(catalogs)
        if not catalogs:
            raise TableError("concatenate needs at least one catalog")
        first = catalogs[0]
        for other in catalogs[1:]:
            first._check_compatible(other, "concatenate")
        columns = {name: np.concatenate([c[name] for c in catalogs]) for name in first.schema.names}
        return Catalog.from_columns(first.schema, columns, _copy.deepcopy(first.metadata))

    def join(
        self,
        other: Catalog,
        keys: str | Sequence[str],
        how: str = "inner",
        suffixes: tuple[str, str] = ("_1", "_2"),
    ) -> Catalog:
        """SQL-like join with ``other`` on key columns; see :func:`hpcpipe.table.join.join`."""
        return join(self, other, keys, how=how, suffixes=suffixes)

    # -- conversions --------------------------------------------------------------------------

    def to_astropy(self) -> astropy.table.Table:
        """Return an :class:`astropy.table.Table` copy with units, descriptions and ``meta``."""
        from astropy.table import Column, Table  # start-up cost: astropy.table takes ~0.2 s

        cols = [
            Column(
                self[f.name].copy(),
                name=f.name,
                unit=Unit(f.units) if f.units else None,
                description=f.doc or None,
            )
            for f in self._schema
        ]
        return Table(cols, meta=_copy.deepcopy(self.metadata), copy=False)

    @classmethod
    def from_astropy(cls, table: astropy.table.Table) -> Catalog:
        """Build a catalog from an astropy Table; units and descriptions become the schema's.

        Masked entries are replaced by :func:`fill_value` of their dtype.
        """
        schema = Schema()
        columns = {}
        for name in table.colnames:
            col = table[name]
            unit = getattr(col, "unit", None)
            if isinstance(col, Quantity):
                col = col.value
            if getattr(col, "mask", None) is not None and hasattr(col, "filled"):
                col = col.filled(fill_value(col.dtype))
            data = np.asarray(col)
            schema.add_field(
                name,
                data.dtype,
                doc=getattr(col, "description", None) or "",
                units=unit.to_string() if unit is not None else "",
                shape=data.shape[1:],
            )
            columns[name] = data
        return cls.from_columns(schema, columns, metadata=_copy.deepcopy(dict(table.meta)))

    # -- files (formats registered in hpcpipe.formats; hpcpipe's own are in hpcpipe.io) ---------

    def write(self, target: Any, *args: Any, format: str | None = None, **kwargs: Any) -> None:
        """Write in a registered format, chosen by the file name (``.fits``, ``.h5``...) unless
        ``format`` is given; ``args`` and ``kwargs`` go to the format's writer.

        Raises
        ------
        FileFormatError
            If no format, or several, fit ``target`` and ``format`` is not given.
        """
        formats.write(self, target, *args, format=format, **kwargs)

    @classmethod
    def read(cls, target: Any, *args: Any, format: str | None = None, **kwargs: Any) -> Catalog:
        """Read a catalog in a registered format (see :meth:`write`)."""
        return formats.read(cls, target, *args, format=format, **kwargs)

    def write_fits(self, path: str | os.PathLike[str]) -> None:
        """Write to a FITS binary table; see :func:`hpcpipe.io.fits_table.write_fits`."""
        formats.write(self, path, format="fits")

    @classmethod
    def read_fits(cls, path: str | os.PathLike[str], hdu: int | str | None = None) -> Catalog:
        """Read a FITS binary table; see :func:`hpcpipe.io.fits_table.read_fits`."""
        return formats.read(cls, path, hdu=hdu, format="fits")

    def write_hdf5(
        self, path_or_group: str | os.PathLike[str] | h5py.Group, name: str = "catalog"
    ) -> None:
        """Write to an HDF5 compound dataset; see :func:`hpcpipe.io.hdf5_table.write_hdf5`."""
        formats.write(self, path_or_group, name=name, format="hdf5")

    @classmethod
    def read_hdf5(
        cls, path_or_group: str | os.PathLike[str] | h5py.Group, name: str = "catalog"
    ) -> Catalog:
        """Read an HDF5 catalog dataset; see :func:`hpcpipe.io.hdf5_table.read_hdf5`."""
        return formats.read(cls, path_or_group, name=name, format="hdf5")

    def __repr__(self) -> str:
        return f"<Catalog: {self._size} rows, fields {list(self._schema.names)}>"
