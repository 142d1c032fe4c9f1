"""A sky map of declination rings (LSST ``RingsSkyMap`` style).

The sky is cut into ``num_rings + 1`` bands of equal declination height ``180 / (num_rings +
1)`` degrees, shifted by half a band: tract 0 is the cap around the south pole (declination
below ``-90 + ring_size / 2``), then come the ``num_rings`` rings from south to north, and the
last tract is the north cap. Each ring is cut into equal right-ascension slices, one tract per
slice, the first centred on ``ra_start``; as in LSST, a ring has ``1 + int(C / ring_size)``
slices, ``C`` being its circumference (degrees) at its edge nearer the equator. The tract id of
a position is computed directly from its declination and right ascension.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcpipe.skymap.base import BaseSkyMap, SkyMapConfig
from hpcpipe.skymap.tract import SkyMapConfigError, TractInfo, check_int

__all__ = ["RingsPartition", "RingsSkyMap"]

_CAP_SAMPLES = 144
_EDGE_SAMPLES = 65


class RingsPartition:
    """The assignment of sky positions to the tracts of a :class:`RingsSkyMap`.

    Parameters
    ----------
    num_rings : int
        The number of rings between the polar caps.
    ra_start : float
        Right ascension (degrees) of the centre of the first tract of every ring.
    """

    def __init__(self, num_rings: int, ra_start: float) -> None:
        self.num_rings = num_rings
        self.ra_start = ra_start
        self.ring_size = 180.0 / (num_rings + 1)
        counts = []
        for ring in range(num_rings):
            # as LSST: one more slice than fit whole at the edge nearer the equator
            lo, hi = self.ring_dec_range(ring)
            circumference = 360.0 * math.cos(math.radians(min(abs(lo), abs(hi))))
            counts.append(1 + int(circumference / self.ring_size))
        self.counts = np.array(counts, dtype=np.int64)
        self.offsets = 1 + np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.num_tracts = int(2 + self.counts.sum())

    def ring_dec_range(self, ring: int) -> tuple[float, float]:
        """Return the declination limits ``[lo, hi)`` (degrees) of ring ``ring``."""
        lo = -90.0 + (ring + 0.5) * self.ring_size
        return lo, lo + self.ring_size

    def locate(self, tract_id: int) -> tuple[int, int]:
        """Return ``(ring, slice)`` of a tract; ring ``-1`` and ``num_rings`` are the caps."""
        if tract_id == 0:
            return -1, 0
        if tract_id == self.num_tracts - 1:
            return self.num_rings, 0
        ring = int(np.searchsorted(self.offsets, tract_id, side="right")) - 1
        return ring, int(tract_id - self.offsets[ring])

    def tract_ids(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Return the tract id of each position (ICRS degrees)."""
        ra = np.asarray(ra, dtype=float)
        dec = np.asarray(dec, dtype=float)
        ring = np.floor((dec - (-90.0 + 0.5 * self.ring_size)) / self.ring_size).astype(np.int64)
        clipped = np.clip(ring, 0, self.num_rings - 1)
        counts = self.counts[clipped]
        width = 360.0 / counts
        offset = np.mod(ra - self.ra_start + 0.5 * width, 360.0)
        slices = np.floor(offset / width).astype(np.int64) % counts
        ids = self.offsets[clipped] + slices
        ids = np.where(ring < 0, 0, ids)
        return np.where(ring >= self.num_rings, self.num_tracts - 1, ids)


