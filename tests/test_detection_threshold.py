"""Detection holds its threshold: noise of the smoothed image, the EDGE border, pure noise."""

from __future__ import annotations

import numpy as np
import pytest

from hpcpipe.image import Exposure, GaussianPsf
from hpcpipe.kernels.convolve import gaussian_kernel_1d
from hpcpipe.pipe.detection import SourceDetectionTask

SIGMA = 1.6


def noise_exposure(seed: int, shape=(512, 512), noise: float = 10.0,
                   variance_scale: float = 1.0) -> Exposure:
    rng = np.random.default_rng(seed)
    exposure = Exposure(shape)
    exposure.image.array[:] = rng.normal(0.0, noise, shape)
    exposure.variance.array[:] = variance_scale * noise**2
    exposure.psf = GaussianPsf(SIGMA)
    return exposure


def test_threshold_is_in_units_of_the_smoothed_images_own_noise():
    # a variance plane 30% off: "stdev" measures the smoothed pixels, "pixel_stdev" trusts it
    exposure = noise_exposure(1, variance_scale=1.3**2)
    kernel = gaussian_kernel_1d(SIGMA).astype(np.float64)
    expected = 10.0 * (kernel**2).sum()
    det = SourceDetectionTask().run(exposure)
    assert det.detections.noise == pytest.approx(expected, rel=0.03)
    config = SourceDetectionTask.ConfigClass()
    config.thresholdType = "pixel_stdev"
    det = SourceDetectionTask(config=config).run(noise_exposure(1, variance_scale=1.3**2))
    assert det.detections.noise == pytest.approx(1.3 * expected, rel=1e-3)


def test_pure_noise_gives_few_detections_and_none_on_the_border():
    threshold = 3.5
    half = gaussian_kernel_1d(SIGMA).size // 2
    counts = {True: [0, 0], False: [0, 0]}  # edge mask: [all, within the border]
    pixels = 0
    for seed in range(4):
        for edge_mask in (True, False):
            config = SourceDetectionTask.ConfigClass()
            config.thresholdValue = threshold
            config.doEdgeMask = edge_mask
            exposure = noise_exposure(10 + seed)
            peaks = SourceDetectionTask(config=config).run(exposure).detections.peaks
            h, w = exposure.image.array.shape
            x, y = peaks["x"], peaks["y"]
            border = np.minimum.reduce([x, y, w - 1 - x, h - 1 - y]) < half
            counts[edge_mask][0] += len(peaks)
            counts[edge_mask][1] += int(border.sum())
            if edge_mask:
                mask = exposure.mask
                edge = (mask.array & mask.get_plane_bitmask("EDGE")) != 0
                assert edge[:half].all() and not edge[half:h - half, half:w - half].any()
        pixels += 512 * 512
    # peaks of a smoothed Gaussian field above a high threshold: about its Euler
    # characteristic, nu exp(-nu**2 / 2) lambda / (2 pi)**1.5 per pixel, with lambda =
    # 1 / (2 sigma**2) for white noise smoothed by a Gaussian of sigma (Adler 1981)
    expected = pixels * threshold * np.exp(-threshold**2 / 2) / (2 * SIGMA**2) / \
        (2 * np.pi) ** 1.5
    assert 0.2 * expected < counts[True][0] < 1.5 * expected
    assert counts[True][1] == 0
    # without the EDGE border, the edge rows (noise up to twice larger) are over-populated
    border_share = 1 - ((512 - 2 * half) / 512) ** 2
    assert counts[False][1] > 2 * border_share * counts[False][0]
