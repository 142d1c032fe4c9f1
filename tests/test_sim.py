"""The simulated camera and survey: known truth, realistic defects, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from hpcpipe.image import Exposure
from hpcpipe.sim.camera import CameraConfig, SimCamera
from hpcpipe.sim.raw import (
    SKY_BRIGHTNESS,
    ZERO_POINTS,
    VisitPlan,
    calibration_truth,
    ccd_header_wcs,
    ccd_true_wcs,
    make_master_calibs,
    make_raw,
)
from hpcpipe.sim.sky import SkyConfig, make_sky, reference_catalog
from hpcpipe.sim.survey import SurveyConfig, plan_survey, write_survey_files

SMALL = CameraConfig(nx=2, ny=2, width=256, height=256, overscan=16, gap=20)


@pytest.fixture(scope="module")
def sky():
    camera = SimCamera(SMALL)
    config = SkyConfig(radius=camera.field_radius_deg() * 1.3, star_density=2e5,
                       galaxy_density=1e5)
    return config, make_sky(config, seed=3)


def plan(**kwargs):
    values = dict(visit=7, band="r", date="2026-01-10T03:00:00", ra=150.0, dec=2.0,
                  psf_sigma=1.8, pointing_error=(1.5, -1.0))
    values.update(kwargs)
    return VisitPlan(**values)


def test_camera_geometry():
    camera = SimCamera(SMALL)
    det = camera.detector(3)
    assert [a.name for a in det.amplifiers] == ["C00", "C01"]
    left, right = det.amplifiers
    assert left.bbox.x1 + 1 == right.bbox.x0 and right.bbox.x1 == 255
    assert left.raw_serial_overscan_bbox.x0 == left.raw_data_bbox.x1 + 1
    assert right.raw_bbox.x1 == camera.raw_width - 1
    assert left.saturation < SMALL.bias_level + SMALL.full_well / left.gain
    with pytest.raises(ValueError, match="ccd 4 does not exist"):
        camera.detector(4)


def test_raw_levels_match_the_truth(sky):
    camera = SimCamera(SMALL)
    config, truth = sky
    raw, ccd_truth = make_raw(camera, plan(), truth, 0, seed=3)
    det = raw.detector
    assert raw.image.array.shape == (256, camera.raw_width)
    sky_e = 10 ** (-0.4 * (SKY_BRIGHTNESS["r"] - ZERO_POINTS["r"])) * 0.04 * 30.0
    calib = calibration_truth(camera, 0, "r", seed=3)
    for amp in det.amplifiers:
        over = raw.image.array[amp.raw_serial_overscan_bbox.slices()]
        assert abs(np.median(over) - SMALL.bias_level) < 1.0
        assert abs(np.std(over) - SMALL.read_noise / amp.gain) < 0.5
        data = raw.image.array[amp.raw_data_bbox.slices()]
        expected = SMALL.bias_level + np.median(calib["bias"][amp.bbox.slices()]) + (
            sky_e * np.median(calib["flat"][amp.bbox.slices()])) / amp.gain
        assert abs(np.median(data) - expected) < 3.0
    # the dead column is dark, cosmic rays were added, bright stars saturate
    dead = int(calib["dead_column"])
    amp = det.amplifiers[0] if dead < 128 else det.amplifiers[1]
    raw_col = dead - amp.bbox.x0 + amp.raw_data_bbox.x0
    assert np.median(raw.image.array[:, raw_col]) < SMALL.bias_level + 20
    assert ccd_truth["cosmic_rays"].any()
    assert raw.metadata["VISIT"] == 7 and raw.metadata["CCDNUM"] == 0
    assert len(ccd_truth["x"]) > 20
    assert np.all((ccd_truth["x"] >= -0.5) & (ccd_truth["x"] < 255.5))


def test_header_wcs_has_the_pointing_error_and_truth_the_distortion():
    camera = SimCamera(SMALL)
    p = plan()
    true, header = ccd_true_wcs(camera, p, 3), ccd_header_wcs(camera, p, 3)
    offset = true.pixel_to_world(128, 128).separation(header.pixel_to_world(128, 128)).arcsec
    assert abs(offset - np.hypot(1.5, 1.0)) < 0.2
    assert true.sip is not None and header.sip is None


def test_psf_changes_from_visit_to_visit_and_same_seed_same_survey():
    config = SurveyConfig(camera=SMALL, visits_per_band=3, bands=("g", "r"))
    plans = plan_survey(config)
    assert len(plans) == 6 and len({p.visit for p in plans}) == 6
    assert len({round(p.psf_sigma, 3) for p in plans}) == 6
    assert [p.date for p in plans] == sorted(p.date for p in plans)
    assert plan_survey(config) == plans


def test_reference_catalog_is_bright_stars(sky):
    config, truth = sky
    ref = reference_catalog(truth, config)
    bright = truth["is_star"] & (truth["mag_r"] < config.ref_mag_limit)
    assert len(ref) == bright.sum() > 0
    mags = 31.4 - 2.5 * np.log10(ref["r_flux"])
    np.testing.assert_allclose(mags, truth["mag_r"][bright], atol=0.05)


def test_master_calibs_carry_ingest_headers():
    calibs = make_master_calibs(SimCamera(SMALL), 1, ("g", "r"), "2026-01-01")
    assert sorted(calibs) == ["bias", "dark", "flat_g", "flat_r"]
    assert calibs["flat_r"].metadata["OBSTYPE"] == "flat"
    assert calibs["flat_r"].metadata["FILTER"] == "r"
    assert "calibDate=2026-01-01" in calibs["bias"].metadata["CALIB_ID"]


def test_write_survey_files_is_deterministic(tmp_path):
    config = SurveyConfig(camera=CameraConfig(nx=1, ny=2, width=128, height=128, overscan=8,
                                              gap=10), visits_per_band=1, bands=("g", "r"))
    a = write_survey_files(tmp_path / "a", config)
    b = write_survey_files(tmp_path / "b", config)
    assert len(a["raw"]) == 4 and len(a["calib"]) == 2 * 4 and not a["failed"]
    for pa, pb in zip(a["raw"], b["raw"]):
        np.testing.assert_array_equal(Exposure.read(pa).image.array,
                                      Exposure.read(pb).image.array)
