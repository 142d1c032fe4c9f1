"""The release as a database: HATS catalogs, SQL and cone search, a TAP service, crossmatch.

* :mod:`hpcpipe.catalog.columns`: hpcpipe catalogs as Arrow tables, with units, UCDs and
  descriptions in the Parquet schema metadata;
* :mod:`hpcpipe.catalog.hats_write`: HATS catalogs (HEALPix-partitioned Parquet with margin
  caches) written by the MPI ranks, each writing the pixels it owns;
* :mod:`hpcpipe.catalog.query`: DuckDB over the HATS Parquet files, read-only, with a cone
  search that prunes by HEALPix pixel; :mod:`hpcpipe.catalog.adql` translates ADQL;
* :mod:`hpcpipe.catalog.tap`: an IVOA TAP service (``hpcpipe serve``);
* :mod:`hpcpipe.catalog.crossmatch`: crossmatch with an external catalog through LSDB.

The HATS layout is ``docs/release_database.md``.
"""

#: Width of the margin caches written with every HATS catalog (arcsec).
DEFAULT_MARGIN_ARCSEC = 10.0
