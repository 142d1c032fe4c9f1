"""Single-frame processing of one CCD (LSST's ``ProcessCcdTask``): isr, characterize, calibrate.

``hpcpipe run processCcd REPO --id visit=... ccd=...`` (or the production driver) reads the
raw and its calibrations through the butler, the reference stars of the CCD from the
repository's reference catalogs (``calibrate.astromRefObjLoader.ref_dataset_name``, see
:mod:`hpcpipe.refcat`), and writes
``postISRCCD`` (if ``isr.doWrite``), ``icSrc``, ``calexp``, ``calexpBackground``, ``src`` and
``srcMatch``, and the catalogs' ``*_schema``.
"""

from __future__ import annotations

from typing import Any

from hpcpipe.config import Config, ConfigurableField
from hpcpipe.image import Exposure
from hpcpipe.pipe.calibrate import CalibrateTask
from hpcpipe.pipe.characterize import CharacterizeImageTask
from hpcpipe.pipe.isr import IsrTask
from hpcpipe.pipe.sources import source_id_base
from hpcpipe.refcat.loader import ReferenceLoaders
from hpcpipe.table import Catalog
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

__all__ = ["ProcessCcdConfig", "ProcessCcdTask"]


class ProcessCcdConfig(Config):
    """The three steps of single-frame processing."""

    isr = ConfigurableField("instrument signature removal", IsrTask)
    charImage = ConfigurableField("background, PSF and cosmic rays", CharacterizeImageTask)
    calibrate = ConfigurableField("detection, measurement, astrometry, photometry",
                                  CalibrateTask)

    def set_defaults(self) -> None:
        """postISRCCD is an intermediate: not written by default in a production."""
        self.isr.doWrite = False


class ProcessCcdTask(CmdLineTask):
    """Process one raw CCD into a calibrated exposure and its source catalog."""

    ConfigClass = ProcessCcdConfig
    _DefaultName = "processCcd"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.make_subtask("isr")
        self.make_subtask("charImage")
        self.make_subtask("calibrate", icSrc_schema=self.charImage.schema)

    @timed_method
    def run(self, raw: Exposure, bias: Exposure | None, dark: Exposure | None,
            flat: Exposure | None, ref_cat: Catalog | ReferenceLoaders | None,
            id_base: int = 0) -> Struct:
        """Process one CCD from objects (no butler); ``ref_cat`` as for
        :meth:`CalibrateTask.run` (a catalog, or loaders).

        Returns
        -------
        Struct
            ``postIsr``, ``exposure`` (the calexp), ``background``, ``icSrc``, ``src``,
            ``srcMatch``.
        """
        post_isr = self.isr.run(raw, bias, dark, flat).exposure
        exposure = post_isr.clone() if self.config.isr.doWrite else post_isr
        char = self.charImage.run(exposure, id_base=id_base)
        cal = self.calibrate.run(char.exposure, ref_cat, id_base=id_base)
        return Struct(postIsr=post_isr, exposure=cal.exposure, background=char.background,
                      icSrc=char.sourceCat, src=cal.sourceCat, srcMatch=cal.matches)

    def run_data_ref(self, data_ref: Any) -> Struct:
        """Read the inputs through ``data_ref`` and write every output."""
        c = self.config.isr
        raw = data_ref.get("raw")
        calibs = {name: data_ref.get(name) if flag else None
                  for name, flag in (("bias", c.doBias), ("dark", c.doDark),
                                     ("flat", c.doFlat))}
        cal = self.config.calibrate
        # the reference stars are read for the CCD once its WCS and date are known
        ref_cat = (self.calibrate.make_reference_loaders(data_ref.butler)
                   if (cal.doAstrometry or cal.doPhotoCal) else None)
        data_id = data_ref.dataId
        result = self.run(raw, calibs["bias"], calibs["dark"], calibs["flat"], ref_cat,
                          id_base=source_id_base(int(data_id["visit"]), int(data_id["ccd"])))
        if c.doWrite:
            data_ref.put(result.postIsr, "postISRCCD")
        background = Exposure(result.exposure.bbox, detector=result.exposure.detector)
        background.image.array[:] = result.background
        data_ref.put(result.exposure, "calexp")
        data_ref.put(background, "calexpBackground")
        data_ref.put(result.icSrc, "icSrc")
        data_ref.put(result.src, "src")
        data_ref.put(result.srcMatch, "srcMatch")
        butler = data_ref.butler
        for name, catalog in (("icSrc", result.icSrc), ("src", result.src),
                              ("srcMatch", result.srcMatch)):
            if not butler.datasetExists(f"{name}_schema"):
                butler.put(Catalog(catalog.schema), f"{name}_schema")
        self.metadata["nSrc"] = len(result.src)
        self.metadata["zeroPoint"] = float(result.exposure.photo_calib.zero_point
                                           if result.exposure.photo_calib else float("nan"))
        return result
