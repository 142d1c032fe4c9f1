"""Exposures round-trip through FITS and HDF5 losing nothing; bad files give clear errors."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from hpcpipe.errors import FileFormatError, PixelTypeError
from hpcpipe.geom import Box2I
from hpcpipe.image import (
    Amplifier,
    Detector,
    Exposure,
    FilterLabel,
    GaussianPsf,
    PhotoCalib,
    PixelPsf,
    VisitInfo,
)
from hpcpipe.image.apcorr import ApCorrMap, ChebyshevBoundedField

FORMATS = ["fits", "h5"]


def make_exposure(psf_kind: str = "pixel", seed: int = 1) -> Exposure:
    rng = np.random.default_rng(seed)
    bbox = Box2I(100, 200, 64, 48)
    exp = Exposure(bbox, dtype=np.float32)
    exp.image.array[:] = rng.normal(100, 5, bbox.shape)
    exp.variance.array[:] = rng.uniform(20, 30, bbox.shape)
    exp.mask.add_plane("GHOST", "An optical ghost of a bright star, with a long description.")
    exp.mask.set_plane("GHOST", exp.image.array > 105)
    exp.mask.set_plane("SAT", exp.image.array > 110)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [130.5, 221.25]
    wcs.wcs.cd = np.array([[-5.5e-5, 1e-7], [2e-7, 5.5e-5]])
    from astropy.wcs import Sip

    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    a[2, 0], b[0, 2] = 1e-7, -2e-7
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    exp.wcs = wcs
    if psf_kind == "pixel":
        exp.psf = PixelPsf(rng.uniform(0.5, 1.0, (3, 15, 15)), order=1, bbox=(100, 200, 163, 247))
    else:
        exp.psf = GaussianPsf(1.7)
    exp.filter = FilterLabel("r", "r_sim_2026")
    exp.photo_calib = PhotoCalib(27.31, 0.012)
    box = (99.5, 199.5, 163.5, 247.5)
    exp.ap_corr_map = ApCorrMap({
        "base_PsfFlux_instFlux": ChebyshevBoundedField(box, [[1.0312, 0.0021], [-0.0013, 0.0]]),
        "base_PsfFlux_instFluxErr": ChebyshevBoundedField(box, [[0.0007]]),
    })
    amps = tuple(
        Amplifier(f"C0{i}", Box2I(32 * i, 0, 32, 48), Box2I(40 * i, 0, 40, 48),
                  Box2I(40 * i, 0, 32, 48), Box2I(40 * i + 32, 0, 8, 48),
                  gain=1.7 + i, read_noise=4.5, saturation=60000.0)
        for i in range(2)
    )
    exp.detector = Detector(7, "S07", Box2I(0, 0, 64, 48), amps, serial="SIM-007")
    exp.visit_info = VisitInfo(
        exposure_id=904010, date=Time("2026-03-04T05:06:07.5", scale="tai"),
        exposure_time=30.0, dark_time=31.2, airmass=1.234,
        boresight=SkyCoord(150.0, 2.0, unit="deg"), rotation_angle=12.5,
        instrument="SimCam", observation_type="science",
    )
    exp.metadata = {"SEEING": 0.71, "lowercase_key": "kept", "A_VERY_LONG_KEY_NAME": 12,
                    "FLAG": False, "NOTE": "x" * 200}
    return exp


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("psf_kind", ["pixel", "gaussian"])
def test_round_trip_loses_nothing(tmp_path, suffix, psf_kind):
    exp = make_exposure(psf_kind)
    path = tmp_path / f"calexp.{suffix}"
    exp.write(path)
    back = Exposure.read(path)
    # every plane, pixel for pixel, with its origin and type
    for name in ("image", "mask", "variance"):
        mine, theirs = getattr(exp, name), getattr(back, name)
        assert theirs.xy0 == mine.xy0 and theirs.dtype == mine.dtype, name
        np.testing.assert_array_equal(theirs.array, mine.array, err_msg=name)
    # the mask plane dictionary with the planes' full descriptions
    assert back.mask.planes.items() == exp.mask.planes.items()
    assert back.mask.planes.doc("GHOST").endswith("with a long description.")
    # every metadata item
    assert back.psf == exp.psf
    np.testing.assert_allclose(back.psf.compute_kernel_image(120, 210),
                               exp.psf.compute_kernel_image(120, 210))
    assert back.filter == exp.filter
    assert back.photo_calib == exp.photo_calib
    assert back.ap_corr_map == exp.ap_corr_map
    assert back.ap_corr_map["base_PsfFlux_instFlux"].evaluate(130.0, 220.0) == pytest.approx(
        exp.ap_corr_map["base_PsfFlux_instFlux"].evaluate(130.0, 220.0), abs=0)
    assert back.detector == exp.detector
    assert back.visit_info == exp.visit_info
    assert back.visit_info.date.tai.isot == "2026-03-04T05:06:07.500"
    assert back.metadata == exp.metadata
    assert [type(v) for v in back.metadata.values()] == [type(v) for v in exp.metadata.values()]
    # the WCS maps the same parent pixels to the same sky positions, SIP included
    xs, ys = np.array([100.0, 130.0, 163.0]), np.array([200.0, 221.0, 247.0])
    a, b = exp.pixel_to_sky(xs, ys), back.pixel_to_sky(xs, ys)
    assert np.all(a.separation(b).arcsec < 1e-9)
    assert back == exp


def test_fits_file_is_readable_by_other_tools(tmp_path):
    """ds9 and astropy see the WCS of the array's own pixels and the mask planes."""
    exp = make_exposure()
    path = tmp_path / "calexp.fits"
    exp.write(path)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul][:4] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
        header = hdul["IMAGE"].header
        array_wcs = WCS(header)
        sky = array_wcs.pixel_to_world(5, 7)  # array pixel (5, 7) is parent (105, 207)
        assert sky.separation(exp.pixel_to_sky(105, 207)).arcsec < 1e-9
        assert header["LTV1"] == -100 and header["LTV2"] == -200
        assert hdul["MASK"].header["MP_SAT"] == 1
        assert hdul["PRIMARY"].header["FILTER"] == "r"


