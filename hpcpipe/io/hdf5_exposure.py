"""Exposures in HDF5: one group holding the three planes and the information as attributes.

Layout of an exposure group (the file's root group for a file of its own):

* attributes ``hpcpipe_type = "Exposure"``, ``hpcpipe_layout_version``, ``xy0``, ``wcs`` (the
  FITS cards of the parent-coordinate WCS, as text), ``mask_planes``, ``metadata``,
  ``filter``, ``photo_calib``, ``detector``, ``visit_info``, ``ap_corr_map`` (JSON text);
* datasets ``image``, ``mask``, ``variance`` (chunked, compressed when asked);
* a ``psf`` subgroup: the PSF's scalars as attributes and its array, if any, as ``data``.

The file can be read with plain h5py (no MPI needed) and by :func:`read_hdf5_exposure`;
``read_hdf5_exposure(path, bbox=box)`` reads only a box of the planes (HDF5 hyperslabs).
"""

from __future__ import annotations

import json
import os
from typing import Any

import h5py
import numpy as np
from astropy.io import fits

from hpcpipe import formats
from hpcpipe.errors import FileFormatError, PixelTypeError
from hpcpipe.geom import Box2I
from hpcpipe.image.exposure import Exposure
from hpcpipe.image.image import Image
from hpcpipe.image.mask import MASK_DTYPE, Mask, MaskPlaneDict
from hpcpipe.image.masked_image import MaskedImage
from hpcpipe.image.psf import psf_from_persisted
from hpcpipe.io.atomic import atomic_path
from hpcpipe.io.exposure_io import (
    HDF5_SUFFIXES,
    BoxOutsideError,
    box_slices,
    decode_metadata,
    encode_metadata,
    info_from_json,
    info_to_json,
    wcs_from_header,
    wcs_to_header,
)

__all__ = ["write_hdf5_exposure", "read_hdf5_exposure", "write_exposure_group",
           "read_exposure_group", "exposure_attributes", "exposure_planes", "psf_attributes",
           "LAYOUT_VERSION"]

#: Version of the exposure group layout; readers refuse versions they do not know.
LAYOUT_VERSION = 1


def exposure_attributes(exposure: Exposure) -> dict[str, Any]:
    """The attributes of an exposure group (everything but the pixels and the PSF)."""
    mi = exposure.masked_image
    attrs: dict[str, Any] = {
        "hpcpipe_type": "Exposure",
        "hpcpipe_layout_version": LAYOUT_VERSION,
        "xy0": np.array(mi.xy0, dtype=np.int64),
        "mask_planes": json.dumps(mi.mask.planes.items()),
        "metadata": encode_metadata(exposure.metadata),
    }
    if exposure.wcs is not None:
        attrs["wcs"] = wcs_to_header(exposure.wcs).tostring(sep="\n")
    attrs.update(info_to_json(exposure))
    return attrs


def exposure_planes(exposure: Exposure) -> dict[str, np.ndarray]:
    """The arrays of an exposure group: ``image``, ``mask``, ``variance`` and ``psf/data``."""
    mi = exposure.masked_image
    planes = {"image": mi.image.array, "mask": mi.mask.array, "variance": mi.variance.array}
    if exposure.psf is not None:
        _scalars, array = exposure.psf.to_persisted()
        if array is not None:
            planes["psf/data"] = array
    return planes


def psf_attributes(exposure: Exposure) -> dict[str, Any]:
    """The attributes of an exposure group's ``psf`` subgroup (empty without a PSF)."""
    if exposure.psf is None:
        return {}
    scalars, _array = exposure.psf.to_persisted()
    return dict(scalars)


def write_exposure_group(exposure: Exposure, group: h5py.Group, compression: str | None = None
                         ) -> None:
    """Write ``exposure`` into an open, empty HDF5 group."""
    for name, array in exposure_planes(exposure).items():
        group.create_dataset(name, data=array, compression=compression,
                             chunks=True if compression else None)
    for key, value in exposure_attributes(exposure).items():
        group.attrs[key] = value
    if exposure.psf is not None:
        psf_group = group.require_group("psf")
        for key, value in psf_attributes(exposure).items():
            psf_group.attrs[key] = value


