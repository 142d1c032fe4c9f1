"""PSF determination (LSST's ``MeasurePsfTask``): select stars, fit a pixel PSF model."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.config import Config, RangeField
from hpcpipe.meas.psf_model import fit_pixel_psf, select_stars
from hpcpipe.task import Struct, Task, timed_method

__all__ = ["MeasurePsfConfig", "MeasurePsfTask", "PSF_FLAGS"]

#: Catalog flags the task sets.
PSF_FLAGS = ("calib_psf_candidate", "calib_psf_used")

_UNUSABLE = ("base_PixelFlags_flag_edge", "base_PixelFlags_flag_saturated",
             "base_PixelFlags_flag_interpolated", "base_PixelFlags_flag_cr",
             "base_PixelFlags_flag_bad", "base_SdssShape_flag", "base_SdssCentroid_flag",
             "base_PsfFlux_flag")


class MeasurePsfConfig(Config):
    """Star selection and the PSF model."""

    minSnr = RangeField("faintest PSF star, signal to noise", float, default=50.0, min=0.0)
    sizeTolerance = RangeField("fractional width of the stellar locus in size", float,
                               default=0.12, min=0.0, inclusive_min=False)
    stampSize = RangeField("odd width of the PSF model image, pixels", int, default=25, min=5,
                           check=lambda size: size % 2 == 1)
    spatialOrder = RangeField("polynomial order of the PSF's variation over the CCD", int,
                              default=2, min=0, max=4, inclusive_max=True)
    maxCandidates = RangeField("brightest candidates kept", int, default=300, min=5)
    minStars = RangeField("fewer usable stars is a failure", int, default=5, min=1)


class MeasurePsfTask(Task):
    """Choose PSF stars among measured sources and fit the exposure's PSF model."""

    ConfigClass = MeasurePsfConfig
    _DefaultName = "measurePsf"

    @timed_method
    def run(self, exposure: Any, catalog: Any) -> Struct:
        """Fit a PSF to the stars of ``catalog``, set it on ``exposure``.

        ``catalog`` must have the measurement fields and the :data:`PSF_FLAGS`, which are set.

        Returns
        -------
        Struct
            ``psf``, ``n_candidates``, ``n_used`` and the ``psf_sigma`` at the centre.
        """
        c = self.config
        size = np.sqrt(0.5 * (catalog["base_SdssShape_xx"] + catalog["base_SdssShape_yy"]))
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = catalog["base_PsfFlux_instFlux"] / catalog["base_PsfFlux_instFluxErr"]
        flagged = np.zeros(len(catalog), bool)
        for name in _UNUSABLE:
            flagged |= catalog[name]
        flagged |= (catalog["parent"] != 0) | (catalog["deblend_nChild"] > 0)
        chosen = select_stars(size, snr, flagged, min_snr=c.minSnr,
                              size_tolerance=c.sizeTolerance)
        index = np.nonzero(chosen)[0]
        if index.size > c.maxCandidates:
            index = index[np.argsort(-snr[index])[:c.maxCandidates]]
            chosen = np.zeros_like(chosen)
            chosen[index] = True
        x0, y0 = exposure.xy0
        xs = catalog["base_SdssCentroid_x"][index] - x0
        ys = catalog["base_SdssCentroid_y"][index] - y0
        mask = exposure.mask
        bad = mask.any_of([p for p in ("BAD", "SAT", "CR", "INTRP", "NO_DATA")
                           if p in mask.planes])
        bbox = (float(x0), float(y0), float(x0 + exposure.width), float(y0 + exposure.height))
        fit = fit_pixel_psf(exposure.image.array, xs, ys, (0.0, 0.0, float(exposure.width),
                            float(exposure.height)), stamp_size=c.stampSize,
                            order=c.spatialOrder, bad=bad, min_stars=c.minStars,
                            variance=exposure.variance.array)
        psf = type(fit.psf)(fit.psf.basis, fit.psf.order, bbox)
        exposure.psf = psf
        catalog["calib_psf_candidate"] = chosen
        used = np.zeros(len(catalog), bool)
        used[index[fit.used]] = True
        catalog["calib_psf_used"] = used
        sigma = psf.sigma_at(x0 + exposure.width / 2, y0 + exposure.height / 2)
        self.metadata["nPsfCandidates"] = int(index.size)
        self.metadata["nPsfStars"] = int(fit.used.sum())
        self.metadata["psfSigma"] = float(sigma)
        self.log.info("PSF from %d of %d candidate stars, sigma %.2f px at the centre",
                      int(fit.used.sum()), int(index.size), sigma)
        return Struct(psf=psf, n_candidates=int(index.size), n_used=int(fit.used.sum()),
                      psf_sigma=float(sigma))