class RingsSkyMap(BaseSkyMap):
    """Tracts on declination rings with a cap at each pole.

    Parameters
    ----------
    num_rings : int
        The number of rings between the polar caps (at least 1).
    config : SkyMapConfig, optional
        Pixel and patch parameters.
    ra_start : float
        Right ascension (degrees) of the centre of the first tract of every ring.

    Raises
    ------
    SkyMapConfigError
        If ``num_rings`` or ``ra_start`` is invalid.
    """

    type_name = "rings"
    _partition: RingsPartition

    def __init__(
        self, num_rings: int, config: SkyMapConfig | None = None, ra_start: float = 0.0
    ) -> None:
        super().__init__(config)
        self._num_rings = check_int(num_rings, "num_rings", 1)
        if (
            isinstance(ra_start, (bool, np.bool_))
            or not isinstance(ra_start, (int, float, np.number))
            or not math.isfinite(float(ra_start))
        ):
            raise SkyMapConfigError(
                f"ra_start must be a finite number of degrees, got {ra_start!r}"
            )
        self._ra_start = float(ra_start)
        self._partition = RingsPartition(self._num_rings, self._ra_start)

    def __len__(self) -> int:
        return self._partition.num_tracts

    @property
    def num_rings(self) -> int:
        """The number of rings between the polar caps."""
        return self._num_rings

    @property
    def ra_start(self) -> float:
        """Right ascension (degrees) of the centre of the first tract of every ring."""
        return self._ra_start

    @property
    def ring_size(self) -> float:
        """The declination height (degrees) of a ring."""
        return self._partition.ring_size

    @property
    def num_tracts_per_ring(self) -> tuple[int, ...]:
        """The number of tracts in each ring, from south to north (caps excluded)."""
        return tuple(int(n) for n in self._partition.counts)

    def _params(self) -> dict[str, Any]:
        return {"num_rings": self._num_rings, "ra_start": self._ra_start}

    def _tract_centres(self) -> tuple[np.ndarray, np.ndarray]:
        part = self._partition
        ra = [self._ra_start]
        dec = [-90.0]
        for ring, count in enumerate(part.counts):
            lo, hi = part.ring_dec_range(ring)
            ra.extend(self._ra_start + np.arange(count) * 360.0 / count)
            dec.extend([0.5 * (lo + hi)] * int(count))
        ra.append(self._ra_start)
        dec.append(90.0)
        return np.mod(np.array(ra), 360.0), np.array(dec)

    def _tract_bounding_radii(self) -> np.ndarray:
        # All tracts of a ring have the same shape; allow one patch of rounding slack.
        cfg = self.config
        slack = math.hypot(*cfg.patch_inner_dimensions) * cfg.pixel_scale / 3600.0
        radii = np.empty(len(self))
        radii[0] = self[0].bounding_radius + slack
        radii[-1] = self[len(self) - 1].bounding_radius + slack
        for offset, count in zip(self._partition.offsets, self._partition.counts):
            radii[offset : offset + count] = self[int(offset)].bounding_radius + slack
        return radii

    def _make_tract(self, tract_id: int) -> TractInfo:
        part = self._partition
        ring, index = part.locate(tract_id)
        if ring < 0 or ring >= self._num_rings:
            sign = -1.0 if ring < 0 else 1.0
            edge = sign * (90.0 - 0.5 * part.ring_size)
            ras = self._ra_start + np.linspace(0.0, 360.0, _CAP_SAMPLES, endpoint=False)
            boundary = np.column_stack([ras, np.full_like(ras, edge)])
            vertices = boundary[:: _CAP_SAMPLES // 4]
            return self._new_tract(tract_id, (self._ra_start, sign * 90.0), vertices, boundary)
        lo, hi = part.ring_dec_range(ring)
        width = 360.0 / part.counts[ring]
        ra_ctr = self._ra_start + index * width
        ras = ra_ctr + np.linspace(-0.5 * width, 0.5 * width, _EDGE_SAMPLES)
        boundary = np.concatenate(
            [
                np.column_stack([ras, np.full_like(ras, lo)]),
                np.column_stack([ras, np.full_like(ras, hi)]),
            ]
        )
        vertices = np.array(
            [
                [ra_ctr - 0.5 * width, lo],
                [ra_ctr + 0.5 * width, lo],
                [ra_ctr + 0.5 * width, hi],
                [ra_ctr - 0.5 * width, hi],
            ]
        )
        vertices[:, 0] %= 360.0
        boundary[:, 0] %= 360.0
        return self._new_tract(tract_id, (ra_ctr % 360.0, 0.5 * (lo + hi)), vertices, boundary)
