"""Alert packets in a versioned Avro schema, written as Avro object container files.

One alert per diaSource (LSST's alert packet, simplified): ``alertId`` (the diaSource's id),
``diaSource``, ``prvDiaSources`` (the same object's earlier diaSources of the last
:data:`HISTORY_DAYS` days), ``diaObject`` (with per-band light-curve statistics for the bands
``u g r i z y``; null where the APDB does not record a band) and three cutouts
(``cutoutDifference``, ``cutoutScience``, ``cutoutTemplate``): small FITS files (image,
``VARIANCE`` and ``MASK`` extensions) whose WCS places them on the sky.

The schema is :func:`alert_schema`, shipped as ``hpcpipe/ap/schema/hpcpipe_alert_v1_0.avsc``
for brokers; a file's metadata names its schema version (``hpcpipe.alert_schema_version``),
and :func:`read_alerts` refuses a version it does not know. Files are written atomically
(a temporary name, renamed when complete), so a reader of the alert stream directory never
sees half a file.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
from astropy.io import fits

from hpcpipe.ap.apdb import DIA_SOURCE_DTYPE, STAT_NAMES
from hpcpipe.errors import FileFormatError
from hpcpipe.image import Exposure
from hpcpipe.io.atomic import atomic_path

__all__ = ["ALERT_BANDS", "HISTORY_DAYS", "SCHEMA_FILE", "SCHEMA_VERSION", "alert_schema",
           "alerts_by_id", "cutout_fits", "cutout_planes", "make_alert", "read_alerts",
           "write_alerts", "write_schema_file"]

#: Version of the alert schema ("major.minor").
SCHEMA_VERSION = "1.0"
#: The bands an alert's diaObject has statistics for.
ALERT_BANDS = ("u", "g", "r", "i", "z", "y")
#: How far back an alert's history of diaSources goes (days).
HISTORY_DAYS = 365.0
#: The schema file shipped for brokers.
SCHEMA_FILE = Path(__file__).parent / "schema" / "hpcpipe_alert_v1_0.avsc"

_METADATA_KEY = "hpcpipe.alert_schema_version"
_NAMESPACE = "hpcpipe.alert.v" + SCHEMA_VERSION.replace(".", "_")
_AVRO_TYPES = {"i": "long", "u": "long", "f": "double", "b": "boolean", "U": "string"}
_DOCS = {
    "diaSourceId": "unique id of the diaSource (also the alert's id)",
    "diaObjectId": "the diaObject it was associated with",
    "visit": "visit id", "ccd": "detector id", "band": "filter band",
    "midpointMjdTai": "mid-exposure time (MJD, TAI)",
    "ra": "right ascension (deg, ICRS)", "dec": "declination (deg, ICRS)",
    "x": "column on the CCD (pixels, 0-based)", "y": "row on the CCD (pixels, 0-based)",
    "psfFlux": "PSF flux on the difference image (nJy)",
    "psfFluxErr": "its 1-sigma error (nJy)",
    "scienceFlux": "forced PSF flux on the science image (nJy)",
    "scienceFluxErr": "its 1-sigma error (nJy)",
    "snr": "signal to noise of the detection on the difference image",
    "isDipole": "fitted as a dipole (a badly subtracted pair)",
    "flags": "flag bits (see the diaSrc schema)",
}


def _dia_source_record() -> dict[str, Any]:
    fields = []
    for name in DIA_SOURCE_DTYPE.names or ():
        kind = DIA_SOURCE_DTYPE[name].kind
        fields.append({"name": name, "type": _AVRO_TYPES[kind], "doc": _DOCS[name]})
    return {"type": "record", "name": "diaSource", "namespace": _NAMESPACE,
            "doc": "a source detected on a difference image", "fields": fields}


def _dia_object_record() -> dict[str, Any]:
    fields: list[dict[str, Any]] = [
        {"name": "diaObjectId", "type": "long", "doc": "unique id of the diaObject"},
        {"name": "ra", "type": "double", "doc": "mean right ascension of its sources (deg)"},
        {"name": "dec", "type": "double", "doc": "mean declination of its sources (deg)"},
        {"name": "nDiaSources", "type": "long", "doc": "number of its diaSources"},
        {"name": "firstMjdTai", "type": "double", "doc": "time of its first diaSource"},
        {"name": "lastMjdTai", "type": "double", "doc": "time of its last diaSource"}]
    docs = {"psfFluxMean": "inverse-variance weighted mean difference-image flux (nJy)",
            "psfFluxMeanErr": "its error (nJy)",
            "psfFluxSigma": "standard deviation of the fluxes (nJy)",
            "psfFluxChi2": "chi-square of the fluxes about their mean (constant flux)",
            "psfFluxNdata": "number of fluxes", "psfFluxMin": "smallest flux (nJy)",
            "psfFluxMax": "largest flux (nJy)"}
    for band in ALERT_BANDS:
        for stat in STAT_NAMES:
            kind = "long" if stat == "psfFluxNdata" else "double"
            fields.append({"name": f"{band}_{stat}", "type": ["null", kind], "default": None,
                           "doc": f"{band} band: {docs[stat]}"})
    return {"type": "record", "name": "diaObject", "namespace": _NAMESPACE,
            "doc": "an object seen to vary, with its light-curve statistics",
            "fields": fields}


def alert_schema() -> dict[str, Any]:
    """The alert packet's Avro schema (a JSON-able dict)."""
    cutout = {"type": ["null", "bytes"], "default": None}
    return {
        "type": "record", "name": "alert", "namespace": _NAMESPACE,
        "doc": f"hpcpipe alert packet, schema version {SCHEMA_VERSION}",
        "fields": [
            {"name": "alertId", "type": "long", "doc": "the diaSource's id"},
            {"name": "diaSource", "type": _dia_source_record()},
            {"name": "prvDiaSources", "default": None,
             "type": ["null", {"type": "array", "items": f"{_NAMESPACE}.diaSource"}],
             "doc": f"the object's earlier diaSources of the last {HISTORY_DAYS:g} days"},
            {"name": "diaObject", "type": ["null", _dia_object_record()], "default": None},
            {**cutout, "name": "cutoutDifference",
             "doc": "FITS cutout of the difference image (image, VARIANCE, MASK)"},
            {**cutout, "name": "cutoutScience", "doc": "FITS cutout of the science image"},
            {**cutout, "name": "cutoutTemplate", "doc": "FITS cutout of the warped template"},
        ],
    }


