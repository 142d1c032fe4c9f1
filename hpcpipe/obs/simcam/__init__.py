"""SimCam, the simulated camera: its camera file, mapper and raw header cards.

SimCam is described by ``hpcpipe/obs/cameras/simcam.yaml`` and served by the generic
:class:`hpcpipe.obs.mapper.CameraMapper` (:class:`SimCamMapper` is that mapper with the
built-in file). Repositories name it ``simcam`` in their ``_mapper`` file, or store the
concrete description ``hpcpipe simulate`` wrote. ``hpcpipe butler describe`` (and
``docs/butler_simcam.md``) lists its dataset types and keys.
"""

from __future__ import annotations

from hpcpipe.obs.keys import FILTERS
from hpcpipe.obs.simcam.headers import calib_header, raw_header
from hpcpipe.obs.simcam.mapper import SimCamMapper

__all__ = ["SimCamMapper", "FILTERS", "raw_header", "calib_header"]
