"""Single-frame processing of one CCD (LSST's ``ProcessCcdTask``): isr, characterize, calibrate.

``hpcpipe run processCcd REPO --id visit=... ccd=...`` (or the production driver) reads the
raw and its calibrations through the butler, the reference stars of the CCD from the
repository's reference catalogs (``calibrate.astromRefObjLoader.ref_dataset_name``, see
:mod:`hpcpipe.refcat`), and writes ``postISRCCD`` (if ``isr.doWrite``), ``icExp`` and
``icExpBackground`` (if ``charImage.doWriteExposure``), ``icSrc`` (if ``charImage.doWrite``),
``calexp``, ``calexpBackground``, ``src`` and ``srcMatch`` (if ``calibrate.doWrite``), and the
catalogs' ``*_schema``. The three steps are also command-line tasks of their own (``isr``,
``characterizeImage``, ``calibrate``), which pass these datasets from one to the next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpcpipe.config import Config, ConfigurableField
from hpcpipe.image import Exposure
from hpcpipe.pipe.calibrate import CalibrateTask
from hpcpipe.pipe.characterize import CharacterizeImageTask
from hpcpipe.pipe.dataset_io import background_exposure, write_schemas
from hpcpipe.pipe.isr import IsrTask
from hpcpipe.pipe.sources import source_id_base
from hpcpipe.refcat.loader import ReferenceLoaders
from hpcpipe.table import Catalog
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import ButlerDataRef

__all__ = ["ProcessCcdConfig", "ProcessCcdTask"]


class ProcessCcdConfig(Config):
    """The three steps of single-frame processing."""

    isr = ConfigurableField("instrument signature removal", IsrTask)
    charImage = ConfigurableField("background, PSF and cosmic rays", CharacterizeImageTask)
    calibrate = ConfigurableField("detection, measurement, astrometry, photometry",
                                  CalibrateTask)

    def set_defaults(self) -> None:
        """postISRCCD and icExp are intermediates: not written by default in a production."""
        self.isr.doWrite = False
        self.charImage.doWriteExposure = False


class ProcessCcdTask(CmdLineTask):
    """Process one raw CCD into a calibrated exposure and its source catalog."""

    ConfigClass = ProcessCcdConfig
    _DefaultName = "processCcd"
    # subtasks, set by make_subtask in __init__ (the config's ConfigurableFields; a
    # retargeted field gives a subclass or a task with the same run signature)
    isr: IsrTask
    charImage: CharacterizeImageTask
    calibrate: CalibrateTask

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
            ``postIsr``, ``icExp`` (a copy of the characterized exposure if
            ``charImage.doWriteExposure``, else None), ``exposure`` (the calexp),
            ``background``, ``icSrc``, ``src``, ``srcMatch``.
        """
        post_isr = self.isr.run(raw, bias, dark, flat).exposure
        exposure = post_isr.clone() if self.config.isr.doWrite else post_isr
        char = self.charImage.run(exposure, id_base=id_base)
        ic_exp = char.exposure.clone() if self.config.charImage.doWriteExposure else None
        cal = self.calibrate.run(char.exposure, ref_cat, id_base=id_base)
        return Struct(postIsr=post_isr, icExp=ic_exp, exposure=cal.exposure,
                      background=char.background, icSrc=char.sourceCat, src=cal.sourceCat,
                      srcMatch=cal.matches)

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read the inputs through ``data_ref`` and write every output."""
        c = self.config.isr
        raw = data_ref.get("raw")
        calibs = self.isr.read_calibrations(data_ref)
        cal = self.config.calibrate
        # the reference stars are read for the CCD once its WCS and date are known
        ref_cat = (self.calibrate.make_reference_loaders(data_ref.butler)
                   if (cal.doAstrometry or cal.doPhotoCal) else None)
        data_id = data_ref.dataId
        result = self.run(raw, calibs["bias"], calibs["dark"], calibs["flat"], ref_cat,
                          id_base=source_id_base(int(data_id["visit"]), int(data_id["ccd"])))
        if c.doWrite:
            data_ref.put(result.postIsr, "postISRCCD")
        background = background_exposure(result.exposure, result.background)
        if result.icExp is not None:
            data_ref.put(result.icExp, "icExp")
            data_ref.put(background, "icExpBackground")
        catalogs = {}
        if self.config.charImage.doWrite:
            data_ref.put(result.icSrc, "icSrc")
            catalogs["icSrc"] = result.icSrc
        if cal.doWrite:
            data_ref.put(result.exposure, "calexp")
            data_ref.put(background, "calexpBackground")
            data_ref.put(result.src, "src")
            data_ref.put(result.srcMatch, "srcMatch")
            catalogs.update(src=result.src, srcMatch=result.srcMatch)
        write_schemas(data_ref.butler, catalogs)
        self.metadata["nSrc"] = len(result.src)
        self.metadata["zeroPoint"] = float(result.exposure.photo_calib.zero_point
                                           if result.exposure.photo_calib else float("nan"))
        return result
