"""Raw files of a described camera: what they hold (for ingest) and reading them.

:func:`scan_raw` opens every HDU of a file (headers only), translates the headers into data
ids and checks the shapes and sections against the camera; it returns one
:class:`~hpcpipe.butler.mapper.IngestRecord` per detector (a multi-extension file gives
several), or raises :class:`~hpcpipe.butler.errors.IngestError` naming the file, the HDU and
the keyword or section at fault. :func:`read_raw` reads one detector of a file into an
:class:`~hpcpipe.image.Exposure`: the untrimmed raw frame in ADU, the detector with its
amplifiers, the visit, the filter and the WCS of the assembled, trimmed detector image.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time, TimeDelta
from astropy.wcs import WCS, FITSFixedWarning

from hpcpipe.butler.calibs import parse_calib_id
from hpcpipe.butler.errors import IngestError
from hpcpipe.butler.headers import read_fits_header
from hpcpipe.butler.mapper import IngestRecord
from hpcpipe.errors import FileFormatError
from hpcpipe.geom import Box2I
from hpcpipe.image import Amplifier, Detector, Exposure, FilterLabel, VisitInfo
from hpcpipe.obs.camera import (
    TIME_SCALES,
    Camera,
    DetectorSpec,
    assembled_size,
    format_section,
    trimmed_origins,
)
from hpcpipe.obs.expression import ExpressionError, MissingKeywordError

__all__ = ["RawUnit", "scan_raw", "read_raw", "raw_wcs_box", "translate", "CALIB_TYPES",
           "SCIENCE_TYPES"]

#: OBSTYPE values of calibration products, and their dataset types.
CALIB_TYPES = {"bias": "bias", "dark": "dark", "flat": "flat"}
#: OBSTYPE values of science exposures.
SCIENCE_TYPES = ("science", "object")

_SKIP = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "CHECKSUM", "DATASUM",
         "COMMENT", "HISTORY", "", "XTENSION", "PCOUNT", "GCOUNT", "BZERO", "BSCALE",
         "EXTVER", "INHERIT"}
_HPCPIPE_HDUS = ("IMAGE", "MASK", "VARIANCE", "HPCINFO")


@dataclass
class RawUnit:
    """One detector of a raw file: where its pixels are and what its header says.

    Attributes
    ----------
    record : IngestRecord
        The registry entry (``extra["hdu"]``: the HDU index, or the list of amplifier HDUs).
    detector : DetectorSpec or None
        The camera's detector (None for hpcpipe exposures of a camera without a list).
    hdus : list of int
        The HDUs holding its pixels (one per amplifier for the amplifiers-per-file layout).
    header : dict
        The primary header's cards completed by the (first) HDU's cards.
    amp_headers : dict of str to dict
        For the amplifiers-per-file layout: each amplifier's HDU header.
    """

    record: IngestRecord
    detector: DetectorSpec | None
    hdus: list[int]
    header: dict[str, Any]
    amp_headers: dict[str, dict[str, Any]] = field(default_factory=dict)


# --- header translation -----------------------------------------------------------------------
def _where(label: str) -> str:
    return f"{label}: " if label else ""


def _value(camera: Camera, target: str, header: Mapping[str, Any], path: Path, label: str
           ) -> tuple[str, Any]:
    translation = camera.translations[target]
    try:
        return translation.find(header)
    except MissingKeywordError as exc:
        raise IngestError(str(path), f"{_where(label)}missing header keyword {exc.keyword} "
                          f"({target}: {translation.describe()})") from None
    except ExpressionError as exc:
        raise IngestError(str(path), f"{_where(label)}{target}: {exc}") from None


def _shown(source: str, value: Any) -> str:
    return f"header {source}={value!r}" if not source.startswith(("expression", "default")) \
        else f"{source} gave {value!r}"


def _whole(camera: Camera, target: str, header: Mapping[str, Any], path: Path, label: str
           ) -> int:
    source, value = _value(camera, target, header, path, label)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, (float, np.floating)) and float(value).is_integer() and value >= 0:
        return int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 0:
        raise IngestError(str(path), f"{_where(label)}{_shown(source, value)} is not a whole "
                          f"number >= 0 ({target})")
    return int(value)


def _filter(camera: Camera, header: Mapping[str, Any], path: Path, label: str) -> tuple[str, str]:
    source, value = _value(camera, "filter", header, path, label)
    spec = camera.filter(value)
    if spec is None:
        known = ", ".join(f.name for f in camera.filters)
        raise IngestError(str(path), f"{_where(label)}{_shown(source, value)} is not a filter "
                          f"of camera {camera.name} ({known}, or their aliases)")
    return spec.name, str(value).strip()


def _time_scale(camera: Camera, header: Mapping[str, Any], path: Path, label: str) -> str:
    translation = camera.translations.get("timeScale")
    if translation is None:
        return "UTC"
    source, value = _value(camera, "timeScale", header, path, label)
    scale = str(value).strip().upper()
    if scale not in TIME_SCALES:
        raise IngestError(str(path), f"{_where(label)}{_shown(source, value)} is not a time "
                          f"scale ({', '.join(TIME_SCALES)})")
    if translation.allowed and scale not in (a.upper() for a in translation.allowed):
        raise IngestError(str(path), f"{_where(label)}inconsistent headers: "
                          f"{_shown(source, value)} but camera {camera.name} dates are "
                          f"{' or '.join(translation.allowed)}")
    return scale


def _date_obs(camera: Camera, header: Mapping[str, Any], path: Path, label: str) -> str:
    source, value = _value(camera, "dateObs", header, path, label)
    try:
        when = dt.datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise IngestError(str(path), f"{_where(label)}{_shown(source, value)} is not an ISO "
                          "8601 date and time (YYYY-MM-DDThh:mm:ss[.sss])") from None
    if when.tzinfo is not None:
        raise IngestError(str(path), f"{_where(label)}{_shown(source, value)} has a time "
                          "zone; give the time scale with the camera's timeScale instead")
    return when.isoformat(timespec="milliseconds")


def _exptime(camera: Camera, header: Mapping[str, Any], path: Path, label: str) -> float:
    source, value = _value(camera, "expTime", header, path, label)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
            or not np.isfinite(value) or value < 0:
        raise IngestError(str(path), f"{_where(label)}{_shown(source, value)} is not an "
                          "exposure time in seconds (a number >= 0)")
    return float(value)


def _detector(camera: Camera, header: Mapping[str, Any], path: Path, label: str
              ) -> DetectorSpec | int:
    """The camera's detector for a header (an id for cameras without a detector list)."""
    if "ccd" not in camera.translations:
        return camera.detectors[0]
    source, value = _value(camera, "ccd", header, path, label)
    if not camera.detectors:
        return _whole(camera, "ccd", header, path, label)
    spec = camera.detector(value)
    if spec is None:
        known = ", ".join(f"{d.id} ({d.name})" for d in camera.detectors)
        raise IngestError(str(path), f"{_where(label)}{_shown(source, value)} matches no "
                          f"detector of camera {camera.name} (detectors: {known})")
    return spec


