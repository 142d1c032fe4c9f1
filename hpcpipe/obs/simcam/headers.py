"""Header cards of SimCam's raw and calibration files, written through its camera file.

The keywords are those ``hpcpipe/obs/cameras/simcam.yaml`` reads (``header:``): OBSTYPE,
VISIT (or EXPID), CCDNUM (or DETID), FILTER, DATE-OBS (TAI), EXPTIME and, for calibration
products, CALIB_ID (``calibDate=YYYY-MM-DD [validStart=YYYY-MM-DD] [validEnd=YYYY-MM-DD]``).
"""

from __future__ import annotations

from typing import Any

from hpcpipe.obs.camera import Camera, load_camera
from hpcpipe.obs.simcam.mapper import SIMCAM_FILE

__all__ = ["raw_header", "calib_header", "simcam"]

_CAMERA: list[Camera] = []


def simcam() -> Camera:
    """The built-in SimCam description (read once)."""
    if not _CAMERA:
        _CAMERA.append(load_camera(SIMCAM_FILE))
    return _CAMERA[0]


def raw_header(visit: int, ccd: int, filter: str, date_obs: str, exp_time: float,
               camera: Camera | None = None) -> dict[str, Any]:
    """The header cards of a SimCam raw file (put them in ``exposure.metadata``).

    Parameters
    ----------
    visit, ccd : int
    filter : str
    date_obs : str
        Start of the exposure, ISO 8601 in TAI (``"2026-01-15T03:12:45"``).
    exp_time : float
        Seconds.
    camera : Camera, optional
        The SimCam description to write for (the built-in one by default).
    """
    return (camera or simcam()).header_cards({
        "obsType": "science", "visit": int(visit), "ccd": int(ccd), "filter": str(filter),
        "dateObs": str(date_obs), "expTime": float(exp_time)})


def calib_header(obstype: str, ccd: int, calib_date: str, valid_start: str = "",
                 valid_end: str = "", filter: str = "", camera: Camera | None = None
                 ) -> dict[str, Any]:
    """The header cards of a SimCam calibration product (``bias``, ``dark`` or ``flat``)."""
    calib_id = f"calibDate={calib_date}"
    if valid_start:
        calib_id += f" validStart={valid_start}"
    if valid_end:
        calib_id += f" validEnd={valid_end}"
    values: dict[str, Any] = {"obsType": obstype, "ccd": int(ccd), "calibId": calib_id}
    if filter:
        values["filter"] = filter
    return (camera or simcam()).header_cards(values)
