"""Sharded reference catalogs: ingest external star catalogs, load the stars of a CCD.

* :func:`~hpcpipe.refcat.ingest.ingest_reference_catalog` (``hpcpipe refcat ingest``) writes a
  FITS, CSV or Parquet catalog into ``REPO/ref_cats/NAME/`` as HEALPix-sharded Parquet files
  with LSST's reference-catalog columns, in parallel under MPI.
* :func:`~hpcpipe.refcat.loader.load_reference_catalog` reads the stars of a sky region with
  their proper motions applied; :class:`~hpcpipe.refcat.loader.ReferenceObjectLoader` those
  of a CCD, for the calibration (``calibrate.astromRefObjLoader``, ``photoRefObjLoader``).

See ``docs/refcat.md``.
"""

from __future__ import annotations

from hpcpipe.refcat.ingest import IngestSpec, ingest_reference_catalog
from hpcpipe.refcat.layout import (
    DEFAULT_REFCAT_NAME,
    RefcatError,
    RefcatInputError,
    RefcatManifest,
    RefcatNotFoundError,
    list_reference_catalogs,
    read_manifest,
)
from hpcpipe.refcat.loader import (
    LoadReferenceObjectsConfig,
    ReferenceLoaders,
    ReferenceObjectLoader,
    apply_proper_motion,
    find_reference_catalog,
    load_reference_catalog,
)

__all__ = ["IngestSpec", "ingest_reference_catalog", "DEFAULT_REFCAT_NAME", "RefcatError",
           "RefcatInputError", "RefcatManifest", "RefcatNotFoundError",
           "list_reference_catalogs", "read_manifest", "LoadReferenceObjectsConfig",
           "ReferenceLoaders", "ReferenceObjectLoader", "apply_proper_motion",
           "find_reference_catalog", "load_reference_catalog"]
