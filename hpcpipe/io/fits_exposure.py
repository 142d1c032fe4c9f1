"""Exposures as multi-extension FITS files (the layout afw uses, plus an information table).

Layout:

* primary HDU: no pixels; readable cards for people and other tools (FILTER, EXPTIME,
  DATE-AVG, AIRMASS, DETNAME, ZEROPT...).
* ``IMAGE``, ``MASK``, ``VARIANCE`` image HDUs, each with the sky WCS (shifted to the array's
  own pixels), the origin as IRAF ``LTV1/LTV2`` and afw's ``CRVAL1A/CRVAL2A`` cards; the mask
  carries its planes as ``MP_<NAME> = bit`` cards whose comments are the planes' meanings.
* ``PSF`` (if any): the PSF's scalars as cards and its array (if any) as data.
* ``HPCINFO``: a table of (name, JSON) rows with the filter, calibration, detector, visit and
  free metadata, the authoritative copy from which a reader rebuilds them exactly.

Every HDU carries a checksum, and reading verifies it: a corrupt or truncated file is
refused with a :class:`~hpcpipe.errors.FileFormatError` that names it.

``read_fits_exposure(path, bbox=box)`` reads only a box of the three planes (astropy's lazy
``ImageHDU.section``: the rows of the box are read from the file, nothing else), as LSST's
``<datasetType>_sub`` datasets do; the data checksums are then not verified (that would read
every pixel), the headers and the information table are read as for a whole exposure. The
first box read of a file remembers where its planes are (keyed by the file's path, inode,
size and modification time): later boxes of it are one seek and one read of their rows per
plane, without parsing the headers again; the WCS and PSF objects of those exposures are
shared (treat them as read-only).
"""

from __future__ import annotations

import json
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

import hpcpipe
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
    FITS_SUFFIXES,
    BoxOutsideError,
    box_slices,
    decode_metadata,
    encode_metadata,
    info_from_json,
    info_to_json,
    wcs_from_header,
    wcs_to_header,
)

__all__ = ["write_fits_exposure", "read_fits_exposure"]

_PLANES = ("IMAGE", "MASK", "VARIANCE")


def _plane_hdu(name: str, image: Image, exposure: Exposure) -> fits.ImageHDU:
    header = fits.Header()
    if exposure.wcs is not None:
        header.update(wcs_to_header(exposure.wcs, image.xy0))
    x0, y0 = image.xy0
    header["LTV1"] = (-x0, "array x = parent x + LTV1")
    header["LTV2"] = (-y0, "array y = parent y + LTV2")
    header["WCSNAMEA"] = "PARENT"
    header["CTYPE1A"], header["CTYPE2A"] = "LINEAR", "LINEAR"
    header["CRPIX1A"], header["CRPIX2A"] = 1.0, 1.0
    header["CRVAL1A"], header["CRVAL2A"] = float(x0), float(y0)
    if isinstance(image, Mask):
        for key, (bit, doc) in image.header_cards().items():
            header[key if len(key) <= 8 else f"HIERARCH {key}"] = (bit, doc[:40])
    return fits.ImageHDU(image.array, header=header, name=name)


def _readable_cards(exposure: Exposure) -> list[tuple[str, Any, str]]:
    cards: list[tuple[str, Any, str]] = [("HPCPIPE", hpcpipe.__version__, "hpcpipe version")]
    if exposure.filter is not None:
        cards.append(("FILTER", exposure.filter.band, "band"))
    if exposure.photo_calib is not None:
        cards.append(("ZEROPT", exposure.photo_calib.zero_point, "AB mag of 1 count"))
    if exposure.detector is not None:
        cards.append(("DETNAME", exposure.detector.name, "detector"))
        cards.append(("DETID", exposure.detector.id, "detector number"))
    vi = exposure.visit_info
    if vi is not None:
        cards.append(("EXPID", vi.exposure_id, "visit"))
        if vi.date is not None:
            cards.append(("DATE-AVG", vi.date.tai.isot, "middle of exposure (TAI)"))
            cards.append(("TIMESYS", "TAI", ""))
        for key, value, comment in (("EXPTIME", vi.exposure_time, "s"),
                                    ("AIRMASS", vi.airmass, "")):
            if np.isfinite(value):
                cards.append((key, value, comment))
    return cards


