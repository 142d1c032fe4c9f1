"""Reading and writing exposures: the format is chosen by the file name.

:func:`read_exposure` and :func:`write_exposure` are ``Exposure.read`` and ``Exposure.write``,
which find the format's reader or writer in :mod:`hpcpipe.formats`; this module holds what the
FITS and HDF5 formats share (WCS cards, the structured information as JSON, boxes).

Both formats keep everything: the three planes, the origin, the mask plane dictionary, the WCS,
the PSF, the filter, the calibration, the detector, the visit and the free metadata. Both can
read a box of the planes alone (``read_exposure(path, bbox)``): FITS sections, HDF5
hyperslabs.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from hpcpipe.geom import Box2I
from hpcpipe.image.apcorr import ApCorrMap
from hpcpipe.image.calib import FilterLabel, PhotoCalib
from hpcpipe.image.detector import Detector
from hpcpipe.image.exposure import Exposure, wcs_equal
from hpcpipe.image.visit_info import VisitInfo

__all__ = [
    "BoxOutsideError",
    "box_slices",
    "read_exposure",
    "write_exposure",
    "wcs_equal",
    "wcs_to_header",
    "wcs_from_header",
    "info_to_json",
    "info_from_json",
    "encode_metadata",
    "decode_metadata",
]

#: File name endings of the FITS and HDF5 exposure formats (their identifiers use them).
FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fits.fz")
HDF5_SUFFIXES = (".h5", ".hdf5", ".he5")


class BoxOutsideError(ValueError):
    """A box asked of an exposure file is empty or not inside the exposure."""


def box_slices(where: str, bbox: Box2I, xy0: tuple[int, int], shape: tuple[int, ...]
               ) -> tuple[slice, slice]:
    """The array slices of ``bbox`` (parent pixels) in an array of ``shape`` at ``xy0``.

    Raises
    ------
    BoxOutsideError
        A ValueError: ``bbox`` is empty or not inside the array's box (the message names
        ``where``).
    """
    if not isinstance(bbox, Box2I):
        raise TypeError(f"{where}: bbox must be a Box2I, not {type(bbox).__name__}")
    full = Box2I.from_shape((int(shape[0]), int(shape[1])), xy0)
    if bbox.is_empty() or not full.contains(bbox):
        raise BoxOutsideError(f"{where}: the box {bbox} is not inside the exposure's box {full}")
    return bbox.slices(xy0)


def write_exposure(exposure: Exposure, path: str | os.PathLike[str],
                   format: str | None = None) -> None:
    """Write ``exposure`` to ``path`` atomically, as FITS or HDF5 by the file name (or
    ``format``); the same as ``exposure.write(path)``."""
    exposure.write(path, format=format)


def read_exposure(path: str | os.PathLike[str], bbox: Box2I | None = None,
                  format: str | None = None) -> Exposure:
    """Read an exposure from a FITS or HDF5 file written by :func:`write_exposure` (only the
    box ``bbox`` of its planes, in parent pixels, if given); the same as
    ``Exposure.read(path, bbox)``."""
    return Exposure.read(path, bbox, format=format)


# --- WCS ----------------------------------------------------------------------------------------
def wcs_to_header(wcs: WCS, xy0: tuple[int, int] = (0, 0)) -> fits.Header:
    """The FITS cards of ``wcs`` for an array whose first pixel is parent pixel ``xy0``.

    hpcpipe WCSs map parent coordinates; in a file the WCS is shifted to the array's own
    pixels, so that other tools (ds9, astropy) place the image correctly.
    """
    header = wcs.to_header(relax=True)
    if xy0 != (0, 0):
        header["CRPIX1"] = header["CRPIX1"] - xy0[0]
        header["CRPIX2"] = header["CRPIX2"] - xy0[1]
    return header


def wcs_from_header(header: fits.Header, xy0: tuple[int, int] = (0, 0)) -> WCS | None:
    """The parent-coordinate WCS written by :func:`wcs_to_header`, or None if there is none."""
    if "CTYPE1" not in header or "CRPIX1" not in header:
        return None
    shifted = fits.Header(header, copy=True)
    shifted["CRPIX1"] = shifted["CRPIX1"] + xy0[0]
    shifted["CRPIX2"] = shifted["CRPIX2"] + xy0[1]
    for key in ("NAXIS", "NAXIS1", "NAXIS2"):  # the WCS describes the sky, not the array size
        shifted.remove(key, ignore_missing=True)
    return WCS(shifted, relax=True, fix=False)


# --- the structured information as JSON (HDF5 attributes and FITS tables share it) -----------
def info_to_json(exposure: Any) -> dict[str, str]:
    """Filter, calibration, detector, visit and aperture corrections as JSON strings (absent
    items omitted)."""
    out: dict[str, str] = {}
    if exposure.filter is not None:
        out["filter"] = json.dumps({"band": exposure.filter.band,
                                    "physical": exposure.filter.physical})
    if exposure.photo_calib is not None:
        out["photo_calib"] = json.dumps({"zero_point": exposure.photo_calib.zero_point,
                                         "zero_point_err": exposure.photo_calib.zero_point_err})
    if exposure.detector is not None:
        out["detector"] = json.dumps(exposure.detector.to_dict())
    if exposure.visit_info is not None:
        out["visit_info"] = json.dumps(exposure.visit_info.to_dict())
    if getattr(exposure, "ap_corr_map", None) is not None:
        out["ap_corr_map"] = json.dumps(exposure.ap_corr_map.to_dict())
    return out


def info_from_json(items: dict[str, str]) -> dict[str, Any]:
    """The constructor keywords from what :func:`info_to_json` gave."""
    out: dict[str, Any] = {}
    if "filter" in items:
        out["filter"] = FilterLabel(**json.loads(items["filter"]))
    if "photo_calib" in items:
        out["photo_calib"] = PhotoCalib(**json.loads(items["photo_calib"]))
    if "detector" in items:
        out["detector"] = Detector.from_dict(json.loads(items["detector"]))
    if "visit_info" in items:
        out["visit_info"] = VisitInfo.from_dict(json.loads(items["visit_info"]))
    if "ap_corr_map" in items:
        out["ap_corr_map"] = ApCorrMap.from_dict(json.loads(items["ap_corr_map"]))
    return out


def encode_metadata(metadata: dict[str, Any]) -> str:
    """The free metadata as JSON that keeps each value's type (bool, int, float, str)."""
    items = []
    for key, value in metadata.items():
        if isinstance(value, (bool, np.bool_)):
            items.append([key, "bool", bool(value)])
        elif isinstance(value, (int, np.integer)):
            items.append([key, "int", int(value)])
        elif isinstance(value, (float, np.floating)):
            items.append([key, "float", repr(float(value))])
        elif isinstance(value, str):
            items.append([key, "str", value])
        else:
            raise TypeError(
                f"metadata item {key!r} has a value of type {type(value).__name__}; "
                "only bool, int, float and str are stored"
            )
    return json.dumps(items)


def decode_metadata(text: str) -> dict[str, Any]:
    """The reverse of :func:`encode_metadata`."""
    out: dict[str, Any] = {}
    for key, kind, value in json.loads(text):
        out[key] = {"bool": bool, "int": int, "float": float, "str": str}[kind](value)
    return out
