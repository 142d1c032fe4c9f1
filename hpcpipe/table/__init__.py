"""Tables: schemas of typed, documented fields and columnar catalogs (the afw.table model).

>>> from hpcpipe.table import Catalog, Schema
>>> schema = Schema.minimal()
>>> _ = schema.add_field("flux", "D", doc="flux", units="nJy")
>>> cat = Catalog(schema)
>>> rec = cat.add_record()
>>> rec["flux"] = 2.0
>>> float(cat["flux"][0])
2.0

FITS and HDF5 input/output live in :mod:`hpcpipe.io.fits_table` and
:mod:`hpcpipe.io.hdf5_table`, which register themselves in :mod:`hpcpipe.formats`; the catalog
finds them there (``Catalog.read``/``write``, ``Catalog.write_fits`` etc.) and never imports
:mod:`hpcpipe.io`.
"""

from __future__ import annotations

from hpcpipe.table.catalog import Catalog, Record, fill_value
from hpcpipe.table.join import JOIN_TYPES, join
from hpcpipe.table.schema import ALIASES, Field, Schema, TableError, resolve_dtype

__all__ = [
    "ALIASES",
    "Catalog",
    "Field",
    "JOIN_TYPES",
    "Record",
    "Schema",
    "TableError",
    "fill_value",
    "join",
    "resolve_dtype",
]
