"""A ``deepDiff_diaSrc`` catalog as Rubin DiaSource rows (nJy, arcsec, named flags).

hpcpipe's measurement names (LSST's ``base_*`` and ``ip_diffim_*``) are mapped to Rubin's
DiaSource columns (:data:`~hpcpipe.ap.apdb.DIA_SOURCE_COLUMNS`):

===================================  =====================================================
Rubin column                         from
===================================  =====================================================
``x``, ``y``, ``xErr``, ``yErr``     ``base_SdssCentroid_*`` (parent pixels)
``ra``, ``dec``, ``raErr``,          ``coord_*``; the errors through the WCS's local
``decErr``, ``ra_dec_Cov``           Jacobian (``raErr`` is of RA cos(Dec), degrees)
``psfFlux``, ``psfFluxErr``          ``base_PsfFlux_flux*`` (nJy, on the difference)
``psfNdata``                         pixels of the PSF model's box on the image
``apFlux``, ``apFluxErr``,           the 12-pixel aperture (``base_CircularApertureFlux_12_0``)
``apFlux_flag``                      in nJy; its flag
``scienceFlux``, ``templateFlux``    ``ip_diffim_forced_PsfFlux_*``, ``..._template_...``
``snr``                              ``detect_peakSignificance`` (detection S/N)
``dipole*``                          ``ip_diffim_DipoleFit_*``: mean and difference of the
                                     lobes' fluxes (nJy), separation (arcsec), bearing of
                                     negative-to-positive lobe east of north (deg), chi2,
                                     pixels fitted
``ixx``, ``iyy``, ``ixy``            ``base_SdssShape_*`` times the pixel scale squared
``bboxSize``                         the larger side of the detection footprint's box
``pixelFlags_<plane>``               any pixel of the footprint's box with the mask plane
``pixelFlags_<plane>Center``         any pixel of the 3x3 pixels around the centroid
``pixelFlags_offimage``              centroid off the image
===================================  =====================================================

Mask planes: ``bad`` BAD, ``cr`` CR, ``edge`` EDGE (or the centroid off the image),
``nodata`` NO_DATA, ``interpolated`` INTRP, ``saturated`` SAT, ``suspect`` SUSPECT.
``trailNdata`` is 0 (hpcpipe fits no trails: no pixel was used).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.ap.apdb import DIA_SOURCE_DTYPE, new_rows
from hpcpipe.image import Exposure

__all__ = ["PIXEL_FLAG_PLANES", "dia_source_rows", "local_jacobian"]

#: Rubin's pixelFlags names and the hpcpipe mask planes that set them.
PIXEL_FLAG_PLANES = {"bad": "BAD", "cr": "CR", "edge": "EDGE", "nodata": "NO_DATA",
                     "interpolated": "INTRP", "saturated": "SAT", "suspect": "SUSPECT"}
#: Pixel flags that also have a ``...Center`` column in Rubin's DiaSource.
_CENTER = ("cr", "nodata", "interpolated", "saturated", "suspect")
_APERTURE = "base_CircularApertureFlux_12_0"


def local_jacobian(wcs: Any, x: np.ndarray, y: np.ndarray, step: float = 0.5) -> np.ndarray:
    """(n, 2, 2) derivatives of (RA cos(Dec), Dec) in degrees by (x, y) pixels, by central
    differences through the full WCS (SIP included)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    out = np.empty((len(x), 2, 2))
    _, dec0 = wcs.all_pix2world(x, y, 0)
    cosd = np.cos(np.radians(dec0))
    for j, (dx, dy) in enumerate(((step, 0.0), (0.0, step))):
        ra_p, dec_p = wcs.all_pix2world(x + dx, y + dy, 0)
        ra_m, dec_m = wcs.all_pix2world(x - dx, y - dy, 0)
        dra = (ra_p - ra_m + 180.0) % 360.0 - 180.0
        out[:, 0, j] = dra * cosd / (2 * step)
        out[:, 1, j] = (dec_p - dec_m) / (2 * step)
    return out


def _field(catalog: Any, name: str, default: float | bool = np.nan) -> np.ndarray:
    if name in set(catalog.schema.names):
        return np.asarray(catalog[name])
    return np.full(len(catalog), default)


def _mask_any(mask: np.ndarray, bits: int, boxes: np.ndarray) -> np.ndarray:
    """For each (x0, y0, x1, y1) box (array pixels, inclusive): any pixel with ``bits``."""
    ny, nx = mask.shape
    out = np.zeros(len(boxes), bool)
    if bits == 0:
        return out
    for k, (a, b, c, d) in enumerate(boxes):
        a, b, c, d = max(a, 0), max(b, 0), min(c, nx - 1), min(d, ny - 1)
        if a <= c and b <= d:
            out[k] = bool(np.any(mask[b:d + 1, a:c + 1] & bits))
    return out


