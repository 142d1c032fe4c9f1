"""Raw frames and master calibrations of the simulated camera, with their truth.

A raw frame is made as a real one is: the sky and its objects (PSF-convolved, with a PSF that
changes from visit to visit and grows towards the edge of the focal plane) seen through the
true, slightly distorted WCS; multiplied by the flat-field response (vignetting, pixel noise,
a dead column); plus dark current; Poisson noise; cosmic rays; full-well saturation with
bleed trails along the columns; read noise; then gain, bias level and bias structure per
amplifier into ADU, with overscan columns, rounded and clipped at the saturation level.

The raw's header WCS is a plain TAN with a small pointing error, as a telescope writes it;
the true WCS (TAN with a cubic radial distortion as SIP terms) stays in the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.time import Time, TimeDelta
from astropy.wcs import WCS, Sip

from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure, FilterLabel, VisitInfo
from hpcpipe.sim.camera import SimCamera

__all__ = ["VisitPlan", "ZERO_POINTS", "SKY_BRIGHTNESS", "ccd_true_wcs", "ccd_header_wcs",
           "psf_sigma_at", "render_ccd", "calibration_truth", "make_raw", "make_master_calibs",
           "RADIAL_DISTORTION"]

#: AB magnitude giving one electron per second, per band.
ZERO_POINTS = {"g": 28.3, "r": 28.4, "i": 28.0}
#: Sky surface brightness, AB mag per square arcsecond, per band.
SKY_BRIGHTNESS = {"g": 22.3, "r": 21.2, "i": 20.5}
#: Cubic radial distortion: a point ``r`` pixels from the boresight moves ``k r**3`` pixels.
RADIAL_DISTORTION = 2.0e-11


@dataclass(frozen=True)
class VisitPlan:
    """One pointing of the telescope.

    Parameters
    ----------
    visit : int
    band : str
    date : str
        Start of the exposure, ISO 8601, TAI.
    ra, dec : float
        Boresight, degrees.
    psf_sigma : float
        Gaussian PSF width at the boresight, pixels.
    exp_time : float
        Seconds.
    airmass : float
    pointing_error : tuple of float
        How far (arcsec, east and north) the header WCS is from the truth.
    """

    visit: int
    band: str
    date: str
    ra: float
    dec: float
    psf_sigma: float = 1.7
    exp_time: float = 30.0
    airmass: float = 1.2
    pointing_error: tuple[float, float] = (0.0, 0.0)


def _tan(camera: SimCamera, plan: VisitPlan, ccd: int, crval: tuple[float, float]) -> WCS:
    scale = camera.config.pixel_scale / 3600.0
    x0, y0 = camera.focal_plane_offset(ccd)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(crval)
    wcs.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]])
    wcs.wcs.crpix = [1.0 - x0, 1.0 - y0]  # FITS is 1-based: CCD pixel (-x0, -y0) is the axis
    return wcs


def ccd_true_wcs(camera: SimCamera, plan: VisitPlan, ccd: int) -> WCS:
    """The true WCS of a CCD's trimmed image: TAN plus a cubic radial distortion (SIP)."""
    wcs = _tan(camera, plan, ccd, (plan.ra, plan.dec))
    k = RADIAL_DISTORTION
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[3, 0] = a[1, 2] = k  # u (u^2 + v^2)
    b[2, 1] = b[0, 3] = k  # v (u^2 + v^2)
    wcs = WCS(wcs.to_header())
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    return wcs


def ccd_header_wcs(camera: SimCamera, plan: VisitPlan, ccd: int) -> WCS:
    """The WCS a raw header carries: TAN without distortion, off by the pointing error."""
    de, dn = plan.pointing_error
    dec = plan.dec + dn / 3600.0
    ra = plan.ra + de / 3600.0 / np.cos(np.radians(dec))
    return _tan(camera, plan, ccd, (ra, dec))


