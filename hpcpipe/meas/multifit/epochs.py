"""Cutouts of exposures (calexps or coadds) around objects, as multifit epochs.

For each object at ``(ra, dec)`` on an exposure: the pixel position from the exposure's WCS,
the WCS linearised there (``d(x, y)/d(u, v)``, ``u`` east and ``v`` north in arcsec, by
finite differences of 1 arcsec), a square cutout of ``2 half + 1`` pixels (clipped by the
exposure's edges: the epoch's ``edge``), the inverse variance as weights with masked pixels
(``exclude`` mask planes, non-finite or non-positive variance) and neighbours' pixels at 0,
the PSF's Gaussian mixture at the position (fitted once per cell of ``psf_cell`` pixels
of the exposure and reused within it), and the calibration in counts per nJy from the
exposure's PhotoCalib.

Neighbours are the deblender's: the coadd segmentation (``deepCoadd_segments``) is looked up
at the coadd pixel under each cutout pixel (through both linearised WCSs); a pixel in another
object's segment is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hpcpipe.image import Exposure
from hpcpipe.meas.multifit.fit import Epoch
from hpcpipe.meas.multifit.psfgmm import PsfMixture, fit_psf_mixture

__all__ = ["ExposureEpochs", "Segmentation", "local_jacobian"]

_ARCSEC = 1.0 / 3600.0


def local_jacobian(wcs: object, ra: np.ndarray, dec: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions ``(n, 2)`` of ``(ra, dec)`` (degrees) and ``d(x, y)/d(u, v)``
    ``(n, 2, 2)`` (pixels per arcsec; ``u`` east, ``v`` north), by central differences."""
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    cosd = np.cos(np.radians(dec))
    h = 0.5 * _ARCSEC
    x, y = wcs.all_world2pix(ra, dec, 0)  # type: ignore[attr-defined]
    xe1, ye1 = wcs.all_world2pix(ra + h / cosd, dec, 0)  # type: ignore[attr-defined]
    xe0, ye0 = wcs.all_world2pix(ra - h / cosd, dec, 0)  # type: ignore[attr-defined]
    xn1, yn1 = wcs.all_world2pix(ra, dec + h, 0)  # type: ignore[attr-defined]
    xn0, yn0 = wcs.all_world2pix(ra, dec - h, 0)  # type: ignore[attr-defined]
    jac = np.empty((ra.size, 2, 2))
    jac[:, 0, 0] = xe1 - xe0
    jac[:, 1, 0] = ye1 - ye0
    jac[:, 0, 1] = xn1 - xn0
    jac[:, 1, 1] = yn1 - yn0
    return np.stack([x, y], axis=1), jac


@dataclass
class Segmentation:
    """The deblender's segments on the coadd's pixel grid (``xy0``: its first pixel)."""

    segments: np.ndarray
    xy0: tuple[int, int]
    wcs: object

    def neighbours(self, seg_id: int, centre: np.ndarray, jac: np.ndarray, coadd_centre:
                   np.ndarray, coadd_jac: np.ndarray, x0: int, y0: int, shape:
                   tuple[int, ...]) -> np.ndarray:
        """Boolean ``shape`` mask of the cutout's pixels in another object's segment."""
        ny, nx = shape
        yy, xx = np.mgrid[y0:y0 + ny, x0:x0 + nx]
        d = np.stack([xx - centre[0], yy - centre[1]], axis=-1)
        uv = d @ np.linalg.inv(jac).T
        c = coadd_centre + uv @ coadd_jac.T
        ix = np.floor(c[..., 0] + 0.5).astype(np.int64) - self.xy0[0]
        iy = np.floor(c[..., 1] + 0.5).astype(np.int64) - self.xy0[1]
        h, w = self.segments.shape
        inside = (ix >= 0) & (iy >= 0) & (ix < w) & (iy < h)
        seg = np.zeros(shape, dtype=np.int64)
        seg[inside] = self.segments[iy[inside], ix[inside]]
        return (seg != 0) & (seg != seg_id)


