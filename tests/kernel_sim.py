"""A small simulated CCD (raw frame, master calibrations and truth) shared by the kernel tests."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from hpcpipe.kernels import load_native
from hpcpipe.sim.camera import CameraConfig, SimCamera
from hpcpipe.sim.raw import VisitPlan, make_master_calibs, make_raw, render_ccd
from hpcpipe.sim.sky import SkyConfig, make_sky

#: 2x2 CCDs of 384x320 pixels: big enough for bright, saturated stars and cosmic rays.
CONFIG = CameraConfig(nx=2, ny=2, width=384, height=320, overscan=16, gap=20)
PLAN = VisitPlan(visit=11, band="r", date="2026-01-10T03:00:00", ra=150.0, dec=2.0,
                 psf_sigma=1.8)


@functools.lru_cache(maxsize=1)
def simulated_ccd(ccd: int = 0, seed: int = 5) -> dict:
    """Raw exposure, master calibrations, the truth electrons and the truth rows."""
    camera = SimCamera(CONFIG)
    sky_config = SkyConfig(radius=camera.field_radius_deg() * 1.3, star_density=1.5e5,
                           galaxy_density=5e4, star_mags=(14.0, 23.0))
    truth = make_sky(sky_config, seed=seed)
    raw, ccd_truth = make_raw(camera, PLAN, truth, ccd, seed=seed)
    calibs = make_master_calibs(camera, ccd, ("r",), "2026-01-01", seed=seed)
    objects, _ = render_ccd(camera, PLAN, truth, ccd)
    return {
        "camera": camera,
        "raw": raw,
        "calibs": calibs,
        "truth": ccd_truth,
        "electrons": objects + float(ccd_truth["sky_electrons"]),
        "objects": objects,
    }


def native_or_skip(name: str):
    """The compiled module, or skip (fail under HPCPIPE_REQUIRE_NATIVE=1) when not built."""
    module = load_native(name)
    if module is None:
        if os.environ.get("HPCPIPE_REQUIRE_NATIVE") == "1":
            pytest.fail(f"hpcpipe.kernels._{name} was not compiled")
        pytest.skip(f"hpcpipe.kernels._{name} was not compiled")
    return module


def gaussian_stars(shape, xs, ys, fluxes, sigma, noise=0.0, seed=0, sxx=None, syy=None,
                   sxy=None) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian stars sampled at pixel centres on Gaussian noise: ``(image, variance)``."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for k, (x, y, f) in enumerate(zip(xs, ys, fluxes)):
        cxx = sigma**2 if sxx is None else sxx[k]
        cyy = sigma**2 if syy is None else syy[k]
        cxy = 0.0 if sxy is None else sxy[k]
        det = cxx * cyy - cxy**2
        dx, dy = xx - x, yy - y
        q = (cyy * dx**2 - 2 * cxy * dx * dy + cxx * dy**2) / det
        img += f * np.exp(-0.5 * q) / (2 * np.pi * np.sqrt(det))
    if noise > 0:
        img += rng.normal(0.0, noise, shape)
    return img.astype(np.float32), np.full(shape, noise**2, np.float32)
