"""Header keywords of the simulated camera's raw and calibration files, and their ingest.

Raw science files carry (in the primary HDU, or in an hpcpipe exposure's metadata):

========  ==========  ===========================================================
keyword   fallback    meaning
========  ==========  ===========================================================
OBSTYPE   (visit      ``science`` (also ``object``) for raw exposures; ``bias``,
          info)       ``dark`` or ``flat`` for calibration products. Default science.
VISIT     EXPID       exposure number (int, >= 0)
CCDNUM    DETID       detector number (int, >= 0)
FILTER                band: u, g, r, i, z or y (science files and flats)
DATE-OBS  DATE-AVG    start of the exposure, ISO 8601, TAI (``TIMESYS`` if present
                      must be TAI); DATE-AVG (the middle) when DATE-OBS is absent
EXPTIME               exposure time in seconds (float, >= 0)
CALIB_ID              calibration products only: ``calibDate=YYYY-MM-DD
                      [validStart=YYYY-MM-DD] [validEnd=YYYY-MM-DD]``
========  ==========  ===========================================================

A keyword and its fallback must agree when both are present (VISIT and EXPID, CCDNUM and
DETID). :func:`raw_header` and :func:`calib_header` make these cards for simulations.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcpipe.butler.calibs import parse_calib_id
from hpcpipe.butler.errors import IngestError
from hpcpipe.butler.headers import HeaderKeyword
from hpcpipe.butler.mapper import IngestRecord
from hpcpipe.obs.simcam.keys import FILTERS

__all__ = ["HEADER_KEYWORDS", "CALIB_TYPES", "translate_header", "raw_header", "calib_header"]

#: OBSTYPE values of calibration products, and their dataset types.
CALIB_TYPES = {"bias": "bias", "dark": "dark", "flat": "flat"}
#: OBSTYPE values of science exposures.
SCIENCE_TYPES = ("science", "object")

OBSTYPE = HeaderKeyword("OBSTYPE", "(dataset type)", "science (or object) for raw exposures; "
                        "bias, dark or flat for calibration products; science if absent",
                        required=False)
VISIT = HeaderKeyword("VISIT", "visit", "exposure number (int >= 0)", ("EXPID",))
CCDNUM = HeaderKeyword("CCDNUM", "ccd", "detector number (int >= 0)", ("DETID",))
FILTER = HeaderKeyword("FILTER", "filter", f"band, one of {', '.join(FILTERS)} (science "
                       "exposures and flats)")
DATE_OBS = HeaderKeyword("DATE-OBS", "dateObs, date", "start of the exposure, ISO 8601 in TAI "
                         "(DATE-AVG, the middle, if absent; TIMESYS, if present, must be "
                         "TAI)", ("DATE-AVG",))
EXPTIME = HeaderKeyword("EXPTIME", "expTime", "exposure time in seconds (>= 0)")
CALIB_ID = HeaderKeyword("CALIB_ID", "calibDate", "calibration products: 'calibDate=YYYY-MM-DD "
                         "[validStart=YYYY-MM-DD] [validEnd=YYYY-MM-DD]' (inclusive; the "
                         "default validity is calibDate -/+ 30 days)")

#: Every keyword ingest reads, in the order documented.
HEADER_KEYWORDS = (OBSTYPE, VISIT, CCDNUM, FILTER, DATE_OBS, EXPTIME, CALIB_ID)


def _require(keyword: HeaderKeyword, header: Mapping[str, Any], path: Path) -> tuple[str, Any]:
    found = keyword.find(dict(header))
    if found is None:
        names = keyword.keyword + "".join(f" (or {f})" for f in keyword.fallbacks)
        raise IngestError(str(path), f"missing header keyword {names}: {keyword.doc}")
    return found


def _int(keyword: HeaderKeyword, header: Mapping[str, Any], path: Path) -> int:
    values: dict[str, int] = {}
    for name in (keyword.keyword, *keyword.fallbacks):
        value = header.get(name)
        if value is None:
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                or value < 0:
            raise IngestError(str(path), f"header {name}={value!r} is not a whole number >= 0")
        values[name] = int(value)
    if not values:
        _require(keyword, header, path)
    if len(set(values.values())) > 1:
        listing = ", ".join(f"{k}={v}" for k, v in values.items())
        raise IngestError(str(path), f"inconsistent headers: {listing} ({keyword.doc})")
    return next(iter(values.values()))


def _filter(header: Mapping[str, Any], path: Path) -> str:
    name, value = _require(FILTER, header, path)
    if not isinstance(value, str) or value.strip() not in FILTERS:
        raise IngestError(str(path), f"header {name}={value!r} is not a SimCam filter "
                          f"({', '.join(FILTERS)})")
    return value.strip()


def _date_obs(header: Mapping[str, Any], path: Path) -> str:
    name, value = _require(DATE_OBS, header, path)
    timesys = str(header.get("TIMESYS", "TAI")).strip().upper()
    if timesys != "TAI":
        raise IngestError(str(path), f"inconsistent headers: TIMESYS={timesys!r} but SimCam "
                          f"dates are TAI ({name}={value!r})")
    try:
        when = dt.datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise IngestError(str(path), f"header {name}={value!r} is not an ISO 8601 date and "
                          "time (YYYY-MM-DDThh:mm:ss[.sss])") from None
    if when.tzinfo is not None:
        raise IngestError(str(path), f"header {name}={value!r} has a time zone; SimCam "
                          "dates are TAI without one")
    return when.isoformat(timespec="milliseconds")


def _exptime(header: Mapping[str, Any], path: Path) -> float:
    name, value = _require(EXPTIME, header, path)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
            or not np.isfinite(value) or value < 0:
        raise IngestError(str(path), f"header {name}={value!r} is not an exposure time in "
                          "seconds (a number >= 0)")
    return float(value)


def translate_header(header: Mapping[str, Any], path: Path,
                     validity_days: float = 30.0) -> IngestRecord:
    """The registry entry of a SimCam raw or calibration file, from its header.

    Raises
    ------
    IngestError
        Naming the file and the keyword that is missing, invalid or inconsistent.
    """
    kind = str(header.get("OBSTYPE") or "science").strip().lower()
    if kind in SCIENCE_TYPES:
        date_obs = _date_obs(header, path)
        return IngestRecord("raw", {
            "visit": _int(VISIT, header, path),
            "ccd": _int(CCDNUM, header, path),
            "filter": _filter(header, path),
            "date": date_obs[:10],
            "dateObs": date_obs,
            "expTime": _exptime(header, path),
        })
    if kind not in CALIB_TYPES:
        raise IngestError(str(path), f"header OBSTYPE={header.get('OBSTYPE')!r} is not one of "
                          f"{', '.join((*SCIENCE_TYPES, *CALIB_TYPES))}")
    _, text = _require(CALIB_ID, header, path)
    try:
        calib_date, start, end = parse_calib_id(str(text), validity_days)
    except ValueError as exc:
        raise IngestError(str(path), str(exc)) from None
    data_id: dict[str, Any] = {"calibDate": calib_date, "ccd": _int(CCDNUM, header, path)}
    if kind == "flat":
        data_id["filter"] = _filter(header, path)
    return IngestRecord(CALIB_TYPES[kind], data_id, start, end)


def raw_header(visit: int, ccd: int, filter: str, date_obs: str, exp_time: float
               ) -> dict[str, Any]:
    """The header cards of a SimCam raw file (put them in ``exposure.metadata``).

    Parameters
    ----------
    visit, ccd : int
    filter : str
    date_obs : str
        Start of the exposure, ISO 8601 in TAI (``"2026-01-15T03:12:45"``).
    exp_time : float
        Seconds.
    """
    return {"OBSTYPE": "science", "VISIT": int(visit), "CCDNUM": int(ccd),
            "FILTER": str(filter), "DATE-OBS": str(date_obs), "EXPTIME": float(exp_time)}


def calib_header(obstype: str, ccd: int, calib_date: str, valid_start: str = "",
                 valid_end: str = "", filter: str = "") -> dict[str, Any]:
    """The header cards of a SimCam calibration product (``bias``, ``dark`` or ``flat``)."""
    calib_id = f"calibDate={calib_date}"
    if valid_start:
        calib_id += f" validStart={valid_start}"
    if valid_end:
        calib_id += f" validEnd={valid_end}"
    cards: dict[str, Any] = {"OBSTYPE": obstype, "CCDNUM": int(ccd), "CALIB_ID": calib_id}
    if filter:
        cards["FILTER"] = filter
    return cards
