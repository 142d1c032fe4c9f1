"""Aperture corrections: the Chebyshev field, their measurement on stars and their use."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_sim import gaussian_stars

from hpcpipe.image import Exposure, GaussianPsf
from hpcpipe.image.apcorr import ApCorrMap, ChebyshevBoundedField
from hpcpipe.pipe.ap_corr import MeasureApCorrTask, apply_ap_corr, corrected_flux_names
from hpcpipe.pipe.measurement import MeasurementTask

BOX = (-0.5, -0.5, 299.5, 199.5)


def test_chebyshev_field_fits_and_round_trips():
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 300, 200), rng.uniform(0, 200, 200)
    truth = ChebyshevBoundedField(BOX, [[1.03, 0.01, -0.004], [0.02, 0.003, 0.0],
                                        [0.005, 0.0, 0.0]])
    values = truth.evaluate(x, y)
    fit = ChebyshevBoundedField.fit(BOX, x, y, values, order=2)
    np.testing.assert_allclose(fit.coefficients, truth.coefficients, atol=1e-12)
    assert ChebyshevBoundedField.from_dict(fit.to_dict()) == fit
    # scaled coordinates: the box's corners are -1 and 1
    assert ChebyshevBoundedField(BOX, [[0.0, 1.0]]).evaluate(299.5, 0.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="points"):
        ChebyshevBoundedField.fit(BOX, x[:2], y[:2], values[:2], order=2)
    with pytest.raises(ValueError, match="bbox"):
        ChebyshevBoundedField((0, 0, 0, 1), [[1.0]])
    m = ApCorrMap({"base_PsfFlux_instFlux": fit, "base_PsfFlux_instFluxErr": fit})
    assert m.flux_names() == ["base_PsfFlux"] and ApCorrMap.from_dict(m.to_dict()) == m
    with pytest.raises(TypeError, match="ChebyshevBoundedField"):
        m["x"] = 1.0


def star_exposure(n: int = 60, sigma: float = 2.0, noise: float = 3.0, seed: int = 5):
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(25, 290, 40), np.arange(25, 190, 40))
    xs = gx.ravel()[:n] + rng.uniform(-0.5, 0.5, gx.size)[:n]
    ys = gy.ravel()[:n] + rng.uniform(-0.5, 0.5, gy.size)[:n]
    fluxes = rng.uniform(3e4, 2e5, xs.size)
    img, var = gaussian_stars((200, 300), xs, ys, fluxes, sigma, noise=noise, seed=seed)
    exposure = Exposure((200, 300))
    exposure.image.array[:] = img
    exposure.variance.array[:] = var
    # a model cut at +-2 sigma and renormalised: its fit misses part of the wings
    exposure.psf = GaussianPsf(sigma, 9)
    return exposure, xs, ys, fluxes


def test_measured_corrections_bring_psf_fluxes_to_the_total():
    exposure, xs, ys, fluxes = star_exposure()
    measurement = MeasurementTask()
    radii = list(measurement.config.apertureRadii)
    raw = measurement.run(exposure, np.round(xs), np.round(ys)).catalog
    bias = np.median(raw["base_PsfFlux_instFlux"] / fluxes)
    assert bias < 0.97  # the truncated model
    task = MeasureApCorrTask()
    task.config.refAnnulus = [26.0, 34.0]  # the stars are 40 pixels apart
    task.config.refRadius = 17.0
    result = task.run(exposure, raw, np.ones(len(raw), bool), corrected_flux_names(radii))
    ap_corr = result.ap_corr_map
    assert set(ap_corr.flux_names()) >= {"base_PsfFlux", "ext_photometryKron_KronFlux",
                                         "base_CircularApertureFlux_3_0"}
    assert "base_CircularApertureFlux_12_0_instFlux" not in ap_corr  # the reference
    assert ap_corr["base_PsfFlux_instFlux"].mean() == pytest.approx(1 / bias, rel=0.01)
    # applied by the measurement of an exposure that carries the map
    exposure.ap_corr_map = ap_corr
    cat = measurement.run(exposure, np.round(xs), np.round(ys)).catalog
    ratio = cat["base_PsfFlux_instFlux"] / fluxes
    assert abs(np.median(ratio) - 1) < 0.003
    assert not cat["base_PsfFlux_flag_apCorr"].any()
    np.testing.assert_allclose(cat["base_PsfFlux_instFluxErr"],
                               raw["base_PsfFlux_instFluxErr"] * cat["base_PsfFlux_apCorr"])
    assert (cat["base_PsfFlux_apCorrErr"] > 0).all()
    # the reference has no correction of its own: flagged, left as it is
    assert cat["base_CircularApertureFlux_12_0_flag_apCorr"].all()
    np.testing.assert_array_equal(cat["base_CircularApertureFlux_12_0_instFlux"],
                                  raw["base_CircularApertureFlux_12_0_instFlux"])
    # the Kron flux of a point source: within 1% of the total once corrected
    assert abs(np.median(cat["ext_photometryKron_KronFlux_instFlux"] / fluxes) - 1) < 0.01


def test_too_few_stars_give_no_correction():
    exposure, xs, ys, _ = star_exposure()
    measurement = MeasurementTask()
    cat = measurement.run(exposure, np.round(xs), np.round(ys)).catalog
    stars = np.zeros(len(cat), bool)
    stars[:2] = True
    names = corrected_flux_names(list(measurement.config.apertureRadii))
    assert len(MeasureApCorrTask().run(exposure, cat, stars, names).ap_corr_map) == 0
    before = cat["base_PsfFlux_instFlux"].copy()
    assert apply_ap_corr(cat, ApCorrMap(), names) == 0
    assert cat["base_PsfFlux_flag_apCorr"].all()
    np.testing.assert_array_equal(cat["base_PsfFlux_instFlux"], before)


def _two_component_stars(neighbours: bool, seed: int = 3):
    """Stars with a core (sigma 2) and wide wings (sigma 6, 10% of the light) 100 pixels
    apart; with ``neighbours``, each has a fainter round source 20 pixels away. Returns the
    exposure, the stars' positions and the footprint labels (a disc per source)."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(70, 600, 100), np.arange(70, 400, 100))
    xs = gx.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    ys = gy.ravel() + rng.uniform(-0.5, 0.5, gy.size)
    fluxes = rng.uniform(2e5, 1e6, xs.size)
    shape = (420, 640)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    image = np.zeros(shape)
    labels = np.zeros(shape, np.int32)
    sources = [(x, y, f, [(0.9, 2.0), (0.1, 6.0)], k + 1, 10.0)
               for k, (x, y, f) in enumerate(zip(xs, ys, fluxes, strict=True))]
    if neighbours:
        sources += [(x + 20.0, y + 3.0, 0.4 * f, [(1.0, 3.0)], 100 + k, 12.0)
                    for k, (x, y, f) in enumerate(zip(xs, ys, fluxes, strict=True))]
    for x, y, flux, parts, label, radius in sources:
        r2 = (xx - x) ** 2 + (yy - y) ** 2
        for share, sigma in parts:
            image += share * flux * np.exp(-0.5 * r2 / sigma**2) / (2 * np.pi * sigma**2)
        labels[(r2 < radius**2) & (labels == 0)] = label
    noise = 2.0
    exposure = Exposure(shape)
    exposure.image.array[:] = image + rng.normal(0.0, noise, shape)
    exposure.variance.array[:] = noise**2 + np.maximum(image, 0.0)
    exposure.psf = GaussianPsf(2.0, 25)
    return exposure, xs, ys, labels


