"""Input and output: atomic file writing and the FITS and HDF5 formats.

The format modules (:mod:`~hpcpipe.io.fits_exposure`, :mod:`~hpcpipe.io.hdf5_exposure`,
:mod:`~hpcpipe.io.fits_table`, :mod:`~hpcpipe.io.hdf5_table`) register their readers, writers
and identifiers in :mod:`hpcpipe.formats` when imported; ``Exposure.read``/``write`` and
``Catalog.read``/``write`` look them up there (importing them on first use, see
:data:`hpcpipe.formats.DEFAULT_PROVIDERS`). Imports go one way: this package imports the data
model (:mod:`hpcpipe.image`, :mod:`hpcpipe.table`), never the reverse.
"""
