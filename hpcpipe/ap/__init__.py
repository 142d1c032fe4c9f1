"""Alert production (Level 1): the APDB, association, forced photometry and alerts.

* :mod:`hpcpipe.ap.sdm`: Rubin's data model, from Rubin's packages (the APDB tables of
  ``lsst-sdm-schemas``, the alert schema of ``lsst-alert-packet``).
* :mod:`hpcpipe.ap.apdb`: the Alert Production DataBase (SQLite or PostgreSQL through
  SQLAlchemy): Rubin's ``DiaObject``, ``DiaSource`` and ``DiaForcedSource`` tables with a
  HEALPix pixel index, region queries and atomic per-visit updates.
* :mod:`hpcpipe.ap.rows`: ``deepDiff_diaSrc`` catalogs as Rubin DiaSource rows.
* :mod:`hpcpipe.ap.association`: diaSources to diaObjects (one to one per visit, nearest
  first) and the diaObjects' light-curve statistics.
* :mod:`hpcpipe.ap.forced`: forced photometry of diaObjects on difference images.
* :mod:`hpcpipe.ap.alerts`: alert packets in Rubin's schema, their cutouts, Rubin's wire
  format, files and Kafka.
"""

from hpcpipe.ap.apdb import (
    DIA_FORCED_SOURCE_DTYPE,
    DIA_OBJECT_DTYPE,
    DIA_SOURCE_DTYPE,
    Apdb,
    ApdbError,
)
from hpcpipe.ap.association import (
    AssociationResult,
    associate,
    associate_visit,
    light_curve_stats,
)

__all__ = [
    "Apdb",
    "ApdbError",
    "AssociationResult",
    "DIA_FORCED_SOURCE_DTYPE",
    "DIA_OBJECT_DTYPE",
    "DIA_SOURCE_DTYPE",
    "associate",
    "associate_visit",
    "light_curve_stats",
]
