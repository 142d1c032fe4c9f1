"""Sky maps: tilings of the sky into overlapping tracts, each cut into patches.

Modelled on LSST's ``skymap`` package: a tract is a TAN projection of part of the sky whose
pixel box is cut into a grid of patches; every position belongs to the inner region of at most
one tract. :class:`RingsSkyMap` (declination rings), :class:`DodecaSkyMap` (dodecahedron faces)
and :class:`DiscreteSkyMap` (explicit tract centres) share the :class:`BaseSkyMap` interface.
"""

from __future__ import annotations

from hpcpipe.skymap.base import BaseSkyMap, SkyMapConfig
from hpcpipe.skymap.discrete import DiscreteSkyMap
from hpcpipe.skymap.dodeca import DodecaSkyMap
from hpcpipe.skymap.rings import RingsSkyMap
from hpcpipe.skymap.tract import (
    PatchInfo,
    SkyMapConfigError,
    SkyMapError,
    SkyMapIndexError,
    SkyMapLookupError,
    TractInfo,
)

__all__ = [
    "BaseSkyMap",
    "SkyMapConfig",
    "RingsSkyMap",
    "DodecaSkyMap",
    "DiscreteSkyMap",
    "TractInfo",
    "PatchInfo",
    "SkyMapError",
    "SkyMapConfigError",
    "SkyMapIndexError",
    "SkyMapLookupError",
]
