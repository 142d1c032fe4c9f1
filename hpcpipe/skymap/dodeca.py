"""A sky map of twelve tracts on the faces of a dodecahedron (LSST ``DodecaSkyMap`` style).

The tract centres are the face centres of a regular dodecahedron (the vertices of an
icosahedron); a position belongs to the inner region of the tract whose centre is nearest, so
the inner regions are the dodecahedron's pentagonal faces projected onto the sphere. By default
the poles lie on edges between faces; with ``with_tracts_on_poles`` a tract is centred on each
pole.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcpipe.skymap.base import BaseSkyMap, SkyMapConfig
from hpcpipe.skymap.discrete import NearestCentrePartition
from hpcpipe.skymap.tract import SkyMapConfigError, TractInfo, radec_to_vec, vec_to_radec

__all__ = ["DodecaSkyMap", "icosahedron_vertices"]


def icosahedron_vertices(with_vertices_on_poles: bool = False) -> np.ndarray:
    """Return the 12 unit vertices of a regular icosahedron, north to south.

    Parameters
    ----------
    with_vertices_on_poles : bool
        Put a vertex on each pole; otherwise the poles are midpoints of edges.

    Returns
    -------
    numpy.ndarray
        Shape ``(12, 3)``, sorted by decreasing declination, then increasing right ascension.
    """
    if with_vertices_on_poles:
        lat = math.degrees(math.atan(0.5))
        ra = np.concatenate([[0.0], np.arange(5) * 72.0, np.arange(5) * 72.0 + 36.0, [0.0]])
        dec = np.concatenate([[90.0], np.full(5, lat), np.full(5, -lat), [-90.0]])
        vecs = radec_to_vec(ra, dec)
    else:
        phi = 0.5 * (1.0 + math.sqrt(5.0))
        rows = []
        for a in (-1.0, 1.0):
            for b in (-phi, phi):
                rows += [(0.0, a, b), (a, b, 0.0), (b, 0.0, a)]
        vecs = np.array(rows) / math.sqrt(1.0 + phi * phi)
    ra, dec = vec_to_radec(vecs)
    order = np.lexsort((np.round(ra, 9), -np.round(dec, 9)))
    return vecs[order]


def _face_vertices(centres: np.ndarray) -> list[np.ndarray]:
    """For each icosahedron vertex, the 5 surrounding dodecahedron vertices, anticlockwise."""
    dots = centres @ centres.T
    adjacent = (dots > 0.4) & (dots < 0.99)
    n = len(centres)
    triangles = [
        (i, j, k)
        for i in range(n)
        for j in range(i + 1, n)
        for k in range(j + 1, n)
        if adjacent[i, j] and adjacent[j, k] and adjacent[i, k]
    ]
    result = []
    for i, centre in enumerate(centres):
        corners = np.array([centres[list(t)].sum(axis=0) for t in triangles if i in t])
        corners /= np.linalg.norm(corners, axis=1, keepdims=True)
        east = np.cross([0.0, 0.0, 1.0], centre)
        if np.linalg.norm(east) < 1e-12:
            east = np.array([0.0, 1.0, 0.0])
        east /= np.linalg.norm(east)
        north = np.cross(centre, east)
        angle = np.arctan2(corners @ north, corners @ east)
        result.append(corners[np.argsort(angle)])
    return result


class DodecaSkyMap(BaseSkyMap):
    """Twelve tracts centred on the faces of a dodecahedron.

    Parameters
    ----------
    config : SkyMapConfig, optional
        Pixel and patch parameters.
    with_tracts_on_poles : bool
        Centre a tract on each pole (otherwise the poles lie on tract edges).
    """

    type_name = "dodeca"

    def __init__(
        self, config: SkyMapConfig | None = None, with_tracts_on_poles: bool = False
    ) -> None:
        super().__init__(config)
        if not isinstance(with_tracts_on_poles, (bool, np.bool_)):
            raise SkyMapConfigError(
                f"with_tracts_on_poles must be a bool, got {with_tracts_on_poles!r}"
            )
        self._on_poles = bool(with_tracts_on_poles)
        self._centres = icosahedron_vertices(self._on_poles)
        ra, dec = vec_to_radec(self._centres)
        dec = np.where(np.abs(np.abs(dec) - 90.0) < 1e-9, np.sign(dec) * 90.0, dec)
        self._ctr_radec = (ra, dec)
        self._partition = NearestCentrePartition(ra, dec)
        self._corners = _face_vertices(self._centres)

    def __len__(self) -> int:
        return 12

    @property
    def with_tracts_on_poles(self) -> bool:
        """Whether a tract is centred on each pole."""
        return self._on_poles

    def _params(self) -> dict[str, Any]:
        return {"with_tracts_on_poles": self._on_poles}

    def _tract_centres(self) -> tuple[np.ndarray, np.ndarray]:
        return self._ctr_radec

    def _make_tract(self, tract_id: int) -> TractInfo:
        ra, dec = self._ctr_radec
        v_ra, v_dec = vec_to_radec(self._corners[tract_id])
        vertices = np.column_stack([v_ra, v_dec])
        return self._new_tract(tract_id, (float(ra[tract_id]), float(dec[tract_id])), vertices)