def obs_type(camera: Camera, header: Mapping[str, Any], path: Path, label: str = "") -> str:
    """``science`` or the calibration product type of a header."""
    if "obsType" in camera.translations:
        source, value = _value(camera, "obsType", header, path, label)
    else:
        source, value = "default", "science"
    kind = str(value or "science").strip().lower()
    if kind in SCIENCE_TYPES:
        return "science"
    if kind not in CALIB_TYPES:
        raise IngestError(str(path), f"{_where(label)}{_shown(source, value)} is not one of "
                          f"{', '.join((*SCIENCE_TYPES, *CALIB_TYPES))}")
    return kind


def translate(camera: Camera, header: Mapping[str, Any], path: Path, label: str = "",
              validity_days: float = 30.0) -> tuple[IngestRecord, DetectorSpec | None]:
    """The registry entry of one detector's header, and the camera's detector.

    Raises
    ------
    IngestError
        Naming the file, ``label`` (the HDU) and the keyword at fault.
    """
    kind = obs_type(camera, header, path, label)
    found = _detector(camera, header, path, label)
    detector = found if isinstance(found, DetectorSpec) else None
    ccd = found.id if isinstance(found, DetectorSpec) else found
    if kind == "science":
        date_obs = _date_obs(camera, header, path, label)
        _time_scale(camera, header, path, label)
        filter_name, _ = _filter(camera, header, path, label)
        return IngestRecord("raw", {
            "visit": _whole(camera, "visit", header, path, label),
            "ccd": ccd,
            "filter": filter_name,
            "date": date_obs[:10],
            "dateObs": date_obs,
            "expTime": _exptime(camera, header, path, label),
        }), detector
    if "calibId" not in camera.translations:
        raise IngestError(str(path), f"{_where(label)}a {kind} calibration product, but "
                          f"camera {camera.name} has no header.calibId translation")
    _, text = _value(camera, "calibId", header, path, label)
    try:
        calib_date, start, end = parse_calib_id(str(text), validity_days)
    except ValueError as exc:
        raise IngestError(str(path), f"{_where(label)}{exc}") from None
    data_id: dict[str, Any] = {"calibDate": calib_date, "ccd": ccd}
    if kind == "flat":
        data_id["filter"] = _filter(camera, header, path, label)[0]
    return IngestRecord(CALIB_TYPES[kind], data_id, start, end), detector


