"""SWarp (the Debian package ``swarp``) on hpcpipe calexps: inputs, TPV WCS, run, output.

SWarp reads distortion as TPV (``RA---TPV`` with ``PVi_j`` polynomials) and ignores SIP, so
:func:`tpv_header` converts a calexp's TAN-SIP WCS: the SIP WCS is evaluated exactly on a
grid over the CCD, its intermediate world coordinates (the tangent-plane offsets at CRVAL)
are fitted with TPV's cubic polynomial in the linear coordinates ``CD (p - CRPIX)``, and the
fit's worst error is returned (tests/test_swarp_tpv.py: < 1e-3 pixel through astropy's own
TPV evaluation).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

__all__ = ["swarp_binary", "tpv_header", "write_swarp_input", "run_swarp"]

# TPV terms 0..10 (3 is r: not used) as powers of (u, v) for PV1; PV2 swaps u and v
_TERMS = [(0, 0), (1, 0), (0, 1), None, (2, 0), (1, 1), (0, 2), (3, 0), (2, 1), (1, 2), (0, 3)]


def swarp_binary() -> str | None:
    """The SWarp executable (Debian installs it as ``SWarp``; ``swarp`` elsewhere)."""
    return shutil.which("SWarp") or shutil.which("swarp")


def _tangent_plane(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic (TAN) projection of (ra, dec) about (ra0, dec0): xi, eta in degrees."""
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return np.degrees(xi), np.degrees(eta)


def tpv_header(wcs: WCS, shape: tuple[int, int], xy0: tuple[int, int] = (0, 0)
               ) -> tuple[fits.Header, float]:
    """A TPV header equivalent to ``wcs`` (parent pixels; FITS pixels of an array at ``xy0``).

    Returns
    -------
    header : astropy.io.fits.Header
        ``CTYPE = RA---TPV / DEC--TPV``, ``CRVAL``, ``CRPIX``, ``CD`` and ``PV1_0..10``,
        ``PV2_0..10``.
    max_error : float
        The fit's largest residual on the grid, in pixels.
    """
    h, w = shape
    ys, xs = np.mgrid[0:h:complex(0, 33), 0:w:complex(0, 33)]
    px, py = xs.ravel() + xy0[0], ys.ravel() + xy0[1]
    ra, dec = wcs.all_pix2world(px, py, 0)
    ra0, dec0 = (float(v) for v in wcs.wcs.crval)
    xi, eta = _tangent_plane(ra, dec, ra0, dec0)
    cd = wcs.wcs.cd if wcs.wcs.has_cd() else np.diag(wcs.wcs.cdelt) @ wcs.wcs.get_pc()
    crpix = np.array(wcs.wcs.crpix) - 1.0  # 0-based parent pixels
    u, v = cd @ np.vstack([px - crpix[0], py - crpix[1]])
    terms = [t for t in _TERMS if t is not None]
    a1 = np.stack([u**i * v**j for i, j in terms], axis=1)
    a2 = np.stack([v**i * u**j for i, j in terms], axis=1)
    pv1, *_ = np.linalg.lstsq(a1, xi, rcond=None)
    pv2, *_ = np.linalg.lstsq(a2, eta, rcond=None)
    scale = np.sqrt(abs(np.linalg.det(cd)))
    err = max(np.abs(a1 @ pv1 - xi).max(), np.abs(a2 @ pv2 - eta).max()) / scale
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TPV", "DEC--TPV"
    header["CRVAL1"], header["CRVAL2"] = ra0, dec0
    header["CRPIX1"] = crpix[0] + 1.0 - xy0[0]
    header["CRPIX2"] = crpix[1] + 1.0 - xy0[1]
    for (i, j), value in zip(((1, 1), (1, 2), (2, 1), (2, 2)), cd.ravel()):
        header[f"CD{i}_{j}"] = float(value)
    for k, (c1, c2) in enumerate(zip(pv1, pv2)):
        index = _TERMS.index(terms[k])
        header[f"PV1_{index}"] = float(c1)
        header[f"PV2_{index}"] = float(c2)
    return header, float(err)


def write_swarp_input(calexp: Any, image_path: Path, weight_path: Path,
                      bad_bits: int) -> float:
    """Write a calexp as SWarp reads it: the image with a TPV header and ``FLXSCALE`` (its
    nJy per count, so that SWarp's output is in nJy as hpcpipe's warps), and a weight map
    ``1 / variance`` (0 where the mask has ``bad_bits`` or the variance is not positive).

    Returns the TPV fit's worst error in pixels.
    """
    header, err = tpv_header(calexp.wcs, calexp.image.array.shape, calexp.xy0)
    header["FLXSCALE"] = calexp.photo_calib.calibration_mean
    header["GAIN"] = 1.0
    fits.PrimaryHDU(calexp.image.array.astype(np.float32), header=header).writeto(
        image_path, overwrite=True)
    var = calexp.variance.array
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where((var > 0) & np.isfinite(var) & ((calexp.mask.array & bad_bits) == 0),
                          1.0 / var, 0.0).astype(np.float32)
    fits.PrimaryHDU(weight, header=header).writeto(weight_path, overwrite=True)
    return err


def run_swarp(images: list[Path], out_header: fits.Header, workdir: Path,
              timeout: float = 3600.0, popen: Any = None) -> tuple[Path, Path]:
    """Coadd ``images`` (each with ``<name>.weight.fits`` beside it) with SWarp onto the
    grid of ``out_header`` (``coadd.head``): LANCZOS3, WEIGHTED, no background subtraction,
    one thread. Returns the coadd and its weight map.

    ``popen``, if given, runs the command instead of :func:`subprocess.run` (it receives
    the argument list and the working directory; the benchmark measures the child with it).
    """
    binary = swarp_binary()
    if binary is None:
        raise FileNotFoundError("SWarp is not installed (apt-get install swarp)")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "coadd.head").write_text(
        "\n".join(str(card) for card in out_header.cards) + "\nEND\n")
    listing = workdir / "inputs.txt"
    listing.write_text("\n".join(str(p) for p in images) + "\n")
    args = [binary, f"@{listing}", "-IMAGEOUT_NAME", "coadd.fits",
            "-WEIGHTOUT_NAME", "coadd.weight.fits", "-WEIGHT_TYPE", "MAP_WEIGHT",
            "-WEIGHT_SUFFIX", ".weight.fits", "-RESAMPLING_TYPE", "LANCZOS3",
            "-COMBINE_TYPE", "WEIGHTED", "-SUBTRACT_BACK", "N", "-NTHREADS", "1",
            "-FSCALE_KEYWORD", "FLXSCALE", "-FSCALASTRO_TYPE", "NONE",
            "-RESAMPLE_DIR", str(workdir), "-VERBOSE_TYPE", "QUIET", "-WRITE_XML", "N",
            "-COPY_KEYWORDS", "", "-GAIN_DEFAULT", "1.0"]
    if popen is None:
        subprocess.run(args, cwd=workdir, check=True, timeout=timeout, capture_output=True)
    else:
        popen(args, workdir)
    return workdir / "coadd.fits", workdir / "coadd.weight.fits"
