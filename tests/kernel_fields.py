"""Simulated images with a known truth for the kernel tests (small, fast, seeded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class StarField:
    """A simulated CCD: Gaussian stars on a smooth sky, with Gaussian noise."""

    image: np.ndarray     # float32 pixels
    sky: np.ndarray       # the true sky (float64)
    noise: float          # the per-pixel noise sigma
    x: np.ndarray         # true star centres and fluxes
    y: np.ndarray
    flux: np.ndarray
    psf_sigma: float


def star_field(shape: tuple[int, int] = (512, 512), n_stars: int = 120, noise: float = 10.0,
               psf_sigma: float = 1.7, gradient: float = 40.0, flux_range=(2e3, 2e5),
               seed: int = 1, edge: int = 8) -> StarField:
    """Stars of log-uniform flux at random positions on ``1000 + a smooth gradient`` sky.

    The sky varies by about ``gradient`` counts over the image (a plane plus a gentle
    curvature); ``noise`` is Gaussian and the same everywhere.
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    u, v = xx / max(nx - 1, 1), yy / max(ny - 1, 1)
    sky = 1000.0 + gradient * (0.6 * u + 0.3 * v + 0.4 * (u - 0.5) * (v - 0.5))
    x = rng.uniform(edge, nx - edge, n_stars)
    y = rng.uniform(edge, ny - edge, n_stars)
    flux = np.exp(rng.uniform(np.log(flux_range[0]), np.log(flux_range[1]), n_stars))
    img = sky + rng.normal(0.0, noise, shape)
    h = int(np.ceil(5 * psf_sigma))
    for xs, ys, f in zip(x, y, flux):
        x0, y0 = int(round(xs)), int(round(ys))
        sy = slice(max(y0 - h, 0), min(y0 + h + 1, ny))
        sx = slice(max(x0 - h, 0), min(x0 + h + 1, nx))
        r2 = (xx[sy, sx] - xs) ** 2 + (yy[sy, sx] - ys) ** 2
        img[sy, sx] += f / (2 * np.pi * psf_sigma**2) * np.exp(-0.5 * r2 / psf_sigma**2)
    return StarField(img.astype(np.float32), sky, noise, x, y, flux, psf_sigma)


def random_image(shape=(200, 173), seed: int = 0, dtype=np.float32) -> np.ndarray:
    """Gaussian noise with a few extreme outliers (no structure)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(100.0, 5.0, shape)
    hits = rng.random(shape) < 0.01
    img[hits] += rng.uniform(50, 5000, hits.sum())
    return img.astype(dtype)
