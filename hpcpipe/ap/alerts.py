"""Alert packets in Rubin's alert schema, framed as Rubin sends them, to files or Kafka.

Packets
    One alert per diaSource, in Rubin's Avro schema from ``lsst-alert-packet``
    (:func:`hpcpipe.ap.sdm.alert_schema`, version :data:`~hpcpipe.ap.sdm.DEFAULT_ALERT_SCHEMA`
    by default): ``diaSourceId``, ``diaSource``, ``prvDiaSources`` (the object's earlier
    diaSources of the last :data:`HISTORY_DAYS` days), ``prvDiaForcedSources`` (its forced
    photometry on earlier difference images over the same year), ``diaObject`` and three
    cutouts. Every field of a record is filled from the APDB row of the same name
    (:mod:`hpcpipe.ap.apdb`: Rubin's columns); a field hpcpipe does not measure is null,
    NaN is null, and a required field without a value is an error. Fluxes are in nJy.
    ``observation_reason``, ``target_name``, ``ssSource`` and ``mpc_orbits`` are null
    (no scheduler, no solar-system association).
Cutouts
    ``cutoutDifference``, ``cutoutScience``, ``cutoutTemplate``: FITS files as Rubin writes
    them, from astropy's ``CCDData`` (:func:`cutout_fits`): the image in nJy (``BUNIT``) with
    the cutout's WCS, an ``UNCERT`` HDU holding the variance (``VarianceUncertainty``), a
    ``MASK`` HDU (pixels with a bad, saturated, no-data... plane set), and ``MASKBITS``, the
    full mask with its plane names. ``CCDData.read`` reads them back.
Framing
    Rubin's wire format (Confluent's): one zero byte, the schema id as four big-endian bytes
    (``Schema.get_schema_id()``: 1101 for schema 11.1), then the Avro record without its
    schema (:func:`frame_alert`). A consumer that knows the schema reads it with
    ``fastavro.schemaless_reader``.
Files
    One file per CCD (:func:`write_alert_stream`): the framed messages one after the other,
    each preceded by its length (four big-endian bytes), so that files concatenate: ``cat``
    of a visit's files is the visit's stream, for offline replay. Or one file per alert
    holding exactly the message a Kafka consumer receives (:func:`write_alert_packets`).
Kafka
    :func:`produce_alerts` sends the framed messages to a topic with ``confluent-kafka``.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, VarianceUncertainty

from hpcpipe.ap.sdm import (
    ALERT_SCHEMA_MAJOR,
    DEFAULT_ALERT_SCHEMA,
    alert_schema,
    alert_schema_path,
    available_alert_schemas,
    record_fields,
)
from hpcpipe.errors import FileFormatError, HpcpipeError
from hpcpipe.image import Exposure
from hpcpipe.io.atomic import atomic_path

__all__ = ["CUTOUT_MASK_PLANES", "HISTORY_DAYS", "STREAM_SUFFIX", "AlertTransportError",
           "cutout_fits", "cutout_planes", "decode_frame", "frame_alert", "iter_frames",
           "make_alert", "produce_alerts", "read_alerts", "validate_alert_dir",
           "write_alert_packets", "write_alert_stream"]

#: How far back an alert's history of diaSources and forced sources goes (days).
HISTORY_DAYS = 365.0
#: Suffix of the alert stream files (length-prefixed Confluent frames).
STREAM_SUFFIX = ".alerts"
#: Suffix of one-alert files (one Confluent frame).
PACKET_SUFFIX = ".avro-confluent"
#: Mask planes that set a cutout's boolean ``MASK``.
CUTOUT_MASK_PLANES = ("BAD", "SAT", "CR", "NO_DATA", "EDGE", "SUSPECT", "INTRP")

_MAGIC = 0
_HEADER = struct.Struct(">bI")
_LENGTH = struct.Struct(">I")


class AlertTransportError(HpcpipeError):
    """Alerts could not be delivered (Kafka) or a frame is not Rubin's wire format."""


