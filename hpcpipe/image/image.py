"""A 2-D array of pixels with an integer origin (afw.image.Image style)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.errors import PixelTypeError
from hpcpipe.geom import Box2I

__all__ = ["Image", "PIXEL_TYPES", "check_pixel_type"]

#: The pixel types an :class:`Image` may hold.
PIXEL_TYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(t) for t in (np.uint16, np.int32, np.float32, np.float64)
)


def check_pixel_type(dtype: Any, allowed: tuple[np.dtype, ...] = PIXEL_TYPES, what: str = "Image"
                     ) -> np.dtype:
    """Return ``dtype`` as a NumPy dtype, or raise :class:`PixelTypeError` if not allowed."""
    dt = np.dtype(dtype)
    if dt.newbyteorder("=") not in allowed:
        names = ", ".join(str(a) for a in allowed)
        raise PixelTypeError(f"{what} pixels must be one of {names}; got {dt}")
    return dt.newbyteorder("=")


class Image:
    """Pixels of one type on a rectangle of the parent pixel grid.

    Parameters
    ----------
    array_or_bbox : numpy.ndarray, Box2I or tuple of int
        The pixels (kept, not copied, when already of an allowed type and native byte order),
        a bounding box, or a shape ``(height, width)``.
    dtype : numpy dtype, optional
        The pixel type of a new image (default float32); with an array, it must match.
    xy0 : tuple of int, optional
        The parent coordinates of the array's first pixel (ignored with a Box2I).

    Notes
    -----
    Indexing with a :class:`Box2I` in parent coordinates returns a sub-image that is a view:
    writing to it writes to the parent. ``image.array[j, i]`` is pixel
    ``(x0 + i, y0 + j)``.
    """

    _allowed: tuple[np.dtype, ...] = PIXEL_TYPES

    def __init__(
        self,
        array_or_bbox: np.ndarray | Box2I | tuple[int, int],
        dtype: Any = None,
        xy0: tuple[int, int] = (0, 0),
    ) -> None:
        if isinstance(array_or_bbox, np.ndarray):
            array = array_or_bbox
            if array.ndim != 2:
                raise ValueError(
                    f"{type(self).__name__} needs a 2-D array; got shape {array.shape}")
            if dtype is not None and np.dtype(dtype) != array.dtype:
                raise PixelTypeError(f"{type(self).__name__}: array has pixel type "
                                     f"{array.dtype}, not {np.dtype(dtype)}")
            check_pixel_type(array.dtype, self._allowed, type(self).__name__)
            if not array.dtype.isnative:
                array = array.astype(array.dtype.newbyteorder("="))
            self._array = array
            self._xy0 = (int(xy0[0]), int(xy0[1]))
        else:
            shape: tuple[int, ...]
            if isinstance(array_or_bbox, Box2I):
                shape, origin = array_or_bbox.shape, array_or_bbox.xy0
            else:
                shape, origin = tuple(int(n) for n in array_or_bbox), xy0
            dt = check_pixel_type(self._default_dtype() if dtype is None else dtype,
                                  self._allowed, type(self).__name__)
            self._array = np.zeros(shape, dtype=dt)
            self._xy0 = (int(origin[0]), int(origin[1]))

    @staticmethod
    def _default_dtype() -> np.dtype:
        return np.dtype(np.float32)

    # --- geometry ------------------------------------------------------------------------
    @property
    def array(self) -> np.ndarray:
        """The pixels, a NumPy view (rows are y, columns are x)."""
        return self._array

    @array.setter
    def array(self, values: Any) -> None:
        self._array[...] = values

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    @property
    def xy0(self) -> tuple[int, int]:
        """Parent coordinates of the first pixel."""
        return self._xy0

    @property
    def bbox(self) -> Box2I:
        """The image's rectangle in parent coordinates."""
        return Box2I.from_shape(self._array.shape, self._xy0)

    @property
    def width(self) -> int:
        return self._array.shape[1]

    @property
    def height(self) -> int:
        return self._array.shape[0]

    def set_xy0(self, xy0: tuple[int, int]) -> None:
        """Move the image's origin without touching its pixels."""
        self._xy0 = (int(xy0[0]), int(xy0[1]))

    def _check_inside(self, bbox: Box2I) -> None:
        if not self.bbox.contains(bbox):
            raise IndexError(
                f"box {bbox} is not inside the {type(self).__name__}'s bbox {self.bbox}")

    def __getitem__(self, bbox: Box2I) -> Image:
        if not isinstance(bbox, Box2I):
            raise TypeError(
                f"index a {type(self).__name__} with a Box2I in parent coordinates; "
                "use .array for NumPy indexing"
            )
        self._check_inside(bbox)
        return self._view(self._array[bbox.slices(self._xy0)], bbox.xy0)

    def __setitem__(self, bbox: Box2I, value: Any) -> None:
        self._check_inside(bbox)
        data = value.array if isinstance(value, Image) else value
        self._array[bbox.slices(self._xy0)] = data

    def _view(self, array: np.ndarray, xy0: tuple[int, int]) -> Image:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._array = array
        new._xy0 = xy0
        return new

    def get(self, x: int, y: int) -> Any:
        """The value of pixel ``(x, y)`` in parent coordinates."""
        return self._array[y - self._xy0[1], x - self._xy0[0]]

    def set(self, x: int, y: int, value: Any) -> None:
        """Set pixel ``(x, y)`` in parent coordinates."""
        self._array[y - self._xy0[1], x - self._xy0[0]] = value

    def clone(self) -> Image:
        """A deep copy."""
        return self._view(self._array.copy(), self._xy0)

    def convert(self, dtype: Any) -> Image:
        """A copy with another pixel type."""
        dt = check_pixel_type(dtype, self._allowed, type(self).__name__)
        return self._view(self._array.astype(dt), self._xy0)

    # --- arithmetic (in place, like afw) ---------------------------------------------------
    def _operand(self, other: Any) -> Any:
        if isinstance(other, Image):
            if other.bbox.shape != self.bbox.shape:
                raise ValueError(f"images differ in size: {self.bbox} and {other.bbox}")
            return other.array
        return other

    def __iadd__(self, other: Any) -> Image:
        self._array += self._operand(other)
        return self

    def __isub__(self, other: Any) -> Image:
        self._array -= self._operand(other)
        return self

    def __imul__(self, other: Any) -> Image:
        self._array *= self._operand(other)
        return self

    def __itruediv__(self, other: Any) -> Image:
        self._array /= self._operand(other)
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Image):
            return NotImplemented
        return (
            type(self) is type(other)
            and self._xy0 == other._xy0
            and self.dtype == other.dtype
            and np.array_equal(self._array, other._array, equal_nan=self.dtype.kind == "f")
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bbox={self.bbox}, dtype={self.dtype})"