def _parsed_schema() -> Any:
    return fastavro.parse_schema(alert_schema())


def cutout_fits(exposure: Exposure, x: float, y: float, size: int = 30) -> bytes:
    """A ``size`` x ``size`` FITS cutout of ``exposure`` centred on parent pixel (x, y).

    Pixels beyond the exposure's edge are NaN (mask: the ``NO_DATA`` bit). The primary
    HDU holds the image with the cutout's WCS; ``VARIANCE`` and ``MASK`` follow.
    """
    if size < 1:
        raise ValueError(f"cutout_fits: size must be >= 1; got {size}")
    x0 = int(np.floor(x + 0.5)) - size // 2
    y0 = int(np.floor(y + 0.5)) - size // 2
    ex0, ey0 = exposure.xy0
    h, w = exposure.height, exposure.width
    image = np.full((size, size), np.nan, np.float32)
    variance = np.full((size, size), np.nan, np.float32)
    no_data = exposure.mask.get_plane_bitmask(["NO_DATA"])
    mask = np.full((size, size), no_data, np.int32)
    ya, yb = max(y0, ey0), min(y0 + size, ey0 + h)
    xa, xb = max(x0, ex0), min(x0 + size, ex0 + w)
    if ya < yb and xa < xb:
        src = (slice(ya - ey0, yb - ey0), slice(xa - ex0, xb - ex0))
        dst = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
        image[dst] = exposure.image.array[src]
        variance[dst] = exposure.variance.array[src]
        mask[dst] = exposure.mask.array[src]
    header = fits.Header()
    if exposure.wcs is not None:
        wcs = exposure.wcs.deepcopy()
        wcs.wcs.crpix = wcs.wcs.crpix - np.array([x0, y0], float)
        if wcs.sip is not None:
            from astropy.wcs import Sip

            wcs.sip = Sip(wcs.sip.a, wcs.sip.b, wcs.sip.ap, wcs.sip.bp, wcs.wcs.crpix)
        header = wcs.to_header(relax=True)
    header["CUTX0"] = (x0, "parent column of the cutout's pixel 0")
    header["CUTY0"] = (y0, "parent row of the cutout's pixel 0")
    hdus = fits.HDUList([fits.PrimaryHDU(image, header=header),
                         fits.ImageHDU(variance, name="VARIANCE"),
                         fits.ImageHDU(mask, name="MASK")])
    buffer = io.BytesIO()
    hdus.writeto(buffer)
    return buffer.getvalue()


