"""Masks: 32-bit integer images whose bits are named planes (afw.image.Mask style)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from hpcpipe.errors import MaskPlaneError
from hpcpipe.image.image import Image

__all__ = ["Mask", "MaskPlaneDict", "STANDARD_MASK_PLANES", "MASK_DTYPE"]

#: The mask pixel type (as in afw, a signed 32-bit integer: 32 planes).
MASK_DTYPE = np.dtype(np.int32)

#: The planes every new mask starts with, with their bits and meanings.
STANDARD_MASK_PLANES: dict[str, tuple[int, str]] = {
    "BAD": (0, "Pixel is physically bad (a bad column, a hot pixel)."),
    "SAT": (1, "Pixel is saturated or has a saturated neighbour along the bleed trail."),
    "INTRP": (2, "Pixel value was interpolated from its neighbours."),
    "CR": (3, "Pixel was hit by a cosmic ray."),
    "EDGE": (4, "Pixel is too close to the edge for its values to be trusted."),
    "DETECTED": (5, "Pixel is in a footprint of a positive detection."),
    "DETECTED_NEGATIVE": (6, "Pixel is in a footprint of a negative detection."),
    "SUSPECT": (7, "Pixel is above the level where the detector is non-linear."),
    "NO_DATA": (8, "No data reached this pixel (off the detector, chip gaps in a warp)."),
    "CROSSTALK": (9, "Pixel was corrected for crosstalk."),
    "NOT_DEBLENDED": (10, "Pixel belongs to a blend that was too large to deblend."),
    "UNMASKEDNAN": (11, "Pixel is NaN and was not masked by any other plane."),
    "CLIPPED": (12, "Pixel was clipped from at least one input of a coadd."),
    "SENSOR_EDGE": (13, "Pixel came from the edge of a sensor in at least one coadd input."),
    "INEXACT_PSF": (14, "The coadd PSF is inexact here (inputs were clipped or missing)."),
    "REJECTED": (15, "Pixel was rejected from a coadd (all its inputs were clipped)."),
    "STREAK": (16, "Pixel lies on a satellite or meteor streak."),
}

_NUM_PLANES = 32


class MaskPlaneDict:
    """The names, bits and meanings of a mask's planes.

    A mask and its sub-masks share one dictionary; a copy of a mask gets a copy of it.
    """

    def __init__(self, planes: Mapping[str, tuple[int, str]] | None = None) -> None:
        source = STANDARD_MASK_PLANES if planes is None else planes
        self._bits: dict[str, int] = {}
        self._docs: dict[str, str] = {}
        for name, (bit, doc) in source.items():
            self._insert(name, int(bit), doc)

    def _insert(self, name: str, bit: int, doc: str) -> None:
        if not name or not name.replace("_", "").isalnum():
            raise MaskPlaneError(f"invalid mask plane name {name!r}: use letters, digits and '_'")
        if not 0 <= bit < _NUM_PLANES:
            raise MaskPlaneError(f"mask plane {name!r}: bit {bit} is outside 0..{_NUM_PLANES - 1}")
        if bit in self._bits.values() and self._bits.get(name) != bit:
            other = next(n for n, b in self._bits.items() if b == bit)
            raise MaskPlaneError(f"mask plane {name!r}: bit {bit} is already used by {other!r}")
        self._bits[name] = bit
        self._docs[name] = doc

    def copy(self) -> MaskPlaneDict:
        return MaskPlaneDict(self.items())

    def items(self) -> dict[str, tuple[int, str]]:
        """``{name: (bit, doc)}``, in bit order."""
        order = sorted(self._bits, key=self._bits.__getitem__)
        return {name: (self._bits[name], self._docs[name]) for name in order}

    def names(self) -> list[str]:
        return list(self.items())

    def __contains__(self, name: object) -> bool:
        return name in self._bits

    def __len__(self) -> int:
        return len(self._bits)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskPlaneDict):
            return NotImplemented
        return self.items() == other.items()

    __hash__ = None  # type: ignore[assignment]

    def bit(self, name: str) -> int:
        """The bit number of plane ``name``."""
        try:
            return self._bits[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._bits, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise MaskPlaneError(
                f"no mask plane named {name!r}{hint} (planes: {', '.join(self.names())})"
            ) from None

    def doc(self, name: str) -> str:
        self.bit(name)
        return self._docs[name]

    def add(self, name: str, doc: str = "") -> int:
        """Add plane ``name`` (if new) in the lowest free bit and return its bit."""
        if name in self._bits:
            if doc and not self._docs[name]:
                self._docs[name] = doc
            return self._bits[name]
        used = set(self._bits.values())
        free = [b for b in range(_NUM_PLANES) if b not in used]
        if not free:
            raise MaskPlaneError(f"cannot add mask plane {name!r}: all {_NUM_PLANES} bits are used")
        self._insert(name, free[0], doc)
        return free[0]

    def remove(self, name: str) -> None:
        """Forget plane ``name`` (the caller clears its bit in the pixels)."""
        self.bit(name)
        del self._bits[name]
        del self._docs[name]


class Mask(Image):
    """An integer image whose 32 bits are named planes.

    Parameters
    ----------
    array_or_bbox : numpy.ndarray, Box2I or tuple of int
        As for :class:`~hpcpipe.image.Image`; arrays must be int32.
    xy0 : tuple of int, optional
        Parent coordinates of the first pixel.
    planes : MaskPlaneDict or mapping, optional
        The plane dictionary (default: a copy of :data:`STANDARD_MASK_PLANES`).
    """

    _allowed = (MASK_DTYPE,)

    def __init__(
        self,
        array_or_bbox: Any,
        xy0: tuple[int, int] = (0, 0),
        planes: MaskPlaneDict | Mapping[str, tuple[int, str]] | None = None,
    ) -> None:
        super().__init__(array_or_bbox, dtype=None, xy0=xy0)
        if isinstance(planes, MaskPlaneDict):
            self._planes = planes
        else:
            self._planes = MaskPlaneDict(planes)

    @staticmethod
    def _default_dtype() -> np.dtype:
        return MASK_DTYPE

    @property
    def planes(self) -> MaskPlaneDict:
        """The plane dictionary (shared with sub-masks)."""
        return self._planes

    def clone(self) -> Mask:
        new = super().clone()
        assert isinstance(new, Mask)
        new._planes = self._planes.copy()
        return new

    def add_plane(self, name: str, doc: str = "") -> int:
        """Add a plane by name (if new) and return its bit number."""
        return self._planes.add(name, doc)

    def remove_plane(self, name: str) -> None:
        """Clear a plane's bit in every pixel and remove it from the dictionary."""
        self.clear_plane(name)
        self._planes.remove(name)

    def get_plane_bitmask(self, names: str | Iterable[str]) -> int:
        """The OR of the bits of the named plane(s), as an int32-compatible integer."""
        if isinstance(names, str):
            names = [names]
        value = 0
        for name in names:
            value |= 1 << self._planes.bit(name)
        return int(np.array(value, dtype=np.uint32).view(np.int32))

    def plane(self, name: str) -> np.ndarray:
        """A boolean array: which pixels have plane ``name`` set."""
        return (self._array & self.get_plane_bitmask(name)) != 0

    def any_of(self, names: Iterable[str]) -> np.ndarray:
        """A boolean array: which pixels have any of the named planes set."""
        return (self._array & self.get_plane_bitmask(list(names))) != 0

    def set_plane(self, name: str, where: np.ndarray | None = None) -> None:
        """Set plane ``name`` in the pixels where ``where`` is true (everywhere by default)."""
        bits = self.get_plane_bitmask(name)
        if where is None:
            self._array |= bits
        else:
            self._array[np.asarray(where, dtype=bool)] |= bits

    def clear_plane(self, name: str, where: np.ndarray | None = None) -> None:
        """Clear plane ``name`` where ``where`` is true (everywhere by default)."""
        keep = ~np.int32(self.get_plane_bitmask(name))
        if where is None:
            self._array &= keep
        else:
            sel = np.asarray(where, dtype=bool)
            self._array[sel] &= keep

    def conform(self, other: Mask) -> np.ndarray:
        """``other``'s pixels with its bits renumbered to this mask's planes.

        Planes of ``other`` that this mask lacks are added to this mask first.
        """
        out = np.zeros_like(other.array)
        for name, (bit, doc) in other.planes.items().items():
            mine = self.add_plane(name, doc)
            set_here = (other.array >> bit) & 1
            out |= (set_here << mine).astype(MASK_DTYPE)
        return out

    def translate_bits(self, values: np.ndarray, from_planes: MaskPlaneDict) -> np.ndarray:
        """Mask values written with another plane dictionary, in this mask's bits.

        Unlike :meth:`conform`, this mask is left unchanged: the planes it lacks are dropped.

        Parameters
        ----------
        values : numpy.ndarray
            Mask values (any shape: a whole array or selected pixels) whose bits follow
            ``from_planes``.
        from_planes : MaskPlaneDict
            The plane dictionary of ``values`` (``other_mask.planes``).

        Returns
        -------
        translated : numpy.ndarray
            A new int32 array of the shape of ``values``: each plane of ``from_planes`` that
            this mask has, set on this mask's bit for it.
        """
        values = np.asarray(values)
        if from_planes == self._planes:
            return values.astype(MASK_DTYPE)
        out = np.zeros(values.shape, MASK_DTYPE)
        for name, (bit, _doc) in from_planes.items().items():
            if name in self._planes:
                out[((values >> bit) & 1) != 0] |= self.get_plane_bitmask(name)
        return out

    def __ior__(self, other: Any) -> Mask:
        if isinstance(other, Mask):
            if other.bbox.shape != self.bbox.shape:
                raise ValueError(f"masks differ in size: {self.bbox} and {other.bbox}")
            self._array |= self.conform(other)
        else:
            self._array |= np.asarray(other, dtype=MASK_DTYPE)
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask):
            return NotImplemented
        return super().__eq__(other) and self._planes == other._planes

    __hash__ = None

    def header_cards(self) -> dict[str, tuple[int, str]]:
        """``{"MP_NAME": (bit, doc)}``: the plane dictionary as FITS header cards (afw style)."""
        return {f"MP_{name}": (bit, doc) for name, (bit, doc) in self._planes.items().items()}

    @staticmethod
    def planes_from_cards(cards: Mapping[str, Any], comments: Mapping[str, str] | None = None
                          ) -> MaskPlaneDict:
        """Rebuild a plane dictionary from ``MP_*`` header cards."""
        planes = {}
        for key, value in cards.items():
            if key.upper().startswith("MP_"):
                name = key[3:]
                doc = comments.get(key, "") if comments else ""
                planes[name] = (int(value), doc)
        return MaskPlaneDict(planes)