class ExposureEpochs:
    """Make the epochs of many objects on one exposure (its PSF mixtures cached by cell).

    Parameters
    ----------
    exposure : Exposure
        A background-subtracted exposure with a WCS, a PSF and a PhotoCalib.
    exclude : int
        Mask bits of the pixels left out.
    psf_gaussians : int
        Gaussians of the PSF mixtures.
    psf_cell : int
        Size (pixels) of the cells within which one PSF mixture is used.
    label : str
        Names the exposure in errors.
    """

    def __init__(self, exposure: Exposure, exclude: int, psf_gaussians: int = 3,
                 psf_cell: int = 256, label: str = "exposure") -> None:
        if exposure.wcs is None or exposure.psf is None:
            raise ValueError(f"{label} has no WCS or no PSF: it cannot be fitted")
        self.exposure = exposure
        self.image = exposure.image.array
        self.variance = exposure.variance.array
        self.mask = exposure.mask.array
        self.x0, self.y0 = exposure.xy0
        self.exclude = int(exclude)
        self.psf_gaussians = psf_gaussians
        self.psf_cell = max(1, int(psf_cell))
        self.label = label
        calib = exposure.photo_calib
        self.calib = 1.0 / calib.calibration_mean if calib is not None else 1.0
        self.band = exposure.filter.band if exposure.filter is not None else ""
        self._psf: dict[tuple[int, int], PsfMixture] = {}

    def positions(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel positions and local Jacobians of the objects (degrees)."""
        return local_jacobian(self.exposure.wcs, ra, dec)

    def psf_at(self, x: float, y: float) -> PsfMixture:
        """The PSF mixture of the cell holding ``(x, y)``, fitted at the cell's centre."""
        cell = (int(np.floor((x - self.x0) / self.psf_cell)),
                int(np.floor((y - self.y0) / self.psf_cell)))
        if cell not in self._psf:
            cx = self.x0 + (cell[0] + 0.5) * self.psf_cell
            cy = self.y0 + (cell[1] + 0.5) * self.psf_cell
            h, w = self.image.shape
            cx = min(max(cx, self.x0), self.x0 + w - 1)
            cy = min(max(cy, self.y0), self.y0 + h - 1)
            assert self.exposure.psf is not None  # the epochs' exposures are calexps
            kernel = self.exposure.psf.compute_kernel_image(cx, cy)
            self._psf[cell] = fit_psf_mixture(kernel, self.psf_gaussians)
        return self._psf[cell]

    def epoch(self, centre: np.ndarray, jac: np.ndarray, half: int,
              neighbours: Callable[[int, int, tuple[int, ...]], np.ndarray] | None = None
              ) -> Epoch | None:
        """The cutout around pixel ``centre`` (None when the centre is off the exposure).

        ``neighbours``, when given, is called as ``neighbours(x0, y0, shape)`` and returns
        the boolean mask of the cutout's pixels that belong to other objects.
        """
        h, w = self.image.shape
        cx, cy = float(centre[0]), float(centre[1])
        if not (np.all(np.isfinite(jac)) and abs(np.linalg.det(jac)) > 0):
            return None
        if not (self.x0 - 0.5 <= cx < self.x0 + w - 0.5 and self.y0 - 0.5 <= cy
                < self.y0 + h - 0.5):
            return None
        ix, iy = int(np.floor(cx + 0.5)), int(np.floor(cy + 0.5))
        bx0, by0 = max(ix - half, self.x0), max(iy - half, self.y0)
        bx1, by1 = min(ix + half + 1, self.x0 + w), min(iy + half + 1, self.y0 + h)
        edge = (bx1 - bx0) < 2 * half + 1 or (by1 - by0) < 2 * half + 1
        sl = (slice(by0 - self.y0, by1 - self.y0), slice(bx0 - self.x0, bx1 - self.x0))
        image = self.image[sl].astype(np.float64)
        var = self.variance[sl].astype(np.float64)
        good = (self.mask[sl] & self.exclude) == 0
        good &= np.isfinite(image) & np.isfinite(var) & (var > 0)
        if neighbours is not None:
            good &= ~neighbours(bx0, by0, image.shape)
        weight = np.where(good, 1.0 / np.where(var > 0, var, 1.0), 0.0)
        image = np.where(good, image, 0.0)
        return Epoch(image, weight, bx0, by0, np.array([cx, cy]), jac, self.psf_at(cx, cy),
                     self.calib, self.band, edge)
