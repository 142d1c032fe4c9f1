"""An image with its mask and variance planes (afw.image.MaskedImage style)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.errors import PixelTypeError
from hpcpipe.geom import Box2I
from hpcpipe.image.image import Image
from hpcpipe.image.mask import Mask

__all__ = ["MaskedImage"]

_IMAGE_TYPES = (np.dtype(np.float32), np.dtype(np.float64))


class MaskedImage:
    """Three planes over one bounding box: the image, its mask and its variance.

    Parameters
    ----------
    image : Image, Box2I or tuple of int
        The science pixels (float32 or float64), or a bounding box / shape for a new zeroed
        masked image.
    mask : Mask, optional
        The mask (a new empty one by default).
    variance : Image, optional
        The per-pixel variance (float32; zeros by default).
    dtype : numpy dtype, optional
        The image pixel type of a new masked image (default float32).
    """

    def __init__(
        self,
        image: Image | Box2I | tuple[int, int],
        mask: Mask | None = None,
        variance: Image | None = None,
        dtype: Any = np.float32,
    ) -> None:
        if not isinstance(image, Image):
            bbox = image if isinstance(image, Box2I) else Box2I.from_shape(tuple(image))
            image = Image(bbox, dtype=dtype)
        if image.dtype not in _IMAGE_TYPES:
            raise PixelTypeError(
                f"a MaskedImage's image must be float32 or float64; got {image.dtype}"
            )
        bbox = image.bbox
        if mask is None:
            mask = Mask(bbox)
        if variance is None:
            variance = Image(bbox, dtype=np.float32)
        for name, plane in (("mask", mask), ("variance", variance)):
            if plane.bbox != bbox:
                raise ValueError(f"the {name} bbox {plane.bbox} differs from the image bbox {bbox}")
        if not isinstance(mask, Mask):
            raise TypeError(f"mask must be a Mask, not {type(mask).__name__}")
        if variance.dtype != np.float32:
            raise PixelTypeError(f"the variance plane must be float32; got {variance.dtype}")
        self.image = image
        self.mask = mask
        self.variance = variance

    @property
    def bbox(self) -> Box2I:
        return self.image.bbox

    @property
    def xy0(self) -> tuple[int, int]:
        return self.image.xy0

    @property
    def dtype(self) -> np.dtype:
        return self.image.dtype

    def set_xy0(self, xy0: tuple[int, int]) -> None:
        for plane in (self.image, self.mask, self.variance):
            plane.set_xy0(xy0)

    def __getitem__(self, bbox: Box2I) -> MaskedImage:
        return MaskedImage(self.image[bbox], self.mask[bbox], self.variance[bbox])  # type: ignore[arg-type]

    def clone(self) -> MaskedImage:
        """A deep copy of all three planes."""
        return MaskedImage(self.image.clone(), self.mask.clone(), self.variance.clone())

    def __iadd__(self, other: Any) -> MaskedImage:
        if isinstance(other, MaskedImage):
            self.image += other.image
            self.variance += other.variance
            self.mask |= other.mask
        else:
            self.image += other
        return self

    def __isub__(self, other: Any) -> MaskedImage:
        if isinstance(other, MaskedImage):
            self.image -= other.image
            self.variance += other.variance
            self.mask |= other.mask
        else:
            self.image -= other
        return self

    def __imul__(self, scale: float) -> MaskedImage:
        self.image *= scale
        self.variance *= np.float32(scale) ** 2
        return self

    def __itruediv__(self, scale: float) -> MaskedImage:
        self.image /= scale
        self.variance /= np.float32(scale) ** 2
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskedImage):
            return NotImplemented
        return (
            self.image == other.image
            and self.mask == other.mask
            and self.variance == other.variance
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MaskedImage(bbox={self.bbox}, dtype={self.dtype})"
