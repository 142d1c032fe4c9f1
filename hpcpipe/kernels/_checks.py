"""Input checks shared by the kernel wrappers (clear errors instead of crashes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from hpcpipe.errors import PixelTypeError

__all__ = ["float_image", "flag_image", "mask_image", "same_shape", "FLOAT_TYPES"]

#: The pixel types the kernels compute on.
FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_image(array: object, name: str, func: str, *, dtype: npt.DTypeLike | None = None,
                allow_empty: bool = False, ndim: int = 2) -> np.ndarray:
    """A C-contiguous float array, or a clear error.

    Parameters
    ----------
    array : array_like
        The pixels.
    name, func : str
        The argument's and the kernel's names, for the messages.
    dtype : numpy.dtype, optional
        Convert float32/float64 pixels to this type (a copy when it differs).
    allow_empty : bool
        Accept an array with no pixels.
    ndim : int
        The number of dimensions required.

    Raises
    ------
    PixelTypeError
        Pixels that are not float32 or float64.
    ValueError
        A wrong number of dimensions, or an empty array when not allowed.
    """
    arr = np.asarray(array)
    if arr.dtype not in FLOAT_TYPES:
        raise PixelTypeError(f"{func}: {name} needs float32 or float64 pixels; got {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{func}: {name} must be {ndim}-D; got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{func}: {name} must be non-empty; got shape {arr.shape}")
    if dtype is not None:
        return np.ascontiguousarray(arr, dtype=dtype)
    return np.ascontiguousarray(arr)


def flag_image(array: object | None, shape: Sequence[int], name: str, func: str) -> np.ndarray:
    """A uint8 array of ``shape`` (non-zero = flagged); all zero when ``array`` is None."""
    if array is None:
        return np.zeros(tuple(shape), dtype=np.uint8)
    arr = np.asarray(array)
    if arr.shape != tuple(shape):
        raise ValueError(f"{func}: {name}'s shape {arr.shape} differs from {tuple(shape)}")
    if arr.dtype.kind not in "biuf":
        raise PixelTypeError(f"{func}: {name} must be boolean or integer; got {arr.dtype}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return np.ascontiguousarray(arr != 0, dtype=np.uint8)


def mask_image(array: object | None, shape: Sequence[int], name: str, func: str) -> np.ndarray:
    """An int32 mask of ``shape`` (zeros when ``array`` is None)."""
    if array is None:
        return np.zeros(tuple(shape), dtype=np.int32)
    arr = np.asarray(array)
    if arr.shape != tuple(shape):
        raise ValueError(f"{func}: {name}'s shape {arr.shape} differs from {tuple(shape)}")
    if arr.dtype.kind not in "iu":
        raise PixelTypeError(f"{func}: {name} must be an integer mask; got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int32)


def same_shape(func: str, **arrays: np.ndarray) -> None:
    """Raise ValueError unless all the named arrays have one shape."""
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        detail = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"{func}: the arrays' shapes differ: {detail}")