# --- packets ---------------------------------------------------------------------------------
@functools.cache
def _fields(version: str, record: str) -> tuple[tuple[str, bool], ...]:
    """(name, nullable) of a record's fields."""
    out = []
    for f in record_fields(version, record):
        kind = f["type"]
        out.append((f["name"], isinstance(kind, list) and "null" in kind))
    return tuple(out)


def _value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _fill(record: str, row: np.void, version: str) -> dict[str, Any]:
    names = set(row.dtype.names or ())
    out: dict[str, Any] = {}
    for name, nullable in _fields(version, record):
        value = _value(row[name]) if name in names else None
        if value is None and not nullable:
            raise ValueError(f"alert schema {version}: {record}.{name} is required, but "
                             f"{record} {_value(row[0])} has no value for it")
        out[name] = value
    return out


def make_alert(source: np.void, history: np.ndarray, dia_object: np.void | None,
               difference: Exposure | None = None, science: Exposure | None = None,
               template: Exposure | None = None, cutout_size: int = 30,
               forced_history: np.ndarray | None = None,
               schema_version: str = DEFAULT_ALERT_SCHEMA) -> dict[str, Any]:
    """One alert packet: a dict of Rubin's alert schema ``schema_version``.

    Parameters
    ----------
    source : numpy.void
        The diaSource (a :data:`~hpcpipe.ap.apdb.DIA_SOURCE_DTYPE` row).
    history : numpy.ndarray
        Its object's diaSources; those of the :data:`HISTORY_DAYS` before this one (and not
        this one) go into ``prvDiaSources``.
    dia_object : numpy.void, optional
        Its diaObject (a :data:`~hpcpipe.ap.apdb.DIA_OBJECT_DTYPE` row).
    difference, science, template : Exposure, optional
        The images the cutouts come from (a missing one gives a null cutout).
    forced_history : numpy.ndarray, optional
        Its object's diaForcedSources; those of the year before this visit go into
        ``prvDiaForcedSources``.
    """
    t = float(source["midpointMjdTai"])

    def earlier(rows: np.ndarray | None, key: str) -> list[dict[str, Any]] | None:
        if rows is None or len(rows) == 0:
            return None
        keep = rows[(rows["midpointMjdTai"] < t) & (rows["midpointMjdTai"] >= t - HISTORY_DAYS)
                    & ((rows[key] != source[key]) if key == "diaSourceId" else True)]
        record = "diaSource" if key == "diaSourceId" else "diaForcedSource"
        return [_fill(record, r, schema_version) for r in keep] or None

    x, y = float(source["x"]), float(source["y"])

    def cut(exposure: Exposure | None) -> bytes | None:
        return None if exposure is None else cutout_fits(exposure, x, y, cutout_size,
                                                         calib_from=science)

    return {"diaSourceId": int(source["diaSourceId"]),
            "observation_reason": None, "target_name": None,
            "diaSource": _fill("diaSource", source, schema_version),
            "prvDiaSources": earlier(history, "diaSourceId"),
            "prvDiaForcedSources": earlier(forced_history, "diaForcedSourceId"),
            "diaObject": None if dia_object is None else _fill("diaObject", dia_object,
                                                                 schema_version),
            "ssSource": None, "mpc_orbits": None,
            "cutoutDifference": cut(difference), "cutoutScience": cut(science),
            "cutoutTemplate": cut(template)}


# --- cutouts ---------------------------------------------------------------------------------
#: The per-exposure cutout headers (``CCDData.to_hdu``'s, made once per image): a few entries,
#: the images of the CCD being alerted; identity-checked.
_HEADER_CACHE: list[tuple[Exposure, Exposure | None, int, list[fits.Header]]] = []