def write_fits_exposure(exposure: Exposure, path: str | os.PathLike[str]) -> None:
    """Write ``exposure`` to ``path`` as multi-extension FITS, atomically."""
    primary = fits.PrimaryHDU()
    for key, value, comment in _readable_cards(exposure):
        primary.header[key] = (value, comment)
    hdus: list[Any] = [primary]
    mi = exposure.masked_image
    for name, plane in zip(_PLANES, (mi.image, mi.mask, mi.variance)):
        hdus.append(_plane_hdu(name, plane, exposure))
    if exposure.psf is not None:
        scalars, array = exposure.psf.to_persisted()
        psf_hdu = fits.ImageHDU(array, name="PSF")
        for key, value in scalars.items():
            psf_hdu.header[key] = value
        hdus.append(psf_hdu)
    info = info_to_json(exposure)
    info["metadata"] = encode_metadata(exposure.metadata)
    info["mask_planes"] = json.dumps(mi.mask.planes.items())
    names = np.array(list(info), dtype="U32")
    texts = np.array(list(info.values()))
    hdus.append(fits.BinTableHDU.from_columns(
        [fits.Column(name="NAME", format=f"{max(1, names.dtype.itemsize // 4)}A", array=names),
         fits.Column(name="JSON", format=f"{max(1, texts.dtype.itemsize // 4)}A", array=texts)],
        name="HPCINFO",
    ))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp, checksum=True)


def read_fits_exposure(path: str | os.PathLike[str], bbox: Box2I | None = None) -> Exposure:
    """Read an exposure written by :func:`write_fits_exposure`, or a box of it.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    bbox : Box2I, optional
        Read only these pixels (parent coordinates, inside the exposure's box): the planes
        of the result cover ``bbox``; the WCS, PSF and the rest are the whole exposure's.

    Raises
    ------
    FileFormatError
        If the file is missing, not FITS, truncated, fails its checksum, or lacks an HDU.
    PixelTypeError
        If a plane has a pixel type that plane cannot hold.
    BoxOutsideError
        A ValueError: ``bbox`` is empty or not inside the exposure.
    """
    path = str(path)
    if bbox is not None and not isinstance(bbox, Box2I):
        raise TypeError(f"{path}: bbox must be a Box2I, not {type(bbox).__name__}")
    if bbox is not None:
        try:
            layout = _LAYOUTS.get(_file_key(path))
        except OSError as exc:
            raise FileFormatError(path, f"cannot read ({exc})") from exc
        if layout is not None:
            return _read_known_box(path, layout, bbox)
    try:
        with warnings.catch_warnings():
            # astropy only warns about truncated files and bad checksums: make them errors
            warnings.simplefilter("error", AstropyUserWarning)
            with fits.open(path, memmap=False, checksum=bbox is None,
                           lazy_load_hdus=False) as hdul:
                names = [hdu.name for hdu in hdul]
                missing = [n for n in (*_PLANES, "HPCINFO") if n not in names]
                if missing:
                    raise FileFormatError(
                        path, f"not an hpcpipe exposure: no {', '.join(missing)} HDU "
                        f"(HDUs: {', '.join(names)})")
                headers = {n: hdul[n].header.copy() for n in _PLANES}
                locations = {n: int(hdul.fileinfo(names.index(n))["datLoc"]) for n in _PLANES}
                if bbox is None:
                    # (memmap=False: .data is an array of its own, read from the file; the
                    # byte-order conversion below is the one copy)
                    arrays = {n: np.asarray(hdul[n].data) for n in _PLANES}
                else:
                    hdr = headers["IMAGE"]
                    origin = (-int(hdr.get("LTV1", 0)), -int(hdr.get("LTV2", 0)))
                    sl = box_slices(path, bbox, origin, hdul["IMAGE"].shape)
                    arrays = {n: np.array(hdul[n].section[sl]) for n in _PLANES}
                psf_scalars, psf_array = None, None
                if "PSF" in names:
                    hdr = hdul["PSF"].header
                    psf_scalars = {k: hdr[k] for k in hdr if k not in _STRUCTURAL}
                    data = hdul["PSF"].data
                    psf_array = None if data is None else np.array(data)
                table = hdul["HPCINFO"].data
                info = {str(n).strip(): str(t) for n, t in zip(table["NAME"], table["JSON"])}
    except (FileFormatError, BoxOutsideError):
        raise
    except (OSError, ValueError, TypeError, IndexError, KeyError, AstropyUserWarning) as exc:
        raise FileFormatError(path, f"cannot read as FITS ({exc})") from exc

    header = headers["IMAGE"]
    xy0 = (-int(header.get("LTV1", 0)), -int(header.get("LTV2", 0)))
    wcs_xy0 = xy0
    if bbox is not None:
        xy0 = bbox.xy0
    for name, allowed in (("IMAGE", (np.float32, np.float64)), ("MASK", (MASK_DTYPE,)),
                          ("VARIANCE", (np.float32,))):
        dtype = arrays[name].dtype.newbyteorder("=")
        if dtype not in [np.dtype(a) for a in allowed]:
            raise PixelTypeError(
                f"{path}: the {name} HDU has pixel type {arrays[name].dtype}; "
                f"expected {' or '.join(str(np.dtype(a)) for a in allowed)}")
        arrays[name] = arrays[name].astype(dtype, copy=False)
    if "mask_planes" in info:  # the full dictionary, with the planes' whole descriptions
        planes = MaskPlaneDict({k: tuple(v) for k, v in json.loads(info["mask_planes"]).items()})
    else:  # a file written by another tool: the MP_ cards alone
        planes = Mask.planes_from_cards(
            {k: v for k, v in headers["MASK"].items() if k.startswith("MP_")},
            {k: headers["MASK"].comments[k] for k in headers["MASK"] if k.startswith("MP_")},
        )
    masked_image = MaskedImage(
        Image(arrays["IMAGE"], xy0=xy0),
        Mask(arrays["MASK"], xy0=xy0, planes=planes),
        Image(arrays["VARIANCE"], xy0=xy0),
    )
    try:
        kwargs = info_from_json(info)
        metadata = decode_metadata(info.get("metadata", "[]"))
        psf = psf_from_persisted(psf_scalars, psf_array) if psf_scalars is not None else None
        wcs = wcs_from_header(header, wcs_xy0)
    except (ValueError, KeyError, TypeError) as exc:
        raise FileFormatError(path, f"corrupt exposure information ({exc})") from exc
    if bbox is not None and not any("BZERO" in h or "BSCALE" in h for h in headers.values()):
        shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        dtypes = {n: np.dtype(a.dtype).newbyteorder(">") for n, a in arrays.items()}
        _remember(path, _Layout(wcs_xy0, shape, locations, dtypes, planes, wcs, psf, metadata,
                                kwargs))
    return Exposure(masked_image, wcs=wcs, psf=psf, metadata=metadata, **kwargs)


