"""diaSources on synthetic images (no butler): new, vanished and moved stars; dipole fits;
the injected transients, variables and movers of the simulation."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.time import Time
from astropy.wcs import WCS

from hpcpipe.diffim.dipole import fit_dipole
from hpcpipe.diffim.image_difference import ImageDifferenceTask
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure, GaussianPsf, PhotoCalib, VisitInfo
from hpcpipe.sim.camera import CameraConfig, SimCamera
from hpcpipe.sim.raw import VisitPlan, render_ccd
from hpcpipe.sim.survey import SurveyConfig, plan_survey, survey_transients
from hpcpipe.sim.transients import (
    NO_FLUX_MAG,
    TransientConfig,
    epoch_truth,
    light_curves,
    magnitudes_at,
    make_transients,
    positions_at,
)

SIZE = 400


def _gauss(x, y, flux, sigma, size=SIZE):
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.zeros((size, size))
    for xi, yi, fi in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(flux), strict=True):
        img += fi * np.exp(-0.5 * ((xx - xi) ** 2 + (yy - yi) ** 2) / sigma**2) / (
            2 * np.pi * sigma**2)
    return img


def _wcs():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [200.0, 200.0]
    wcs.wcs.cd = np.array([[-0.2 / 3600, 0], [0, 0.2 / 3600]])
    return wcs


def _exposure(rng, model, sigma, var_scale=1.0):
    var = (100.0 + np.clip(model, 0, None)) * var_scale
    exp = Exposure(Box2I(0, 0, SIZE, SIZE))
    exp.image.array[:] = model + rng.normal(size=model.shape) * np.sqrt(var)
    exp.variance.array[:] = var
    exp.psf = GaussianPsf(sigma)
    exp.wcs = _wcs()
    exp.photo_calib = PhotoCalib(28.0)
    exp.visit_info = VisitInfo(exposure_id=7, date=Time("2026-01-12T03:00:00", scale="tai"))
    return exp


def test_dipole_fit_recovers_two_lobes():
    rng = np.random.default_rng(0)
    sigma = 2.0
    model = _gauss(100.0, 100.0, 6000.0, sigma) - _gauss(102.5, 100.8, 4000.0, sigma)
    var = np.full(model.shape, 100.0)
    image = model + rng.normal(size=model.shape) * 10.0
    psf = GaussianPsf(sigma).compute_kernel_image()
    fit = fit_dipole(image, var, np.ones(model.shape, bool), psf, (0, 0),
                     (99.5, 99.6, 3000.0), (103.0, 101.0, 2000.0), 3 * sigma)
    assert fit.success
    assert fit.pos_flux == pytest.approx(6000.0, abs=4 * fit.pos_flux_err)
    assert fit.neg_flux == pytest.approx(4000.0, abs=4 * fit.neg_flux_err)
    assert fit.pos_x == pytest.approx(100.0, abs=0.2) and fit.neg_x == pytest.approx(102.5,
                                                                                      abs=0.2)
    assert fit.separation == pytest.approx(np.hypot(2.5, 0.8), abs=0.3)
    assert fit.chi2 / fit.dof == pytest.approx(1.0, abs=0.2)


def test_new_vanished_and_moved_stars_become_positive_negative_and_dipole_sources():
    rng = np.random.default_rng(1)
    n = 150
    x = rng.uniform(30, SIZE - 30, n)
    y = rng.uniform(30, SIZE - 30, n)
    flux = 10 ** rng.uniform(3.5, 5.0, n)
    # keep the special objects away from the field stars
    keep = np.hypot(x - 120, y - 120) > 25
    keep &= np.hypot(x - 280, y - 120) > 25
    keep &= np.hypot(x - 200, y - 290) > 25
    x, y, flux = x[keep], y[keep], flux[keep]
    static = (x, y, flux)
    tmpl_model = _gauss(*static, 1.6) + _gauss([280.0, 200.0], [120.0, 290.0],
                                               [15000.0, 20000.0], 1.6)
    sci_model = (_gauss(*static, 2.3)
                 + _gauss(120.0, 120.0, 12000.0, 2.3)          # new: a transient
                 + _gauss(203.0, 290.0, 20000.0, 2.3))         # moved by 3 pixels
    # the star at (280, 120) has vanished
    template = _exposure(rng, tmpl_model, 1.6, var_scale=1 / 3)
    science = _exposure(rng, sci_model, 2.3)
    src_x, src_y = x[flux > 2e4], y[flux > 2e4]
    task = ImageDifferenceTask()
    from hpcpipe.pipe.measurement import MeasurementTask
    from hpcpipe.table import Catalog

    src = MeasurementTask().run(science, src_x, src_y).catalog
    result = task.run(science, template, src, id_base=1000, visit=7, ccd=3)
    dia = result.diaSources
    assert isinstance(dia, Catalog)
    assert result.mode == "convolveTemplate"
    assert np.all(dia["visit"] == 7) and np.all(dia["ccd"] == 3)
    assert dia["midPointTai"][0] == pytest.approx(Time("2026-01-12T03:00:00", scale="tai").mjd)
    assert list(dia["id"]) == list(1001 + np.arange(len(dia)))
    dx, dy = dia["base_SdssCentroid_x"], dia["base_SdssCentroid_y"]

    def nearest(px, py):
        d = np.hypot(dx - px, dy - py)
        assert d.min() < 2.0, (px, py)
        return int(np.argmin(d))

    new = nearest(120.0, 120.0)
    assert not dia["is_negative"][new]
    assert not dia["ip_diffim_DipoleFit_flag_classification"][new]
    nj = science.photo_calib.calibration_mean
    assert dia["base_PsfFlux_flux"][new] == pytest.approx(12000 * nj, rel=0.05)
    assert dia["ip_diffim_forced_PsfFlux_flux"][new] == pytest.approx(12000 * nj, rel=0.05)
    assert abs(dia["ip_diffim_forced_template_PsfFlux_flux"][new]) < 0.03 * 12000 * nj
    gone = nearest(280.0, 120.0)
    assert dia["is_negative"][gone]
    assert dia["base_PsfFlux_flux"][gone] == pytest.approx(-15000 * nj, rel=0.05)
    assert dia["ip_diffim_forced_template_PsfFlux_flux"][gone] == pytest.approx(15000 * nj,
                                                                                rel=0.05)
    moved = nearest(201.5, 290.0)
    assert dia["ip_diffim_DipoleFit_flag_classification"][moved]
    assert dia["ip_diffim_DipoleFit_pos_x"][moved] == pytest.approx(203.0, abs=0.5)
    assert dia["ip_diffim_DipoleFit_neg_x"][moved] == pytest.approx(200.0, abs=0.5)
    assert dia["ip_diffim_DipoleFit_pos_flux"][moved] == pytest.approx(20000 * nj, rel=0.15)
    assert dia["ip_diffim_DipoleFit_neg_flux"][moved] == pytest.approx(20000 * nj, rel=0.15)
    assert dia["ip_diffim_DipoleFit_separation"][moved] == pytest.approx(3.0, abs=0.5)
    # nothing else but noise: at most a couple of spurious sources
    assert len(dia) <= 5
    ra, dec = science.wcs.all_pix2world([120.0], [120.0], 0)
    assert np.degrees(dia["coord_ra"][new]) == pytest.approx(ra[0], abs=0.3 / 3600)
    assert np.degrees(dia["coord_dec"][new]) == pytest.approx(dec[0], abs=0.3 / 3600)


def test_light_curves_of_the_three_kinds():
    table = {
        "id": np.array([1, 2, 3, 4]), "kind": np.array([0, 1, 1, 2]),
        "ra": np.full(4, 150.0), "dec": np.full(4, 2.0),
        "mag_g": np.array([20.0, 19.0, 19.0, 21.0]), "mag_r": np.array([20.0, 19.0, 19.0, 21.0]),
        "mag_i": np.array([20.0, 19.0, 19.0, 21.0]),
        "t0": np.array([100.0, 90.0, 90.0, 0.0]), "rise": np.array([2.0, 0, 0, 0]),
        "fall": np.array([10.0, 0, 0, 0]), "period": np.array([0.0, 2.0, 2.0, 0.0]),
        "amplitude": np.array([0.0, 0.5, 0.5, 0.0]), "shape": np.array([0, 0, 1, 0]),
        "mu_ra": np.array([0.0, 0, 0, 36.0]), "mu_dec": np.array([0.0, 0, 0, -18.0]),
        "t_ref": np.full(4, 99.0),
    }
    assert magnitudes_at(table, 99.0, "r")[0] == NO_FLUX_MAG           # before the explosion
    assert magnitudes_at(table, 101.0, "r")[0] == pytest.approx(20.0 + 2.5 * np.log10(4))
    assert magnitudes_at(table, 102.0, "r")[0] == pytest.approx(20.0)  # the peak
    assert magnitudes_at(table, 122.0, "r")[0] == pytest.approx(22.0)  # 1 mag per 10 days
    assert magnitudes_at(table, 90.5, "r")[1] == pytest.approx(19.0 + 0.5)   # sine, 1/4 phase
    assert magnitudes_at(table, 90.5, "r")[2] == pytest.approx(19.0 - 0.25)  # sawtooth
    assert magnitudes_at(table, 92.5, "r")[1] == pytest.approx(19.0 + 0.5)   # periodic
    ra, dec = positions_at(table, 99.0 + 1.0 / 24)
    assert dec[3] == pytest.approx(2.0 - 18.0 / 3600)
    assert (ra[3] - 150.0) * np.cos(np.radians(dec[3])) == pytest.approx(36.0 / 3600)
    assert ra[0] == 150.0 and dec[0] == 2.0


def test_injected_objects_are_drawn_on_the_ccds_with_their_flux():
    camera = SimCamera(CameraConfig(nx=2, ny=1, width=256, height=256, gap=20))
    config = TransientConfig(transients=5, variables=3, movers=2)
    table = make_transients(config, camera, [0, 1], 150.0, 2.0, (61050.0, 61056.0), 30.0,
                            seed=3)
    assert len(table["id"]) == 10 and list(np.bincount(table["kind"])) == [5, 3, 2]
    # transients explode in the second half of the survey
    assert np.all((table["t0"][:5] >= 61053.0) & (table["t0"][:5] <= 61054.2))
    plan = VisitPlan(visit=5, band="r", date="2026-01-15T03:00:00", ra=150.0, dec=2.0)
    epoch = epoch_truth(table, plan)
    image, on = render_ccd(camera, plan, epoch, 0)
    image1, on1 = render_ccd(camera, plan, epoch, 1)
    drawn = np.concatenate([on["id"], on1["id"]])
    # every object that is not a mover is on a CCD (30 pixels from the edges)
    assert set(table["id"][table["kind"] < 2]) <= set(drawn)
    total = image.sum() + image1.sum()
    assert total == pytest.approx(np.concatenate([on["flux_e"], on1["flux_e"]]).sum(),
                                  rel=0.01)
    curves = light_curves(table, [plan])
    assert np.all(curves["visit"] == 5) and len(curves["id"]) == 10


def test_the_default_survey_has_no_injected_objects_and_its_old_cadence():
    config = SurveyConfig(camera=CameraConfig(nx=1, ny=1, width=128, height=128), ccds=1,
                          dither=5.0)
    assert survey_transients(config) is None
    plans = plan_survey(config)
    t = [Time(p.date, scale="tai") for p in plans]
    assert (t[1] - t[0]).sec == pytest.approx(60.0)
    with pytest.raises(ValueError, match="transients"):
        SurveyConfig(transients=-1)
    daily = SurveyConfig(camera=config.camera, ccds=1, dither=5.0, visit_interval=86400.0,
                         transients=2)
    plans = plan_survey(daily)
    assert (Time(plans[1].date, scale="tai") - Time(plans[0].date, scale="tai")).jd == \
        pytest.approx(1.0)
    assert len(survey_transients(daily)["id"]) == 2


def test_the_entry_point_names_the_task():
    """setup.py registers imageDifference under hpcpipe.tasks with an importable path."""
    import re
    from pathlib import Path

    from hpcpipe.diffim.image_difference import ImageDifferenceTask
    from hpcpipe.task.discovery import import_object

    text = (Path(__file__).resolve().parent.parent / "setup.py").read_text()
    match = re.search(r'"imageDifference = ([\w.:]+)"', text)
    assert match
    assert import_object(match.group(1)) is ImageDifferenceTask
    assert ImageDifferenceTask._DefaultName == "imageDifference"


def test_the_template_is_the_patch_by_patch_warp_of_the_coadds():
    """GetCoaddAsTemplateTask (one grid per tract WCS, each patch warped over the calexp box it
    reaches) gives the pixels of the plain rule: every patch warped over the whole calexp,
    inner boxes first."""
    from hpcpipe.diffim.template import GetCoaddAsTemplateTask
    from hpcpipe.kernels.warp import transform_grid, warp_image, wcs_transform

    rng = np.random.default_rng(8)
    tract = WCS(naxis=2)
    tract.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    tract.wcs.crval = [150.0, 2.0]
    tract.wcs.crpix = [150.0, 100.0]
    tract.wcs.cd = np.array([[-0.2 / 3600, 0], [0, 0.2 / 3600]])
    calexp = Exposure(Box2I(0, 0, 120, 90))
    calexp.wcs = tract.deepcopy()
    calexp.wcs.wcs.crpix = [60.3, 50.7]
    calexp.wcs.wcs.cd = calexp.wcs.wcs.cd @ np.array([[np.cos(0.01), -np.sin(0.01)],
                                                      [np.sin(0.01), np.cos(0.01)]])
    calexp.photo_calib = PhotoCalib(28.0)
    coadds = []
    for px0, inner_x0 in ((60, 70), (140, 150)):    # two patches of 100 columns, overlapping
        coadd = Exposure(Box2I(px0, 40, 100, 130))
        coadd.image.array[:] = rng.normal(100.0, 10.0, coadd.image.array.shape)
        coadd.variance.array[:] = rng.uniform(50.0, 60.0, coadd.image.array.shape)
        coadd.image.array[70, 30] = np.nan
        coadd.wcs = tract.deepcopy()
        coadd.psf = GaussianPsf(1.8)
        coadds.append((coadd, Box2I(inner_x0, 50, 80, 110)))
    template = GetCoaddAsTemplateTask().run(calexp, coadds).template
    # the plain rule
    shape = calexp.image.array.shape
    nodata = template.mask.get_plane_bitmask("NO_DATA")
    image = np.full(shape, np.nan, np.float32)
    mask = np.full(shape, nodata, np.int32)
    filled = np.zeros(shape, bool)
    results = []
    for coadd, inner in coadds:
        sx, sy = transform_grid(wcs_transform(coadd.wcs, calexp.wcs), shape, step=10)
        res = warp_image(coadd.image.array, coadd.variance.array, coadd.mask.array,
                         sx - coadd.xy0[0], sy - coadd.xy0[1], no_data_bit=nodata)
        good = np.isfinite(res.image) & ((res.mask & nodata) == 0)
        in_inner = ((sx >= inner.x0 - 0.5) & (sx < inner.x0 + inner.width - 0.5)
                    & (sy >= inner.y0 - 0.5) & (sy < inner.y0 + inner.height - 0.5))
        results.append((coadd, res, good, in_inner))
    for pass_inner in (True, False):
        for coadd, res, good, in_inner in results:
            take = good & ~filled & (in_inner if pass_inner else True)
            image[take] = res.image[take]
            mask[take] = template.mask.translate_bits(res.mask[take], coadd.mask.planes)
            filled |= take
    assert 0.3 < filled.mean() < 1.0
    expected = image / np.float32(calexp.photo_calib.calibration_mean)
    np.testing.assert_array_equal(np.isfinite(template.image.array), filled)
    np.testing.assert_allclose(template.image.array[filled], expected[filled], rtol=1e-6)
    np.testing.assert_array_equal(template.mask.array, mask)