# --- geometry -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _AmpGeometry:
    name: str
    data: Box2I          # in the raw frame
    overscan: Box2I      # in the raw frame (empty when none)
    trimmed: Box2I       # in the assembled, trimmed image


def _cards(header: fits.Header) -> dict[str, Any]:
    return {k: v for k, v in header.items() if k not in _SKIP}


def _hdu_label(index: int, header: fits.Header) -> str:
    name = str(header.get("EXTNAME", "")).strip()
    return f"HDU {index}" + (f" ({name})" if name else "")


def _shape(header: fits.Header) -> tuple[int, int] | None:
    if int(header.get("NAXIS", 0)) != 2:
        return None
    return int(header["NAXIS2"]), int(header["NAXIS1"])


def _geometry(detector: DetectorSpec, headers: Sequence[Mapping[str, Any]],
              shapes: list[tuple[int, int]], path: Path, label: str, per_amp: bool = False
              ) -> tuple[list[_AmpGeometry], tuple[int, int]]:
    """The amplifiers' boxes in the raw frame and trimmed image, and the raw frame's shape.

    ``headers``/``shapes``: one per HDU (one for detector layouts, one per amplifier, in the
    camera's amplifier order, for the amplifiers-per-file layout; those are placed side by
    side in the raw frame).
    """
    data_boxes: list[Box2I] = []
    over_boxes: list[Box2I] = []
    x_offset = 0
    for k, amp in enumerate(detector.amplifiers):
        header = headers[k] if per_amp else headers[0]
        rows, cols = shapes[k] if per_amp else shapes[0]
        boxes: list[Box2I | None] = []
        for what, section in (("data section", amp.data_section),
                              ("overscan section", amp.overscan_section)):
            if section is None:
                boxes.append(None)
                continue
            try:
                box = Box2I(0, 0, cols, rows) if section.whole else section.resolve(header)
            except MissingKeywordError as exc:
                raise IngestError(str(path), f"{_where(label)}missing header keyword "
                                  f"{exc.keyword} (the {what} of amplifier {amp.name})") from None
            except ValueError as exc:
                raise IngestError(str(path), f"{_where(label)}amplifier {amp.name}: bad {what}"
                                  f": {exc}") from None
            if box.x1 >= cols or box.y0 + box.height > rows:
                raise IngestError(str(path), f"{_where(label)}amplifier {amp.name}: {what} "
                                  f"{format_section(box)} ({section.describe()}) is outside "
                                  f"the {cols}x{rows} image")
            boxes.append(box.shifted(x_offset, 0))
        data, over = boxes
        assert data is not None
        data_boxes.append(data)
        over_boxes.append(over if over is not None else Box2I(data.x0, data.y0, 0, 0))
        if per_amp:
            x_offset += cols
    if per_amp:
        heights = {s[0] for s in shapes}
        if len(heights) != 1:
            raise IngestError(str(path), f"{_where(label)}the amplifier HDUs differ in height "
                              f"({sorted(heights)}); they cannot be placed side by side")
        frame = (shapes[0][0], x_offset)
        origins: list[tuple[int, int]] = []
        offset = 0
        for box in data_boxes:
            origins.append((offset, 0))
            offset += box.width
        size = (offset, data_boxes[0].height)
    else:
        frame = shapes[0]
        origins = trimmed_origins(data_boxes)
        size = assembled_size(data_boxes)
    if detector.width and size != (detector.width, detector.height):
        raise IngestError(str(path), f"{_where(label)}the data sections of detector "
                          f"{detector.name} ({', '.join(format_section(b) for b in data_boxes)}"
                          f") assemble into {size[0]}x{size[1]}, not the camera's "
                          f"{detector.width}x{detector.height}")
    amps = [_AmpGeometry(a.name, d, o, Box2I(x, y, d.width, d.height))
            for a, d, o, (x, y) in zip(detector.amplifiers, data_boxes, over_boxes, origins)]
    return amps, frame


