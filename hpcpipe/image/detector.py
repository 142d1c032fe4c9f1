"""Detectors (CCDs) and their amplifiers (afw.cameraGeom style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hpcpipe.geom import Box2I

__all__ = ["Amplifier", "Detector"]

_BOX_FIELDS = ("bbox", "raw_bbox", "raw_data_bbox", "raw_serial_overscan_bbox")


@dataclass(frozen=True)
class Amplifier:
    """One readout amplifier of a detector.

    Parameters
    ----------
    name : str
        The amplifier's name (for example ``"C00"``).
    bbox : Box2I
        Its pixels in the assembled, trimmed detector image.
    raw_bbox : Box2I
        All of its pixels (data and overscan) in the raw image.
    raw_data_bbox : Box2I
        Its data (imaging) pixels in the raw image.
    raw_serial_overscan_bbox : Box2I
        Its serial overscan pixels in the raw image.
    gain : float
        Electrons per ADU.
    read_noise : float
        Read noise in electrons.
    saturation : float
        The level (ADU, before bias subtraction) above which pixels are saturated.
    suspect_level : float
        The level (ADU) above which the response is non-linear (``inf`` if none).
    linearity_coeffs : tuple of float
        The polynomial linearizer (LSST's ``LinearizePolynomial``): the coefficients
        ``(c2, c3, ...)`` of the corrected level ``a + c2 a**2 + c3 a**3 + ...`` of a pixel at
        ``a`` ADU above the overscan and the bias; empty for a linear amplifier.
    """

    name: str
    bbox: Box2I
    raw_bbox: Box2I
    raw_data_bbox: Box2I
    raw_serial_overscan_bbox: Box2I
    gain: float = 1.0
    read_noise: float = 0.0
    saturation: float = float("inf")
    suspect_level: float = float("inf")
    linearity_coeffs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "linearity_coeffs",
                           tuple(float(c) for c in self.linearity_coeffs))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (boxes as ``[x0, y0, width, height]``)."""
        out = asdict(self)
        for key in _BOX_FIELDS:
            out[key] = getattr(self, key).to_list()
        out["linearity_coeffs"] = list(self.linearity_coeffs)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Amplifier:
        """The inverse of :meth:`to_dict` (a dict without ``linearity_coeffs``, as written
        before that field existed, gives a linear amplifier)."""
        kwargs = dict(values)
        for key in _BOX_FIELDS:
            kwargs[key] = Box2I(*(int(v) for v in kwargs[key]))
        for key in ("gain", "read_noise", "saturation", "suspect_level"):
            kwargs[key] = float(kwargs[key])
        kwargs["name"] = str(kwargs["name"])
        kwargs["linearity_coeffs"] = tuple(float(c) for c in
                                           kwargs.get("linearity_coeffs", None) or ())
        return cls(**kwargs)


@dataclass(frozen=True)
class Detector:
    """A detector of a camera.

    Parameters
    ----------
    id : int
        The detector's number (the ``ccd`` data id key).
    name : str
        Its name.
    bbox : Box2I
        The assembled, trimmed detector image.
    amplifiers : tuple of Amplifier
        Its amplifiers.
    serial : str
        The sensor's serial number.
    """

    id: int
    name: str
    bbox: Box2I
    amplifiers: tuple[Amplifier, ...] = field(default_factory=tuple)
    serial: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "amplifiers", tuple(self.amplifiers))

    def __getitem__(self, name: str) -> Amplifier:
        for amp in self.amplifiers:
            if amp.name == name:
                return amp
        known = ", ".join(a.name for a in self.amplifiers)
        raise KeyError(f"detector {self.name!r} has no amplifier {name!r} (amplifiers: {known})")

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.amplifiers)

    def __len__(self) -> int:
        return len(self.amplifiers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "serial": self.serial,
            "bbox": self.bbox.to_list(),
            "amplifiers": [amp.to_dict() for amp in self.amplifiers],
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Detector:
        return cls(
            id=int(values["id"]),
            name=str(values["name"]),
            bbox=Box2I(*(int(v) for v in values["bbox"])),
            amplifiers=tuple(Amplifier.from_dict(a) for a in values["amplifiers"]),
            serial=str(values.get("serial", "")),
        )
