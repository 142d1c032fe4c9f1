"""A toy production for the driver's tests: per-CCD, sky map, per-patch-and-filter, per-patch.

* ``toyIsr`` (visit, ccd): overscan-subtracted raw as ``postISRCCD``; can fail on chosen
  visits, sleep on one filter, or SIGKILL its own process (on one CCD, while a marker file
  exists);
* ``toySkyMap`` (one unit): a one-tract sky map as ``skyMap``;
* ``toyCoadd`` (tract, patch, filter): the mean of the ``postISRCCD`` of one CCD (patch
  ``"<ccd>,0"``) over the visits of a filter, as ``deepCoadd``; its units are listed from the
  sky map, so it runs in the stage after ``toySkyMap``;
* ``toyMerge`` (tract, patch): a catalog of the coadds' statistics per filter
  (``deepCoadd_ref``).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

from hpcpipe.config import Config, Field, ListField
from hpcpipe.drivers.production import Production, ProductionStep
from hpcpipe.image import Exposure
from hpcpipe.table import Catalog
from hpcpipe.task import Struct
from hpcpipe.task.cmdline import CmdLineTask


class ToyIsrConfig(Config):
    scale = Field("multiply the overscan-subtracted pixels by this", float, default=1.0)
    fail_visits = ListField("visits that fail on purpose", int, default=[])
    slow_filter = Field("units of this filter sleep", str, default="")
    sleep = Field("seconds a unit of slow_filter sleeps", float, default=0.0)
    crash_file = Field("while this file exists, crash_ccd SIGKILLs its process", str,
                       default="")
    crash_ccd = Field("the CCD that crashes", int, default=-1)
    crash_visit = Field("the visit that crashes", int, default=-1)
    crash_mode = Field("how it crashes: sigkill, sigstop (the process stops), exit "
                       "(sys.exit(0)), interrupt (KeyboardInterrupt), mpirecv (blocks in an "
                       "MPI receive nobody answers)", str, default="sigkill")
    allocate_mb = Field("megabytes the unit of allocate_visit allocates and touches", float,
                        default=0.0)
    allocate_visit = Field("the visit that allocates allocate_mb", int, default=-1)


class ToyIsrTask(CmdLineTask):
    """Subtract each amplifier's overscan median and write postISRCCD."""

    ConfigClass = ToyIsrConfig
    _DefaultName = "toyIsr"

    def run_data_ref(self, data_ref):
        data_id = data_ref.dataId
        config = self.config
        if data_id["visit"] in config.fail_visits:
            raise RuntimeError(f"visit {data_id['visit']} fails on purpose")
        if (config.crash_file and os.path.exists(config.crash_file)
                and data_id["ccd"] == config.crash_ccd and data_id["visit"] == config.crash_visit):
            if config.crash_mode == "sigstop":
                os.kill(os.getpid(), signal.SIGSTOP)
            elif config.crash_mode == "exit":
                sys.exit(0)
            elif config.crash_mode == "interrupt":
                raise KeyboardInterrupt("as Ctrl-C would")
            elif config.crash_mode == "mpirecv":
                from mpi4py import MPI  # only here: the toy tasks run without MPI too

                MPI.COMM_WORLD.recv(source=0, tag=999)
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        if config.slow_filter and data_id["filter"] == config.slow_filter:
            time.sleep(config.sleep)
        if config.allocate_mb and data_id["visit"] == config.allocate_visit:
            block = np.ones(int(config.allocate_mb * 1e6 / 8))  # touched: resident
            self.metadata["allocated"] = float(block.sum())
        raw = data_ref.get("raw")
        image = raw.image.array
        out = raw.clone()
        for amp in raw.detector.amplifiers:
            level = np.median(image[amp.raw_serial_overscan_bbox.slices()])
            out.image.array[amp.raw_data_bbox.slices()] = (
                image[amp.raw_data_bbox.slices()] - level) * config.scale
        data_ref.put(out, "postISRCCD")
        return Struct(exposure=out)


class ToySkyMapConfig(Config):
    ra = Field("tract centre, degrees", float, default=10.0)
    dec = Field("tract centre, degrees", float, default=0.0)


