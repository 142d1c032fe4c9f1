"""The simulated camera: a mosaic of CCDs, each read out through two amplifiers.

Focal plane: ``nx`` by ``ny`` CCDs of ``width`` by ``height`` pixels (0.2 arcsec), separated by
gaps. Each CCD has two amplifiers, the left and right halves. A raw frame stores each
amplifier's data columns followed by its serial overscan columns::

    | amp C00 data | C00 overscan | amp C01 data | C01 overscan |

The assembled, trimmed detector image is ``width`` by ``height``.

:meth:`SimCamera.description_text` is the camera file of this geometry (SimCam's built-in
file, ``hpcpipe/obs/cameras/simcam.yaml``, with the detectors added): ``hpcpipe simulate``
stores it in the repository, and the simulator writes its raw headers through it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from hpcpipe.geom import Box2I
from hpcpipe.image import Amplifier, Detector
from hpcpipe.obs.camera import Camera, format_section, parse_camera
from hpcpipe.obs.cameras import SIMCAM

__all__ = ["CameraConfig", "SimCamera"]


@dataclass(frozen=True)
class CameraConfig:
    """Geometry and electronics of the simulated camera.

    Parameters
    ----------
    nx, ny : int
        CCDs across and down the focal plane.
    width, height : int
        Imaging pixels of one CCD (the width is split between two amplifiers).
    overscan : int
        Serial overscan columns per amplifier.
    gap : int
        Pixels between neighbouring CCDs on the focal plane.
    pixel_scale : float
        Arcseconds per pixel.
    gains : tuple of float
        Electrons per ADU of the two amplifiers.
    read_noise : float
        Electrons.
    bias_level : float
        ADU added by the electronics (seen in the overscan).
    saturation : float
        ADU at which a raw pixel saturates.
    dark_current : float
        Electrons per second per pixel.
    full_well : float
        Electrons a pixel holds; more spills along the column (bleed trails). An
        amplifier's saturation level (ADU) is set just below its full well.
    """

    nx: int = 3
    ny: int = 3
    width: int = 2048
    height: int = 2048
    overscan: int = 32
    gap: int = 100
    pixel_scale: float = 0.2
    gains: tuple[float, float] = (1.6, 1.8)
    read_noise: float = 5.0
    bias_level: float = 1000.0
    saturation: float = 60000.0
    dark_current: float = 0.02
    full_well: float = 90000.0

    def __post_init__(self) -> None:
        if self.width % 2:
            raise ValueError(f"CCD width must be even (two amplifiers); got {self.width}")
        for name in ("nx", "ny", "width", "height", "overscan"):
            if getattr(self, name) < 1:
                raise ValueError(f"camera {name} must be positive; got {getattr(self, name)}")


class SimCamera:
    """The detectors of the simulated camera and where they sit on the focal plane."""

    def __init__(self, config: CameraConfig | None = None) -> None:
        self.config = config or CameraConfig()

    @property
    def num_ccds(self) -> int:
        return self.config.nx * self.config.ny

    @property
    def raw_width(self) -> int:
        return self.config.width + 2 * self.config.overscan

    def detector(self, ccd: int) -> Detector:
        """The detector (with its amplifiers' raw and trimmed geometry) of CCD ``ccd``."""
        if not 0 <= ccd < self.num_ccds:
            raise ValueError(f"ccd {ccd} does not exist: SimCam has CCDs 0..{self.num_ccds - 1}")
        c = self.config
        half = c.width // 2
        amps = []
        for k in range(2):
            raw_x0 = k * (half + c.overscan)
            amps.append(Amplifier(
                name=f"C0{k}",
                bbox=Box2I(k * half, 0, half, c.height),
                raw_bbox=Box2I(raw_x0, 0, half + c.overscan, c.height),
                raw_data_bbox=Box2I(raw_x0, 0, half, c.height),
                raw_serial_overscan_bbox=Box2I(raw_x0 + half, 0, c.overscan, c.height),
                gain=c.gains[k], read_noise=c.read_noise,
                saturation=min(c.saturation, c.bias_level + 0.97 * c.full_well / c.gains[k]),
                suspect_level=c.bias_level + 0.9 * c.full_well / c.gains[k],
            ))
        return Detector(ccd, f"S{ccd // c.nx}{ccd % c.nx}", Box2I(0, 0, c.width, c.height),
                        tuple(amps), serial=f"SIMCCD-{ccd:03d}")

    def description_text(self) -> str:
        """The camera file (YAML) of this geometry: SimCam's with its detectors listed."""
        return _description_text(self.config)

    def description(self) -> Camera:
        """The camera description of this geometry (see :meth:`description_text`)."""
        return _description(self.config)

    def focal_plane_offset(self, ccd: int) -> tuple[float, float]:
        """Focal-plane position (pixels) of CCD ``ccd``'s pixel (0, 0), boresight at 0, 0."""
        c = self.config
        col, row = ccd % c.nx, ccd // c.nx
        pitch_x, pitch_y = c.width + c.gap, c.height + c.gap
        x0 = (col - (c.nx - 1) / 2.0) * pitch_x - (c.width - 1) / 2.0
        y0 = (row - (c.ny - 1) / 2.0) * pitch_y - (c.height - 1) / 2.0
        return float(x0), float(y0)

    def field_radius_deg(self) -> float:
        """Radius (degrees) of a circle around the boresight holding the whole focal plane."""
        c = self.config
        half_x = (c.nx * (c.width + c.gap)) / 2.0
        half_y = (c.ny * (c.height + c.gap)) / 2.0
        return float(np.hypot(half_x, half_y) * c.pixel_scale / 3600.0)


@functools.lru_cache(maxsize=8)
def _description_text(config: CameraConfig) -> str:
    camera = SimCamera(config)
    data: dict[str, Any] = yaml.safe_load(SIMCAM.read_text())
    detectors = []
    for ccd in range(camera.num_ccds):
        det = camera.detector(ccd)
        detectors.append({
            "id": det.id, "name": det.name, "serial": det.serial,
            "size": [det.bbox.width, det.bbox.height],
            "amplifiers": [{
                "name": amp.name,
                "data_section": format_section(amp.raw_data_bbox),
                "overscan_section": format_section(amp.raw_serial_overscan_bbox),
                "gain": amp.gain, "read_noise": amp.read_noise,
                "saturation": amp.saturation, "suspect_level": amp.suspect_level,
            } for amp in det.amplifiers],
        })
    data["detectors"] = detectors
    header = (f"# SimCam as simulated: {config.nx}x{config.ny} CCDs of {config.width}x"
              f"{config.height} pixels (written by hpcpipe.sim.camera.SimCamera)\n")
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


@functools.lru_cache(maxsize=8)
def _description(config: CameraConfig) -> Camera:
    return parse_camera(_description_text(config), "<SimCam as simulated>")