def _raw_wcs(header: Mapping[str, Any], amps: list[_AmpGeometry], per_amp: bool, path: Path,
             label: str) -> WCS | None:
    """The WCS of the trimmed image, from a raw HDU's WCS (None if the header has none)."""
    if not str(header.get("CTYPE1", "")).strip():
        return None
    if per_amp:
        first = next(a for a in amps if (a.trimmed.x0, a.trimmed.y0) == (0, 0))
        dx, dy = first.data.x0, first.data.y0
    else:
        x0 = min(a.data.x0 for a in amps)
        y0 = min(a.data.y0 for a in amps)
        x1 = max(a.data.x1 for a in amps)
        y1 = max(a.data.y0 + a.data.height - 1 for a in amps)
        for a in amps:
            if (a.data.x0 - x0, a.data.y0 - y0) != (a.trimmed.x0, a.trimmed.y0) or \
                    (x1 - x0 + 1, y1 - y0 + 1) != assembled_size([b.data for b in amps]):
                raise IngestError(str(path), f"{_where(label)}the raw header has a WCS but the "
                                  "data sections are not contiguous (overscan between them), "
                                  "so it cannot be carried to the trimmed image")
        dx, dy = x0, y0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(fits.Header({k: v for k, v in header.items()
                                   if isinstance(v, (int, float, str, bool))}), naxis=2)
    except Exception as exc:  # noqa: BLE001 - astropy raises many kinds on bad WCS cards
        raise IngestError(str(path), f"{_where(label)}the WCS keywords cannot be read ({exc})") \
            from None
    if not wcs.has_celestial:
        return None
    wcs.wcs.crpix = wcs.wcs.crpix - np.array([dx, dy], dtype=float)
    wcs.wcs.set()
    return wcs


# --- scanning a file --------------------------------------------------------------------------
def _open(path: Path) -> fits.HDUList:
    if not path.is_file():
        raise FileFormatError(str(path), "no such file")
    try:
        return fits.open(path, memmap=False, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError) as exc:
        raise FileFormatError(str(path), f"cannot read a FITS file ({exc})") from exc


def _image_hdus(hdul: fits.HDUList) -> list[int]:
    return [i for i, hdu in enumerate(hdul) if _shape(hdu.header) is not None
            and isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))]


def _merged(hdul: fits.HDUList, index: int) -> dict[str, Any]:
    header = _cards(hdul[0].header)
    if index:
        header.update(_cards(hdul[index].header))
    return header


def _hpcpipe_unit(camera: Camera, path: Path, validity_days: float) -> list[RawUnit]:
    header = read_fits_header(path)
    record, detector = translate(camera, header, path, "", validity_days)
    with _open(path) as hdul:
        names = [str(h.name).upper() for h in hdul]
        missing = [n for n in _HPCPIPE_HDUS if n not in names]
        if missing:
            raise IngestError(str(path), f"not an hpcpipe exposure (camera {camera.name} has "
                              f"the hpcpipe-exposure layout): no {', '.join(missing)} HDU")
        shapes = {n: _shape(hdul[n].header) for n in ("IMAGE", "MASK", "VARIANCE")}
    if len(set(shapes.values())) != 1 or shapes["IMAGE"] is None:
        raise IngestError(str(path), f"the IMAGE, MASK and VARIANCE HDUs differ in shape "
                          f"({shapes})")
    if detector is not None and record.dataset_type == "raw":
        image_shape = shapes["IMAGE"]
        assert image_shape is not None
        _geometry(detector, [header], [image_shape], path, "IMAGE")
    return [RawUnit(record, detector, [0], header)]


