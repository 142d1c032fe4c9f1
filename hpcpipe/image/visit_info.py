"""What the telescope did during an exposure (afw.image.VisitInfo style)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from astropy.coordinates import SkyCoord
from astropy.time import Time

__all__ = ["VisitInfo"]


@dataclass(frozen=True)
class VisitInfo:
    """Observation metadata of one exposure.

    Parameters
    ----------
    exposure_id : int
        The visit (exposure) number.
    date : astropy.time.Time or None
        The middle of the exposure (TAI).
    exposure_time : float
        Open-shutter time in seconds.
    dark_time : float
        Time the detector integrated dark current, in seconds.
    airmass : float
        Airmass at the middle of the exposure.
    boresight : astropy.coordinates.SkyCoord or None
        Where the telescope pointed (ICRS).
    rotation_angle : float
        Sky rotation of the focal plane, degrees.
    instrument : str
        The camera's name.
    observation_type : str
        ``"science"``, ``"bias"``, ``"dark"``, ``"flat"``...
    """

    exposure_id: int = 0
    date: Time | None = None
    exposure_time: float = math.nan
    dark_time: float = math.nan
    airmass: float = math.nan
    boresight: SkyCoord | None = None
    rotation_angle: float = math.nan
    instrument: str = ""
    observation_type: str = "science"

    def to_dict(self) -> dict[str, Any]:
        """Plain values: the date as an ISO string in TAI, the boresight as degrees."""
        return {
            "exposure_id": int(self.exposure_id),
            "date": self.date.tai.isot if self.date is not None else "",
            "exposure_time": float(self.exposure_time),
            "dark_time": float(self.dark_time),
            "airmass": float(self.airmass),
            "boresight_ra": float(self.boresight.icrs.ra.deg) if self.boresight is not None
            else math.nan,
            "boresight_dec": float(self.boresight.icrs.dec.deg) if self.boresight is not None
            else math.nan,
            "rotation_angle": float(self.rotation_angle),
            "instrument": self.instrument,
            "observation_type": self.observation_type,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VisitInfo:
        ra, dec = float(values["boresight_ra"]), float(values["boresight_dec"])
        date = str(values.get("date", ""))
        return cls(
            exposure_id=int(values["exposure_id"]),
            date=Time(date, format="isot", scale="tai") if date else None,
            exposure_time=float(values["exposure_time"]),
            dark_time=float(values["dark_time"]),
            airmass=float(values["airmass"]),
            boresight=None if math.isnan(ra) else SkyCoord(ra, dec, unit="deg", frame="icrs"),
            rotation_angle=float(values["rotation_angle"]),
            instrument=str(values.get("instrument", "")),
            observation_type=str(values.get("observation_type", "science")),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VisitInfo):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()
        for key in a:
            x, y = a[key], b[key]
            if isinstance(x, float) and isinstance(y, float):
                if not (x == y or (math.isnan(x) and math.isnan(y))):
                    return False
            elif x != y:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]