def write_hdf5_exposure(exposure: Exposure, path: str | os.PathLike[str],
                        compression: str | None = None) -> None:
    """Write ``exposure`` to an HDF5 file of its own, atomically."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            write_exposure_group(exposure, handle, compression)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_exposure_group(group: h5py.Group, where: str = "", bbox: Box2I | None = None
                        ) -> Exposure:
    """Read an exposure from an HDF5 group written by :func:`write_exposure_group`.

    ``where`` names the file (and group) in error messages; ``bbox`` (parent pixels) reads
    only that box of the planes (a hyperslab of each dataset; BoxOutsideError, a
    ValueError, if it is not inside the exposure).
    """
    where = where or f"{group.file.filename}:{group.name}"
    if bbox is not None and not isinstance(bbox, Box2I):
        raise TypeError(f"{where}: bbox must be a Box2I, not {type(bbox).__name__}")
    attrs = group.attrs
    if _text(attrs.get("hpcpipe_type", "")) != "Exposure":
        raise FileFormatError(where, "not an hpcpipe exposure (no hpcpipe_type='Exposure')")
    version = int(attrs.get("hpcpipe_layout_version", -1))
    if version != LAYOUT_VERSION:
        raise FileFormatError(
            where, f"exposure layout version {version} is not known (this hpcpipe reads "
            f"version {LAYOUT_VERSION})")
    try:
        xy0 = (int(attrs["xy0"][0]), int(attrs["xy0"][1]))
        if bbox is None:
            arrays = {name: group[name][()] for name in ("image", "mask", "variance")}
        else:
            sl = box_slices(where, bbox, xy0, group["image"].shape)
            arrays = {name: group[name][sl] for name in ("image", "mask", "variance")}
            xy0 = bbox.xy0
        planes = MaskPlaneDict({k: tuple(v) for k, v in
                                json.loads(_text(attrs["mask_planes"])).items()})
        metadata = decode_metadata(_text(attrs["metadata"]))
        info = {k: _text(attrs[k]) for k in ("filter", "photo_calib", "detector", "visit_info",
                                             "ap_corr_map") if k in attrs}
        kwargs = info_from_json(info)
        wcs = None
        if "wcs" in attrs:
            wcs = wcs_from_header(fits.Header.fromstring(_text(attrs["wcs"]), sep="\n"))
        psf = None
        if "psf" in group:
            psf_group = group["psf"]
            scalars = {k: (_text(v) if isinstance(v, (bytes, str)) else v.item()
                           if isinstance(v, np.generic) else v)
                       for k, v in psf_group.attrs.items()}
            array = psf_group["data"][()] if "data" in psf_group else None
            psf = psf_from_persisted(scalars, array)
    except BoxOutsideError:
        raise
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise FileFormatError(where, f"corrupt exposure ({exc})") from exc
    for name, allowed in (("image", (np.float32, np.float64)), ("mask", (MASK_DTYPE,)),
                          ("variance", (np.float32,))):
        if arrays[name].dtype not in [np.dtype(a) for a in allowed]:
            raise PixelTypeError(
                f"{where}: the {name} dataset has pixel type {arrays[name].dtype}; "
                f"expected {' or '.join(str(np.dtype(a)) for a in allowed)}")
    masked_image = MaskedImage(
        Image(arrays["image"], xy0=xy0),
        Mask(arrays["mask"], xy0=xy0, planes=planes),
        Image(arrays["variance"], xy0=xy0),
    )
    return Exposure(masked_image, wcs=wcs, psf=psf, metadata=metadata, **kwargs)


def read_hdf5_exposure(path: str | os.PathLike[str], bbox: Box2I | None = None) -> Exposure:
    """Read an exposure from an HDF5 file written by :func:`write_hdf5_exposure`, or only
    the box ``bbox`` (parent pixels) of its planes."""
    path = str(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(path, f"cannot open as HDF5 ({exc})") from exc
    with handle:
        return read_exposure_group(handle, where=path, bbox=bbox)


# --- registration: Exposure.read/write find this format through hpcpipe.formats ------------
formats.register_reader("hdf5", Exposure, read_hdf5_exposure)
formats.register_writer("hdf5", Exposure, write_hdf5_exposure)
formats.register_identifier("hdf5", Exposure, formats.suffix_identifier(*HDF5_SUFFIXES))