def scan_raw(camera: Camera, path: str | Path, validity_days: float = 30.0) -> list[RawUnit]:
    """What a raw (or calibration) file holds, checked against the camera, without reading
    its pixels: one unit per detector.

    Raises
    ------
    IngestError
        Naming the file, the HDU and the keyword or section at fault.
    FileFormatError
        If the file is missing or not FITS.
    """
    path = Path(path)
    if camera.layout == "hpcpipe-exposure":
        return _hpcpipe_unit(camera, path, validity_days)
    units: list[RawUnit] = []
    with _open(path) as hdul:
        images = _image_hdus(hdul)
        if not images:
            raise IngestError(str(path), "no image HDU (no HDU with a 2-d array)")
        if camera.layout == "detector-per-file":
            index = _hdu_for(camera.detectors, hdul, images, path) if all(
                d.hdu is not None for d in camera.detectors) else images[0]
            units.append(_detector_unit(camera, path, hdul, index, validity_days))
        elif camera.layout == "detectors-per-file":
            for index in images:
                units.append(_detector_unit(camera, path, hdul, index, validity_days))
        else:
            units = _amplifier_units(camera, path, hdul, images, validity_days)
        names = [str(h.name).upper() for h in hdul]
    calibs = sorted({u.record.dataset_type for u in units if u.record.dataset_type != "raw"})
    missing = [n for n in _HPCPIPE_HDUS if n not in names]
    if calibs and missing:
        raise IngestError(str(path), f"a {calibs[0]} calibration product must be an hpcpipe "
                          f"exposure (as hpcpipe writes them): no {', '.join(missing)} HDU")
    seen: dict[Any, str] = {}
    for unit in units:
        ccd = unit.record.data_id.get("ccd")
        label = ", ".join(f"HDU {i}" for i in unit.hdus)
        if ccd in seen:
            raise IngestError(str(path), f"{label}: detector {ccd} already given by "
                              f"{seen[ccd]}")
        seen[ccd] = label
    return units


def _hdu_for(detectors: tuple[DetectorSpec, ...], hdul: fits.HDUList, images: list[int],
             path: Path) -> int:
    det = detectors[0]
    for index in images:
        if det.hdu == index or str(det.hdu).upper() == str(hdul[index].name).upper():
            return index
    raise IngestError(str(path), f"no HDU {det.hdu!r} (detector {det.name}'s hdu) with an image")


def _detector_unit(camera: Camera, path: Path, hdul: fits.HDUList, index: int,
                   validity_days: float) -> RawUnit:
    label = _hdu_label(index, hdul[index].header)
    header = _merged(hdul, index)
    by_hdu = [d for d in camera.detectors if d.hdu is not None and (
        d.hdu == index or str(d.hdu).upper() == str(hdul[index].name).upper())]
    record, detector = translate(camera, header, path, label, validity_days)
    if by_hdu and detector is not None and detector.id != by_hdu[0].id:
        raise IngestError(str(path), f"{label}: the header says detector {detector.id} but "
                          f"the camera puts detector {by_hdu[0].id} in this HDU")
    if detector is not None and record.dataset_type == "raw":
        shape = _shape(hdul[index].header)
        assert shape is not None
        amps, _ = _geometry(detector, [header], [shape], path, label)
        _raw_wcs(header, amps, False, path, label)
    record.extra["hdu"] = index
    return RawUnit(record, detector, [index], header)


