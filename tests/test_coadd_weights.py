"""The coadd weights: 1 / the mean *resampled* variance of each warp (LSST's rule), and why
the resampled per-pixel variance differs from the input's (docs/coadd.md).

A Lanczos warp at a sub-pixel offset ``f`` makes each output pixel a weighted sum of the
inputs with weights ``w(f)``: its variance is ``V * sum(w**2)`` per axis, lower than ``V``
(0.6 for f = 0.5, 1 for f = 0), and the noise the sum loses per pixel reappears as
covariance between neighbouring output pixels: a sum over a large box has the input's
variance per pixel again. A visit's CCDs sit at slowly varying sub-pixel phases on the
patch grid, so the mean resampled variance of a warp, and the weight, depend on that phase
as well as on the visit's noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure
from hpcpipe.kernels.warp import lanczos3_weights, warp_image
from hpcpipe.pipe.assemble_coadd import warp_weight

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _shifted_noise(f: float, size: int = 520, var: float = 4.0, seed: int = 3):
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, np.sqrt(var), (size, size)).astype(np.float32)
    variance = np.full((size, size), var, np.float32)
    yy, xx = np.mgrid[8:size - 8, 8:size - 8].astype(np.float64)
    return warp_image(image, variance, None, xx + f, yy + f)


@pytest.mark.parametrize("f", [0.0, 0.25, 0.5])
def test_resampled_variance_is_the_input_times_the_squared_weights(f):
    var = 4.0
    res = _shifted_noise(f, var=var)
    s = float((lanczos3_weights(np.array(f)) ** 2).sum())
    assert np.allclose(res.variance, var * s * s, rtol=1e-5)
    # the variance plane is the noise of each pixel ...
    assert np.var(res.image) == pytest.approx(var * s * s, rel=0.03)
    # ... but sums over boxes much larger than the kernel have the input's noise: the
    # per-pixel loss is covariance between neighbours
    boxes = res.image[:496, :496].reshape(31, 16, 31, 16).sum(axis=(1, 3))
    assert np.var(boxes) / 256 == pytest.approx(var, rel=0.25)
    if f == 0.5:
        assert s * s < 0.65  # the half-pixel phase lowers the per-pixel variance most


def test_the_weight_is_one_over_the_mean_resampled_variance():
    """Two visits with the same input noise at different phases get different weights
    (LSST's rule, kept: see docs/coadd.md)."""
    weights = []
    for f in (0.0, 0.5):
        res = _shifted_noise(f, size=200)
        warp = Exposure(Box2I(0, 0, *res.image.shape[::-1]))
        warp.image.array[:] = res.image
        warp.variance.array[:] = res.variance
        weights.append(warp_weight(warp, warp.mask.get_plane_bitmask("NO_DATA")))
    s = float((lanczos3_weights(np.array(0.5)) ** 2).sum())
    assert weights[0] == pytest.approx(1 / 4.0, rel=1e-6)
    assert weights[1] / weights[0] == pytest.approx(1 / (s * s), rel=1e-5)


def test_tpv_header_reproduces_a_tan_sip_wcs():
    """SWarp's WCS (tests/swarp_run.py): the TPV fit of a TAN-SIP WCS, evaluated by astropy
    (wcslib's TPV), lands within 1e-3 pixel of the SIP positions."""
    from astropy.wcs import WCS
    from swarp_run import tpv_header

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [150.2, 2.1]
    wcs.wcs.crpix = [1025.0, 1030.0]
    wcs.wcs.cd = np.array([[-5.5e-5, 1e-6], [1.2e-6, 5.5e-5]])
    header = wcs.to_header(relax=True)
    header["A_ORDER"] = header["B_ORDER"] = 3
    header["A_2_0"], header["A_0_2"], header["A_3_0"] = 3e-7, -1e-7, 2e-10
    header["B_1_1"], header["B_0_2"], header["B_2_1"] = 2e-7, 1e-7, -1e-10
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    sip = WCS(header, relax=True)
    xy0 = (100, 200)
    tpv, err = tpv_header(sip, (2048, 2048), xy0)
    assert err < 1e-3
    assert tpv["CTYPE1"] == "RA---TPV"
    ys, xs = np.mgrid[0:2048:97, 0:2048:89].astype(float)
    ra, dec = sip.all_pix2world(xs.ravel() + xy0[0], ys.ravel() + xy0[1], 0)
    x, y = WCS(tpv).all_world2pix(ra, dec, 0)  # FITS pixels of the array at xy0
    assert np.abs(x - xs.ravel()).max() < 1e-3
    assert np.abs(y - ys.ravel()).max() < 1e-3
    # the SIP distortion is not negligible: TAN alone would be off by a tenth of a pixel
    tan_x = sip.wcs_world2pix(ra, dec, 0)[0]
    assert np.abs(tan_x - xs.ravel() - xy0[0]).max() > 0.1
