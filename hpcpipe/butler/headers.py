"""Reading the header of a raw or calibration file for ingest, without reading its pixels.

For a FITS file the header is the primary HDU's cards. hpcpipe exposures (written by
:meth:`hpcpipe.image.Exposure.write`) also keep their free metadata and their visit
information in an ``HPCINFO`` table; those count as header cards too, so that a simulator can
set ``exposure.metadata["VISIT"] = 12`` and ingest finds it. Cards of the primary HDU win over
metadata items of the same name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hpcpipe.errors import FileFormatError

__all__ = ["read_fits_header", "HeaderKeyword"]

_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "CHECKSUM", "DATASUM",
               "COMMENT", "HISTORY", ""}


class HeaderKeyword:
    """A header keyword that a mapper reads at ingest (for its documentation and its code).

    Parameters
    ----------
    keyword : str
        The FITS keyword.
    key : str
        The data id key (or ingest field) it gives.
    doc : str
        Its meaning and format.
    fallbacks : tuple of str
        Keywords used, in order, when ``keyword`` is absent.
    required : bool
        Whether a file without it (or a fallback) is rejected.
    """

    def __init__(self, keyword: str, key: str, doc: str, fallbacks: tuple[str, ...] = (),
                 required: bool = True) -> None:
        self.keyword = keyword
        self.key = key
        self.doc = doc
        self.fallbacks = tuple(fallbacks)
        self.required = required

    def find(self, header: dict[str, Any]) -> tuple[str, Any] | None:
        """The (keyword, value) found in ``header``, trying the fallbacks in order."""
        for name in (self.keyword, *self.fallbacks):
            value = header.get(name)
            if value is not None and value != "":
                return name, value
        return None


def read_fits_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The primary header of a FITS file, with an hpcpipe exposure's metadata added.

    Returns
    -------
    dict
        Keyword to value. For hpcpipe exposures, the free metadata items and ``OBSTYPE``
        (from the visit information's observation type) are added where the primary header
        lacks them.

    Raises
    ------
    FileFormatError
        If the file is missing or not FITS.
    """
    from astropy.io import fits  # start-up cost: astropy.io.fits; the butler imports no astropy

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(str(path), "no such file")
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            header = {k: v for k, v in hdul[0].header.items() if k not in _STRUCTURAL}
            extra = _hpcinfo(hdul)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise FileFormatError(str(path), f"cannot read a FITS header ({exc})") from exc
    for key, value in extra.items():
        header.setdefault(key, value)
    return header


def _hpcinfo(hdul: Any) -> dict[str, Any]:
    """The metadata and observation type of an hpcpipe exposure (empty for other files)."""
    # start-up cost: io.exposure_io imports astropy.wcs and image
    from hpcpipe.io.exposure_io import decode_metadata

    try:
        table = hdul["HPCINFO"].data
    except KeyError:
        return {}
    info = {str(n).strip(): str(t) for n, t in zip(table["NAME"], table["JSON"])}
    out: dict[str, Any] = {}
    if "metadata" in info:
        out.update(decode_metadata(info["metadata"]))
    if "visit_info" in info:
        kind = json.loads(info["visit_info"]).get("observation_type")
        if kind:
            out.setdefault("OBSTYPE", kind)
    return out
