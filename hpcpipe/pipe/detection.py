"""Source detection (LSST's ``SourceDetectionTask``): smoothed image, threshold, footprints.

The image is smoothed by a Gaussian of the PSF's width; the threshold is applied in units of
the smoothed image's noise, taken from the variance plane (the median over good pixels of the
per-pixel standard deviation, scaled by the smoothing kernel: LSST's ``pixel_stdev``);
footprints are grown by ``nSigmaToGrow`` PSF sigmas and deblended by the detection kernel
(:func:`hpcpipe.kernels.detect.detect_sources`). The DETECTED (and DETECTED_NEGATIVE) mask
planes are set on the exposure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.config import ChoiceField, Config, Field, ListField, RangeField
from hpcpipe.kernels.detect import Detections, detect_sources
from hpcpipe.task import Struct, Task, timed_method

__all__ = ["SourceDetectionConfig", "SourceDetectionTask", "exposure_noise"]


class SourceDetectionConfig(Config):
    """Threshold, smoothing and footprint growth."""

    thresholdValue = RangeField("detection threshold, in units of the smoothed image's noise",
                                float, default=5.0, min=0.0, inclusive_min=False)
    thresholdPolarity = ChoiceField("which sources to detect", str,
                                    {"positive": "sources above the sky",
                                     "negative": "holes below the sky",
                                     "both": "both"}, default="positive")
    nSigmaToGrow = RangeField("grow footprints by this many PSF sigmas", float, default=2.4,
                              min=0.0)
    minPixels = RangeField("smallest footprint above threshold, pixels", int, default=3, min=1)
    doSmooth = Field("smooth the image by the PSF before thresholding", bool, default=True)
    deblendProminence = RangeField(
        "a peak becomes a separate child when it rises this many noise units above the "
        "saddle with a brighter peak", float, default=3.0, min=0.0)
    deblendContrast = RangeField("... and by this fraction of its own height", float,
                                 default=0.02, min=0.0)
    excludeMaskPlanes = ListField("pixels with these planes are never detected", str,
                                  default=["NO_DATA", "BAD"])
    psfSigma = RangeField("PSF sigma (pixels) used when the exposure has no PSF", float,
                          default=2.0, min=0.1)


def exposure_noise(exposure: Any, ignore: tuple[str, ...] = ("BAD", "NO_DATA", "SAT")) -> float:
    """The typical per-pixel noise of an exposure: the median of ``sqrt(variance)``."""
    var = exposure.variance.array
    mask = exposure.mask
    planes = [p for p in ignore if p in mask.planes]
    good = np.isfinite(var) & (var > 0)
    if planes:
        good &= (mask.array & mask.get_plane_bitmask(planes)) == 0
    if not good.any():
        raise ValueError("the exposure has no pixel with a valid variance")
    return float(np.sqrt(np.median(var[good])))


class SourceDetectionTask(Task):
    """Detect sources on an exposure and set its DETECTED mask planes."""

    ConfigClass = SourceDetectionConfig
    _DefaultName = "detection"

    def psf_sigma(self, exposure: Any) -> float:
        """The PSF width at the centre of the exposure (or the config's default)."""
        if exposure.psf is None:
            return self.config.psfSigma
        x0, y0 = exposure.xy0
        return float(exposure.psf.sigma_at(x0 + exposure.width / 2, y0 + exposure.height / 2))

    @timed_method
    def run(self, exposure: Any, threshold: float | None = None) -> Struct:
        """Detect sources.

        Parameters
        ----------
        exposure : Exposure
            Background-subtracted; its mask gets the DETECTED planes.
        threshold : float, optional
            Override of ``thresholdValue``.

        Returns
        -------
        Struct
            ``detections`` (:class:`~hpcpipe.kernels.detect.Detections`), ``noise`` (of
            the unsmoothed image), ``psf_sigma``, ``n_footprints`` and ``n_peaks``.
        """
        c = self.config
        sigma = self.psf_sigma(exposure)
        noise = exposure_noise(exposure)
        mask = exposure.mask
        planes = [p for p in c.excludeMaskPlanes if p in mask.planes]
        bad = (mask.array & mask.get_plane_bitmask(planes)) != 0 if planes else None
        image = np.asarray(exposure.image.array, dtype=np.float32)
        image = np.where(np.isfinite(image), image, np.float32(0.0))
        det: Detections = detect_sources(
            image, noise, threshold=c.thresholdValue if threshold is None else threshold,
            polarity=c.thresholdPolarity, grow=int(round(c.nSigmaToGrow * sigma)),
            min_pixels=c.minPixels, bad=bad, smooth_sigma=sigma if c.doSmooth else None,
            prominence=c.deblendProminence, contrast=c.deblendContrast)
        for plane, sign in (("DETECTED", 1), ("DETECTED_NEGATIVE", -1)):
            if plane in mask.planes:
                mask.clear_plane(plane)
                mask.set_plane(plane, det.labels * sign > 0)
        n_fp, n_pk = len(det.footprints), len(det.peaks)
        self.metadata["nFootprints"] = n_fp
        self.metadata["nPeaks"] = n_pk
        self.log.info("detected %d footprints with %d peaks at %.1f sigma", n_fp, n_pk,
                      c.thresholdValue if threshold is None else threshold)
        return Struct(detections=det, noise=noise, psf_sigma=sigma, n_footprints=n_fp,
                      n_peaks=n_pk)
