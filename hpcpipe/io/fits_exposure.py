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
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

import hpcpipe
from hpcpipe.errors import FileFormatError, PixelTypeError
from hpcpipe.image.exposure import Exposure
from hpcpipe.image.image import Image
from hpcpipe.image.mask import MASK_DTYPE, Mask, MaskPlaneDict
from hpcpipe.image.masked_image import MaskedImage
from hpcpipe.image.psf import psf_from_persisted
from hpcpipe.io.atomic import atomic_path
from hpcpipe.io.exposure_io import (
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


def read_fits_exposure(path: str | os.PathLike[str]) -> Exposure:
    """Read an exposure written by :func:`write_fits_exposure`.

    Raises
    ------
    FileFormatError
        If the file is missing, not FITS, truncated, fails its checksum, or lacks an HDU.
    PixelTypeError
        If a plane has a pixel type that plane cannot hold.
    """
    path = str(path)
    try:
        with warnings.catch_warnings():
            # astropy only warns about truncated files and bad checksums: make them errors
            warnings.simplefilter("error", AstropyUserWarning)
            with fits.open(path, memmap=False, checksum=True, lazy_load_hdus=False) as hdul:
                names = [hdu.name for hdu in hdul]
                missing = [n for n in (*_PLANES, "HPCINFO") if n not in names]
                if missing:
                    raise FileFormatError(
                        path, f"not an hpcpipe exposure: no {', '.join(missing)} HDU "
                        f"(HDUs: {', '.join(names)})")
                arrays = {n: np.array(hdul[n].data) for n in _PLANES}
                headers = {n: hdul[n].header.copy() for n in _PLANES}
                psf_scalars, psf_array = None, None
                if "PSF" in names:
                    hdr = hdul["PSF"].header
                    psf_scalars = {k: hdr[k] for k in hdr if k not in _STRUCTURAL}
                    data = hdul["PSF"].data
                    psf_array = None if data is None else np.array(data)
                table = hdul["HPCINFO"].data
                info = {str(n).strip(): str(t) for n, t in zip(table["NAME"], table["JSON"])}
    except FileFormatError:
        raise
    except (OSError, ValueError, TypeError, IndexError, KeyError, AstropyUserWarning) as exc:
        raise FileFormatError(path, f"cannot read as FITS ({exc})") from exc

    header = headers["IMAGE"]
    xy0 = (-int(header.get("LTV1", 0)), -int(header.get("LTV2", 0)))
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
        wcs = wcs_from_header(header, xy0)
    except (ValueError, KeyError, TypeError) as exc:
        raise FileFormatError(path, f"corrupt exposure information ({exc})") from exc
    return Exposure(masked_image, wcs=wcs, psf=psf, metadata=metadata, **kwargs)


_STRUCTURAL = {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "PCOUNT", "GCOUNT",
               "EXTNAME", "CHECKSUM", "DATASUM", "EXTEND", "SIMPLE"}
