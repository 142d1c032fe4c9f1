"""An exposure: a masked image and everything known about it (afw.image.Exposure style)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from astropy.wcs import WCS

from hpcpipe import formats
from hpcpipe.errors import FileFormatError
from hpcpipe.geom import Box2I
from hpcpipe.image.apcorr import ApCorrMap
from hpcpipe.image.calib import FilterLabel, PhotoCalib
from hpcpipe.image.detector import Detector
from hpcpipe.image.image import Image
from hpcpipe.image.mask import Mask
from hpcpipe.image.masked_image import MaskedImage
from hpcpipe.image.psf import Psf
from hpcpipe.image.visit_info import VisitInfo

__all__ = ["Exposure", "MetadataValue", "wcs_equal"]

#: The value types a metadata item may hold (they survive FITS and HDF5 unchanged).
MetadataValue = bool | int | float | str


class Exposure:
    """A :class:`MaskedImage` with its WCS, PSF, filter, calibration, detector and visit.

    Parameters
    ----------
    masked_image : MaskedImage, Box2I or tuple of int
        The pixels, or a bounding box / shape for a new, zeroed exposure.
    wcs : astropy.wcs.WCS, optional
        Maps *parent* pixel coordinates (``x``, ``y`` including ``xy0``; 0-based) to the sky.
    psf : Psf, optional
    filter : FilterLabel, optional
    photo_calib : PhotoCalib, optional
    detector : Detector, optional
    visit_info : VisitInfo, optional
    ap_corr_map : ApCorrMap, optional
        The aperture corrections measured on the exposure's stars.
    metadata : dict, optional
        Free key/value items (bool, int, float or str values), kept in order.
    """

    def __init__(
        self,
        masked_image: MaskedImage | Box2I | tuple[int, int],
        wcs: WCS | None = None,
        psf: Psf | None = None,
        filter: FilterLabel | None = None,
        photo_calib: PhotoCalib | None = None,
        detector: Detector | None = None,
        visit_info: VisitInfo | None = None,
        metadata: dict[str, MetadataValue] | None = None,
        ap_corr_map: ApCorrMap | None = None,
        dtype: Any = np.float32,
    ) -> None:
        if not isinstance(masked_image, MaskedImage):
            masked_image = MaskedImage(masked_image, dtype=dtype)
        self.masked_image = masked_image
        self.wcs = wcs
        self.psf = psf
        self.filter = filter
        self.photo_calib = photo_calib
        self.detector = detector
        self.visit_info = visit_info
        self.ap_corr_map = ap_corr_map
        self.metadata: dict[str, MetadataValue] = dict(metadata or {})

    # --- the planes -------------------------------------------------------------------------
    @property
    def image(self) -> Image:
        return self.masked_image.image

    @property
    def mask(self) -> Mask:
        return self.masked_image.mask

    @property
    def variance(self) -> Image:
        return self.masked_image.variance

    @property
    def bbox(self) -> Box2I:
        return self.masked_image.bbox

    @property
    def xy0(self) -> tuple[int, int]:
        return self.masked_image.xy0

    @property
    def width(self) -> int:
        return self.bbox.width

    @property
    def height(self) -> int:
        return self.bbox.height

    def info(self) -> dict[str, Any]:
        """Everything but the pixels, as keyword arguments of the constructor."""
        return {
            "wcs": self.wcs,
            "psf": self.psf,
            "filter": self.filter,
            "photo_calib": self.photo_calib,
            "detector": self.detector,
            "visit_info": self.visit_info,
            "ap_corr_map": self.ap_corr_map,
            "metadata": self.metadata,
        }

    def __getitem__(self, bbox: Box2I) -> Exposure:
        """A sub-exposure whose pixels are views of this one's; it shares the metadata."""
        return Exposure(self.masked_image[bbox], **self.info())

    def clone(self) -> Exposure:
        """A deep copy of the pixels (the metadata dictionary is copied too)."""
        info = self.info()
        info["metadata"] = dict(self.metadata)
        info["wcs"] = self.wcs.deepcopy() if self.wcs is not None else None
        return Exposure(self.masked_image.clone(), **info)

    # --- sky coordinates ---------------------------------------------------------------------
    def pixel_to_sky(self, x: Any, y: Any) -> Any:
        """Sky positions (``SkyCoord``) of parent pixel coordinates."""
        if self.wcs is None:
            raise ValueError("this exposure has no WCS")
        return self.wcs.pixel_to_world(x, y)

    def sky_to_pixel(self, coord: Any) -> tuple[np.ndarray, np.ndarray]:
        """Parent pixel coordinates of sky positions."""
        if self.wcs is None:
            raise ValueError("this exposure has no WCS")
        x, y = self.wcs.world_to_pixel(coord)
        return np.asarray(x), np.asarray(y)

    # --- files ---------------------------------------------------------------------------------
    def write(self, path: str | os.PathLike[str], *, format: str | None = None) -> None:
        """Write to a FITS (``.fits``) or HDF5 (``.h5``, ``.hdf5``) file, atomically.

        The format is chosen by the file name unless ``format`` (``"fits"``, ``"hdf5"`` or
        another registered in :mod:`hpcpipe.formats`) is given.

        Raises
        ------
        FileFormatError
            If the file name names no format (the message lists the known endings).
        """
        formats.write(self, path, format=format)

    @classmethod
    def read(cls, path: str | os.PathLike[str], bbox: Box2I | None = None, *,
             format: str | None = None) -> Exposure:
        """Read an exposure written by :meth:`write` (the format is chosen by the file name
        unless ``format`` is given); with ``bbox`` (parent pixels) only that box of its planes
        is read.

        Raises
        ------
        FileFormatError
            If the file is missing, of no known format, or not a readable exposure.
        """
        if not os.path.exists(path):
            raise FileFormatError(str(path), "no such file")
        return formats.read(cls, path, bbox, format=format)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Exposure):
            return NotImplemented
        return (
            self.masked_image == other.masked_image
            and wcs_equal(self.wcs, other.wcs)
            and self.psf == other.psf
            and self.filter == other.filter
            and self.photo_calib == other.photo_calib
            and self.detector == other.detector
            and self.visit_info == other.visit_info
            and self.ap_corr_map == other.ap_corr_map
            and self.metadata == other.metadata
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        band = self.filter.band if self.filter else None
        return f"Exposure(bbox={self.bbox}, filter={band!r}, wcs={'yes' if self.wcs else 'no'})"



def wcs_equal(a: WCS | None, b: WCS | None, rtol: float = 1e-12) -> bool:
    """Whether two WCSs (or two Nones) have the same cards, numbers compared to ``rtol``."""
    if a is None or b is None:
        return a is None and b is None
    ha, hb = a.to_header(relax=True), b.to_header(relax=True)
    if set(ha.keys()) != set(hb.keys()):
        return False
    for key in ha:
        x, y = ha[key], hb[key]
        if isinstance(x, float) or isinstance(y, float):
            if not math.isclose(float(x), float(y), rel_tol=rtol, abs_tol=1e-12):
                return False
        elif x != y:
            return False
    return True