def _cutout_headers(exposure: Exposure, calib_from: Exposure | None, size: int
                    ) -> list[fits.Header]:
    """The headers of a cutout of ``exposure`` at (x0, y0) = (0, 0), as ``CCDData.to_hdu``
    writes them (image: BUNIT and WCS; UNCERT; MASK) and the MASKBITS header: made once per
    exposure, only the WCS reference pixel changes from one cutout to the next."""
    for exp, cal, n, headers in _HEADER_CACHE:
        if exp is exposure and cal is calib_from and n == size:
            return headers
    calib = (calib_from.photo_calib if calib_from is not None else None) or exposure.photo_calib
    zeros = np.zeros((size, size), np.float32)
    data = CCDData(zeros, unit=u.nJy if calib is not None else u.count, wcs=exposure.wcs,
                   uncertainty=VarianceUncertainty(zeros), mask=np.zeros((size, size), bool))
    hdus = data.to_hdu(hdu_mask="MASK", hdu_uncertainty="UNCERT", wcs_relax=True)
    bits = fits.Header()
    for key, (bit, doc) in exposure.mask.header_cards().items():
        bits[f"HIERARCH {key}" if len(key) > 8 else key] = (bit, doc[:40])
    headers = [hdus[0].header, hdus["UNCERT"].header, hdus["MASK"].header, bits]
    _HEADER_CACHE.insert(0, (exposure, calib_from, size, headers))
    del _HEADER_CACHE[6:]
    return headers


def cutout_fits(exposure: Exposure, x: float, y: float, size: int = 30,
                calib_from: Exposure | None = None) -> bytes:
    """A ``size`` x ``size`` cutout of ``exposure`` centred on parent pixel (x, y), as FITS
    laid out by astropy's ``CCDData`` (Rubin's cutouts; ``CCDData.read`` reads it).

    The image is in nJy (the PhotoCalib of ``calib_from``, else of ``exposure``; in counts
    with ``BUNIT = 'count'`` when neither has one) with the cutout's WCS, the variance in the
    ``UNCERT`` HDU (``UTYPE = 'VarianceUncertainty'``), the boolean mask of
    :data:`CUTOUT_MASK_PLANES` in ``MASK`` and the full bit mask in ``MASKBITS`` (header
    ``MP_<plane>`` = bit). Pixels beyond the exposure's edge are NaN with the ``NO_DATA``
    bit. The headers are ``CCDData.to_hdu``'s, made once per exposure
    (:func:`_cutout_headers`), with the reference pixel moved to the cutout.
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
    calib = (calib_from.photo_calib if calib_from is not None else None) or exposure.photo_calib
    if calib is not None:
        scale = float(calib.calibration_mean)
        image, variance = image * scale, variance * scale**2
    present = [p for p in CUTOUT_MASK_PLANES if p in exposure.mask.planes]
    bad = ((mask & exposure.mask.get_plane_bitmask(present)) != 0 if present
           else np.zeros(mask.shape, bool))
    primary, uncert, masked, bits = (hd.copy() for hd in _cutout_headers(exposure, calib_from,
                                                                           size))
    if "CRPIX1" in primary:
        # the exposure's WCS is in parent pixels: the cutout's pixel 0 is parent x0, y0
        primary["CRPIX1"] = primary["CRPIX1"] - x0
        primary["CRPIX2"] = primary["CRPIX2"] - y0
    primary["CUTX0"] = (x0, "parent column of the cutout's pixel 0")
    primary["CUTY0"] = (y0, "parent row of the cutout's pixel 0")
    hdus = fits.HDUList([fits.PrimaryHDU(image, header=primary),
                         fits.ImageHDU(variance, header=uncert),
                         fits.ImageHDU(bad.astype(np.uint8), header=masked),
                         fits.ImageHDU(mask, header=bits, name="MASKBITS")])
    buffer = io.BytesIO()
    hdus.writeto(buffer, output_verify="ignore")
    return buffer.getvalue()


def cutout_planes(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, fits.Header]:
    """Decode a cutout with ``CCDData.read``: image, variance, bit mask and the image's
    header (with its WCS and ``BUNIT``)."""
    ccd = CCDData.read(io.BytesIO(data), hdu_uncertainty="UNCERT", hdu_mask="MASK")
    with fits.open(io.BytesIO(data)) as hdus:
        bits = hdus["MASKBITS"].data.copy()
        header = hdus[0].header.copy()
    return np.asarray(ccd.data), np.asarray(ccd.uncertainty.array), bits, header


# --- framing ---------------------------------------------------------------------------------
def frame_alert(alert: dict[str, Any], schema_version: str = DEFAULT_ALERT_SCHEMA) -> bytes:
    """An alert in Rubin's wire format: zero byte, 4-byte big-endian schema id, Avro body."""
    schema = alert_schema(schema_version)
    return _HEADER.pack(_MAGIC, schema.get_schema_id()) + schema.serialize(alert)


