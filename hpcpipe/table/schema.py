"""Schemas: the ordered list of named, typed, documented fields of a catalog.

A :class:`Schema` plays the part of ``lsst.afw.table.Schema``: every column of a
:class:`~hpcpipe.table.catalog.Catalog` is described by a :class:`Field` that carries its name,
NumPy dtype, documentation, units and, for fixed-size array fields such as aperture fluxes, its
per-row shape. Flags are boolean fields.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy import units as u

from hpcpipe.errors import SchemaError, TableError

__all__ = ["ALIASES", "Field", "Schema", "TableError", "fill_value", "resolve_dtype"]


def fill_value(dtype: np.dtype) -> Any:
    """Return the value used for missing entries of ``dtype`` (joins, masked astropy columns).

    NaN for floats and complex numbers, 0 for integers, False for bools and the empty string
    for strings.
    """
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind == "b":
        return False
    if dtype.kind in "SU":
        return dtype.type()
    return 0


#: afw-style type aliases accepted wherever a dtype is expected.
ALIASES: dict[str, np.dtype] = {
    "I": np.dtype(np.int32),
    "L": np.dtype(np.int64),
    "F": np.dtype(np.float32),
    "D": np.dtype(np.float64),
    "Flag": np.dtype(np.bool_),
    "Angle": np.dtype(np.float64),
}

#: Units given to ``"Angle"`` fields when none are given.
ANGLE_UNITS = "rad"

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def resolve_dtype(spec: Any) -> np.dtype:
    """Return the native-byte-order NumPy dtype named by ``spec``.

    Parameters
    ----------
    spec : str, type or numpy.dtype
        A NumPy dtype or anything :func:`numpy.dtype` accepts, or one of the afw aliases in
        :data:`ALIASES` (``"I"``, ``"L"``, ``"F"``, ``"D"``, ``"Flag"``, ``"Angle"``).

    Returns
    -------
    numpy.dtype
        A scalar dtype: bool, a signed or unsigned integer, float32/64, complex64/128 or a
        fixed-width byte (``S``) or unicode (``U``) string.

    Raises
    ------
    TableError
        If ``spec`` is not a dtype, or is one catalogs cannot store (structured, object,
        float16, zero-width strings, ...).
    """
    if isinstance(spec, str) and spec in ALIASES:
        return ALIASES[spec]
    try:
        dtype = np.dtype(spec)
    except TypeError as err:
        raise TableError(f"{spec!r} is not a NumPy dtype or afw type alias") from err
    ok = (
        dtype.kind in "biu"
        or (dtype.kind == "f" and dtype.itemsize in (4, 8))
        or (dtype.kind == "c" and dtype.itemsize in (8, 16))
        or (dtype.kind in "SU" and dtype.itemsize > 0)
    )
    if not ok or dtype.fields is not None or dtype.subdtype is not None:
        raise TableError(
            f"dtype {dtype} is not supported in catalogs (use bool, integers, float32/64, "
            "complex64/128 or fixed-width strings; give array shapes with shape=)"
        )
    return dtype.newbyteorder("=") if dtype.byteorder not in "=|" else dtype


def _normalize_units(units: Any) -> str:
    if units is None:
        return ""
    if isinstance(units, u.UnitBase):
        return units.to_string()
    if not isinstance(units, str):
        raise TableError(f"units must be a string or astropy unit, not {type(units).__name__}")
    if units.strip() == "":
        return ""
    try:
        return u.Unit(units, parse_strict="raise").to_string()
    except (ValueError, TypeError) as err:
        raise TableError(f"units {units!r} are not parsable by astropy.units") from err


@dataclass(frozen=True)
class Field:
    """One named column of a schema.

    Parameters
    ----------
    name : str
        Letters, digits, ``_`` and ``.``, not starting with a digit or dot (for example
        ``base_PsfFlux_instFlux``).
    dtype : numpy.dtype or str
        The element type; afw aliases are accepted (see :func:`resolve_dtype`). It is stored
        as a native-byte-order :class:`numpy.dtype`.
    doc : str, optional
        What the field holds.
    units : str, optional
        Units parsable by :mod:`astropy.units`, or ``""``; normalized to astropy's generic
        string form. ``"Angle"`` fields default to ``"rad"``.
    shape : tuple of int, optional
        Per-row shape of fixed-size array fields; ``()`` for scalars.
    """

    name: str
    dtype: np.dtype
    doc: str = ""
    units: str = ""
    shape: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise TableError(
                f"invalid field name {self.name!r}: use letters, digits, '_' and '.', "
                "starting with a letter or '_'"
            )
        units = self.units
        if isinstance(self.dtype, str) and self.dtype == "Angle" and not units:
            units = ANGLE_UNITS
        object.__setattr__(self, "dtype", resolve_dtype(self.dtype))
        object.__setattr__(self, "units", _normalize_units(units))
        if not isinstance(self.doc, str):
            raise TableError(f"field {self.name!r}: doc must be a string")
        shape = self.shape
        if isinstance(shape, (int, np.integer)):
            shape = (shape,)
        try:
            shape = tuple(int(n) for n in shape)
        except (TypeError, ValueError) as err:
            raise TableError(f"field {self.name!r}: shape {self.shape!r} is not a tuple") from err
        if any(n <= 0 for n in shape):
            raise TableError(f"field {self.name!r}: shape {shape} must have positive sizes")
        object.__setattr__(self, "shape", shape)

    @property
    def is_flag(self) -> bool:
        """bool: Whether this is a scalar boolean (flag) field."""
        return self.dtype.kind == "b" and self.shape == ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable description (inverse of :meth:`from_dict`)."""
        return {
            "name": self.name,
            "dtype": self.dtype.str,
            "doc": self.doc,
            "units": self.units,
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Field:
        """Build a field from the output of :meth:`to_dict`."""
        return cls(
            name=data["name"],
            dtype=np.dtype(data["dtype"]),
            doc=data.get("doc", ""),
            units=data.get("units", ""),
            shape=tuple(data.get("shape", ())),
        )

    def renamed(self, name: str) -> Field:
        """Return a copy of this field under another name."""
        return Field(name, self.dtype, self.doc, self.units, self.shape)


class Schema:
    """An ordered collection of uniquely named :class:`Field` objects.

    Parameters
    ----------
    fields : iterable of Field, optional
        Initial fields, in order.

    Examples
    --------
    >>> schema = Schema.minimal()
    >>> _ = schema.add_field("base_PsfFlux_instFlux", "D", doc="PSF flux", units="nJy")
    >>> _ = schema.add_flag("base_PsfFlux_flag", doc="PSF flux failed")
    >>> schema.names[-2:]
    ('base_PsfFlux_instFlux', 'base_PsfFlux_flag')
    """

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __init__(self, fields: Iterable[Field] = ()) -> None:
        self._fields: dict[str, Field] = {}
        self._frozen = False
        for f in fields:
            self._add(f)

    # -- building -----------------------------------------------------------------------------

    def _add(self, f: Field) -> Field:
        if self._frozen:
            raise TableError("this schema belongs to a catalog and is read-only; use schema.copy()")
        if not isinstance(f, Field):
            raise TypeError(f"expected a Field, got {type(f).__name__}")
        if f.name in self._fields:
            raise SchemaError(f"duplicate field name {f.name!r} in schema")
        self._fields[f.name] = f
        return f

    def add_field(
        self,
        name: str,
        dtype: Any,
        doc: str = "",
        units: str = "",
        shape: tuple[int, ...] | int = (),
    ) -> Field:
        """Append a field and return it.

        Parameters
        ----------
        name : str
            Field name (letters, digits, ``_`` and ``.``).
        dtype : numpy.dtype or str
            Element type or afw alias (``"I"``, ``"L"``, ``"F"``, ``"D"``, ``"Flag"``,
            ``"Angle"``).
        doc : str, optional
            Documentation.
        units : str, optional
            astropy-parsable units (``"Angle"`` defaults to ``"rad"``).
        shape : tuple of int or int, optional
            Per-row shape of array fields.

        Returns
        -------
        Field
            The new field.

        Raises
        ------
        SchemaError
            If ``name`` is already in the schema.
        TableError
            If the name, dtype, units or shape are invalid.
        """
        return self._add(Field(name, dtype, doc, units, shape))  # type: ignore[arg-type]

    def add_flag(self, name: str, doc: str = "") -> Field:
        """Append a boolean flag field and return it."""
        return self.add_field(name, "Flag", doc=doc)

    def extend(self, other: Schema | Iterable[Field]) -> None:
        """Append all fields of ``other`` (a schema or iterable of fields), in order.

        Raises
        ------
        SchemaError
            If a name of ``other`` is already here (nothing is added then).
        """
        new = list(other)
        dup = [f.name for f in new if f.name in self._fields]
        if dup:
            raise SchemaError(f"cannot extend schema: duplicate field names {dup}")
        for f in new:
            self._add(f)

    @classmethod
    def minimal(cls) -> Schema:
        """Return the minimal source schema: ``id`` (int64), ``coord_ra``, ``coord_dec`` (Angle)."""
        schema = cls()
        schema.add_field("id", "L", doc="unique id")
        schema.add_field("coord_ra", "Angle", doc="position in ra/dec")
        schema.add_field("coord_dec", "Angle", doc="position in ra/dec")
        return schema

    def copy(self) -> Schema:
        """Return an independent, modifiable copy (fields are immutable and shared)."""
        return Schema(self._fields.values())

    def freeze(self) -> Schema:
        """Make this schema read-only (used by catalogs for their own schema) and return it."""
        self._frozen = True
        return self

    # -- access -------------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __getitem__(self, name: str) -> Field:
        try:
            return self._fields[name]
        except (KeyError, TypeError):
            raise SchemaError(self._unknown_message(name)) from None

    def _unknown_message(self, name: object) -> str:
        msg = f"no field {name!r} in schema"
        if isinstance(name, str):
            lowered = {n.lower(): n for n in self._fields}
            close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
            if close:
                return msg + "; did you mean " + " or ".join(repr(lowered[c]) for c in close) + "?"
        return msg + f" (fields: {', '.join(self._fields) or 'none'})"

    def get(self, name: str, default: Field | None = None) -> Field | None:
        """Return the field called ``name``, or ``default``."""
        return self._fields.get(name, default)

    @property
    def names(self) -> tuple[str, ...]:
        """tuple of str: Field names, in order."""
        return tuple(self._fields)

    @property
    def fields(self) -> tuple[Field, ...]:
        """tuple of Field: The fields, in order."""
        return tuple(self._fields.values())

    def __iter__(self) -> Iterator[Field]:
        return iter(tuple(self._fields.values()))

    def __len__(self) -> int:
        return len(self._fields)

    @property
    def dtype(self) -> np.dtype:
        """numpy.dtype: The structured dtype of one row (array fields as sub-arrays)."""
        return np.dtype([(f.name, f.dtype, f.shape) for f in self._fields.values()])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schema):
            return NotImplemented
        return list(self._fields.values()) == list(other._fields.values())

    def differences(self, other: Schema, check_docs: bool = False) -> list[str]:
        """Describe how ``other`` differs from this schema, ignoring field order.

        Parameters
        ----------
        other : Schema
            The schema to compare with.
        check_docs : bool, optional
            Also report differing documentation.

        Returns
        -------
        list of str
            One message per differing field (missing on either side, or different dtype,
            shape, units or doc); empty if the schemas are compatible.
        """
        out = []
        for name in self._fields:
            if name not in other:
                out.append(f"{name!r} only in the first schema")
        for name in other.names:
            if name not in self._fields:
                out.append(f"{name!r} only in the second schema")
        for name, a in self._fields.items():
            b = other.get(name)
            if b is None:
                continue
            for attr in ("dtype", "shape", "units") + (("doc",) if check_docs else ()):
                va, vb = getattr(a, attr), getattr(b, attr)
                if va != vb:
                    out.append(f"{name!r} has {attr} {va!s} vs {vb!s}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable description: ``{"fields": [field dicts]}``."""
        return {"fields": [f.to_dict() for f in self._fields.values()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        """Build a schema from the output of :meth:`to_dict`."""
        return cls(Field.from_dict(d) for d in data["fields"])

    def __repr__(self) -> str:
        items = ", ".join(
            f"{f.name}:{f.dtype}{list(f.shape) if f.shape else ''}" for f in self._fields.values()
        )
        return f"Schema({items})"
