"""Images of the sky rendered by GalSim (not by hpcpipe's simulator), with their truth.

The independent check of hpcpipe's science: stars and Sersic galaxies drawn by GalSim through
a realistic PSF (Kolmogorov atmosphere convolved with an obscured optical PSF, FWHM about
0.75 arcsec), on a TAN WCS, with sky, Poisson and read noise. Everything is in electrons;
the camera-specific raw writers (ADU, overscan, bias, header layouts) build on
:func:`render_scene`.

Conventions
-----------
* Pixel positions in the truth (``x``, ``y``) are **0-based**, like NumPy's and hpcpipe's
  (GalSim's own images are 1-based: the rendered image's origin is moved to 0 here).
* ``flux`` is the object's total number of electrons in the exposure;
  ``mag = zero_point - 2.5 log10(flux)`` (AB, with ``zero_point`` the magnitude of one
  electron in the exposure).
* The WCS returned is an astropy :class:`~astropy.wcs.WCS` (0-based ``pixel_to_world``);
  ``wcs.to_header()`` writes the standard 1-based FITS cards.

Example
-------
>>> scene = make_scene(seed=1, shape=(512, 512), n_stars=50, n_galaxies=30)
>>> image = render_scene(scene, seed=1)          # float32 electrons, with sky and noise
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

__all__ = ["Scene", "make_wcs", "make_psf", "make_scene", "render_scene", "psf_image"]

galsim = __import__("pytest").importorskip("galsim")

#: Sersic indices drawn for galaxies (GalSim caches each index's profile table).
SERSIC_INDICES = (0.8, 1.0, 1.5, 2.5, 4.0)


@dataclass
class Scene:
    """A field of stars and galaxies with everything needed to render it.

    Attributes
    ----------
    truth : astropy.table.Table
        One row per object: ``id``, ``ra``, ``dec`` (degrees), ``x``, ``y`` (0-based pixels),
        ``flux`` (electrons), ``mag`` (AB), ``is_star``, ``sersic_n``, ``hlr`` (arcsec),
        ``e1``, ``e2`` (reduced shear of the galaxy's shape; 0 for stars).
    wcs : astropy.wcs.WCS
        The image's TAN WCS.
    shape : tuple of int
        ``(height, width)``.
    pixel_scale : float
        Arcseconds per pixel.
    psf_fwhm : float
        Atmospheric FWHM in arcseconds (the total PSF is a little wider).
    sky : float
        Sky level, electrons per pixel.
    read_noise : float
        Electrons.
    zero_point : float
        AB magnitude of one electron in the exposure.
    """

    truth: Table
    wcs: WCS
    shape: tuple[int, int]
    pixel_scale: float = 0.2
    psf_fwhm: float = 0.73
    sky: float = 1000.0
    read_noise: float = 5.0
    zero_point: float = 31.0
    extra: dict[str, object] = field(default_factory=dict)


def make_wcs(shape: tuple[int, int], ra: float = 150.0, dec: float = 2.0,
             pixel_scale: float = 0.2, rotation_deg: float = 0.0) -> WCS:
    """A TAN WCS with its reference pixel at the image centre, north up and east left."""
    height, width = shape
    scale = pixel_scale / 3600.0
    theta = np.radians(rotation_deg)
    c, s = np.cos(theta), np.sin(theta)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(width + 1) / 2.0, (height + 1) / 2.0]
    wcs.wcs.cd = np.array([[-scale * c, scale * s], [scale * s, scale * c]])
    wcs.wcs.radesys = "ICRS"
    return wcs


@functools.lru_cache(maxsize=8)
def make_psf(fwhm: float = 0.73, pixel_scale: float = 0.2) -> galsim.GSObject:
    """Kolmogorov atmosphere (``fwhm`` arcsec) convolved with an obscured optical PSF.

    The optical part is a 4 m aperture at 700 nm with a 35% central obscuration and a little
    defocus and astigmatism: the total FWHM is about 0.75 arcsec for ``fwhm=0.73``.
    """
    atmosphere = galsim.Kolmogorov(fwhm=fwhm)
    optics = galsim.OpticalPSF(lam=700.0, diam=4.0, obscuration=0.35, defocus=0.15,
                               astig1=0.08, astig2=-0.05, scale_unit=galsim.arcsec)
    return galsim.Convolve([atmosphere, optics])


def psf_image(scene: Scene, size: int = 41, x: float = 0.0, y: float = 0.0) -> np.ndarray:
    """The true PSF as a pixelised image (sum 1), centred at sub-pixel offset ``(x, y)``."""
    psf = make_psf(scene.psf_fwhm, scene.pixel_scale)
    return psf.drawImage(nx=size, ny=size, scale=scene.pixel_scale,
                         offset=(x, y)).array.astype(np.float64)


def make_scene(seed: int = 0, shape: tuple[int, int] = (2048, 2048), n_stars: int = 500,
               n_galaxies: int = 500, ra: float = 150.0, dec: float = 2.0,
               pixel_scale: float = 0.2, psf_fwhm: float = 0.73, sky: float = 1000.0,
               read_noise: float = 5.0, zero_point: float = 31.0,
               star_mags: tuple[float, float] = (16.0, 24.0),
               galaxy_mags: tuple[float, float] = (18.0, 24.5), border: int = 8,
               wcs: WCS | None = None) -> Scene:
    """Draw a random field of stars and galaxies.

    Star magnitudes follow a power law rising towards the faint end (``dN/dm ~ 10^(0.3 m)``);
    galaxies have Sersic indices from :data:`SERSIC_INDICES`, half-light radii of 0.25-1.2
    arcsec and ellipticities up to about 0.5. Objects are kept ``border`` pixels inside
    the image.
    """
    rng = np.random.default_rng(seed)
    height, width = shape
    wcs = make_wcs(shape, ra, dec, pixel_scale) if wcs is None else wcs
    n = n_stars + n_galaxies
    x = rng.uniform(border, width - 1 - border, n)
    y = rng.uniform(border, height - 1 - border, n)
    world = wcs.pixel_to_world(x, y)

    def power_law(lo: float, hi: float, count: int) -> np.ndarray:
        a = 0.3 * np.log(10.0)
        u = rng.uniform(0.0, 1.0, count)
        return np.log(np.exp(a * lo) + u * (np.exp(a * hi) - np.exp(a * lo))) / a

    mag = np.concatenate([power_law(*star_mags, n_stars), power_law(*galaxy_mags, n_galaxies)])
    is_star = np.zeros(n, bool)
    is_star[:n_stars] = True
    sersic_n = np.zeros(n)
    hlr = np.zeros(n)
    e1 = np.zeros(n)
    e2 = np.zeros(n)
    gal = ~is_star
    sersic_n[gal] = rng.choice(SERSIC_INDICES, n_galaxies)
    hlr[gal] = rng.uniform(0.25, 1.2, n_galaxies)
    ellipticity = rng.uniform(0.0, 0.5, n_galaxies)
    angle = rng.uniform(0.0, np.pi, n_galaxies)
    e1[gal] = ellipticity * np.cos(2 * angle)
    e2[gal] = ellipticity * np.sin(2 * angle)
    truth = Table({
        "id": np.arange(1, n + 1, dtype=np.int64),
        "ra": world.ra.deg, "dec": world.dec.deg, "x": x, "y": y,
        "flux": 10.0 ** (-0.4 * (mag - zero_point)), "mag": mag, "is_star": is_star,
        "sersic_n": sersic_n, "hlr": hlr, "e1": e1, "e2": e2,
    })
    return Scene(truth, wcs, (height, width), pixel_scale, psf_fwhm, sky, read_noise,
                 zero_point)


def _galaxy(row: Table.Row) -> galsim.GSObject:
    profile = galsim.Sersic(n=float(row["sersic_n"]), half_light_radius=float(row["hlr"]),
                            flux=1.0, trunc=0.0)
    return profile.shear(g1=float(row["e1"]), g2=float(row["e2"]))


def render_scene(scene: Scene, seed: int = 0, noise: bool = True,
                 include_sky: bool = True) -> np.ndarray:
    """The scene's image in electrons (float32), ``(height, width)``.

    Each object is drawn by GalSim (its ``drawImage``, FFT or real-space convolution with
    the pixel) on a stamp centred on its position, at the local pixel scale of the TAN WCS.
    With ``noise``, Poisson noise of the sky plus objects and Gaussian read noise are added;
    without ``include_sky`` the sky level is subtracted again (a background-subtracted
    image with the noise of the sky).
    """
    height, width = scene.shape
    image = galsim.ImageF(width, height, scale=scene.pixel_scale)
    image.setOrigin(0, 0)
    psf = make_psf(scene.psf_fwhm, scene.pixel_scale)
    params = galsim.GSParams(maximum_fft_size=8192, folding_threshold=5e-3)
    for row in scene.truth:
        xc, yc = float(row["x"]), float(row["y"])
        ix, iy = int(np.floor(xc + 0.5)), int(np.floor(yc + 0.5))
        flux = float(row["flux"])
        if row["is_star"]:
            obj = psf.withFlux(flux)
            half = int(np.clip(16 + 8 * np.log10(max(flux, 1.0)), 24, 96))
        else:
            obj = galsim.Convolve([_galaxy(row), psf], gsparams=params).withFlux(flux)
            half = int(np.clip(8 * row["hlr"] / scene.pixel_scale + 16, 24, 96))
        stamp = galsim.ImageF(2 * half + 1, 2 * half + 1, scale=scene.pixel_scale)
        stamp.setCenter(ix, iy)
        obj.drawImage(image=stamp, offset=(xc - ix, yc - iy), method="auto")
        overlap = stamp.bounds & image.bounds
        if overlap.isDefined():
            image[overlap] += stamp[overlap]
    array = image.array.astype(np.float64)
    if noise:
        rng = np.random.default_rng(seed)
        array = rng.poisson(np.clip(array + scene.sky, 0.0, None)).astype(np.float64)
        array += rng.normal(0.0, scene.read_noise, array.shape)
        if not include_sky:
            array -= scene.sky
    elif include_sky:
        array += scene.sky
    return array.astype(np.float32)