@functools.cache
def _schemas_by_id() -> dict[int, Any]:
    out = {}
    for version in available_alert_schemas():
        if version.startswith(f"{ALERT_SCHEMA_MAJOR}."):
            schema = alert_schema(version)
            out[schema.get_schema_id()] = schema
    return out


def decode_frame(data: bytes, where: str = "<bytes>") -> dict[str, Any]:
    """Decode one framed alert (any shipped schema of the major version hpcpipe writes)."""
    if len(data) < _HEADER.size or data[0] != _MAGIC:
        raise AlertTransportError(f"{where}: not a Confluent-framed Avro message (first byte "
                                  f"{data[:1]!r}, expected b'\\x00')")
    _, schema_id = _HEADER.unpack_from(data)
    schema = _schemas_by_id().get(schema_id)
    if schema is None:
        raise AlertTransportError(f"{where}: schema id {schema_id} is not one of "
                                  f"{sorted(_schemas_by_id())}")
    return schema.deserialize(data[_HEADER.size:])


def iter_frames(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The framed messages of an alert stream file (or the one of a packet file)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileFormatError(str(path), f"cannot read ({exc})") from exc
    if path.suffix == PACKET_SUFFIX:
        yield data
        return
    pos = 0
    while pos < len(data):
        if pos + _LENGTH.size > len(data):
            raise FileFormatError(str(path), f"truncated length at byte {pos}")
        (n,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if pos + n > len(data):
            raise FileFormatError(str(path), f"message at byte {pos} needs {n} bytes, "
                                  f"{len(data) - pos} left")
        yield data[pos:pos + n]
        pos += n


def read_alerts(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The alerts of a stream file, a packet file, or a directory of packet files."""
    path = Path(path)
    files = sorted(path.glob(f"*{PACKET_SUFFIX}")) if path.is_dir() else [path]
    out = []
    for f in files:
        for k, frame in enumerate(iter_frames(f)):
            try:
                out.append(decode_frame(frame, f"{f} message {k}"))
            except AlertTransportError as exc:
                raise FileFormatError(str(f), str(exc)) from exc
            except (ValueError, EOFError, IndexError) as exc:
                raise FileFormatError(str(f), f"message {k} is not a valid alert ({exc})") \
                    from exc
    return out


# --- files -----------------------------------------------------------------------------------
def write_alert_stream(path: str | os.PathLike[str], frames: Iterable[bytes]) -> int:
    """Write framed alerts to one stream file (length-prefixed), atomically; returns the
    number written (a file with none is still written: the CCD had nothing to report)."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        for frame in frames:
            handle.write(_LENGTH.pack(len(frame)))
            handle.write(frame)
            count += 1
    return count


def write_alert_packets(directory: str | os.PathLike[str],
                        packets: Iterable[tuple[int, bytes]]) -> int:
    """Write one file per framed alert (``<diaSourceId>`` + :data:`PACKET_SUFFIX`) into
    ``directory``, which appears complete or not at all (a temporary directory renamed)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        count = 0
        for source_id, frame in packets:
            (tmp / f"{int(source_id)}{PACKET_SUFFIX}").write_bytes(frame)
            count += 1
        os.chmod(tmp, 0o755)
        os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


# --- Kafka -----------------------------------------------------------------------------------
def produce_alerts(packets: Sequence[tuple[int, bytes]], bootstrap: str, topic: str,
                   config: dict[str, Any] | None = None, timeout: float = 60.0) -> int:
    """Send framed alerts to the Kafka ``topic`` (key: the diaSourceId) and wait for every
    delivery; returns the number delivered.

    Raises
    ------
    AlertTransportError
        A message was not delivered (naming the broker, the topic and Kafka's error).
    """
    # optional dependency: confluent-kafka (the Kafka transport; files need no Kafka)
    from confluent_kafka import KafkaException, Producer

    settings = {"bootstrap.servers": bootstrap, "linger.ms": 20,
                "message.max.bytes": 16 * 1024 * 1024, "enable.idempotence": True,
                **(config or {})}
    errors: list[str] = []
    delivered = 0

    def report(err: Any, _msg: Any) -> None:
        nonlocal delivered
        if err is not None:
            errors.append(str(err))
        else:
            delivered += 1

    try:
        producer = Producer(settings)
        for source_id, frame in packets:
            while True:
                try:
                    producer.produce(topic, value=frame, key=str(int(source_id)).encode(),
                                     on_delivery=report)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.5)
            producer.poll(0)
        left = producer.flush(timeout)
    except KafkaException as exc:
        raise AlertTransportError(f"Kafka {bootstrap} topic {topic}: {exc}") from exc
    if errors or left:
        raise AlertTransportError(f"Kafka {bootstrap} topic {topic}: {len(errors)} alert(s) "
                                  f"failed, {left} undelivered after {timeout:g} s"
                                  + (f" ({errors[0]})" if errors else ""))
    return delivered


# --- consumer check --------------------------------------------------------------------------
def validate_alert_dir(directory: str | os.PathLike[str],
                       schema_version: str = DEFAULT_ALERT_SCHEMA) -> dict[str, Any]:
    """Read every alert under ``directory`` as a broker would: the Rubin schema file and
    fastavro alone (``fastavro.schema.load_schema``, ``schemaless_reader``, ``validate``).

    Returns
    -------
    dict
        Counts: ``files``, ``alerts``, ``invalid`` (with ``errors``, the first few),
        ``withDiaObject``, ``prvDiaSources``, ``prvDiaForcedSources`` (history rows),
        ``cutouts`` and ``schemaIds``.
    """
    import fastavro  # start-up cost: fastavro with its codecs (~45 ms), for validation only

    schema_file = alert_schema_path(schema_version)
    parsed = fastavro.schema.load_schema(str(schema_file))
    expected_id = alert_schema(schema_version).get_schema_id()
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file()
                   and p.suffix in (STREAM_SUFFIX, PACKET_SUFFIX))
    counts: Counter[str] = Counter()
    ids: Counter[int] = Counter()
    errors: list[str] = []
    for path in files:
        counts["files"] += 1
        try:
            frames = list(iter_frames(path))
        except FileFormatError as exc:
            counts["invalid"] += 1
            errors.append(str(exc))
            continue
        for k, frame in enumerate(frames):
            counts["alerts"] += 1
            where = f"{path} message {k}"
            try:
                if len(frame) < 5 or frame[0] != 0:
                    raise ValueError("not Confluent-framed (first byte must be 0)")
                schema_id = int.from_bytes(frame[1:5], "big")
                ids[schema_id] += 1
                if schema_id != expected_id:
                    raise ValueError(f"schema id {schema_id}, expected {expected_id}")
                body = io.BytesIO(frame[5:])
                alert: Any = fastavro.schemaless_reader(body, parsed)  # a record: a dict
                if body.read(1):
                    raise ValueError("bytes left after the Avro record")
                fastavro.validate(alert, parsed)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                counts["invalid"] += 1
                errors.append(f"{where}: {exc}")
                continue
            counts["withDiaObject"] += alert["diaObject"] is not None
            counts["prvDiaSources"] += len(alert["prvDiaSources"] or [])
            counts["prvDiaForcedSources"] += len(alert["prvDiaForcedSources"] or [])
            counts["cutouts"] += sum(alert[c] is not None for c in (
                "cutoutDifference", "cutoutScience", "cutoutTemplate"))
    out: dict[str, Any] = {k: counts[k] for k in (
        "files", "alerts", "invalid", "withDiaObject", "prvDiaSources",
        "prvDiaForcedSources", "cutouts")}
    out["schemaIds"] = dict(ids)
    out["schemaFile"] = str(schema_file)
    out["errors"] = errors[:10]
    return out
