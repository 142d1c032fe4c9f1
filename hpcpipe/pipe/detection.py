"""Source detection (LSST's ``SourceDetectionTask``): smoothed image, threshold, footprints.

The image is smoothed by a Gaussian of the PSF's core width (the adaptive second moments of
the PSF model, :meth:`~hpcpipe.image.psf.Psf.adaptive_sigma_at`: the matched filter of a
point source). The threshold is in units of the noise of the smoothed image
(``thresholdType``): ``"stdev"`` (the default, LSST's ``stdev``) measures it on the
smoothed image's own pixels (the lower half of their distribution, which sources do not
reach: :func:`smoothed_stdev`), so that it holds whatever the variance plane says;
``"pixel_stdev"`` takes the median per-pixel noise of the variance
plane scaled by the kernel; ``"variance"`` the per-pixel noise of the variance plane smoothed
by the kernel's square.

Edges, as LSST's ``SourceDetectionTask``: the pixels within the smoothing kernel's half-width
of the border, whose smoothed values repeat the edge pixel (noise correlated differently,
about sqrt(2) to 2 times larger), get the EDGE mask plane and are never above threshold
(a footprint may still grow into them). Footprints are grown by ``nSigmaToGrow`` PSF sigmas
and deblended by the detection kernel (:func:`hpcpipe.kernels.detect.detect_sources`). The
DETECTED (and DETECTED_NEGATIVE) mask planes are set on the exposure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.config import ChoiceField, Config, Field, ListField, RangeField
from hpcpipe.kernels.convolve import correlate_separable, gaussian_kernel_1d
from hpcpipe.kernels.detect import Detections, detect_sources
from hpcpipe.kernels.stats import clipped_stats
from hpcpipe.task import Struct, Task, timed_method

__all__ = ["SourceDetectionConfig", "SourceDetectionTask", "exposure_noise", "smoothed_stdev"]

#: The fraction of a Gaussian below its mean minus one sigma.
_LOWER_ONE_SIGMA = 0.158655


class SourceDetectionConfig(Config):
    """Threshold, smoothing and footprint growth."""

    thresholdValue = RangeField("detection threshold, in units of the smoothed image's noise",
                                float, default=5.0, min=0.0, inclusive_min=False)
    thresholdType = ChoiceField(
        "how the smoothed image's noise is found", str,
        {"stdev": "the smoothed image's own noise, from the lower half of its pixels",
         "pixel_stdev": "median noise of the variance plane, scaled by the kernel",
         "variance": "per-pixel noise of the variance plane, smoothed by the kernel"},
        default="stdev")
    stdevSubsample = RangeField("the stdev is measured on every n-th row and column", int,
                                default=2, min=1)
    doEdgeMask = Field("set EDGE on, and never detect in, the pixels within the smoothing "
                       "kernel's half-width of the border", bool, default=True)
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


def smoothed_stdev(smoothed: np.ndarray, bad: np.ndarray | None, step: int = 1) -> float:
    """The noise of a smoothed image from its own pixels (good ones of every ``step``-th row
    and column): the distance from the median down to the 15.87th percentile, after a
    3-sigma clipped pass.

    Sources (and the faint ones below the threshold, a confusion background) only add to the
    upper tail: the lower half of the distribution is the noise's alone, where a standard
    deviation, even clipped, grows with the sources.
    """
    sub = smoothed[::step, ::step]
    good = np.isfinite(sub)
    if bad is not None:
        good &= ~np.asarray(bad[::step, ::step], bool)
    values = np.asarray(sub[good], dtype=np.float64)
    if values.size < 10:
        raise ValueError("the smoothed image has no good pixel to measure its noise on")
    _mean, std, count = clipped_stats(values, None, nsigma=3.0, niter=3)
    if count > 0 and std > 0:
        centre = float(np.median(values))
        values = values[np.abs(values - centre) <= 5.0 * std]
    # both quantiles from one partition of the values
    low, centre = np.percentile(values, [100.0 * _LOWER_ONE_SIGMA, 50.0])
    sigma = float(centre) - float(low)
    if not sigma > 0:
        raise ValueError("the smoothed image has no noise to measure (all pixels equal)")
    return sigma


def exposure_noise(exposure: Any, ignore: tuple[str, ...] = ("BAD", "NO_DATA", "SAT"),
                   step: int = 2) -> float:
    """The typical per-pixel noise of an exposure: the median of ``sqrt(variance)``, over the
    good pixels of every ``step``-th row and column (the variance plane is smooth: a quarter
    of a CCD's pixels give its median to far better than a part in a thousand, four times
    faster). A small image (or ``step=1``) uses every pixel."""
    var = exposure.variance.array
    mask = exposure.mask.array
    if step > 1 and var.size >= 256 * 256:
        var, mask = var[::step, ::step], mask[::step, ::step]
    planes = [p for p in ignore if p in exposure.mask.planes]
    good = np.isfinite(var) & (var > 0)
    if planes:
        good &= (mask & exposure.mask.get_plane_bitmask(planes)) == 0
    if not good.any():
        raise ValueError("the exposure has no pixel with a valid variance")
    return float(np.sqrt(np.median(var[good])))


class SourceDetectionTask(Task):
    """Detect sources on an exposure and set its DETECTED mask planes."""

    ConfigClass = SourceDetectionConfig
    _DefaultName = "detection"

    def psf_sigma(self, exposure: Any) -> float:
        """The PSF's core width (adaptive moments) at the centre of the exposure (or the
        config's default)."""
        if exposure.psf is None:
            return self.config.psfSigma
        x0, y0 = exposure.xy0
        return float(exposure.psf.adaptive_sigma_at(x0 + exposure.width / 2,
                                                    y0 + exposure.height / 2))

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
            the unsmoothed image, from the variance plane), ``psf_sigma`` (the smoothing
            width), ``n_footprints`` and ``n_peaks``.
        """
        c = self.config
        sigma = self.psf_sigma(exposure)
        noise = exposure_noise(exposure)
        mask = exposure.mask
        planes = [p for p in c.excludeMaskPlanes if p in mask.planes]
        bad = (mask.array & mask.get_plane_bitmask(planes)) != 0 if planes else None
        image = np.asarray(exposure.image.array, dtype=np.float32)
        image = np.where(np.isfinite(image), image, np.float32(0.0))  # a new array
        half = 0
        kernel = None
        if c.doSmooth:
            kernel = gaussian_kernel_1d(sigma)
            half = kernel.size // 2
            correlate_separable(image, kernel, kernel, out=image)
        if c.doEdgeMask and half > 0:
            h, w = image.shape
            edge = np.zeros(image.shape, bool)
            edge[:half], edge[h - half:], edge[:, :half], edge[:, w - half:] = True, True, \
                True, True
            if "EDGE" in mask.planes:
                mask.set_plane("EDGE", edge)
            bad = edge if bad is None else (bad | edge)
        norm = float((kernel.astype(np.float64) ** 2).sum()) if kernel is not None else 1.0
        if c.thresholdType == "stdev":
            smoothed_noise: float | np.ndarray = smoothed_stdev(image, bad, c.stdevSubsample)
        elif c.thresholdType == "pixel_stdev":
            smoothed_noise = noise * norm
        else:
            var = np.asarray(exposure.variance.array, dtype=np.float32)
            var = np.where(np.isfinite(var) & (var > 0), var, np.float32(np.inf))
            if kernel is not None:
                k2 = (kernel.astype(np.float64) ** 2).astype(np.float32)
                var = correlate_separable(var, k2, k2)
            smoothed_noise = np.sqrt(np.maximum(var, 0.0)).astype(np.float32)
        det: Detections = detect_sources(
            image, smoothed_noise, threshold=c.thresholdValue if threshold is None else threshold,
            polarity=c.thresholdPolarity, grow=int(round(c.nSigmaToGrow * sigma)),
            min_pixels=c.minPixels, bad=bad, smooth_sigma=None,
            prominence=c.deblendProminence, contrast=c.deblendContrast)
        for plane, sign in (("DETECTED", 1), ("DETECTED_NEGATIVE", -1)):
            if plane in mask.planes:
                mask.clear_plane(plane)
                mask.set_plane(plane, det.labels > 0 if sign > 0 else det.labels < 0)
        n_fp, n_pk = len(det.footprints), len(det.peaks)
        self.metadata["nFootprints"] = n_fp
        self.metadata["nPeaks"] = n_pk
        self.log.info("detected %d footprints with %d peaks at %.1f sigma", n_fp, n_pk,
                      c.thresholdValue if threshold is None else threshold)
        return Struct(detections=det, noise=noise, psf_sigma=sigma, n_footprints=n_fp,
                      n_peaks=n_pk)
