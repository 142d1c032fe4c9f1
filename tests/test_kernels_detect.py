"""Detection: the compiled watershed against the NumPy reference, and against SciPy and SEP."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels import load_native
from hpcpipe.kernels.detect import detect_sources, detect_sources_reference, label_8

native = load_native("detect")
needs_native = pytest.mark.skipif(
    native is None and os.environ.get("HPCPIPE_REQUIRE_NATIVE") != "1",
    reason="the detect kernel is not compiled")


def _field(n: int, stars: int, seed: int, pairs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.normal(0, 10, (n, n)).astype(np.float32)
    yy, xx = np.mgrid[0:n, 0:n]
    truth = []
    for _ in range(stars):
        x, y = rng.uniform(8, n - 8, 2)
        f = 10 ** rng.uniform(3, 5)
        img += (f / (2 * np.pi * 4) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8)).astype(
            np.float32)
        truth.append((x, y, f))
        if pairs:  # a fainter companion 9 pixels away: a blend to split
            img += (0.3 * f / (2 * np.pi * 4) * np.exp(
                -((xx - x - 9) ** 2 + (yy - y) ** 2) / 8)).astype(np.float32)
    return img, np.array(truth).reshape(-1, 3)


@needs_native
@pytest.mark.parametrize("polarity, min_pixels, pairs", [
    ("positive", 1, False), ("both", 3, True), ("negative", 1, False), ("positive", 2, True)])
def test_native_equals_reference(polarity, min_pixels, pairs):
    assert native is not None
    img, _ = _field(192, 25, seed=min_pixels, pairs=pairs)
    bad = np.zeros(img.shape, np.uint8)
    bad[:, 60] = 1
    kw = dict(threshold=4.0, smooth_sigma=2.0, grow=4, polarity=polarity,
              min_pixels=min_pixels, bad=bad, prominence=2.0, contrast=0.02)
    fast, ref = detect_sources(img, 10.0, **kw), detect_sources_reference(img, 10.0, **kw)
    for name in ("labels", "segments", "footprints", "peaks"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)


def test_blends_are_split_into_children():
    img, truth = _field(256, 12, seed=4, pairs=True)
    det = detect_sources(img, 10.0, 5.0, smooth_sigma=2.0, grow=4, prominence=2.0)
    peaks = np.column_stack([det.peaks["x"], det.peaks["y"]])
    for x, y, f in truth:
        # the star and its companion, if bright enough to make its own peak
        for cx in (x, x + 9) if 0.3 * f > 3000 else (x,):
            assert np.min(np.hypot(peaks[:, 0] - cx, peaks[:, 1] - y)) <= 1.5
    # every footprint pixel belongs to exactly one child
    inside = det.labels > 0
    assert np.all(det.segments[inside] > 0)


def test_labelling_agrees_with_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    mask = rng.uniform(size=(80, 90)) > 0.7
    ours, n = label_8(mask)
    theirs, m = ndimage.label(mask, structure=np.ones((3, 3)))
    assert n == m
    np.testing.assert_array_equal(ours, theirs)


def test_detection_agrees_with_sep():
    sep = pytest.importorskip("sep")
    img, truth = _field(512, 60, seed=9)
    det = detect_sources(img, 10.0, 5.0, smooth_sigma=2.0, grow=4)
    objects = sep.extract(img, 5.0, err=10.0, filter_kernel=None)
    ours = np.column_stack([det.peaks["x"], det.peaks["y"]]).astype(float)
    theirs = np.column_stack([objects["x"], objects["y"]])
    bright = [k for k in range(len(truth)) if truth[k, 2] > 2000]
    found_ours = sum(np.min(np.hypot(*(ours - truth[k, :2]).T)) < 1.5 for k in bright)
    found_sep = sum(np.min(np.hypot(*(theirs - truth[k, :2]).T)) < 1.5 for k in bright)
    assert found_ours >= 0.95 * len(bright)
    assert found_ours >= found_sep - 1


def test_defined_results_and_errors():
    empty = detect_sources(np.full((32, 32), np.nan, np.float32), 1.0, 5.0)
    assert len(empty.footprints) == 0 and not empty.labels.any()
    masked = detect_sources(np.full((16, 16), 100.0, np.float32), 1.0, 5.0,
                            bad=np.ones((16, 16), bool))
    assert len(masked.peaks) == 0
    row = detect_sources(np.array([[0, 0, 50, 0, 0]], np.float32), 1.0, 5.0, grow=1)
    assert len(row.peaks) == 1 and row.peaks["x"][0] == 2
    with pytest.raises(PixelTypeError, match="image"):
        detect_sources(np.zeros((8, 8), np.int16), 1.0)
    with pytest.raises(ValueError, match="noise must be positive"):
        detect_sources(np.zeros((8, 8), np.float32), 0.0)
