"""Detection: the compiled watershed against the NumPy reference, and against SciPy and SEP."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels import detect, load_native
from hpcpipe.kernels.detect import (
    detect_sources,
    detect_sources_reference,
    label_8,
    label_connected,
)

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


def _assert_same(fast, ref) -> None:
    for name in ("labels", "segments", "footprints", "peaks"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    img, _ = _field(96, 12, seed=5)
    checker = (np.add.outer(np.arange(70), np.arange(64)) % 2).astype(bool)
    full = np.ones((9, 13), bool)
    frame = np.zeros((20, 30), bool)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
    return [rng.uniform(size=(80, 90)) > p for p in (0.3, 0.5, 0.7, 0.95)] + [
        img > 40.0, checker, full, frame, np.zeros((7, 5), bool), np.ones((1, 17), bool),
        rng.uniform(size=(1, 40)) > 0.5, rng.uniform(size=(40, 1)) > 0.5]


@pytest.mark.parametrize("k", range(12))
def test_label_connected_equals_scipy(k):
    """The compiled run labelling numbers the 8-connected components as scipy does (random
    masks, a simulated image, a checkerboard (every run a pixel, all one component), a full
    image and a frame touching every border, an empty mask, single rows and columns)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    mask = _masks()[k]
    ours, n = label_connected(mask)
    theirs, m = ndimage.label(mask, structure=np.ones((3, 3)))
    assert ours.dtype == np.int32 and n == m
    np.testing.assert_array_equal(ours, theirs)
    ref, n_ref = label_8(mask)
    assert n_ref == n
    np.testing.assert_array_equal(ref, ours)


@needs_native
@pytest.mark.parametrize("seed", range(8))
def test_native_equals_reference_random(seed):
    """Random small images with ties, NaNs, bad pixels and every option."""
    rng = np.random.default_rng(seed)
    ny, nx = rng.integers(1, 48, 2)
    img = rng.normal(0, 1, (ny, nx)).astype(np.float32)
    if seed % 2:
        img = np.round(img * 2) / 2  # many equal values: the raster-order tie rule
    img[rng.uniform(size=img.shape) < 0.03] = np.nan
    bad = rng.uniform(size=img.shape) < 0.05
    noise = 1.0 if seed % 3 else rng.uniform(0.5, 2.0, img.shape).astype(np.float32)
    kw = dict(threshold=[0.5, 1.0, 1.5][seed % 3], grow=seed % 4, min_pixels=seed % 5,
              polarity=["positive", "negative", "both"][seed % 3], prominence=0.5 * (seed % 3),
              contrast=0.02 * (seed % 2), smooth_sigma=None if seed % 2 else 1.0)
    _assert_same(detect_sources(img, noise, bad=bad, **kw),
                 detect_sources_reference(img, noise, bad=bad, **kw))


@needs_native
def test_native_equals_reference_edge_cases():
    """A footprint covering the whole image, one touching every border, negative sources,
    an image with nothing above threshold, and a checkerboard (the largest number of runs,
    beyond the first guess of the run arrays' size)."""
    whole = np.full((12, 17), 10.0, np.float32)
    whole[5, 8] = 20.0
    frame = np.zeros((20, 30), np.float32)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = 9.0
    frame[0, 0] = frame[-1, -1] = 12.0
    checker = np.where(np.add.outer(np.arange(96), np.arange(96)) % 2, 8.0, -8.0)
    checker = checker.astype(np.float32) * np.linspace(1, 2, 96, dtype=np.float32)
    cases = [(whole, {}), (frame, dict(grow=0)), (frame, dict(grow=2, polarity="both")),
             (-frame, dict(grow=1, polarity="negative")), (np.zeros((9, 9), np.float32), {}),
             (checker, dict(grow=0, polarity="both", prominence=0.0, contrast=0.0)),
             (checker, dict(grow=0, min_pixels=2)), (checker, dict(grow=1, polarity="both"))]
    for img, kw in cases:
        kw = dict(dict(threshold=5.0, prominence=1.0), **kw)
        fast, ref = detect_sources(img, 1.0, **kw), detect_sources_reference(img, 1.0, **kw)
        _assert_same(fast, ref)
    assert len(detect_sources(whole, 1.0, 5.0).footprints) == 1


