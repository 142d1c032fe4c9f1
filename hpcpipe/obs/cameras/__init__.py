"""hpcpipe's own camera files, registered by name in setup.py's ``hpcpipe.cameras`` entry points.

Each camera registers itself as any other package's would (``simcam = hpcpipe.obs.cameras:
SIMCAM``): :mod:`hpcpipe.obs.registry` finds them through the entry points, and the butler
through it, without a camera's name written into generic code.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SIMCAM", "GENERIC", "MOSAIC4"]

_HERE = Path(__file__).resolve().parent

#: The simulated camera of ``hpcpipe simulate`` and the demo (detectors added by the files).
SIMCAM = _HERE / "simcam.yaml"
#: One HDU per file, no overscan: a small telescope or an archive frame.
GENERIC = _HERE / "generic.yaml"
#: A DECam-like multi-extension mosaic: 4 detectors of two amplifiers with overscan.
MOSAIC4 = _HERE / "mosaic4.yaml"