class ToySkyMapTask(CmdLineTask):
    """Write a one-tract sky map."""

    ConfigClass = ToySkyMapConfig
    _DefaultName = "toySkyMap"

    def run_data_ref(self, data_ref):
        from hpcpipe.skymap.discrete import DiscreteSkyMap

        sky_map = DiscreteSkyMap([self.config.ra], [self.config.dec], [1.0])
        data_ref.put(sky_map, "skyMap")
        return Struct(sky_map=sky_map)


class ToyCoaddConfig(Config):
    fail_patches = ListField("patches that fail on purpose", str, default=[])


class ToyCoaddTask(CmdLineTask):
    """Average the postISRCCD of one CCD over the visits of one filter."""

    ConfigClass = ToyCoaddConfig
    _DefaultName = "toyCoadd"
    id_dataset_type = "deepCoadd"

    def run_data_ref(self, data_ref):
        data_id = data_ref.dataId
        if data_id["patch"] in self.config.fail_patches:
            raise RuntimeError(f"patch {data_id['patch']} fails on purpose")
        butler = data_ref.butler
        ccd = int(data_id["patch"].split(",")[0])
        visits = butler.queryMetadata("raw", "visit", filter=data_id["filter"], ccd=ccd)
        images = [butler.get("postISRCCD", visit=v, ccd=ccd) for v in sorted(visits)
                  if butler.datasetExists("postISRCCD", visit=v, ccd=ccd)]
        if not images:
            raise RuntimeError(f"no postISRCCD for {data_id}")
        coadd = Exposure(images[0].image.array.shape)
        coadd.image.array[:] = np.mean([e.image.array for e in images], axis=0)
        data_ref.put(coadd, "deepCoadd")
        self.metadata["nInputs"] = len(images)
        return Struct(coadd=coadd)


class ToyMergeConfig(Config):
    filters = ListField("filters to merge", str, default=["g", "r", "i"])


class ToyMergeTask(CmdLineTask):
    """A catalog of the coadds' mean and sum per filter."""

    ConfigClass = ToyMergeConfig
    _DefaultName = "toyMerge"
    id_dataset_type = "deepCoadd_ref"

    def run_data_ref(self, data_ref):
        rows = {"filter_index": [], "mean": [], "total": []}
        for index, band in enumerate(self.config.filters):
            if data_ref.datasetExists("deepCoadd", filter=band):
                pixels = data_ref.get("deepCoadd", filter=band).image.array
                rows["filter_index"].append(index)
                rows["mean"].append(float(pixels.mean()))
                rows["total"].append(float(pixels.sum()))
        catalog = Catalog.from_columns(None, {k: np.asarray(v) for k, v in rows.items()})
        data_ref.put(catalog, "deepCoadd_ref")
        return Struct(catalog=catalog)


def coadd_units(ctx):
    """One unit per tract of the sky map, per CCD (patch "<ccd>,0") and per filter."""
    bands_ccds = sorted({(d["filter"], d["ccd"]) for d in ctx.inputs})
    return [{"tract": tract.tract_id, "patch": f"{ccd},0", "filter": band}
            for tract in ctx.sky_map for band, ccd in bands_ccds]


def coadd_inputs(unit, ctx):
    """The toyIsr units of the patch's CCD in the unit's filter, and the sky map."""
    ccd = int(unit["patch"].split(",")[0])
    found = [("toyIsr", d) for d in ctx.matching("toyIsr", {"filter": unit["filter"],
                                                             "ccd": ccd})]
    return [*found, ("toySkyMap", {})]


def merge_units(ctx):
    return [{"tract": u["tract"], "patch": u["patch"]} for u in ctx.units.get("toyCoadd", [])]


STEPS = [
    ProductionStep("toyIsr", ToyIsrTask, ("visit", "ccd")),
    ProductionStep("toySkyMap", ToySkyMapTask, ()),
    ProductionStep("toyCoadd", ToyCoaddTask, ("tract", "patch", "filter"),
                   inputs=("toyIsr", "toySkyMap"), list_units=coadd_units,
                   upstream=coadd_inputs, listing_needs=("toySkyMap",)),
    ProductionStep("toyMerge", ToyMergeTask, ("tract", "patch"), inputs=("toyCoadd",),
                   list_units=merge_units),
]

#: The toy production (``--production production_tasks:TOY``).
TOY = Production("toy", STEPS)
