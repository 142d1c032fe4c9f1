"""Alert production (Level 1): the source association database, association and alerts.

* :mod:`hpcpipe.ap.apdb`: the Alert Production DataBase (SQLite): ``DiaObject`` and
  ``DiaSource`` tables, region queries and atomic per-visit updates.
* :mod:`hpcpipe.ap.association`: diaSources to diaObjects (one to one per visit, nearest
  first) and the diaObjects' light-curve statistics.
* :mod:`hpcpipe.ap.alerts`: alert packets (the diaSource, its object's history and image
  cutouts) in a versioned Avro schema, written as Avro container files.
"""

from hpcpipe.ap.apdb import DIA_SOURCE_DTYPE, Apdb, ApdbError, dia_object_dtype
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
    "DIA_SOURCE_DTYPE",
    "associate",
    "associate_visit",
    "dia_object_dtype",
    "light_curve_stats",
]
