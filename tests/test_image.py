"""Images, masks, masked images: pixel types, origins, views, planes and arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from hpcpipe.errors import MaskPlaneError, PixelTypeError
from hpcpipe.geom import Box2D, Box2I
from hpcpipe.image import STANDARD_MASK_PLANES, Image, Mask, MaskedImage


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.float64])
def test_image_pixel_types(dtype):
    img = Image(Box2I(10, 20, 5, 4), dtype=dtype)
    assert img.dtype == np.dtype(dtype)
    assert img.array.shape == (4, 5)
    assert img.bbox == Box2I(10, 20, 5, 4)
    img.set(12, 21, 7)
    assert img.array[1, 2] == 7
    assert img.get(12, 21) == 7


@pytest.mark.parametrize("dtype", [np.int8, np.uint32, np.complex64, np.bool_])
def test_image_rejects_other_pixel_types(dtype):
    with pytest.raises(PixelTypeError, match=str(np.dtype(dtype))):
        Image(np.zeros((3, 3), dtype=dtype))
    with pytest.raises(PixelTypeError):
        Image((3, 3), dtype=dtype)


def test_image_from_big_endian_array_becomes_native():
    arr = np.arange(6, dtype=">f4").reshape(2, 3)
    img = Image(arr)
    assert img.dtype.isnative
    np.testing.assert_array_equal(img.array, arr)


def test_subimage_is_a_view_in_parent_coordinates():
    img = Image(np.zeros((10, 12), dtype=np.float32), xy0=(100, 50))
    sub = img[Box2I(103, 52, 4, 3)]
    assert sub.xy0 == (103, 52)
    sub.array[:] = 5.0
    assert img.get(103, 52) == 5.0 and img.get(106, 54) == 5.0
    assert img.get(107, 54) == 0.0 and img.get(102, 52) == 0.0
    assert img.array.sum() == 5.0 * 12
    with pytest.raises(IndexError, match="not inside"):
        img[Box2I(99, 50, 3, 3)]


def test_image_arithmetic_and_clone():
    a = Image(np.ones((3, 4), dtype=np.float64))
    b = a.clone()
    b += 2
    assert a.array.sum() == 12 and b.array.sum() == 36
    b -= a
    b *= a.array * 3
    b /= 2
    np.testing.assert_allclose(b.array, 3.0)
    with pytest.raises(ValueError, match="differ in size"):
        a += Image(np.ones((2, 2)))


def test_box_geometry():
    box = Box2I.from_corners(-2, 3, 5, 9)
    assert (box.width, box.height, box.x1, box.y1) == (8, 7, 5, 9)
    assert box.contains(Box2I(0, 4, 2, 2))
    assert not box.contains(Box2I(0, 4, 7, 2))
    assert box.clipped_to(Box2I(4, 8, 10, 10)) == Box2I(4, 8, 2, 2)
    assert box.clipped_to(Box2I(40, 8, 10, 10)).is_empty()
    assert box.grown(1) == Box2I.from_corners(-3, 2, 6, 10)
    assert Box2D.from_box2i(box).corners()[0] == (-2.5, 2.5)
    with pytest.raises(TypeError):
        Box2I(0.5, 0, 1, 1)


def test_mask_standard_planes_and_custom_plane():
    mask = Mask(Box2I(0, 0, 6, 5))
    for name, (bit, _doc) in STANDARD_MASK_PLANES.items():
        assert mask.get_plane_bitmask(name) == 1 << bit
    bit = mask.add_plane("GHOST", "An optical ghost.")
    assert bit == len(STANDARD_MASK_PLANES)
    assert mask.add_plane("GHOST") == bit  # adding again returns the same bit
    assert mask.planes.doc("GHOST") == "An optical ghost."
    sel = np.zeros((5, 6), dtype=bool)
    sel[1:3, 2:4] = True
    mask.set_plane("GHOST", sel)
    mask.set_plane("BAD", sel.T[:5, :6] if False else ~sel)
    np.testing.assert_array_equal(mask.plane("GHOST"), sel)
    np.testing.assert_array_equal(mask.any_of(["GHOST", "BAD"]), np.ones((5, 6), bool))
    mask.clear_plane("GHOST", sel[:, :] & (np.arange(6) == 2))
    assert mask.plane("GHOST").sum() == 2


def test_mask_unknown_plane_names_the_plane_and_suggests():
    mask = Mask((2, 2))
    with pytest.raises(MaskPlaneError) as info:
        mask.get_plane_bitmask("DETECTD")
    message = str(info.value)
    assert "DETECTD" in message and "DETECTED" in message
    with pytest.raises(KeyError):  # also a KeyError, as users of dicts expect
        mask.plane("NOPE")


def test_mask_runs_out_of_bits():
    mask = Mask((1, 1))
    for i in range(32 - len(STANDARD_MASK_PLANES)):
        mask.add_plane(f"P{i}")
    assert mask.get_plane_bitmask("P14") == np.int32(np.uint32(1 << 31).view(np.int32))
    with pytest.raises(MaskPlaneError, match="all 32 bits"):
        mask.add_plane("ONE_TOO_MANY")


def test_mask_top_bit_plane_set_and_clear():
    mask = Mask((2, 2), planes={"TOP": (31, ""), "LOW": (0, "")})
    mask.set_plane("TOP")
    mask.set_plane("LOW")
    assert mask.plane("TOP").all()
    mask.remove_plane("TOP")
    assert "TOP" not in mask.planes
    assert (mask.array == 1).all()


def test_mask_or_conforms_plane_dictionaries():
    a = Mask((2, 2))
    b = Mask((2, 2), planes={"CR": (0, "cosmic ray"), "EXTRA": (5, "extra")})
    b.array[0, 0] = 1 | (1 << 5)
    a |= b
    assert a.plane("CR")[0, 0] and a.plane("EXTRA")[0, 0]
    assert not a.plane("BAD")[0, 0]  # bit 0 of b means CR, not a's BAD
    assert a.array[1, 1] == 0


def test_mask_translate_bits_renumbers_and_drops_missing_planes():
    dest = Mask((1, 1), planes={"BAD": (3, ""), "CR": (31, ""), "SAT": (0, "")})
    source = Mask((1, 1), planes={"CR": (0, ""), "BAD": (31, ""), "ONLY_HERE": (7, "")})
    values = np.array([1, 1 | (1 << 7), np.uint32(1 << 31).view(np.int32), 1 << 7, 0],
                      dtype=np.int32)
    out = dest.translate_bits(values, source.planes)
    cr, bad = dest.get_plane_bitmask("CR"), dest.get_plane_bitmask("BAD")
    assert out.dtype == np.int32
    assert out.tolist() == [cr, cr, bad, 0, 0]
    assert "ONLY_HERE" not in dest.planes  # nothing added, unlike |=
    same = dest.translate_bits(values, dest.planes)
    assert same.tolist() == values.tolist() and same is not values


def test_subimage_shares_plane_dictionary_and_clone_does_not():
    mask = Mask(Box2I(0, 0, 4, 4))
    sub = mask[Box2I(1, 1, 2, 2)]
    sub.add_plane("NEW")
    assert "NEW" in mask.planes
    copy = mask.clone()
    copy.add_plane("ONLY_COPY")
    assert "ONLY_COPY" not in mask.planes


def test_masked_image_views_and_variance_arithmetic():
    mi = MaskedImage(Box2I(5, 5, 8, 6))
    mi.image.array[:] = 2.0
    mi.variance.array[:] = 1.0
    sub = mi[Box2I(6, 6, 2, 2)]
    sub.mask.set_plane("SAT")
    assert mi.mask.plane("SAT").sum() == 4
    other = mi.clone()
    mi -= other
    np.testing.assert_allclose(mi.image.array, 0.0)
    np.testing.assert_allclose(mi.variance.array, 2.0)
    mi *= 3.0
    np.testing.assert_allclose(mi.variance.array, 18.0)
    with pytest.raises(PixelTypeError):
        MaskedImage(Image(np.zeros((2, 2), dtype=np.int32)))
    with pytest.raises(ValueError, match="bbox"):
        MaskedImage(Image(np.zeros((2, 2), np.float32)), Mask((3, 3)))