def _record(row: np.void | dict[str, Any], dtype: np.dtype) -> dict[str, Any]:
    out = {}
    for name in dtype.names or ():
        value = row[name]
        out[name] = value.item() if isinstance(value, np.generic) else value
    return out


def _object_record(row: np.void | None) -> dict[str, Any] | None:
    if row is None:
        return None
    names = row.dtype.names or ()
    out: dict[str, Any] = {k: row[k].item() for k in ("diaObjectId", "ra", "dec",
                                                      "nDiaSources", "firstMjdTai",
                                                      "lastMjdTai")}
    for band in ALERT_BANDS:
        for stat in STAT_NAMES:
            key = f"{band}_{stat}"
            value = row[key].item() if key in names else None
            if isinstance(value, float) and not np.isfinite(value):
                value = None
            out[key] = value
    return out


def make_alert(source: np.void, history: np.ndarray, dia_object: np.void | None,
               difference: Exposure | None = None, science: Exposure | None = None,
               template: Exposure | None = None, cutout_size: int = 30) -> dict[str, Any]:
    """One alert packet (a dict that matches :func:`alert_schema`).

    Parameters
    ----------
    source : numpy.void
        The diaSource (a :data:`~hpcpipe.ap.apdb.DIA_SOURCE_DTYPE` row).
    history : numpy.ndarray
        Its object's diaSources; those of the :data:`HISTORY_DAYS` before this one (and not
        this one) go into ``prvDiaSources``.
    dia_object : numpy.void, optional
        Its diaObject (a row of the APDB's DiaObject table).
    difference, science, template : Exposure, optional
        The images the cutouts come from (a missing one gives a null cutout).
    """
    t = float(source["midpointMjdTai"])
    earlier = history[(history["diaSourceId"] != source["diaSourceId"])
                      & (history["midpointMjdTai"] <= t)
                      & (history["midpointMjdTai"] >= t - HISTORY_DAYS)]
    x, y = float(source["x"]), float(source["y"])

    def cut(exposure: Exposure | None) -> bytes | None:
        return None if exposure is None else cutout_fits(exposure, x, y, cutout_size)

    return {"alertId": int(source["diaSourceId"]),
            "diaSource": _record(source, DIA_SOURCE_DTYPE),
            "prvDiaSources": [_record(r, DIA_SOURCE_DTYPE) for r in earlier] or None,
            "diaObject": _object_record(dia_object),
            "cutoutDifference": cut(difference), "cutoutScience": cut(science),
            "cutoutTemplate": cut(template)}


def write_alerts(path: str | os.PathLike[str], alerts: Iterable[dict[str, Any]]) -> int:
    """Write alert packets to an Avro container file (deflate), atomically.

    Returns
    -------
    int
        The number of alerts written (a file with none is still written: the CCD was
        processed and had nothing to report).
    """
    records = list(alerts)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fastavro.writer(handle, _parsed_schema(), records, codec="deflate",
                        metadata={_METADATA_KEY: SCHEMA_VERSION})
    return len(records)


def read_alerts(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read an alert file written by :func:`write_alerts` (checks the schema version)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            reader = fastavro.reader(handle)
            version = reader.metadata.get(_METADATA_KEY)
            if version != SCHEMA_VERSION:
                raise FileFormatError(str(path), f"alert schema version {version!r} is unknown "
                                      f"(this hpcpipe reads {SCHEMA_VERSION})")
            return list(reader)
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, FileFormatError):
            raise
        raise FileFormatError(str(path), f"not an Avro alert file ({exc})") from exc


def write_schema_file(path: str | os.PathLike[str] = SCHEMA_FILE) -> None:
    """Write :func:`alert_schema` as JSON (the ``.avsc`` file shipped for brokers)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(alert_schema(), indent=2) + "\n")


def cutout_planes(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, fits.Header]:
    """Decode a cutout: image, variance, mask and the image's header (with its WCS)."""
    with fits.open(io.BytesIO(data)) as hdus:
        return (hdus[0].data.copy(), hdus["VARIANCE"].data.copy(), hdus["MASK"].data.copy(),
                hdus[0].header.copy())


def alerts_by_id(alerts: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Alerts keyed by their id."""
    return {int(a["alertId"]): a for a in alerts}
