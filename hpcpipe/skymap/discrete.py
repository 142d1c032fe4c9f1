"""A sky map of explicitly listed tracts (LSST ``DiscreteSkyMap`` style).

Each tract is given by its centre and a radius (degrees). Its inner region holds the positions
within its radius that are nearer to its centre than to the centre of any other tract whose
radius holds them; positions outside every radius belong to no tract. The tract box covers the
square (in the tangent plane) circumscribing the radius, grown by the tract overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hpcpipe.skymap.base import BaseSkyMap, SkyMapConfig
from hpcpipe.skymap.tract import (
    SkyMapConfigError,
    TractInfo,
    radec_to_vec,
    tangent_basis,
    vec_to_radec,
)

__all__ = ["NearestCentrePartition", "DiscreteSkyMap"]

_CHUNK = 4_000_000


class NearestCentrePartition:
    """Assigns each position to the tract with the nearest centre (within its radius).

    Parameters
    ----------
    ra, dec : numpy.ndarray
        Tract centres in degrees, by tract id.
    radius : numpy.ndarray, optional
        Tract radii in degrees; a tract holds only positions within its radius. Without radii
        every position belongs to its nearest tract.
    """

    def __init__(
        self, ra: np.ndarray, dec: np.ndarray, radius: np.ndarray | None = None
    ) -> None:
        self.vecs = radec_to_vec(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))
        self.cos_radius = None if radius is None else np.cos(np.radians(radius))

    def tract_ids(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Return the tract id of each position (ICRS degrees), -1 where no tract holds it."""
        vec = radec_to_vec(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))
        vec = vec.reshape(-1, 3)
        out = np.empty(len(vec), dtype=np.int64)
        step = max(1, _CHUNK // len(self.vecs))
        for start in range(0, len(vec), step):
            dots = vec[start : start + step] @ self.vecs.T
            if self.cos_radius is not None:
                dots = np.where(dots >= self.cos_radius[None, :], dots, -np.inf)
            best = np.argmax(dots, axis=1)
            held = np.isfinite(dots[np.arange(len(dots)), best])
            out[start : start + step] = np.where(held, best, -1)
        return out.reshape(np.shape(ra))


def _as_float_list(values: Sequence[float], name: str) -> list[float]:
    try:
        result = [float(v) for v in values]
    except (TypeError, ValueError):
        raise SkyMapConfigError(f"{name} must be a sequence of numbers, got {values!r}") from None
    for i, value in enumerate(result):
        if not math.isfinite(value):
            raise SkyMapConfigError(f"{name}[{i}] must be finite, got {value!r}")
    return result


class DiscreteSkyMap(BaseSkyMap):
    """Tracts at explicit centres, each holding the positions within its radius.

    Parameters
    ----------
    ra_list, dec_list : sequence of float
        Tract centres (ICRS degrees), by tract id.
    radius_list : sequence of float
        Tract radii (degrees, > 0).
    config : SkyMapConfig, optional
        Pixel and patch parameters.

    Raises
    ------
    SkyMapConfigError
        If the lists differ in length, are empty, or hold an invalid value (named with its
        index).
    """

    type_name = "discrete"

    def __init__(
        self,
        ra_list: Sequence[float],
        dec_list: Sequence[float],
        radius_list: Sequence[float],
        config: SkyMapConfig | None = None,
    ) -> None:
        super().__init__(config)
        ra = _as_float_list(ra_list, "ra_list")
        dec = _as_float_list(dec_list, "dec_list")
        radius = _as_float_list(radius_list, "radius_list")
        if not (len(ra) == len(dec) == len(radius)) or not ra:
            raise SkyMapConfigError(
                "ra_list, dec_list and radius_list must have the same non-zero length, got "
                f"{len(ra)}, {len(dec)} and {len(radius)}"
            )
        for i, value in enumerate(dec):
            if abs(value) > 90.0:
                raise SkyMapConfigError(f"dec_list[{i}] must be in [-90, 90], got {value!r}")
        for i, value in enumerate(radius):
            if not 0.0 < value < 75.0:
                raise SkyMapConfigError(f"radius_list[{i}] must be in (0, 75) deg, got {value!r}")
        self._ra, self._dec, self._radius = ra, dec, radius
        self._partition = NearestCentrePartition(np.array(ra), np.array(dec), np.array(radius))

    def __len__(self) -> int:
        return len(self._ra)

    def _params(self) -> dict[str, Any]:
        return {
            "ra_list": list(self._ra),
            "dec_list": list(self._dec),
            "radius_list": list(self._radius),
        }

    def _tract_centres(self) -> tuple[np.ndarray, np.ndarray]:
        return np.mod(np.array(self._ra), 360.0), np.array(self._dec)

    def radius(self, tract_id: int) -> float:
        """Return the radius (degrees) of tract ``tract_id``."""
        return self._radius[self[tract_id].tract_id]

    def _make_tract(self, tract_id: int) -> TractInfo:
        ra, dec = self._ra[tract_id], self._dec[tract_id]
        basis = tangent_basis(ra, dec)
        half = math.tan(math.radians(self._radius[tract_id]))
        signs = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        vecs = basis[0] + half * (signs[:, :1] * basis[1] + signs[:, 1:] * basis[2])
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        v_ra, v_dec = vec_to_radec(vecs)
        return self._new_tract(tract_id, (ra, dec), np.column_stack([v_ra, v_dec]))