def _amplifier_units(camera: Camera, path: Path, hdul: fits.HDUList, images: list[int],
                     validity_days: float) -> list[RawUnit]:
    groups: dict[int, dict[str, int]] = {}
    headers: dict[int, dict[str, Any]] = {}
    specs: dict[int, DetectorSpec] = {}
    for index in images:
        label = _hdu_label(index, hdul[index].header)
        header = _merged(hdul, index)
        found = _detector(camera, header, path, label)
        assert isinstance(found, DetectorSpec)
        source, value = _value(camera, "amplifier", header, path, label)
        names = [a.name for a in found.amplifiers]
        name = str(value).strip()
        if name not in names:
            raise IngestError(str(path), f"{label}: {_shown(source, value)} is not an "
                              f"amplifier of detector {found.name} ({', '.join(names)})")
        group = groups.setdefault(found.id, {})
        if name in group:
            raise IngestError(str(path), f"{label}: amplifier {name} of detector {found.name} "
                              f"already in HDU {group[name]}")
        group[name] = index
        headers[index] = header
        specs[found.id] = found
    units = []
    for det_id, group in groups.items():
        det = specs[det_id]
        missing = [a.name for a in det.amplifiers if a.name not in group]
        if missing:
            raise IngestError(str(path), f"detector {det.name}: no HDU for amplifier(s) "
                              f"{', '.join(missing)}")
        order = [group[a.name] for a in det.amplifiers]
        label = f"HDUs {', '.join(str(i) for i in order)}"
        first = headers[order[0]]
        record, _ = translate(camera, first, path, label, validity_days)
        for index in order[1:]:
            other, _ = translate(camera, headers[index], path, _hdu_label(index, hdul[index]
                                                                           .header),
                                 validity_days)
            if other.data_id != record.data_id:
                raise IngestError(str(path), f"{label}: the amplifier HDUs of detector "
                                  f"{det.name} disagree ({record.data_id} and {other.data_id})")
        shapes = [_shape(hdul[i].header) for i in order]
        amps, _ = _geometry(det, [headers[i] for i in order], shapes,  # type: ignore[arg-type]
                            path, label, per_amp=True)
        _raw_wcs(first, amps, True, path, label)
        record.extra["hdu"] = order
        units.append(RawUnit(record, det, order, first,
                             {a.name: headers[group[a.name]] for a in det.amplifiers}))
    return units


# --- reading ------------------------------------------------------------------------------------
def _amplifier(spec_amp: Any, geometry: _AmpGeometry) -> Amplifier:
    raw_bbox = geometry.data
    if geometry.overscan.width:
        o = geometry.overscan
        x0, y0 = min(raw_bbox.x0, o.x0), min(raw_bbox.y0, o.y0)
        x1, y1 = max(raw_bbox.x1, o.x1), max(raw_bbox.y0 + raw_bbox.height, o.y0 + o.height) - 1
        raw_bbox = Box2I.from_corners(x0, y0, x1, y1)
    return Amplifier(
        name=spec_amp.name, bbox=geometry.trimmed, raw_bbox=raw_bbox,
        raw_data_bbox=geometry.data, raw_serial_overscan_bbox=geometry.overscan,
        gain=spec_amp.gain, read_noise=spec_amp.read_noise, saturation=spec_amp.saturation,
        suspect_level=spec_amp.suspect_level,
        # (c2, c3, ...) of corrected = r + c2 r^2 + c3 r^3 ... (LSST's polynomial linearizer)
        linearity_coeffs=tuple(spec_amp.linearity or ()))


def build_detector(detector: DetectorSpec, amps: list[_AmpGeometry]) -> Detector:
    """The :class:`~hpcpipe.image.Detector` of a camera detector with its raw geometry."""
    width, height = assembled_size([a.data for a in amps])
    return Detector(detector.id, detector.name, Box2I(0, 0, width, height),
                    tuple(_amplifier(s, g) for s, g in zip(detector.amplifiers, amps)),
                    serial=detector.serial)


def _visit_info(camera: Camera, unit: RawUnit, path: Path) -> VisitInfo:
    data_id = unit.record.data_id
    scale = _time_scale(camera, unit.header, path, "").lower()
    start = Time(data_id["dateObs"], format="isot", scale=scale)
    middle = (start + TimeDelta(data_id["expTime"] / 2.0, format="sec")).tai
    airmass = unit.header.get("AIRMASS")
    return VisitInfo(exposure_id=int(data_id["visit"]), date=middle,
                     exposure_time=float(data_id["expTime"]),
                     dark_time=float(data_id["expTime"]),
                     airmass=float(airmass) if isinstance(airmass, (int, float)) and not
                     isinstance(airmass, bool) else math.nan,
                     instrument=camera.name, observation_type="science")


