"""Photometry and detection against GalSim's truth (issue 15's science targets).

One 1024x1024 GalSim scene (Kolmogorov plus optical PSF, Sersic galaxies, sky 1000 e-, read
noise 5) goes through hpcpipe's single-frame processing as a calibrated-style image: the
characterization (background, PSF model, aperture corrections) and the calibration's
detection and measurement (astrometric and photometric fits off: no reference catalog). The
catalog is scored against the truth: PSF photometry of isolated stars, error calibration,
Kron fluxes of galaxies, spurious detections and where they fall. Source Extractor, when
installed, sets the completeness to match.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("galsim")

from galsim_science import (  # noqa: E402
    exposure_from_scene,
    isolated,
    match_to_truth,
    psf_noise_area,
    robust_sigma,
    true_snr,
)
from galsim_sky import make_scene, psf_image, render_scene  # noqa: E402

from hpcpipe.pipe.calibrate import CalibrateConfig, CalibrateTask  # noqa: E402
from hpcpipe.pipe.characterize import CharacterizeImageTask  # noqa: E402
from hpcpipe.task import Struct  # noqa: E402

SHAPE = (1024, 1024)


@pytest.fixture(scope="module")
def field() -> Struct:
    scene = make_scene(seed=11, shape=SHAPE, n_stars=320, n_galaxies=160,
                       star_mags=(15.5, 23.5), galaxy_mags=(18.0, 24.0))
    image = render_scene(scene, seed=11)
    exposure = exposure_from_scene(scene, image)
    CharacterizeImageTask().run(exposure)
    config = CalibrateConfig()
    config.doAstrometry = False
    config.doPhotoCal = False
    catalog = CalibrateTask(config=config).run(exposure, None).sourceCat
    catalog = catalog.where(catalog["detect_isPrimary"])
    truth = scene.truth
    match = match_to_truth(truth, catalog["base_SdssCentroid_x"],
                           catalog["base_SdssCentroid_y"], radius=2.0)
    snr = true_snr(scene, truth["flux"], psf_noise_area(psf_image(scene, 41)))
    found = match.truth_index >= 0
    rows = catalog.where(found)
    index = match.truth_index[found]
    return Struct(scene=scene, image=image, exposure=exposure, catalog=catalog, match=match,
                  rows=rows, flux=np.asarray(truth["flux"])[index], snr=snr[index],
                  star=np.asarray(truth["is_star"])[index],
                  isolated=isolated(truth)[index], all_snr=snr)


def _stars(f: Struct, lo: float, hi: float = np.inf) -> np.ndarray:
    return f.star & f.isolated & (f.snr > lo) & (f.snr < hi) & \
        ~f.rows["base_PsfFlux_flag"] & ~f.rows["base_PsfFlux_flag_apCorr"]


def _dmag(f: Struct, name: str, sel: np.ndarray) -> np.ndarray:
    return -2.5 * np.log10(f.rows[f"{name}_instFlux"][sel] / f.flux[sel])


def test_the_exposure_carries_its_aperture_corrections(field):
    ap_corr = field.exposure.ap_corr_map
    assert ap_corr is not None
    for name in ("base_PsfFlux", "ext_photometryKron_KronFlux",
                 "base_CircularApertureFlux_6_0"):
        assert f"{name}_instFlux" in ap_corr and f"{name}_instFluxErr" in ap_corr
    # the PSF model is cut off in its wings: its flux needs a correction of a few percent
    assert 1.005 < ap_corr["base_PsfFlux_instFlux"].mean() < 1.1
    rows = field.rows
    assert not rows["base_PsfFlux_flag_apCorr"].all()
    np.testing.assert_allclose(rows["base_PsfFlux_apCorr"][~rows["base_PsfFlux_flag_apCorr"]],
                               ap_corr["base_PsfFlux_instFlux"].evaluate(
                                   rows["base_SdssCentroid_x"], rows["base_SdssCentroid_y"]
                               )[~rows["base_PsfFlux_flag_apCorr"]])


def test_psf_flux_of_bright_isolated_stars(field):
    sel = _stars(field, 100.0)
    assert sel.sum() >= 15
    dm = _dmag(field, "base_PsfFlux", sel)
    assert abs(np.median(dm)) < 0.005, np.median(dm)
    assert robust_sigma(dm) <= 0.004, robust_sigma(dm)


def test_psf_flux_is_no_noisier_than_apertures_at_moderate_snr(field):
    sel = _stars(field, 20.0, 100.0)
    assert sel.sum() >= 30
    psf = robust_sigma(_dmag(field, "base_PsfFlux", sel))
    for radius in ("4_5", "6_0"):
        aperture = robust_sigma(_dmag(field, f"base_CircularApertureFlux_{radius}", sel))
        assert psf <= aperture, (radius, psf, aperture)


def test_psf_flux_errors_describe_the_scatter(field):
    sel = _stars(field, 5.0)
    rows = field.rows
    pull = (rows["base_PsfFlux_instFlux"][sel] - field.flux[sel]) / \
        rows["base_PsfFlux_instFluxErr"][sel]
    assert 0.9 <= robust_sigma(pull) <= 1.1, robust_sigma(pull)


def test_kron_flux_of_galaxies(field):
    sel = ~field.star & field.isolated & (field.snr > 50) & \
        ~field.rows["ext_photometryKron_KronFlux_flag"]
    assert sel.sum() >= 10
    dm = _dmag(field, "ext_photometryKron_KronFlux", sel)
    assert abs(np.median(dm)) < 0.03, np.median(dm)


def test_spurious_detections_are_rare_and_not_on_the_border(field):
    match = field.match
    assert match.spurious_fraction() < 0.01, match.spurious_fraction()
    cat = field.catalog
    x, y = cat["base_SdssCentroid_x"], cat["base_SdssCentroid_y"]
    h, w = SHAPE
    border = np.minimum.reduce([x, y, w - 1 - x, h - 1 - y]) < 10
    # the 10-pixel border is 4% of the image: no more than that share of the spurious ones
    # (with one spare for small numbers)
    assert (match.spurious & border).sum() <= 1 + 0.04 * match.spurious.sum()
    # the smoothing kernel's half-width of the border is masked EDGE and never detected
    mask = field.exposure.mask
    edge = (mask.array & mask.get_plane_bitmask("EDGE")) != 0
    assert edge[0].all() and edge[:, -1].all() and not edge[h // 2, w // 2]


def test_completeness_at_snr_5_and_20(field):
    detected = field.match.detected
    snr = field.all_snr
    assert detected[snr > 20].mean() > 0.95
    assert detected[snr > 5].mean() > 0.75


@pytest.mark.skipif(shutil.which("source-extractor") is None,
                    reason="source-extractor is not installed")
def test_completeness_at_least_source_extractors(field, tmp_path):
    """Source Extractor on the same pixels, at the same true 5-sigma threshold of the
    smoothed image (its DETECT_THRESH is in units of the unsmoothed noise)."""
    from sextractor_run import run_source_extractor

    sx = run_source_extractor(field.image, field.scene, tmp_path, true_sigma=5.0)
    theirs = match_to_truth(field.scene.truth, sx["x"], sx["y"], radius=2.0)
    ours = field.match
    snr = field.all_snr
    assert ours.detected[snr > 5].mean() >= theirs.detected[snr > 5].mean() - 0.01
    assert ours.spurious_fraction() <= max(theirs.spurious_fraction(), 0.01)
    assert subprocess.run(["source-extractor", "-v"], capture_output=True).returncode == 0
