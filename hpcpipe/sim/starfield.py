"""Simulated CCD images of a star field with a known truth catalog.

Stars are Gaussian PSFs of known flux at known positions on a flat sky, with Poisson noise
in electrons and Gaussian read noise, converted to ADU by the gain. Each CCD gets a TAN WCS
placed on a grid on the sky, so that CCDs of one simulation tile a region without overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.time import Time
from astropy.wcs import WCS

from hpcpipe.geom import Box2I
from hpcpipe.image import (
    Amplifier,
    Detector,
    Exposure,
    FilterLabel,
    GaussianPsf,
    PhotoCalib,
    VisitInfo,
)

__all__ = ["StarFieldConfig", "simulate_ccd"]


@dataclass(frozen=True)
class StarFieldConfig:
    """Parameters of a simulated star field CCD.

    Parameters
    ----------
    width, height : int
        CCD size in pixels.
    pixel_scale : float
        Arcseconds per pixel.
    stars_per_ccd : int
        Number of stars.
    mag_range : tuple of float
        Uniform range of the stars' magnitudes in ``log N`` (a power law of slope 0.3 dex/mag).
    zero_point : float
        AB magnitude of one ADU over the exposure.
    sky : float
        Sky level, ADU per pixel.
    psf_sigma : float
        Gaussian PSF width, pixels.
    gain : float
        Electrons per ADU.
    read_noise : float
        Electrons.
    ra0, dec0 : float
        Sky position of CCD 0's centre, degrees.
    """

    width: int = 1024
    height: int = 1024
    pixel_scale: float = 0.2
    stars_per_ccd: int = 300
    mag_range: tuple[float, float] = (17.0, 24.0)
    zero_point: float = 31.0
    sky: float = 1000.0
    psf_sigma: float = 1.6
    gain: float = 1.5
    read_noise: float = 5.0
    ra0: float = 150.0
    dec0: float = 2.0


def _ccd_wcs(config: StarFieldConfig, ccd: int) -> WCS:
    """A TAN WCS; CCDs sit on a 3-wide grid with 10% gaps."""
    col, row = ccd % 3, ccd // 3
    scale = config.pixel_scale / 3600.0
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [config.ra0, config.dec0]
    wcs.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]])
    # FITS CRPIX is 1-based; the tangent point is in the middle of CCD 0
    wcs.wcs.crpix = [
        (config.width - 1) / 2.0 + 1 - col * 1.1 * config.width,
        (config.height - 1) / 2.0 + 1 - row * 1.1 * config.height,
    ]
    return wcs


def _power_law_mags(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """Magnitudes with dN/dm proportional to 10**(0.3 m) between lo and hi."""
    a = 0.3 * np.log(10.0)
    u = rng.uniform(size=n)
    return np.log(np.exp(a * lo) + u * (np.exp(a * hi) - np.exp(a * lo))) / a


def simulate_ccd(config: StarFieldConfig, ccd: int, visit: int = 1, seed: int = 0
                 ) -> tuple[Exposure, dict[str, np.ndarray]]:
    """Simulate one CCD.

    Returns
    -------
    exposure : Exposure
        Sky-level image in ADU with variance, WCS, Gaussian PSF, detector and visit info.
    truth : dict of numpy.ndarray
        ``x``, ``y`` (parent pixels), ``ra``, ``dec`` (degrees), ``mag`` and ``flux`` (ADU).
    """
    rng = np.random.default_rng([seed, visit, ccd])
    w, h = config.width, config.height
    n = config.stars_per_ccd
    x = rng.uniform(-0.5, w - 0.5, n)
    y = rng.uniform(-0.5, h - 0.5, n)
    mag = _power_law_mags(rng, n, *config.mag_range)
    flux = 10.0 ** (-0.4 * (mag - config.zero_point))

    model = np.full((h, w), config.sky, dtype=np.float64)
    psf = GaussianPsf(config.psf_sigma)
    half = psf.size // 2
    for xi, yi, fi in zip(x, y, flux):
        stamp, (x0, y0) = psf.compute_image(xi, yi)
        box = Box2I(x0, y0, psf.size, psf.size).clipped_to(Box2I(0, 0, w, h))
        if box.is_empty():
            continue
        sy, sx = box.slices((x0, y0))
        model[box.slices()] += fi * stamp[sy, sx]
    del half
    electrons = rng.poisson(model * config.gain).astype(np.float64)
    electrons += rng.normal(0.0, config.read_noise, electrons.shape)
    image = (electrons / config.gain).astype(np.float32)
    variance = (model / config.gain + (config.read_noise / config.gain) ** 2).astype(np.float32)

    exposure = Exposure(Box2I(0, 0, w, h))
    exposure.image.array[:] = image
    exposure.variance.array[:] = variance
    wcs = _ccd_wcs(config, ccd)
    exposure.wcs = wcs
    exposure.psf = psf
    exposure.filter = FilterLabel("r")
    exposure.photo_calib = PhotoCalib(config.zero_point, 0.0)
    amp = Amplifier("C00", Box2I(0, 0, w, h), Box2I(0, 0, w, h), Box2I(0, 0, w, h),
                    Box2I(w, 0, 0, h), gain=config.gain, read_noise=config.read_noise)
    exposure.detector = Detector(ccd, f"S{ccd:02d}", Box2I(0, 0, w, h), (amp,))
    exposure.visit_info = VisitInfo(
        exposure_id=visit, date=Time("2026-01-01T00:00:00", scale="tai"), exposure_time=30.0,
        dark_time=30.0, airmass=1.1, boresight=SkyCoord(config.ra0, config.dec0, unit="deg"),
        rotation_angle=0.0, instrument="SimCam",
    )
    sky = wcs.pixel_to_world(x, y)
    truth = {"x": x, "y": y, "ra": sky.ra.deg, "dec": sky.dec.deg, "mag": mag, "flux": flux}
    return exposure, truth
