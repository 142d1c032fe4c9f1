"""A small command-line task used by tests/test_cmdline.py (a Level 3 user's task)."""

from __future__ import annotations

import os
import signal

import numpy as np

from hpcpipe.config import Config, Field, ListField
from hpcpipe.task import Struct
from hpcpipe.task.cmdline import CmdLineTask


class OverscanConfig(Config):
    scale = Field("multiply the overscan-subtracted pixels by this", float, default=1.0)
    fail_visits = ListField("visits that fail on purpose", int, default=[])
    kill_visits = ListField("visits whose process kills itself (SIGKILL) on purpose", int,
                            default=[])


class OverscanTask(CmdLineTask):
    """Subtract each amplifier's overscan median and write postISRCCD."""

    ConfigClass = OverscanConfig
    _DefaultName = "overscanTest"

    def run_data_ref(self, data_ref):
        if data_ref.dataId["visit"] in self.config.fail_visits:
            raise RuntimeError(f"visit {data_ref.dataId['visit']} fails on purpose")
        if data_ref.dataId["visit"] in self.config.kill_visits and data_ref.dataId["ccd"] == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would
        raw = data_ref.get("raw")
        image = raw.image.array
        out = raw.clone()
        for amp in raw.detector.amplifiers:
            level = np.median(image[amp.raw_serial_overscan_bbox.slices()])
            out.image.array[amp.raw_data_bbox.slices()] = (
                image[amp.raw_data_bbox.slices()] - level) * self.config.scale
        data_ref.put(out, "postISRCCD")
        self.metadata["nAmps"] = len(raw.detector.amplifiers)
        return Struct(exposure=out)