@dataclass
class _Layout:
    """Where a file's planes are and what they are, for box reads without parsing it."""

    xy0: tuple[int, int]
    shape: tuple[int, int]
    locations: dict[str, int]
    dtypes: dict[str, np.dtype]
    planes: MaskPlaneDict
    wcs: Any
    psf: Any
    metadata: dict[str, Any]
    kwargs: dict[str, Any]


#: Layouts of the files read by box lately, by (path, inode, size, mtime): a deep coadd reads
#: a box of each of hundreds of warps per sub-region; their headers are parsed once.
_LAYOUTS: OrderedDict[tuple[str, int, int, int], _Layout] = OrderedDict()
_MAX_LAYOUTS = 2048


def _file_key(path: str) -> tuple[str, int, int, int]:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns)


def _remember(path: str, layout: _Layout) -> None:
    _LAYOUTS[_file_key(path)] = layout
    while len(_LAYOUTS) > _MAX_LAYOUTS:
        _LAYOUTS.popitem(last=False)


def _read_known_box(path: str, layout: _Layout, bbox: Box2I) -> Exposure:
    """A box of a file whose layout is known: the rows of the box, one read per plane."""
    rows, cols = box_slices(path, bbox, layout.xy0, layout.shape)
    width = layout.shape[1]
    arrays = {}
    with open(path, "rb") as handle:
        for name in _PLANES:
            dtype = layout.dtypes[name]
            handle.seek(layout.locations[name] + rows.start * width * dtype.itemsize)
            count = (rows.stop - rows.start) * width
            block = np.fromfile(handle, dtype=dtype, count=count)
            if block.size != count:
                raise FileFormatError(path, f"truncated: the {name} HDU ends early")
            block = block.reshape(rows.stop - rows.start, width)[:, cols]
            arrays[name] = block.astype(dtype.newbyteorder("="))
    xy0 = bbox.xy0
    masked_image = MaskedImage(
        Image(arrays["IMAGE"], xy0=xy0),
        Mask(arrays["MASK"], xy0=xy0, planes=layout.planes),
        Image(arrays["VARIANCE"], xy0=xy0),
    )
    return Exposure(masked_image, wcs=layout.wcs, psf=layout.psf,
                    metadata=dict(layout.metadata), **layout.kwargs)


_STRUCTURAL = {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "PCOUNT", "GCOUNT",
               "EXTNAME", "CHECKSUM", "DATASUM", "EXTEND", "SIMPLE"}


# --- registration: Exposure.read/write find this format through hpcpipe.formats ------------
formats.register_reader("fits", Exposure, read_fits_exposure)
formats.register_writer("fits", Exposure, write_fits_exposure)
formats.register_identifier("fits", Exposure, formats.suffix_identifier(*FITS_SUFFIXES))
