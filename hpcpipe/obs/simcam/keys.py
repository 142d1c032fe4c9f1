"""The data id keys of the simulated camera."""

from __future__ import annotations

from typing import Any

from hpcpipe.butler.datasets import DataIdKey

__all__ = ["FILTERS", "KEYS", "normalize_patch"]

#: The filters (bands) of the simulated camera.
FILTERS = ("u", "g", "r", "i", "z", "y")

DATE_PATTERN = r"\d{4}-\d{2}-\d{2}"


def normalize_patch(value: Any) -> Any:
    """Accept a patch index ``(x, y)`` (as :attr:`hpcpipe.skymap.PatchInfo.index` gives it)
    as well as the text ``"x,y"``."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{int(value[0])},{int(value[1])}"
    return value


KEYS = (
    DataIdKey("visit", int, "Exposure number, unique over the survey (raw header VISIT, or "
              "EXPID as hpcpipe exposures write it).", example=12, pattern=r"\d+"),
    DataIdKey("ccd", int, "Detector number, from 0 (raw header CCDNUM, or DETID as hpcpipe "
              "exposures write it).", example=3, pattern=r"\d+"),
    DataIdKey("filter", str, "Band of the exposure or of the flat (raw header FILTER).",
              example="r", choices=FILTERS),
    DataIdKey("date", str, "Day the exposure started, YYYY-MM-DD in TAI (the date part of "
              "DATE-OBS); calibrations are chosen by it.", example="2026-01-15",
              pattern=DATE_PATTERN),
    DataIdKey("dateObs", str, "Start of the exposure, ISO 8601 in TAI to the millisecond "
              "(raw header DATE-OBS).", example="2026-01-15T03:12:45.000",
              pattern=DATE_PATTERN + r"T\d{2}:\d{2}:\d{2}(\.\d+)?"),
    DataIdKey("expTime", float, "Exposure time in seconds (raw header EXPTIME).",
              example=30.0),
    DataIdKey("tract", int, "Tract number of the sky map (hpcpipe.skymap).", example=0,
              pattern=r"\d+"),
    DataIdKey("patch", str, "Patch of a tract as \"x,y\" (its index in the tract's patch "
              "grid); a tuple (x, y) is accepted too.", example="1,2", pattern=r"\d+,\d+",
              normalize=normalize_patch),
    DataIdKey("calibDate", str, "Day a calibration product was made, YYYY-MM-DD (from its "
              "CALIB_ID header card).", example="2026-01-10", pattern=DATE_PATTERN),
)
