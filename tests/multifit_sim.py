"""Multi-epoch postage stamps of Sersic galaxies and stars drawn by GalSim, with their truth.

Each object is observed in ``n_epochs`` epochs of different seeing (Kolmogorov PSFs whose
FWHM runs from ``fwhm_range[0]`` to ``fwhm_range[1]``), different photometric zero points
(counts per nJy ``calib``) and sky-limited Gaussian noise; every epoch's stamp is on the same
pixel grid (0.2 arcsec pixels, ``u`` along ``x``), so the inverse-variance weighted mean of the
calibrated stamps is an exact coadd whose PSF is the same mean of the epochs' PSFs. The truth
shapes are GalSim's ``shear(g1, g2)`` in the ``(u, v)`` = ``(x, y)`` frame and the half-light
radius of the circle of equal area (``half_light_radius`` before the shear).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from hpcpipe.meas.multifit import Epoch, fit_psf_mixture

galsim = __import__("pytest").importorskip("galsim")

PIXEL_SCALE = 0.2


@dataclass
class SimObject:
    """One object's epochs, its coadd and its truth."""

    epochs: list[Epoch]
    coadd: Epoch
    flux: float
    g: tuple[float, float]
    hlr: float
    offset: tuple[float, float]
    is_star: bool
    sersic_n: float


@functools.lru_cache(maxsize=64)
def _psf(fwhm: float, size: int) -> tuple[np.ndarray, object]:
    psf = galsim.Kolmogorov(fwhm=fwhm)
    image = psf.drawImage(nx=size, ny=size, scale=PIXEL_SCALE).array.astype(np.float64)
    image /= image.sum()
    return image, fit_psf_mixture(image, 3)


def make_objects(n: int, seed: int = 0, n_epochs: int = 8, half: int = 20,
                 fwhm_range: tuple[float, float] = (0.6, 1.2), snr_range: tuple[float, float]
                 = (30.0, 300.0), sersic_n: float = 1.0, star_fraction: float = 0.0,
                 noise: float = 10.0, hlr_range: tuple[float, float] = (0.3, 0.8),
                 g_max: float = 0.5) -> list[SimObject]:
    """``n`` objects (galaxies, and stars for ``star_fraction``) with ``n_epochs`` epochs.

    The total flux (nJy) is set so that the object's PSF-weighted S/N summed over the epochs
    is about a log-uniform draw from ``snr_range``.
    """
    rng = np.random.default_rng(seed)
    size = 2 * half + 1
    fwhms = np.linspace(fwhm_range[0], fwhm_range[1], n_epochs)
    gsp = galsim.GSParams(folding_threshold=2e-3, maxk_threshold=5e-4)
    jac = np.eye(2) / PIXEL_SCALE
    # one zero point per epoch (counts per nJy), the same for every object
    calib = rng.uniform(0.7, 1.3, n_epochs)
    weights = calib ** 2 / noise ** 2
    psf_images = [_psf(float(f), size)[0] for f in fwhms]
    coadd_psf = fit_psf_mixture(np.tensordot(weights, psf_images, 1) / weights.sum(), 3)
    objects = []
    for _ in range(n):
        star = bool(rng.uniform() < star_fraction)
        hlr = 0.0 if star else float(rng.uniform(*hlr_range))
        gmag = 0.0 if star else float(rng.uniform(0.0, g_max))
        angle = rng.uniform(0.0, np.pi)
        g = (gmag * np.cos(2 * angle), gmag * np.sin(2 * angle))
        offset = (float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5)))
        snr = float(np.exp(rng.uniform(*np.log(snr_range))))
        # S/N of a Gaussian of width s in sky noise: F / (noise sqrt(4 pi s**2))
        widths = np.hypot(fwhms / 2.355, hlr / 1.18) / PIXEL_SCALE
        per_flux = calib / (noise * np.sqrt(4 * np.pi) * widths)
        flux = snr / np.sqrt(np.sum(per_flux ** 2))
        profile = None if star else galsim.Sersic(n=sersic_n, half_light_radius=hlr,
                                                   gsparams=gsp).shear(g1=g[0], g2=g[1])
        centre = np.array([half + offset[0], half + offset[1]])
        epochs = []
        num = np.zeros((size, size))
        wsum = 0.0
        for e in range(n_epochs):
            psf_mix = _psf(float(fwhms[e]), size)[1]
            psf = galsim.Kolmogorov(fwhm=float(fwhms[e]), gsparams=gsp)
            obj = psf if star else galsim.Convolve([profile, psf], gsparams=gsp)
            counts = flux * calib[e]
            img = obj.withFlux(counts).drawImage(nx=size, ny=size, scale=PIXEL_SCALE,
                                                 offset=offset).array.astype(np.float64)
            img += rng.normal(0.0, noise, img.shape)
            weight = np.full(img.shape, 1.0 / noise ** 2)
            epochs.append(Epoch(img, weight, 0, 0, centre, jac, psf_mix, float(calib[e]), "r"))
            w = calib[e] ** 2 / noise ** 2
            num += w * img / calib[e]
            wsum += w
        coadd = Epoch(num / wsum, np.full((size, size), wsum), 0, 0, centre, jac, coadd_psf,
                      1.0, "r")
        objects.append(SimObject(epochs, coadd, float(flux), g, hlr, offset, star, sersic_n))
    return objects
