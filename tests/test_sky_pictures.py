"""The demo's pictures: the colour composite of a tract's coadds and the run's quality figure.

The numbers the quality figure plots are checked against values set by construction (known
offsets of reference positions, known zero points and fluxes, a known PSF width); the
pictures are checked to be PNGs of a sensible size, not pixel by pixel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.wcs import WCS
from matplotlib.image import imread

from hpcpipe.drivers.quality_figure import (
    BRIGHT_SNR,
    RunQuality,
    match_residuals,
    psf_fwhm_grid,
    write_quality_figure,
)
from hpcpipe.drivers.sky_picture import TractMosaic, extendedness, write_tract_picture, zoom_box
from hpcpipe.image.calib import PhotoCalib
from hpcpipe.image.psf import GaussianPsf
from hpcpipe.skymap.tract import TractInfo


def _tan_wcs(ra0: float = 150.0, dec0: float = 2.0, scale_arcsec: float = 0.2) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = [512.5, 512.5]
    wcs.wcs.cd = [[-scale_arcsec / 3600, 0.0], [0.0, scale_arcsec / 3600]]
    wcs.wcs.set()
    return wcs


def _assert_png(path, min_width: int, min_height: int) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height
    assert width <= 2500 and height <= 2000
    # not blank: many distinct colours
    assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 50
    return image


def test_extendedness_is_meas_base_flux_ratio():
    psf = np.array([100.0, 100.0, 91.0, 93.0, np.nan, 10.0])
    model = np.array([100.0, 200.0, 100.0, 100.0, 50.0, -1.0])
    out = extendedness(psf, model)
    np.testing.assert_array_equal(out[:4], [0.0, 1.0, 1.0, 0.0])  # ratio 0.925
    assert np.isnan(out[4]) and np.isnan(out[5])


def test_match_residuals_recover_known_offsets_and_magnitudes():
    wcs = _tan_wcs()
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 1023, 50), rng.uniform(0, 1023, 50)
    ra, dec = wcs.all_pix2world(x, y, 0)
    # the reference positions lie 12 mas east (RA cos Dec) and 7 mas south of the sources:
    # source minus reference is (-12, +7) mas
    ref_dec = dec - 7.0 / 3.6e6
    ref_ra = ra + 12.0 / 3.6e6 / np.cos(np.radians(ref_dec))
    calib = PhotoCalib(zero_point=31.0)
    ref_mag = rng.uniform(17, 22, 50)
    true_offset = rng.normal(0, 0.01, 50)  # calibrated minus reference, mag
    inst = calib.magnitude_to_instflux(ref_mag + true_offset)
    matches = {"src_x": x, "src_y": y, "ref_ra": ref_ra, "ref_dec": ref_dec,
               "src_instFlux": inst, "src_instFluxErr": inst / 200.0,
               "ref_flux": 10 ** (-0.4 * (ref_mag - 31.4))}
    res = match_residuals(wcs, calib, matches)
    np.testing.assert_allclose(res["d_ra_mas"], -12.0, atol=1e-3)
    np.testing.assert_allclose(res["d_dec_mas"], 7.0, atol=1e-3)
    np.testing.assert_allclose(res["ref_mag"], ref_mag, atol=1e-9)
    np.testing.assert_allclose(res["d_mag"], true_offset, atol=1e-9)
    np.testing.assert_allclose(res["snr"], 200.0)


def test_match_residuals_across_ra_zero():
    wcs = _tan_wcs(ra0=0.0, dec0=-30.0)
    x, y = np.array([100.0, 900.0]), np.array([500.0, 500.0])
    ra, dec = wcs.all_pix2world(x, y, 0)
    assert ra.max() > 359 and ra.min() < 1  # the field straddles RA = 0
    ref_ra = (ra - 5.0 / 3.6e6 / np.cos(np.radians(dec))) % 360.0
    matches = {"src_x": x, "src_y": y, "ref_ra": ref_ra, "ref_dec": dec,
               "src_instFlux": np.ones(2), "src_instFluxErr": np.ones(2),
               "ref_flux": np.ones(2)}
    res = match_residuals(wcs, PhotoCalib(zero_point=31.4), matches)
    np.testing.assert_allclose(res["d_ra_mas"], 5.0, atol=1e-3)


def test_psf_fwhm_grid_of_a_gaussian():
    x, y, fwhm = psf_fwhm_grid(GaussianPsf(2.0), 1000, 800, 0.2, n=4)
    assert x.shape == y.shape == fwhm.shape == (16,)
    np.testing.assert_allclose(fwhm, 2.0 * math.sqrt(2 * math.log(2)) * 2.0 * 0.2, rtol=1e-6)
    np.testing.assert_allclose(np.unique(x), [124.5, 374.5, 624.5, 874.5])
    np.testing.assert_allclose(np.unique(y), [99.5, 299.5, 499.5, 699.5])


def _quality() -> RunQuality:
    rng = np.random.default_rng(5)
    n = 400
    snr = np.where(np.arange(n) % 2 == 0, 500.0, 20.0)
    d_ra, d_dec = rng.normal(0, 10, n), rng.normal(0, 10, n)
    d_mag = rng.normal(0.002, 0.01, n)
    ccd = np.arange(n) % 2
    matches = {"visit": np.repeat([1, 2], n // 2), "ccd": ccd,
               "band": np.where(np.arange(n) < n // 2, "g", "r"),
               "fp_x": rng.uniform(0, 1000, n) + 1100 * ccd, "fp_y": rng.uniform(0, 1000, n),
               "x": np.zeros(n), "y": np.zeros(n), "d_ra_mas": d_ra, "d_dec_mas": d_dec,
               "ref_mag": rng.uniform(17, 22, n), "d_mag": d_mag, "snr": snr}
    gx, gy = np.meshgrid(np.arange(4) * 250 + 125.0, np.arange(4) * 250 + 125.0)
    psf = {"visit": np.repeat([1, 2], 32), "ccd": np.tile(np.repeat([0, 1], 16), 2),
           "band": np.repeat(["g", "r"], 32),
           "fp_x": np.tile(np.concatenate([gx.ravel(), gx.ravel() + 1100]), 2),
           "fp_y": np.tile(gy.ravel(), 4), "fwhm": np.linspace(0.7, 1.1, 64)}
    visits = [{"visit": 1, "band": "g", "depth": 25.1, "fwhm": 0.8, "ccds": 2},
              {"visit": 2, "band": "r", "depth": 24.6, "fwhm": 0.9, "ccds": 2}]
    ccds = {0: (0.0, 0.0, 1000, 1000), 1: (1100.0, 0.0, 1000, 1000)}
    return RunQuality(matches, psf, visits, ccds, {"g": 25.5, "r": 24.9})


def test_quality_summary_numbers():
    quality = _quality()
    s = quality.summary()
    m = quality.matches
    bright = m["snr"] > BRIGHT_SNR
    offsets = np.hypot(m["d_ra_mas"][bright], m["d_dec_mas"][bright])
    assert s["n_matches"] == 400 and s["n_bright"] == 200
    assert s["astrom_p68_mas"] == pytest.approx(np.percentile(offsets, 68))
    # 2-d Gaussian offsets of 10 mas per axis: 68% within 10 sqrt(-2 ln 0.32) = 15.1 mas
    assert s["astrom_p68_mas"] == pytest.approx(15.1, rel=0.15)
    assert s["astrom_median_mas"] == pytest.approx(np.median(offsets))
    d = m["d_mag"][bright]
    assert s["photom_scatter"] == pytest.approx(1.4826 * np.median(np.abs(d - np.median(d))))
    assert s["photom_scatter"] == pytest.approx(0.01, rel=0.2)
    assert s["photom_median"] == pytest.approx(0.002, abs=0.003)
    assert (s["fwhm_min"], s["fwhm_max"]) == pytest.approx((0.7, 1.1))
    assert s["depth"] == {1: 25.1, 2: 24.6}


def test_quality_figure_is_a_png(tmp_path):
    path = write_quality_figure(_quality(), tmp_path / "quality.png", title="test <run>")
    _assert_png(path, 1000, 600)
    assert [p.name for p in tmp_path.iterdir()] == ["quality.png"]  # no temporary left


def _mosaic() -> TractMosaic:
    vertices = np.array([[149.97, 1.97], [150.03, 1.97], [150.03, 2.03], [149.97, 2.03]])
    tract = TractInfo(7, (150.0, 2.0), vertices, pixel_scale=0.2,
                      patch_inner_dimensions=(400, 400), patch_border=20, tract_overlap=0.0)
    patches = [p for p in tract if p.index in ((1, 1), (2, 1))]
    x0 = min(p.inner_bbox.x0 for p in patches)
    y0 = min(p.inner_bbox.y0 for p in patches)
    x1 = max(p.inner_bbox.x0 + p.inner_bbox.width for p in patches)
    y1 = max(p.inner_bbox.y0 + p.inner_bbox.height for p in patches)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    n = 60
    ox, oy = rng.uniform(x0 + 10, x1 - 10, n), rng.uniform(y0 + 10, y1 - 10, n)
    images = {}
    for band, colour in (("g", 1.0), ("r", 1.6)):
        image = rng.normal(0, 5.0, xx.shape)
        for cx, cy, f in zip(ox, oy, rng.uniform(200, 5000, n)):
            image += colour * f / (2 * np.pi * 4) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2)
                                                           / 8.0)
        images[band] = image
    objects = {"x": ox, "y": oy, "extendedness": np.where(np.arange(n) % 3 == 0, 1.0, 0.0),
               "bands": [("g", "r") if i % 4 else ("r",) for i in range(n)]}
    return TractMosaic(tract, (x0, y0, x1, y1), images, {"g": 5.0, "r": 5.0}, patches, objects)


def test_zoom_box_lies_in_the_mosaic_around_objects():
    mosaic = _mosaic()
    x0, y0, x1, y1 = mosaic.bbox
    box = zoom_box(mosaic, 300)
    assert box[2] - box[0] == 300 and box[3] - box[1] == 300
    assert x0 <= box[0] and box[2] <= x1 and y0 <= box[1] and box[3] <= y1
    xs, ys = mosaic.objects["x"], mosaic.objects["y"]
    inside = (xs >= box[0]) & (xs < box[2]) & (ys >= box[1]) & (ys < box[3])
    assert inside.sum() >= len(xs) * 300 * 300 / ((x1 - x0) * (y1 - y0))  # at least average


def test_tract_picture_is_a_png(tmp_path):
    path = write_tract_picture(_mosaic(), tmp_path / "coadd.png")
    image = _assert_png(path, 1000, 600)
    # a colour composite: somewhere red and green differ (not a grey picture)
    assert np.abs(image[..., 0] - image[..., 1]).max() > 0.2