def test_hdf5_file_is_readable_with_plain_h5py(tmp_path):
    exp = make_exposure()
    path = tmp_path / "calexp.h5"
    exp.write(path)
    with h5py.File(path, "r") as handle:
        np.testing.assert_array_equal(handle["image"][()], exp.image.array)
        assert handle.attrs["hpcpipe_type"] == "Exposure"


@pytest.mark.parametrize("suffix", FORMATS)
def test_truncated_file_names_the_file(tmp_path, suffix):
    path = tmp_path / f"cut.{suffix}"
    make_exposure().write(path)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(FileFormatError) as info:
        Exposure.read(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix", FORMATS)
def test_garbage_and_missing_files_name_the_file(tmp_path, suffix):
    path = tmp_path / f"garbage.{suffix}"
    path.write_bytes(os.urandom(5000))
    with pytest.raises(FileFormatError, match="garbage"):
        Exposure.read(path)
    with pytest.raises(FileFormatError, match="no such file"):
        Exposure.read(tmp_path / f"absent.{suffix}")


def test_corrupt_fits_pixels_fail_the_checksum(tmp_path):
    path = tmp_path / "flipped.fits"
    make_exposure().write(path)
    data = bytearray(path.read_bytes())
    data[2880 * 3 + 100] ^= 0xFF  # a byte in the IMAGE HDU's data
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="flipped.fits"):
        Exposure.read(path)


def test_fits_without_exposure_hdus_is_refused(tmp_path):
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.zeros((4, 4), dtype=np.float32)).writeto(path)
    with pytest.raises(FileFormatError, match="no IMAGE, MASK, VARIANCE, HPCINFO HDU"):
        Exposure.read(path)


@pytest.mark.parametrize("suffix", FORMATS)
def test_wrong_pixel_type_in_file_names_file_and_plane(tmp_path, suffix):
    path = tmp_path / f"wrongtype.{suffix}"
    make_exposure().write(path)
    if suffix == "fits":
        with fits.open(path, mode="update") as hdul:
            hdul["VARIANCE"].data = hdul["VARIANCE"].data.astype(np.int16)
    else:
        with h5py.File(path, "r+") as handle:
            data = handle["variance"][()]
            del handle["variance"]
            handle["variance"] = data.astype(np.int16)
    with pytest.raises(PixelTypeError) as info:
        Exposure.read(path)
    assert "wrongtype" in str(info.value) and "VARIANCE" in str(info.value).upper()


def test_unknown_hdf5_layout_version_is_refused(tmp_path):
    path = tmp_path / "future.h5"
    make_exposure().write(path)
    with h5py.File(path, "r+") as handle:
        handle.attrs["hpcpipe_layout_version"] = 99
    with pytest.raises(FileFormatError, match="layout version 99"):
        Exposure.read(path)


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(FileFormatError, match="unknown file type"):
        make_exposure().write(tmp_path / "calexp.png")


def test_failed_write_leaves_nothing_under_the_real_name(tmp_path):
    exp = make_exposure()
    exp.metadata["BAD"] = [1, 2]  # not a storable value: the writer raises midway
    path = tmp_path / "calexp.h5"
    with pytest.raises(TypeError, match="BAD"):
        exp.write(path)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_sub_exposure_keeps_wcs_in_parent_coordinates(tmp_path):
    exp = make_exposure()
    sub = exp[Box2I(110, 210, 20, 10)]
    path = tmp_path / "sub.fits"
    sub.write(path)
    back = Exposure.read(path)
    assert back.xy0 == (110, 210)
    assert back.pixel_to_sky(115, 215).separation(exp.pixel_to_sky(115, 215)).arcsec < 1e-9


def test_psf_models():
    g = GaussianPsf(2.0)
    img = g.compute_kernel_image()
    assert img.shape[0] % 2 == 1 and abs(img.sum() - 1) < 1e-12
    assert abs(g.sigma_at() - 2.0) < 1e-12
    # a Gaussian PixelPsf measures the sigma it was made with
    r = np.arange(31) - 15
    gauss = np.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2) / 2.0**2)
    assert abs(PixelPsf(gauss).sigma_at(0, 0) - 2.0) < 1e-3
    # a stamp centred off the pixel grid has its centroid there
    stamp, (x0, y0) = g.compute_image(10.3, 20.8)
    yy, xx = np.mgrid[0:stamp.shape[0], 0:stamp.shape[1]]
    assert abs((stamp * xx).sum() + x0 - 10.3) < 1e-4  # truncated at 5 sigma
    assert abs((stamp * yy).sum() + y0 - 20.8) < 1e-4
    # a linearly varying PixelPsf interpolates between its corners
    narrow = GaussianPsf(1.5, 21).compute_kernel_image()
    wide = GaussianPsf(3.0, 21).compute_kernel_image()
    basis = np.array([0.5 * (narrow + wide), 0.5 * (wide - narrow), np.zeros_like(wide)])
    varying = PixelPsf(basis, order=1, bbox=(0, 0, 100, 100))
    assert varying.sigma_at(0, 50) < varying.sigma_at(50, 50) < varying.sigma_at(100, 50)
    with pytest.raises(ValueError, match="needs 3 basis images"):
        PixelPsf(basis[:2], order=1, bbox=(0, 0, 1, 1))
