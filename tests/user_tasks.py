"""A Level 3 user's task with its own data id key and two dataset types of its own
(used by tests/test_user_task.py, docs/level3.md and perf/bench_user_task.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from hpcpipe.butler.userdatasets import DatasetDeclaration, KeyDeclaration
from hpcpipe.config import Config, Field, ListField
from hpcpipe.task import Struct
from hpcpipe.task.cmdline import CmdLineTask


class ObjectStatsConfig(Config):
    ccds = Field("CCDs per visit of the repository (object n reads visit 1000 + n // ccds % "
                 "visits, ccd n % ccds)", int, default=2)
    visits = Field("visits of the repository", int, default=2)
    fail_once = ListField("objects whose first attempt fails (a marker file records it)", int,
                          default=[])
    marker_dir = Field("where the fail-once markers go", str, default="")
    sleep = Field("seconds each unit sleeps (to have time to kill a run)", float, default=0.0)
    read_raw = Field("read a raw per object (off: a trivial unit, for the benchmark)", bool,
                     default=True)


class ObjectStatsTask(CmdLineTask):
    """Per object of a list: statistics of the raw it falls on."""

    ConfigClass = ObjectStatsConfig
    _DefaultName = "objectStats"
    id_dataset_type = None  # the units are the --id data ids: object=0..999
    declared_keys = (KeyDeclaration("object", int, "an object of the user's list"),)
    declared_datasets = (
        DatasetDeclaration("objectStats", ("object",), "yaml",
                           "Statistics of the raw pixels an object falls on."),
        DatasetDeclaration("objectProfile", ("object",), "json",
                           "A radial profile of the object (a dict of lists)."),
    )

    def run_data_ref(self, data_ref):
        obj = data_ref.dataId["object"]
        if obj in self.config.fail_once:
            marker = Path(self.config.marker_dir) / f"failed-{obj}"
            if not marker.exists():
                marker.touch()
                raise RuntimeError(f"object {obj} fails once on purpose")
        if self.config.sleep:
            time.sleep(self.config.sleep)
        if self.config.read_raw:
            visit = 1000 + (obj // self.config.ccds) % self.config.visits
            raw = data_ref.get("raw", visit=visit, ccd=obj % self.config.ccds)
            pixels = raw.image.array
            stats = {"mean": float(np.mean(pixels)), "std": float(np.std(pixels)),
                     "visit": visit}
        else:
            stats = {"mean": float(obj), "std": 0.0, "visit": -1}
        self.log.info("object %d: mean %.1f", obj, stats["mean"])
        data_ref.put(stats, "objectStats")
        data_ref.put({"radius": [0, 1, 2], "flux": [stats["mean"]] * 3, "pid": os.getpid()},
                     "objectProfile")
        self.metadata["mean"] = stats["mean"]
        return Struct(stats=stats)


class ClashingTask(CmdLineTask):
    """Declares a dataset type the camera already has (refused)."""

    _DefaultName = "clashing"
    declared_datasets = (DatasetDeclaration("calexp", ("visit", "ccd"), "yaml", "no"),)

    def run_data_ref(self, data_ref):
        return Struct()


class ObjectSummaryTask(CmdLineTask):
    """Per existing objectStats dataset (units from a dataset listing): a summary of it."""

    _DefaultName = "objectSummary"
    id_dataset_type = "objectStats"  # one unit per objectStats in the repositories
    declared_datasets = (DatasetDeclaration("objectSummary", ("object",), "yaml",
                                            "The rounded mean of an object's raw pixels."),)

    def run_data_ref(self, data_ref):
        stats = data_ref.get("objectStats")
        data_ref.put({"rounded": round(stats["mean"])}, "objectSummary")
        return Struct()


class RedeclaringTask(CmdLineTask):
    """Declares objectStats again, in another format (refused)."""

    _DefaultName = "redeclaring"
    id_dataset_type = None
    declared_keys = ObjectStatsTask.declared_keys
    declared_datasets = (DatasetDeclaration("objectStats", ("object",), "json", "other"),)

    def run_data_ref(self, data_ref):
        return Struct()


class CcdStatsTask(CmdLineTask):
    """A user's step appended to a production (``hpcpipe drp --add-step``): statistics of
    each CCD after the production's ISR step."""

    _DefaultName = "ccdStats"
    unit_keys = ("visit", "ccd")
    production_inputs = ("toyIsr",)  # runs once toyIsr is done for its CCD
    declared_datasets = (DatasetDeclaration("ccdStats", ("visit", "ccd"), "yaml",
                                            "Pixel statistics of a CCD after ISR."),)

    def run_data_ref(self, data_ref):
        pixels = data_ref.get("postISRCCD").image.array
        data_ref.put({"median": float(np.median(pixels))}, "ccdStats")
        return Struct()
