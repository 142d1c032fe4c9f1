"""SimCam, the simulated camera: its butler mapper, data id keys and raw header keywords.

Repositories laid out for it name the mapper ``simcam`` (or
``hpcpipe.obs.simcam.SimCamMapper``) in their ``_mapper`` file. ``hpcpipe butler describe``
(and ``docs/butler_simcam.md``) lists its dataset types and keys.
"""

from __future__ import annotations

from hpcpipe.obs.simcam.headers import HEADER_KEYWORDS, calib_header, raw_header
from hpcpipe.obs.simcam.keys import FILTERS
from hpcpipe.obs.simcam.mapper import SimCamMapper

__all__ = ["SimCamMapper", "FILTERS", "HEADER_KEYWORDS", "raw_header", "calib_header"]
