"""Image characterization (LSST's ``CharacterizeImageTask``): background, PSF, cosmic rays.

On a postISRCCD: a Gaussian PSF guess is installed; then ``psfIterations`` times: the
background is estimated and subtracted (the first time, cosmic rays are then found and
repaired with the PSF guess), bright sources are detected and measured, and a PSF model is
fitted to the stars among them. After a last background pass, the last iteration's sources
are measured again with the final PSF: that catalog is ``icSrc`` (with the stars used flagged
``calib_psf_used``), and its PSF stars give the aperture corrections
(:class:`~hpcpipe.pipe.ap_corr.MeasureApCorrTask`), set on the exposure and applied to
``icSrc``.

``hpcpipe run characterizeImage REPO --id visit=... ccd=...`` reads ``postISRCCD`` (written by
``hpcpipe run isr``) and writes ``icExp`` (the characterized exposure, with its PSF),
``icExpBackground`` and ``icSrc``: ``calibrate``'s inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.config import Config, ConfigurableField, Field, RangeField
from hpcpipe.image.psf import GaussianPsf
from hpcpipe.pipe.ap_corr import MeasureApCorrTask, apply_ap_corr, corrected_flux_names
from hpcpipe.pipe.background import SubtractBackgroundTask
from hpcpipe.pipe.dataset_io import background_exposure, read_input, write_schemas
from hpcpipe.pipe.detection import SourceDetectionTask
from hpcpipe.pipe.measure_psf import PSF_FLAGS, MeasurePsfTask
from hpcpipe.pipe.measurement import MeasurementTask, measurement_schema
from hpcpipe.pipe.repair import RepairTask
from hpcpipe.pipe.sources import measure_detections, source_id_base
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import ButlerDataRef

__all__ = ["CharacterizeImageConfig", "CharacterizeImageTask", "characterize_schema"]


def characterize_schema(radii: list[float]) -> Any:
    """The icSrc schema: the measurement fields plus the primary and PSF flags."""
    schema = measurement_schema(radii)
    schema.add_flag("detect_isPrimary", doc="isolated source or deblended child")
    for name in PSF_FLAGS:
        schema.add_flag(name, doc={"calib_psf_candidate": "chosen as a PSF star candidate",
                                   "calib_psf_used": "used in the PSF model"}[name])
    return schema


class CharacterizeImageConfig(Config):
    """The subtasks and their order."""

    background = ConfigurableField("estimate and subtract the sky", SubtractBackgroundTask)
    detection = ConfigurableField("detect bright sources", SourceDetectionTask)
    measurement = ConfigurableField("measure them", MeasurementTask)
    measurePsf = ConfigurableField("fit the PSF to the stars", MeasurePsfTask)
    repair = ConfigurableField("find and repair cosmic rays", RepairTask)
    measureApCorr = ConfigurableField("fit the aperture corrections to the PSF stars",
                                      MeasureApCorrTask)
    doApCorr = Field("measure the aperture corrections (and apply them to icSrc)", bool,
                     default=True)
    psfIterations = RangeField("background/detection/PSF passes", int, default=2, min=1)
    initialPsfSigma = RangeField("Gaussian PSF guess before the first fit, pixels", float,
                                 default=2.0, min=0.3)
    doWrite = Field("write icSrc (and its schema)", bool, default=True)
    doWriteExposure = Field("write icExp and icExpBackground (calibrate's inputs)", bool,
                            default=True)

    def set_defaults(self) -> None:
        """Bright sources only: the PSF needs high signal to noise."""
        self.detection.thresholdValue = 10.0


class CharacterizeImageTask(CmdLineTask):
    """Subtract the background, model the PSF and repair cosmic rays of one exposure."""

    ConfigClass = CharacterizeImageConfig
    _DefaultName = "characterizeImage"
    # subtasks, set by make_subtask in __init__ (the config's ConfigurableFields; a
    # retargeted field gives a subclass or a task with the same run signature)
    background: SubtractBackgroundTask
    detection: SourceDetectionTask
    measurement: MeasurementTask
    measurePsf: MeasurePsfTask
    repair: RepairTask
    measureApCorr: MeasureApCorrTask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("background", "detection", "measurement", "measurePsf", "repair",
                     "measureApCorr"):
            self.make_subtask(name)
        self.schema = characterize_schema(list(self.config.measurement.apertureRadii))

    @timed_method
    def run(self, exposure: Any, id_base: int = 0) -> Struct:
        """Characterize ``exposure`` in place.

        Returns
        -------
        Struct
            ``exposure`` (with its PSF), ``background`` (the total model subtracted),
            ``sourceCat`` (icSrc) and ``psf_sigma``.
        """
        c = self.config
        if exposure.psf is None:
            exposure.psf = GaussianPsf(c.initialPsfSigma)
        exposure.ap_corr_map = None  # measured again below, with this PSF
        sigma = c.initialPsfSigma
        background = np.zeros(exposure.image.array.shape, np.float32)
        catalog = None
        for iteration in range(c.psfIterations):
            background += self.background.run(exposure).background
            if iteration == 0:
                self.repair.run(exposure, psf_sigma=sigma)
            det = self.detection.run(exposure)
            catalog = measure_detections(self.measurement, exposure, det.detections, id_base,
                                         self.schema)
            sigma = self.measurePsf.run(exposure, catalog).psf_sigma
        assert catalog is not None
        # a last background pass with the final detection mask
        background += self.background.run(exposure).background
        # the sources again, measured with the final PSF: the aperture corrections must be
        # those of the PSF model the later measurements use
        flags = {name: catalog[name].copy() for name in PSF_FLAGS}
        catalog = measure_detections(self.measurement, exposure, det.detections, id_base,
                                     self.schema)
        for name, values in flags.items():
            catalog[name] = values
        if c.doApCorr:
            names = corrected_flux_names(list(c.measurement.apertureRadii))
            ap_corr = self.measureApCorr.run(exposure, catalog, catalog["calib_psf_used"],
                                             names, labels=det.detections.labels).ap_corr_map
            exposure.ap_corr_map = ap_corr if len(ap_corr) else None
            if exposure.ap_corr_map is not None:
                apply_ap_corr(catalog, exposure.ap_corr_map, names)
        self.metadata["psfSigma"] = float(sigma)
        self.metadata["nIcSrc"] = len(catalog)
        return Struct(exposure=exposure, background=background, sourceCat=catalog,
                      psf_sigma=float(sigma))

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Read ``postISRCCD``, characterize it, write ``icExp``, ``icExpBackground`` and
        ``icSrc`` (as switched on)."""
        c = self.config
        exposure = read_input(data_ref, "postISRCCD", self.name, "isr (with doWrite=True)")
        data_id = data_ref.dataId
        result = self.run(exposure,
                          id_base=source_id_base(int(data_id["visit"]), int(data_id["ccd"])))
        if c.doWriteExposure:
            data_ref.put(result.exposure, "icExp")
            data_ref.put(background_exposure(result.exposure, result.background),
                         "icExpBackground")
        if c.doWrite:
            data_ref.put(result.sourceCat, "icSrc")
            write_schemas(data_ref.butler, {"icSrc": result.sourceCat})
        return result
