"""The data id keys of every camera (Gen2 habit: the camera file maps its headers onto them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpcpipe.butler.datasets import DataIdKey

__all__ = ["FILTERS", "KEYS", "make_keys", "normalize_patch"]

#: The filters (bands) of the simulated camera.
FILTERS = ("u", "g", "r", "i", "z", "y")

DATE_PATTERN = r"\d{4}-\d{2}-\d{2}"


def normalize_patch(value: Any) -> Any:
    """Accept a patch index ``(x, y)`` (as :attr:`hpcpipe.skymap.PatchInfo.index` gives it)
    as well as the text ``"x,y"``."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{int(value[0])},{int(value[1])}"
    return value


def make_keys(filters: tuple[str, ...] = FILTERS,
              sources: Mapping[str, str] | None = None) -> tuple[DataIdKey, ...]:
    """The data id keys, the ``filter`` key accepting the camera's filter names.

    ``sources`` says, for their docs, where a camera's headers give ``visit``, ``ccd``,
    ``filter``, ``dateObs``, ``expTime`` and ``calibId``.
    """
    given = dict(sources or {})

    def source(target: str, default: str) -> str:
        return given.get(target, default)

    return (
        DataIdKey("visit", int, "Exposure number, unique over the survey (raw header: "
                  f"{source('visit', 'VISIT or EXPID')}).", example=12, pattern=r"\d+"),
        DataIdKey("ccd", int, "Detector number, from 0 (raw header: "
                  f"{source('ccd', 'CCDNUM or DETID')}).", example=3, pattern=r"\d+"),
        DataIdKey("filter", str, "Band of the exposure or of the flat (raw header: "
                  f"{source('filter', 'FILTER')}).",
                  example=filters[0] if filters else "r", choices=tuple(filters)),
        DataIdKey("date", str, "Day the exposure started, YYYY-MM-DD (the date part of dateObs); "
                  "calibrations are chosen by it.", example="2026-01-15",
                  pattern=DATE_PATTERN),
        DataIdKey("dateObs", str, "Start of the exposure, ISO 8601 to the millisecond, in the "
                  f"camera's time scale (raw header: {source('dateObs', 'DATE-OBS')}).",
                  example="2026-01-15T03:12:45.000",
                  pattern=DATE_PATTERN + r"T\d{2}:\d{2}:\d{2}(\.\d+)?"),
        DataIdKey("expTime", float, "Exposure time in seconds (raw header: "
                  f"{source('expTime', 'EXPTIME')}).",
                  example=30.0),
        DataIdKey("tract", int, "Tract number of the sky map (hpcpipe.skymap).", example=0,
                  pattern=r"\d+"),
        DataIdKey("patch", str, "Patch of a tract as \"x,y\" (its index in the tract's patch "
                  "grid); a tuple (x, y) is accepted too.", example="1,2", pattern=r"\d+,\d+",
                  normalize=normalize_patch),
        DataIdKey("calibDate", str, "Day a calibration product was made, YYYY-MM-DD (from its "
                  f"header: {source('calibId', 'CALIB_ID')}).", example="2026-01-10",
                  pattern=DATE_PATTERN),
    )


#: The keys of the simulated camera.
KEYS = make_keys(FILTERS)