def dia_source_rows(catalog: Any, band: str, difference: Exposure, time_processed: float,
                    exposure_time: float = float("nan")) -> np.ndarray:
    """A ``deepDiff_diaSrc`` catalog as APDB diaSource rows (:data:`DIA_SOURCE_DTYPE`).

    Parameters
    ----------
    catalog : Catalog
        The diaSources (with ``visit``, ``ccd`` and ``midPointTai``).
    band : str
        The filter band.
    difference : Exposure
        The difference image they were measured on (WCS, PSF, PhotoCalib, mask).
    time_processed : float
        ``timeProcessedMjdTai``.
    exposure_time : float
        The visit's exposure time (s).
    """
    n = len(catalog)
    rows = new_rows(DIA_SOURCE_DTYPE, n)
    if n == 0:
        return rows
    rows["diaSourceId"] = catalog["id"]
    rows["visit"], rows["detector"], rows["band"] = catalog["visit"], catalog["ccd"], band
    rows["midpointMjdTai"] = catalog["midPointTai"]
    rows["exposureTime"] = exposure_time
    rows["timeProcessedMjdTai"] = time_processed
    rows["ra"] = np.degrees(catalog["coord_ra"])
    rows["dec"] = np.degrees(catalog["coord_dec"])
    x = np.asarray(catalog["base_SdssCentroid_x"], float)
    y = np.asarray(catalog["base_SdssCentroid_y"], float)
    rows["x"], rows["y"] = x, y
    x_err = _field(catalog, "base_SdssCentroid_xErr").astype(float)
    y_err = _field(catalog, "base_SdssCentroid_yErr").astype(float)
    rows["xErr"], rows["yErr"] = x_err, y_err
    rows["centroid_flag"] = _field(catalog, "base_SdssCentroid_flag", False)
    wcs = difference.wcs
    jac = local_jacobian(wcs, x, y) if wcs is not None else np.full((n, 2, 2), np.nan)
    cov_pix = np.zeros((n, 2, 2))
    cov_pix[:, 0, 0], cov_pix[:, 1, 1] = x_err**2, y_err**2
    cov_sky = jac @ cov_pix @ np.transpose(jac, (0, 2, 1))
    rows["raErr"] = np.sqrt(cov_sky[:, 0, 0])
    rows["decErr"] = np.sqrt(cov_sky[:, 1, 1])
    rows["ra_dec_Cov"] = cov_sky[:, 0, 1]
    scale_arcsec = 3600.0 * np.sqrt(np.abs(np.linalg.det(jac)))  # arcsec per pixel
    # fluxes: nJy
    rows["psfFlux"] = catalog["base_PsfFlux_flux"]
    rows["psfFluxErr"] = catalog["base_PsfFlux_fluxErr"]
    rows["psfFlux_flag"] = _field(catalog, "base_PsfFlux_flag", False)
    calib = difference.photo_calib
    ap = _field(catalog, f"{_APERTURE}_instFlux").astype(float)
    ap_err = _field(catalog, f"{_APERTURE}_instFluxErr").astype(float)
    if calib is not None:
        ap, ap_err = calib.instflux_to_nanojansky(ap, ap_err)
    else:
        ap, ap_err = np.full(n, np.nan), np.full(n, np.nan)
    rows["apFlux"], rows["apFluxErr"] = ap, ap_err
    rows["apFlux_flag"] = _field(catalog, f"{_APERTURE}_flag", False)
    rows["isNegative"] = catalog["is_negative"]
    rows["snr"] = _field(catalog, "detect_peakSignificance")
    rows["scienceFlux"] = catalog["ip_diffim_forced_PsfFlux_flux"]
    rows["scienceFluxErr"] = catalog["ip_diffim_forced_PsfFlux_fluxErr"]
    rows["forced_PsfFlux_flag"] = _field(catalog, "ip_diffim_forced_PsfFlux_flag", False)
    rows["templateFlux"] = _field(catalog, "ip_diffim_forced_template_PsfFlux_flux")
    rows["templateFluxErr"] = _field(catalog, "ip_diffim_forced_template_PsfFlux_fluxErr")
    for name in ("xx", "yy", "xy"):
        rows[f"i{name}"] = _field(catalog, f"base_SdssShape_{name}") * scale_arcsec**2
    rows["shape_flag"] = _field(catalog, "base_SdssShape_flag", False)
    rows["trailNdata"] = 0
    _dipoles(rows, catalog, wcs, scale_arcsec)
    _pixel_counts_and_flags(rows, catalog, difference, x, y)
    return rows


