"""Coadds by sub-region: box reads through the butler, the same coadd, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from coadd_depth import KEY, make_depth_repo, synthetic_warp

from hpcpipe.butler.errors import DatasetObjectTypeError
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure
from hpcpipe.io.exposure_io import BoxOutsideError
from hpcpipe.kernels.coadd import clipped_mean_stack
from hpcpipe.pipe.assemble_coadd import AssembleCoaddTask, subregions, warp_weight

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_depth_repo(tmp_path_factory.mktemp("depth"), 12, 220)


@pytest.mark.parametrize("suffix", ["fits", "h5"])
def test_a_box_of_an_exposure_file_is_the_same_pixels(tmp_path, repo, suffix):
    patch = repo.get("skyMap")[0].get_patch_info((0, 0))
    warp = synthetic_warp(patch.outer_bbox, patch.wcs, 3, seed=3)
    path = tmp_path / f"warp.{suffix}"
    warp.write(path)
    box = Box2I(patch.outer_bbox.x0 + 17, patch.outer_bbox.y0 + 40, 91, 33)
    part = Exposure.read(path, box)
    assert part.bbox == box
    for plane in ("image", "variance", "mask"):
        assert np.array_equal(getattr(part, plane).array, getattr(warp[box], plane).array,
                              equal_nan=True)
    assert part.mask.planes == warp.mask.planes
    assert part.psf == warp.psf and part.filter == warp.filter
    # the WCS still maps parent pixels
    assert np.allclose(part.wcs.pixel_to_world_values(box.x0 + 5, box.y0 + 7),
                       warp.wcs.pixel_to_world_values(box.x0 + 5, box.y0 + 7), rtol=0, atol=1e-12)
    outside = Box2I(patch.outer_bbox.x0 - 1, patch.outer_bbox.y0, 10, 10)
    with pytest.raises(BoxOutsideError, match=f"{path.name}.*not inside"):
        Exposure.read(path, outside)
    with pytest.raises(TypeError, match="Box2I"):
        Exposure.read(path, (0, 0, 3, 3))
    # a file replaced (atomic write: a new inode) is read afresh, not from a remembered layout
    warp.image.array[:] += 1.0
    warp.write(path)
    again = Exposure.read(path, box)
    assert np.array_equal(again.image.array, warp[box].image.array, equal_nan=True)


def test_the_butler_reads_a_box_as_gen2_sub_datasets_did(repo):
    whole = repo.get("deepCoadd_directWarp", visit=2, **KEY)
    box = Box2I(whole.bbox.x0 + 3, whole.bbox.y0 + 100, 200, 20)
    for part in (repo.get("deepCoadd_directWarp_sub", bbox=box, visit=2, **KEY),
                 repo.get("deepCoadd_directWarp", bbox=box, visit=2, **KEY)):
        assert part.bbox == box
        assert np.array_equal(part.image.array, whole[box].image.array, equal_nan=True)
    with pytest.raises(ValueError, match="deepCoadd_directWarp_sub.*needs bbox"):
        repo.get("deepCoadd_directWarp_sub", visit=2, **KEY)
    with pytest.raises(DatasetObjectTypeError, match="skyMap.*no sub-region read"):
        repo.get("skyMap", bbox=box)
    with pytest.raises(ValueError, match="not inside"):
        repo.get("deepCoadd_directWarp_sub", bbox=Box2I(0, 0, 10**5, 1), visit=2, **KEY)


def test_subregions_tile_the_patch_once_within_the_memory_bound():
    bbox = Box2I(-7, 11, 301, 203)
    for size, n, limit in (((100, 50), 3, 1e9), ((1000, 1000), 40, 301 * 12 * 40 * 7),
                           ((64, 64), 1000, 1.0)):
        seen = np.zeros(bbox.shape, int)
        for box in subregions(bbox, size, n, limit):
            assert bbox.contains(box) and not box.is_empty()
            assert box.width <= size[0] and box.height <= size[1]
            assert box.height == 1 or n * box.area * 12 <= limit
            seen[box.slices(bbox.xy0)] += 1
        assert (seen == 1).all()


def test_coadd_by_subregion_equals_the_whole_image_coadd(repo):
    warps = [repo.get("deepCoadd_directWarp", visit=v, **KEY) for v in range(1, 13)]
    task = AssembleCoaddTask()
    task.config.subregionSize = [97, 61]
    task.config.maxInputMemory = 0.2  # 0.2 MB: bands of a few rows for twelve warps
    result = task.run_data_ref(repo.dataRef("deepCoadd", **KEY))
    assert task.metadata["nSubregions"] > 10
    bad = warps[0].mask.get_plane_bitmask(["NO_DATA", "BAD", "SAT", "CR"])
    weights = np.array([warp_weight(w, bad) for w in warps])
    assert np.array_equal(result.weights, weights)
    whole = clipped_mean_stack([w.image.array for w in warps], [w.variance.array for w in warps],
                               [w.mask.array for w in warps], weights, nsigma=3.0, niter=2,
                               bad_bits=bad,
                               clipped_bit=warps[0].mask.get_plane_bitmask("CLIPPED"),
                               no_data_bit=warps[0].mask.get_plane_bitmask("NO_DATA"))
    coadd = repo.get("deepCoadd", **KEY)
    for plane in ("image", "variance", "mask"):
        assert np.array_equal(getattr(coadd, plane).array, getattr(whole, plane),
                              equal_nan=True), plane
    assert np.array_equal(result.count, whole.count)
    assert (whole.mask & warps[0].mask.get_plane_bitmask("CLIPPED")).any()  # clipping ran
    assert coadd.psf is not None and coadd.metadata["NINPUTS"] == 12
    # the in-memory path (whole warps) gives the same coadd
    again = AssembleCoaddTask().run(warps).coadd
    assert np.array_equal(again.image.array, coadd.image.array, equal_nan=True)


_PEAK = textwrap.dedent("""
    import json, sys, tracemalloc
    sys.path.insert(0, {tests!r})
    from coadd_depth import KEY, make_depth_repo
    from hpcpipe.pipe.assemble_coadd import AssembleCoaddTask
    butler = make_depth_repo({root!r}, {n}, {size}, distinct=3)
    task = AssembleCoaddTask()
    task.config.maxInputMemory = {mb}
    task.config.doSubregionRead = {sub}
    ref = butler.dataRef("deepCoadd", **KEY)
    tracemalloc.start()
    result = task.run_data_ref(ref)
    print(json.dumps({{"peak": tracemalloc.get_traced_memory()[1],
                      "n": result.n_inputs}}))
""")


def _peak(tmp_path: Path, n: int, sub: bool, size: int = 400, mb: float = 2.0) -> int:
    code = _PEAK.format(tests=str(HERE), root=str(tmp_path / f"d{n}{sub}"), n=n, size=size,
                        mb=mb, sub=sub)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["n"] == n
    return int(found["peak"])


@pytest.mark.slow
def test_peak_memory_of_assemble_coadd_does_not_grow_with_the_number_of_visits(tmp_path):
    size, mb = 400, 2.0
    outputs = size * size * 16  # image, variance, mask and count of the coadd
    shallow, deep = _peak(tmp_path, 3, True), _peak(tmp_path, 36, True)
    # bounded by the config: the outputs, the input bound and the reads' transient copies
    assert deep < outputs + 4 * mb * 2**20, (shallow, deep)
    assert deep < 1.15 * shallow, (shallow, deep)
    # whole warps held at once grow with depth (the bound above is not trivially met)
    whole = _peak(tmp_path, 36, False)
    assert whole > 36 * size * size * 12 * 0.9 > deep