def psf_sigma_at(camera: SimCamera, plan: VisitPlan, ccd: int, x: np.ndarray, y: np.ndarray
                 ) -> np.ndarray:
    """The PSF width (pixels) at CCD pixels ``(x, y)``: 8% wider at the focal plane's edge."""
    x0, y0 = camera.focal_plane_offset(ccd)
    r_max = camera.field_radius_deg() * 3600.0 / camera.config.pixel_scale
    r2 = ((np.asarray(x) + x0) ** 2 + (np.asarray(y) + y0) ** 2) / r_max**2
    return plan.psf_sigma * (1.0 + 0.08 * r2)


def render_ccd(camera: SimCamera, plan: VisitPlan, truth: dict[str, np.ndarray], ccd: int
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The objects' electrons on a CCD's trimmed image (no sky, no noise), and their truth.

    Returns
    -------
    image : numpy.ndarray
        float64 electrons, ``(height, width)``.
    on_ccd : dict of numpy.ndarray
        The truth rows of the objects whose centres fall on the CCD, with their pixel
        positions ``x``, ``y``, total electrons ``flux_e`` and PSF width ``psf_sigma``.
    """
    c = camera.config
    wcs = ccd_true_wcs(camera, plan, ccd)
    sky = SkyCoord(truth["ra"], truth["dec"], unit="deg")
    near = sky.separation(SkyCoord(plan.ra, plan.dec, unit="deg")).deg < \
        camera.field_radius_deg() * 1.2
    x = np.full(truth["ra"].size, np.nan)
    y = np.full(truth["ra"].size, np.nan)
    if near.any():
        x[near], y[near] = wcs.world_to_pixel(sky[near])
    margin = 15
    inside = near & (x > -margin) & (x < c.width - 1 + margin) & (y > -margin) & (
        y < c.height - 1 + margin)
    idx = np.nonzero(inside)[0]
    zp = ZERO_POINTS[plan.band]
    flux = plan.exp_time * 10 ** (-0.4 * (truth[f"mag_{plan.band}"][idx] - zp))
    psf = psf_sigma_at(camera, plan, ccd, x[idx], y[idx])
    image = np.zeros((c.height, c.width))
    bounds = Box2I(0, 0, c.width, c.height)
    for k, i in enumerate(idx):
        s_gal = truth["sigma"][i] / c.pixel_scale
        e1, e2 = truth["e1"][i], truth["e2"][i]
        cxx = s_gal**2 * (1 + e1) + psf[k] ** 2
        cyy = s_gal**2 * (1 - e1) + psf[k] ** 2
        cxy = s_gal**2 * e2
        half = int(min(60, np.ceil(5 * np.sqrt(max(cxx, cyy)))))
        cx, cy = int(np.floor(x[i] + 0.5)), int(np.floor(y[i] + 0.5))
        box = Box2I(cx - half, cy - half, 2 * half + 1, 2 * half + 1).clipped_to(bounds)
        if box.is_empty():
            continue
        yy, xx = np.mgrid[box.y0:box.y1 + 1, box.x0:box.x1 + 1]
        dx, dy = xx - x[i], yy - y[i]
        det = cxx * cyy - cxy**2
        q = (cyy * dx**2 - 2 * cxy * dx * dy + cxx * dy**2) / det
        image[box.slices()] += flux[k] * np.exp(-0.5 * q) / (2 * np.pi * np.sqrt(det))
    sel = inside & (x >= -0.5) & (x < c.width - 0.5) & (y >= -0.5) & (y < c.height - 0.5)
    on = np.isin(idx, np.nonzero(sel)[0])
    on_ccd = {key: value[idx[on]] for key, value in truth.items()}
    on_ccd.update(x=x[idx[on]], y=y[idx[on]], flux_e=flux[on], psf_sigma=psf[on])
    return image, on_ccd


def calibration_truth(camera: SimCamera, ccd: int, band: str, seed: int = 0
                      ) -> dict[str, np.ndarray]:
    """The true bias structure (ADU), dark current (e-/s) and flat response of a CCD.

    The flat has a vignetting gradient, 1% pixel-to-pixel noise and one dead column
    (response 0.02); the dark has a few hot pixels.
    """
    c = camera.config
    rng = np.random.default_rng([seed, 3, ccd])
    yy, xx = np.mgrid[0:c.height, 0:c.width]
    x0, y0 = camera.focal_plane_offset(ccd)
    r_max = camera.field_radius_deg() * 3600.0 / c.pixel_scale
    r2 = ((xx + x0) ** 2 + (yy + y0) ** 2) / r_max**2
    bias = 2.0 * (yy / c.height) + rng.normal(0, 0.5, (c.height, c.width))
    dark = np.full((c.height, c.width), c.dark_current)
    hot = rng.integers(0, c.width * c.height, 20)
    dark.flat[hot] = rng.uniform(5.0, 50.0, hot.size)
    band_rng = np.random.default_rng([seed, 4, ccd, ord(band)])
    flat = (1.0 - 0.1 * r2) * band_rng.normal(1.0, 0.01, (c.height, c.width))
    dead = int(rng.integers(10, c.width - 10))
    flat[:, dead] = 0.02
    return {"bias": bias, "dark": dark, "flat": flat, "dead_column": np.array(dead)}


def _bleed(electrons: np.ndarray, full_well: float) -> None:
    """Spill the charge above the full well up and down the columns (in place)."""
    over = electrons > full_well
    for col in np.unique(np.nonzero(over)[1]):
        column = electrons[:, col]
        excess = float(np.clip(column - full_well, 0, None).sum())
        np.minimum(column, full_well, out=column)
        rows = np.nonzero(column >= full_well)[0]
        lo, hi = int(rows.min()), int(rows.max())
        while excess > 0 and (lo > 0 or hi < column.size - 1):
            for r in (lo - 1, hi + 1):
                if 0 <= r < column.size and excess > 0:
                    take = min(full_well - column[r], excess)
                    column[r] += take
                    excess -= take
            lo, hi = max(lo - 1, 0), min(hi + 1, column.size - 1)


def _cosmic_rays(rng: np.random.Generator, electrons: np.ndarray, exp_time: float
                 ) -> np.ndarray:
    """Add cosmic-ray tracks; return a boolean map of the pixels they hit."""
    h, w = electrons.shape
    hit = np.zeros(electrons.shape, bool)
    n = rng.poisson(1e-6 * w * h * exp_time)  # about 125 tracks per 30 s on a 2k x 2k CCD
    for _ in range(n):
        length = rng.integers(1, 12)
        angle = rng.uniform(0, np.pi)
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        t = np.linspace(0, length, 2 * length + 1)
        xs = np.clip((x0 + t * np.cos(angle)).astype(int), 0, w - 1)
        ys = np.clip((y0 + t * np.sin(angle)).astype(int), 0, h - 1)
        electrons[ys, xs] += rng.uniform(1500, 6000)
        hit[ys, xs] = True
    return hit


def make_raw(camera: SimCamera, plan: VisitPlan, truth: dict[str, np.ndarray], ccd: int,
             seed: int = 0) -> tuple[Exposure, dict[str, np.ndarray]]:
    """A raw frame of CCD ``ccd`` for visit ``plan``, and its truth.

    Returns
    -------
    raw : Exposure
        ADU with overscan columns (``(height, width + 2 * overscan)``), the header WCS (for the
        trimmed image), the detector, the visit and the raw header cards as metadata.
    ccd_truth : dict of numpy.ndarray
        What :func:`render_ccd` gives, plus ``cosmic_rays`` (a boolean map) and the
        ``sky_electrons`` per pixel.
    """
    c = camera.config
    rng = np.random.default_rng([seed, 5, plan.visit, ccd])
    objects, on_ccd = render_ccd(camera, plan, truth, ccd)
    calib = calibration_truth(camera, ccd, plan.band, seed)
    pixel_area = c.pixel_scale**2
    sky_rate = 10 ** (-0.4 * (SKY_BRIGHTNESS[plan.band] - ZERO_POINTS[plan.band])) * pixel_area
    sky = sky_rate * plan.exp_time
    expected = (objects + sky) * calib["flat"] + calib["dark"] * plan.exp_time
    electrons = rng.poisson(expected).astype(np.float64)
    cosmic = _cosmic_rays(rng, electrons, plan.exp_time)
    _bleed(electrons, c.full_well)
    detector = camera.detector(ccd)
    raw = np.empty((c.height, camera.raw_width), dtype=np.float64)
    for amp in detector.amplifiers:
        data = electrons[amp.bbox.slices()] + rng.normal(0, c.read_noise, amp.bbox.shape)
        adu = data / amp.gain + c.bias_level + calib["bias"][amp.bbox.slices()]
        raw[amp.raw_data_bbox.slices()] = adu
        over = amp.raw_serial_overscan_bbox
        raw[over.slices()] = c.bias_level + rng.normal(0, c.read_noise / amp.gain, over.shape)
    raw = np.clip(np.round(raw), 0, c.saturation).astype(np.float32)

    exposure = Exposure(Box2I(0, 0, camera.raw_width, c.height))
    exposure.image.array[:] = raw
    exposure.wcs = ccd_header_wcs(camera, plan, ccd)
    exposure.filter = FilterLabel(plan.band, f"{plan.band}_sim")
    exposure.detector = detector
    start = Time(plan.date, format="isot", scale="tai")
    exposure.visit_info = VisitInfo(
        exposure_id=plan.visit, date=start + TimeDelta(plan.exp_time / 2.0, format="sec"),
        exposure_time=plan.exp_time, dark_time=plan.exp_time, airmass=plan.airmass,
        boresight=SkyCoord(plan.ra, plan.dec, unit="deg"), rotation_angle=0.0,
        instrument="SimCam", observation_type="science")
    # the header cards the camera file reads (written through the description)
    exposure.metadata = camera.description().header_cards({
        "obsType": "science", "visit": int(plan.visit), "ccd": int(ccd),
        "filter": str(plan.band), "dateObs": str(plan.date), "expTime": float(plan.exp_time)})
    exposure.metadata["AIRMASS"] = float(plan.airmass)
    on_ccd["cosmic_rays"] = cosmic
    on_ccd["sky_electrons"] = np.array(sky)
    return exposure, on_ccd


def make_master_calibs(camera: SimCamera, ccd: int, bands: tuple[str, ...], calib_date: str,
                       seed: int = 0) -> dict[str, Exposure]:
    """Master bias (ADU), dark (electrons per second) and flats of one CCD.

    They are the calibration truth plus the small noise of a stack of many frames, on the
    trimmed detector image, with the header cards ingest needs. Keys: ``bias``, ``dark`` and
    ``flat_<band>``.
    """
    c = camera.config
    description = camera.description()

    def calib_header(kind: str, ccd: int, calib_date: str, filter: str = "") -> dict[str, Any]:
        values: dict[str, Any] = {"obsType": kind, "ccd": int(ccd),
                                  "calibId": f"calibDate={calib_date}"}
        if filter:
            values["filter"] = filter
        return description.header_cards(values)

    rng = np.random.default_rng([seed, 6, ccd])
    out = {}
    detector = camera.detector(ccd)
    bbox = Box2I(0, 0, c.width, c.height)
    for band in bands:
        truth = calibration_truth(camera, ccd, band, seed)
        if "bias" not in out:
            for kind, noise in (("bias", c.read_noise / max(c.gains) / 10.0), ("dark", 0.002)):
                exp = Exposure(bbox, detector=detector)
                exp.image.array[:] = truth[kind] + rng.normal(0, noise, bbox.shape)
                exp.metadata = calib_header(kind, ccd, calib_date)
                out[kind] = exp
        flat = Exposure(bbox, detector=detector, filter=FilterLabel(band, f"{band}_sim"))
        flat.image.array[:] = truth["flat"] * rng.normal(1.0, 0.001, bbox.shape)
        flat.metadata = calib_header("flat", ccd, calib_date, filter=band)
        out[f"flat_{band}"] = flat
    return out
