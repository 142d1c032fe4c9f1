"""Integer and floating-point boxes in pixel coordinates (afw.geom style).

Pixel ``(x, y)`` is the centre of the pixel in column ``x`` and row ``y``; an image whose origin
(``xy0``) is ``(x0, y0)`` stores pixel ``(x, y)`` at array index ``[y - y0, x - x0]``.
:class:`Box2I` holds whole pixels with inclusive minimum and maximum; :class:`Box2D` holds a
continuous region, and ``Box2D(Box2I)`` covers the pixels' full extent (from ``min - 0.5`` to
``max + 0.5``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Box2I", "Box2D"]


@dataclass(frozen=True)
class Box2I:
    """A rectangle of whole pixels, inclusive of both corners.

    Parameters
    ----------
    x0, y0 : int
        The minimum column and row.
    width, height : int
        The size in pixels; a box with zero width or height is empty.
    """

    x0: int
    y0: int
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("x0", "y0", "width", "height"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"Box2I.{name} must be an integer, not {value!r}")
            object.__setattr__(self, name, int(value))
        if self.width < 0 or self.height < 0:
            raise ValueError(f"Box2I size must not be negative: {self.width}x{self.height}")

    @classmethod
    def from_corners(cls, xmin: int, ymin: int, xmax: int, ymax: int) -> Box2I:
        """Make a box from its inclusive minimum and maximum corners."""
        if xmax < xmin or ymax < ymin:
            return cls(int(xmin), int(ymin), 0, 0)
        return cls(int(xmin), int(ymin), int(xmax - xmin + 1), int(ymax - ymin + 1))

    @classmethod
    def from_shape(cls, shape: tuple[int, ...], xy0: tuple[int, int] = (0, 0)) -> Box2I:
        """Make the box of an array of ``shape`` (rows, columns) whose origin is ``xy0``."""
        return cls(int(xy0[0]), int(xy0[1]), int(shape[1]), int(shape[0]))

    @property
    def x1(self) -> int:
        """The maximum column (inclusive)."""
        return self.x0 + self.width - 1

    @property
    def y1(self) -> int:
        """The maximum row (inclusive)."""
        return self.y0 + self.height - 1

    @property
    def xy0(self) -> tuple[int, int]:
        """The minimum corner ``(x0, y0)``."""
        return (self.x0, self.y0)

    @property
    def shape(self) -> tuple[int, int]:
        """The NumPy shape ``(height, width)`` of an array covering the box."""
        return (self.height, self.width)

    @property
    def area(self) -> int:
        """The number of pixels."""
        return self.width * self.height

    def is_empty(self) -> bool:
        """Whether the box holds no pixel."""
        return self.width == 0 or self.height == 0

    def contains(self, other: Box2I) -> bool:
        """Whether every pixel of ``other`` lies in this box (an empty box is contained)."""
        if other.is_empty():
            return True
        return (
            self.x0 <= other.x0
            and other.x1 <= self.x1
            and self.y0 <= other.y0
            and other.y1 <= self.y1
        )

    def contains_point(self, x: float | np.ndarray, y: float | np.ndarray) -> bool | np.ndarray:
        """Whether the pixel centred nearest to ``(x, y)`` lies in the box (vectorised)."""
        xi = np.floor(np.asarray(x) + 0.5)
        yi = np.floor(np.asarray(y) + 0.5)
        inside = (xi >= self.x0) & (xi <= self.x1) & (yi >= self.y0) & (yi <= self.y1)
        return bool(inside) if np.ndim(inside) == 0 else inside

    def overlaps(self, other: Box2I) -> bool:
        """Whether the two boxes share at least one pixel."""
        return not self.clipped_to(other).is_empty()

    def clipped_to(self, other: Box2I) -> Box2I:
        """The intersection of the two boxes (empty when they do not overlap)."""
        return Box2I.from_corners(
            max(self.x0, other.x0),
            max(self.y0, other.y0),
            min(self.x1, other.x1),
            min(self.y1, other.y1),
        )

    def union(self, other: Box2I) -> Box2I:
        """The smallest box holding both."""
        if self.is_empty():
            return other
        if other.is_empty():
            return self
        return Box2I.from_corners(
            min(self.x0, other.x0),
            min(self.y0, other.y0),
            max(self.x1, other.x1),
            max(self.y1, other.y1),
        )

    def grown(self, border: int | tuple[int, int]) -> Box2I:
        """The box grown by ``border`` pixels on every side (negative shrinks)."""
        if isinstance(border, tuple | list | np.ndarray):
            bx, by = (int(b) for b in border)
        else:
            bx = by = int(border)
        return Box2I.from_corners(self.x0 - bx, self.y0 - by, self.x1 + bx, self.y1 + by)

    def shifted(self, dx: int, dy: int) -> Box2I:
        """The box moved by ``(dx, dy)`` pixels."""
        return Box2I(self.x0 + dx, self.y0 + dy, self.width, self.height)

    def slices(self, xy0: tuple[int, int] = (0, 0)) -> tuple[slice, slice]:
        """Array slices ``(rows, columns)`` of this box in an array whose origin is ``xy0``."""
        ox, oy = xy0
        return (
            slice(self.y0 - oy, self.y0 - oy + self.height),
            slice(self.x0 - ox, self.x0 - ox + self.width),
        )

    def corners(self) -> np.ndarray:
        """The four outer corners of the pixels' extent, as a (4, 2) array of ``(x, y)``."""
        return np.array(Box2D.from_box2i(self).corners())

    def __iter__(self) -> Iterator[int]:
        return iter((self.x0, self.y0, self.width, self.height))

    def to_list(self) -> list[int]:
        """``[x0, y0, width, height]``, as stored in file headers."""
        return [self.x0, self.y0, self.width, self.height]


@dataclass(frozen=True)
class Box2D:
    """A continuous rectangle ``[xmin, xmax] x [ymin, ymax]`` in pixel coordinates."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    @classmethod
    def from_box2i(cls, box: Box2I) -> Box2D:
        """The region covered by the pixels of ``box``."""
        return cls(box.x0 - 0.5, box.y0 - 0.5, box.x1 + 0.5, box.y1 + 0.5)

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (self.xmin + self.xmax), 0.5 * (self.ymin + self.ymax))

    def contains_point(self, x: float | np.ndarray, y: float | np.ndarray) -> bool | np.ndarray:
        """Whether ``(x, y)`` lies in the half-open region ``[min, max)`` (vectorised)."""
        xa = np.asarray(x)
        ya = np.asarray(y)
        inside = (xa >= self.xmin) & (xa < self.xmax) & (ya >= self.ymin) & (ya < self.ymax)
        return bool(inside) if np.ndim(inside) == 0 else inside

    def overlaps(self, other: Box2D) -> bool:
        """Whether the two regions share an area."""
        return (
            self.xmin < other.xmax
            and other.xmin < self.xmax
            and self.ymin < other.ymax
            and other.ymin < self.ymax
        )

    def corners(self) -> list[tuple[float, float]]:
        """The four corners, counter-clockwise from the minimum."""
        return [
            (self.xmin, self.ymin),
            (self.xmax, self.ymin),
            (self.xmax, self.ymax),
            (self.xmin, self.ymax),
        ]
