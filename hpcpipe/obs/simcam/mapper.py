"""The mapper of the simulated camera (``simcam``): the generic mapper of its camera file."""

from __future__ import annotations

from typing import ClassVar

from hpcpipe.obs.camera import CAMERA_DIR, Camera, load_camera
from hpcpipe.obs.mapper import CameraMapper

__all__ = ["SimCamMapper", "SIMCAM_FILE"]

#: The built-in description of SimCam (any number of CCDs: the detectors are in the files).
SIMCAM_FILE = CAMERA_DIR / "simcam.yaml"


class SimCamMapper(CameraMapper):
    """The generic :class:`~hpcpipe.obs.mapper.CameraMapper` of SimCam's camera file.

    Parameters
    ----------
    camera : Camera, optional
        A concrete SimCam description (``hpcpipe simulate`` writes one with the detectors it
        simulated); the built-in ``hpcpipe/obs/cameras/simcam.yaml`` by default.
    """

    name: ClassVar[str] = "simcam"

    def __init__(self, camera: Camera | None = None) -> None:
        super().__init__(camera if camera is not None else load_camera(SIMCAM_FILE))