def _metadata(header: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in header.items():
        if key in _SKIP:
            continue
        if isinstance(value, (bool, int, float, str)) and not (
                isinstance(value, float) and not math.isfinite(value)):
            out[key] = value
    return out


def _select_unit(camera: Camera, path: Path, ccd: int | None) -> RawUnit:
    """The raw unit of detector ``ccd`` in a file (the only one when ``ccd`` is None)."""
    units = scan_raw(camera, path)
    if ccd is None:
        if len(units) != 1:
            raise IngestError(str(path), f"the file holds {len(units)} detectors: give the ccd")
        unit = units[0]
    else:
        matching = [u for u in units if u.record.data_id.get("ccd") == ccd]
        if not matching:
            held = ", ".join(str(u.record.data_id.get("ccd")) for u in units)
            raise IngestError(str(path), f"no detector {ccd} in this file (it holds {held})")
        unit = matching[0]
    if unit.record.dataset_type != "raw" or unit.detector is None:
        raise IngestError(str(path), f"not a raw exposure ({unit.record.dataset_type})")
    return unit


def _unit_headers(camera: Camera, unit: RawUnit) -> list[dict[str, Any]]:
    assert unit.detector is not None
    if camera.layout == "amplifiers-per-file":
        return [unit.amp_headers[a.name] for a in unit.detector.amplifiers]
    return [unit.header]


def raw_wcs_box(camera: Camera, path: str | Path, ccd: int | None = None
                ) -> tuple[WCS | None, Box2I]:
    """The WCS and box of a raw detector's trimmed image, from the file's headers alone
    (no pixel is read): what a production needs to plan which patches a CCD reaches.

    Raises
    ------
    IngestError, FileFormatError
        As :func:`read_raw`.
    """
    path = Path(path)
    if camera.layout == "hpcpipe-exposure":
        with _open(path) as hdul:
            header = hdul["IMAGE"].header
            shape = _shape(header)
            assert shape is not None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                wcs = WCS(header, naxis=2)
        return (wcs if wcs.has_celestial else None), Box2I(0, 0, shape[1], shape[0])
    unit = _select_unit(camera, path, ccd)
    assert unit.detector is not None
    per_amp = camera.layout == "amplifiers-per-file"
    with _open(path) as hdul:
        shapes = [_shape(hdul[i].header) for i in unit.hdus]
    amps, _ = _geometry(unit.detector, _unit_headers(camera, unit),
                        [s for s in shapes if s is not None], path, "", per_amp)
    width, height = assembled_size([a.data for a in amps])
    return _raw_wcs(unit.header, amps, per_amp, path, ""), Box2I(0, 0, width, height)


def read_raw(camera: Camera, path: str | Path, ccd: int | None = None) -> Exposure:
    """Read one detector of a raw file into an Exposure (ADU, untrimmed).

    Parameters
    ----------
    camera : Camera
    path : str or Path
    ccd : int, optional
        The detector (needed when the file holds several).

    Raises
    ------
    IngestError, FileFormatError
        If the file does not hold that detector or does not match the camera.
    """
    path = Path(path)
    if camera.layout == "hpcpipe-exposure":
        return Exposure.read(path)
    unit = _select_unit(camera, path, ccd)
    detector = unit.detector
    assert detector is not None
    per_amp = camera.layout == "amplifiers-per-file"
    with _open(path) as hdul:
        arrays = [np.asarray(hdul[i].data, dtype=np.float32) for i in unit.hdus]
    amps, frame = _geometry(detector, _unit_headers(camera, unit), [a.shape for a in arrays],
                            path, "", per_amp)
    pixels = np.concatenate(arrays, axis=1) if per_amp else arrays[0]
    exposure = Exposure(Box2I(0, 0, frame[1], frame[0]))
    exposure.image.array[:] = pixels
    exposure.detector = build_detector(detector, amps)
    exposure.wcs = _raw_wcs(unit.header, amps, per_amp, path, "")
    name, physical = _filter(camera, unit.header, path, "")
    exposure.filter = FilterLabel(name, physical)
    exposure.visit_info = _visit_info(camera, unit, path)
    exposure.metadata = _metadata(unit.header)
    return exposure