def _dipoles(rows: np.ndarray, catalog: Any, wcs: Any, scale_arcsec: np.ndarray) -> None:
    d = "ip_diffim_DipoleFit"
    pos, neg = _field(catalog, f"{d}_pos_flux"), _field(catalog, f"{d}_neg_flux")
    pos_err, neg_err = _field(catalog, f"{d}_pos_fluxErr"), _field(catalog, f"{d}_neg_fluxErr")
    n_data = _field(catalog, f"{d}_nData", 0).astype(np.int64)
    attempted = (n_data > 0) | _field(catalog, f"{d}_flag", False).astype(bool)
    rows["dipoleFitAttempted"] = attempted
    rows["isDipole"] = _field(catalog, f"{d}_flag_classification", False)
    rows["dipoleNdata"] = n_data
    with np.errstate(invalid="ignore"):
        rows["dipoleMeanFlux"] = np.where(attempted, 0.5 * (pos + neg), np.nan)
        rows["dipoleMeanFluxErr"] = np.where(attempted, 0.5 * np.hypot(pos_err, neg_err),
                                             np.nan)
        rows["dipoleFluxDiff"] = np.where(attempted, pos - neg, np.nan)
        rows["dipoleFluxDiffErr"] = np.where(attempted, np.hypot(pos_err, neg_err), np.nan)
        rows["dipoleLength"] = np.where(attempted,
                                        _field(catalog, f"{d}_separation") * scale_arcsec,
                                        np.nan)
        rows["dipoleChi2"] = np.where(attempted, _field(catalog, f"{d}_chi2dof")
                                      * np.maximum(n_data - 6, 1), np.nan)
    angle = np.full(len(rows), np.nan)
    ok = attempted & np.isfinite(_field(catalog, f"{d}_pos_x"))
    if wcs is not None and ok.any():
        ra_p, dec_p = wcs.all_pix2world(_field(catalog, f"{d}_pos_x")[ok],
                                        _field(catalog, f"{d}_pos_y")[ok], 0)
        ra_n, dec_n = wcs.all_pix2world(_field(catalog, f"{d}_neg_x")[ok],
                                        _field(catalog, f"{d}_neg_y")[ok], 0)
        r1, d1, r2, d2 = (np.radians(v) for v in (ra_n, dec_n, ra_p, dec_p))
        bearing = np.arctan2(np.sin(r2 - r1) * np.cos(d2),
                             np.cos(d1) * np.sin(d2) - np.sin(d1) * np.cos(d2) * np.cos(r2 - r1))
        angle[ok] = np.degrees(bearing) % 360.0
    rows["dipoleAngle"] = angle


def _pixel_counts_and_flags(rows: np.ndarray, catalog: Any, difference: Exposure,
                            x: np.ndarray, y: np.ndarray) -> None:
    n = len(rows)
    ex0, ey0 = difference.xy0
    h, w = difference.height, difference.width
    # PSF-fit pixels: the PSF model's box, clipped to the image
    if difference.psf is not None:
        npix = np.zeros(n, np.int64)
        for k in range(n):
            image, (px0, py0) = difference.psf.compute_image(float(x[k]), float(y[k]))
            ky, kx = image.shape
            cx = max(0, min(px0 + kx, ex0 + w) - max(px0, ex0))
            cy = max(0, min(py0 + ky, ey0 + h) - max(py0, ey0))
            npix[k] = cx * cy
        rows["psfNdata"] = npix
    # the footprint's box (parent pixels, inclusive) and the 3x3 pixels around the centroid
    box = np.column_stack([_field(catalog, f"ip_diffim_footprint_{c}", -1).astype(np.int64)
                           for c in ("x0", "y0", "x1", "y1")])
    known = box[:, 2] >= box[:, 0]
    ix, iy = np.floor(x + 0.5).astype(np.int64), np.floor(y + 0.5).astype(np.int64)
    centre = np.column_stack([ix - 1, iy - 1, ix + 1, iy + 1])
    box = np.where(known[:, None], box, centre)
    rows["bboxSize"] = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]) + 1
    offset = np.array([ex0, ey0, ex0, ey0])
    mask = difference.mask
    off = (ix < ex0) | (ix >= ex0 + w) | (iy < ey0) | (iy >= ey0 + h)
    rows["pixelFlags_offimage"] = off
    rows["pixelFlags"] = False
    for name, plane in PIXEL_FLAG_PLANES.items():
        bits = mask.get_plane_bitmask([plane]) if plane in mask.planes else 0
        rows[f"pixelFlags_{name}"] = _mask_any(mask.array, bits, box - offset)
        if name in _CENTER:
            rows[f"pixelFlags_{name}Center"] = _mask_any(mask.array, bits, centre - offset)
    rows["pixelFlags_edge"] |= off
