"""A simulated sky of stars and galaxies, its truth catalog and its reference catalog.

Magnitudes follow power-law number counts (``dN/dm`` proportional to ``10**(slope * m)``:
0.2 for stars at high galactic latitude, 0.35 for galaxies), with simple colours. Galaxies
are elliptical Gaussians whose size shrinks with magnitude. The reference catalog holds the
brighter stars with their measured positions and fluxes (with errors), as an astrometric and
photometric reference catalog would; the truth catalog holds everything, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcpipe.table import Catalog, Schema

__all__ = ["SkyConfig", "make_sky", "reference_catalog", "BANDS", "AB_NJY_ZERO_POINT"]

#: The bands of the simulated camera.
BANDS = ("g", "r", "i")
#: AB magnitude of 1 nJy.
AB_NJY_ZERO_POINT = 31.4


@dataclass(frozen=True)
class SkyConfig:
    """The simulated sky.

    Parameters
    ----------
    ra, dec : float
        Centre of the field, degrees.
    radius : float
        Radius of the field, degrees.
    star_density, galaxy_density : float
        Objects per square degree between the magnitude limits (r band).
    star_mags, galaxy_mags : tuple of float
        r-band magnitude range.
    ref_mag_limit : float
        Faintest r magnitude of the reference catalog's stars.
    """

    ra: float = 150.0
    dec: float = 2.0
    radius: float = 0.3
    star_density: float = 15000.0
    galaxy_density: float = 40000.0
    star_mags: tuple[float, float] = (16.0, 25.0)
    galaxy_mags: tuple[float, float] = (18.0, 25.5)
    ref_mag_limit: float = 21.5


def _power_law(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float
               ) -> np.ndarray:
    a = slope * np.log(10.0)
    u = rng.uniform(size=n)
    return np.log(np.exp(a * lo) + u * (np.exp(a * hi) - np.exp(a * lo))) / a


def make_sky(config: SkyConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """The truth catalog of the sky: one row per object.

    Returns
    -------
    dict of numpy.ndarray
        ``id``, ``ra``, ``dec`` (degrees), ``is_star``, ``mag_<band>`` for each band,
        ``sigma`` (Gaussian size of a galaxy, arcsec; 0 for stars), ``e1``, ``e2``.
    """
    rng = np.random.default_rng([seed, 1])
    area = np.pi * config.radius**2
    n_star = rng.poisson(config.star_density * area)
    n_gal = rng.poisson(config.galaxy_density * area)
    n = n_star + n_gal
    # uniform on the sphere cap around the centre (small field: flat approximation is fine)
    r = config.radius * np.sqrt(rng.uniform(size=n))
    theta = rng.uniform(0, 2 * np.pi, n)
    dec = config.dec + r * np.sin(theta)
    ra = config.ra + r * np.cos(theta) / np.cos(np.radians(dec))
    is_star = np.zeros(n, bool)
    is_star[:n_star] = True
    mag_r = np.concatenate([_power_law(rng, n_star, *config.star_mags, 0.2),
                            _power_law(rng, n_gal, *config.galaxy_mags, 0.35)])
    g_r = np.where(is_star, rng.uniform(0.2, 1.4, n), rng.uniform(0.3, 1.2, n))
    r_i = np.where(is_star, 0.1 + 0.35 * g_r + rng.normal(0, 0.03, n), rng.uniform(0.1, 0.6, n))
    sigma = np.where(is_star, 0.0, 0.6 * 10 ** (-0.1 * (mag_r - 20.0)) * rng.lognormal(0, 0.3, n))
    e = np.where(is_star, 0.0, rng.uniform(0, 0.5, n))
    phi = rng.uniform(0, np.pi, n)
    return {
        "id": np.arange(1, n + 1, dtype=np.int64),
        "ra": ra, "dec": dec, "is_star": is_star,
        "mag_g": mag_r + g_r, "mag_r": mag_r, "mag_i": mag_r - r_i,
        "sigma": sigma, "e1": e * np.cos(2 * phi), "e2": e * np.sin(2 * phi),
    }


def reference_catalog(truth: dict[str, np.ndarray], config: SkyConfig, seed: int = 0
                      ) -> Catalog:
    """The reference catalog: stars brighter than ``ref_mag_limit`` in r, measured.

    Positions carry 10 mas errors and fluxes 1% errors (plus the truth's Poisson-like floor),
    like a Gaia-and-PS1-style reference; the columns follow LSST's reference catalog
    convention (``coord_ra``, ``coord_dec`` in radians, ``<band>_flux`` in nJy).
    """
    rng = np.random.default_rng([seed, 2])
    sel = truth["is_star"] & (truth["mag_r"] < config.ref_mag_limit)
    n = int(sel.sum())
    pos_err = 0.010 / 3600.0
    schema = Schema.minimal()
    for band in BANDS:
        schema.add_field(f"{band}_flux", "D", doc=f"{band}-band flux", units="nJy")
        schema.add_field(f"{band}_fluxErr", "D", doc=f"{band}-band flux error", units="nJy")
    schema.add_field("coord_raErr", "D", doc="RA error", units="rad")
    schema.add_field("coord_decErr", "D", doc="Dec error", units="rad")
    columns = {
        "id": truth["id"][sel],
        "coord_ra": np.radians(truth["ra"][sel] + rng.normal(0, pos_err, n)
                               / np.cos(np.radians(truth["dec"][sel]))),
        "coord_dec": np.radians(truth["dec"][sel] + rng.normal(0, pos_err, n)),
        "coord_raErr": np.full(n, np.radians(pos_err)),
        "coord_decErr": np.full(n, np.radians(pos_err)),
    }
    for band in BANDS:
        flux = 10 ** (-0.4 * (truth[f"mag_{band}"][sel] - AB_NJY_ZERO_POINT))
        err = 0.01 * flux
        columns[f"{band}_flux"] = flux + rng.normal(0, 1, n) * err
        columns[f"{band}_fluxErr"] = err
    return Catalog.from_columns(schema, columns)