def test_the_total_correction_leaves_the_neighbours_out():
    """A neighbour 20 pixels from each star falls inside the 35-pixel aperture: the plain
    aperture takes its light into the total-flux correction, the footprint-aware wings
    (``labels``) do not and agree with the correction measured on the same stars alone."""
    measurement = MeasurementTask()
    names = corrected_flux_names(list(measurement.config.apertureRadii))
    task = MeasureApCorrTask()

    def total(neighbours: bool, use_labels: bool) -> float:
        exposure, xs, ys, labels = _two_component_stars(neighbours)
        cat = measurement.run(exposure, np.round(xs), np.round(ys)).catalog
        result = task.run(exposure, cat, np.ones(len(cat), bool), names,
                          labels=labels if use_labels else None)
        # the PSF flux's correction = (total / 12-pixel) x (12-pixel / PSF): the ratio of
        # two runs' corrections is the ratio of their total-flux factors
        return float(result.ap_corr_map["base_PsfFlux_instFlux"].mean())

    alone = total(False, False)
    assert total(True, True) == pytest.approx(alone, rel=0.002)
    assert total(True, False) > alone * 1.02  # the neighbours' light, taken as the star's
    # the wings: 12 pixels hold 98.65% of these stars' light, 35 pixels all of it
    assert total(False, True) == pytest.approx(alone, rel=0.002)