@needs_native
def test_native_equals_reference_min_pixels_and_bad():
    """``min_pixels`` drops small groups before growing; ``bad`` pixels are never detected
    but grown footprints cover them (and leave them out of the deblending)."""
    img, _ = _field(128, 20, seed=11, pairs=True)
    rng = np.random.default_rng(2)
    img[rng.uniform(size=img.shape) < 0.01] += 200.0  # single hot pixels
    bad = np.zeros(img.shape, bool)
    bad[40:60, 40:60] = True
    bad[:, 100] = True
    for min_pixels in (1, 2, 6):
        for polarity in ("positive", "both"):
            kw = dict(threshold=5.0, grow=2, min_pixels=min_pixels, bad=bad,
                      polarity=polarity)
            fast = detect_sources(img, 10.0, **kw)
            _assert_same(fast, detect_sources_reference(img, 10.0, **kw))
            assert fast.labels[bad].any() and not fast.segments[bad].any()


@needs_native
def test_native_equals_reference_overlapping_polarities():
    """Grown positive and negative footprints that overlap, cut by a bad column: positive
    footprint pixels that the positive deblending leaves unassigned keep their negative
    segment ids (the compiled path borrows the segment image as scratch and must put them
    back)."""
    yy, xx = np.mgrid[0:40, 0:60]
    img = np.zeros((40, 60), np.float32)
    for x0, amp in ((20, 60.0), (29, -60.0), (40, 25.0), (48, -25.0)):
        img += (amp * np.exp(-((xx - x0) ** 2 + (yy - 20) ** 2) / 6.0)).astype(np.float32)
    bad = np.zeros(img.shape, bool)
    bad[:, 25] = True
    for grow in (2, 4):
        kw = dict(threshold=5.0, grow=grow, polarity="both", bad=bad)
        fast, ref = detect_sources(img, 1.0, **kw), detect_sources_reference(img, 1.0, **kw)
        _assert_same(fast, ref)
    assert ((fast.labels > 0) & (fast.segments < 0)).sum() > 0


@pytest.mark.parametrize("detect", [detect_sources, detect_sources_reference])
def test_overwrite_input_smooths_in_place_with_the_same_results(detect):
    img, _truth = _field(96, 12, seed=5, pairs=True)
    expected = detect(img, 10.0, threshold=5.0, polarity="both", smooth_sigma=1.5)
    work = img.copy()
    found = detect(work, 10.0, threshold=5.0, polarity="both", smooth_sigma=1.5,
                   overwrite_input=True)
    assert found.smoothed is work  # smoothed where it lay, no new image
    np.testing.assert_array_equal(work, expected.smoothed)
    np.testing.assert_array_equal(found.labels, expected.labels)
    np.testing.assert_array_equal(found.peaks, expected.peaks)
    # a float64 image is converted first: the caller's array is left as it was
    as64 = img.astype(np.float64)
    found = detect(as64, 10.0, smooth_sigma=1.5, overwrite_input=True)
    np.testing.assert_array_equal(as64, img.astype(np.float64))
    np.testing.assert_array_equal(found.smoothed, expected.smoothed)


def test_table_columns_match_the_kernel_source():
    """detect.py builds its tables from the column numbers the compiled kernel writes: the
    kernel's source (plain Python) declares the same ones."""
    source = Path(detect.__file__).parent / "pythran" / "detect.py"
    spec = importlib.util.spec_from_file_location("detect_kernel_source", source)
    assert spec is not None and spec.loader is not None
    kernel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernel)
    names = [n for n in vars(detect) if n.startswith(("FP_", "PK_"))]
    assert len(names) == 12
    for name in names:
        assert getattr(kernel, name) == getattr(detect, name), name
    assert sorted(getattr(detect, n) for n in names if n.startswith("FP_")) == list(range(8))
