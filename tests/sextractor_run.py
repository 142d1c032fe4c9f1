"""Source Extractor (the Debian package ``source-extractor``) and SEP on a GalSim image, with
thresholds matched to a true N-sigma cut of the filtered image (tests, perf/bench_single_frame).

Source Extractor's ``DETECT_THRESH`` is in units of the *unfiltered* background noise and
applies to the filtered image (the filter normalised to unit sum), whose noise is
``sigma * sqrt(sum(K**2))``: a true N-sigma cut is ``DETECT_THRESH = N * sqrt(sum(K**2))``
(about N / 5.6 with the 7x7 Gaussian of FWHM 4 pixels used here, close to the PSF's 3.75).
SEP takes the threshold in units of the noise it is given, on the filtered image too, with
the same rule.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = ["FILTER", "filter_kernel", "run_source_extractor", "run_sep", "sextractor_binary"]

#: The detection filter both tools use (Source Extractor's standard file).
FILTER = "gauss_4.0_7x7.conv"
_SHARE = Path("/usr/share/source-extractor")


def sextractor_binary() -> str | None:
    """The Source Extractor executable on the PATH (Debian names it source-extractor)."""
    return shutil.which("source-extractor") or shutil.which("sex")


def filter_kernel(name: str = FILTER) -> np.ndarray:
    """A Source Extractor filter file's kernel, normalised to unit sum."""
    path = _SHARE / name
    if path.exists():
        rows = [line.split() for line in path.read_text().splitlines()[1:]
                if line.strip() and not line.lstrip().startswith("#")]
        k = np.array(rows, dtype=np.float64)
    else:  # the same Gaussian when the package's files are absent (SEP alone)
        r = np.arange(-3, 4)
        g = np.exp(-0.5 * (r / (4.0 / 2.3548)) ** 2)
        k = np.outer(g, g)
    return k / k.sum()


def _thresh(true_sigma: float, kernel: np.ndarray) -> float:
    return float(true_sigma * np.sqrt(np.sum(kernel**2)))


def run_source_extractor(image: np.ndarray, scene, workdir: Path, true_sigma: float = 5.0,
                         timeout: float = 600.0) -> dict[str, np.ndarray]:
    """Run Source Extractor on ``image`` (electrons, gain 1, sky included).

    Returns
    -------
    dict of numpy.ndarray
        ``x``, ``y`` (0-based), ``flux_auto``, ``fluxerr_auto``, ``flux_aper`` (6-pixel
        radius), ``flags``.
    """
    binary = sextractor_binary()
    if binary is None:
        raise FileNotFoundError("source-extractor is not installed")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.asarray(image, np.float32)).writeto(workdir / "image.fits",
                                                         overwrite=True)
    (workdir / "sx.param").write_text("\n".join(["NUMBER", "X_IMAGE", "Y_IMAGE", "FLUX_AUTO",
                                                  "FLUXERR_AUTO", "FLUX_APER(1)",
                                                  "FLAGS"]) + "\n")
    kernel = filter_kernel()
    conv = _SHARE / FILTER
    args = [binary, str(workdir / "image.fits"), "-c", "/dev/null",
            "-CATALOG_NAME", str(workdir / "sx.cat"), "-CATALOG_TYPE", "ASCII_HEAD",
            "-PARAMETERS_NAME", str(workdir / "sx.param"),
            "-DETECT_THRESH", f"{_thresh(true_sigma, kernel):.6f}",
            "-ANALYSIS_THRESH", f"{_thresh(true_sigma, kernel):.6f}",
            "-DETECT_MINAREA", "3", "-FILTER", "Y" if conv.exists() else "N",
            "-GAIN", "1.0", "-PIXEL_SCALE", str(scene.pixel_scale),
            "-PHOT_APERTURES", "12", "-PHOT_AUTOPARAMS", "2.5,3.5",
            "-BACK_SIZE", "64", "-BACK_FILTERSIZE", "3", "-SATUR_LEVEL", "1e9",
            "-CHECKIMAGE_TYPE", "NONE", "-VERBOSE_TYPE", "QUIET", "-NTHREADS", "1"]
    if conv.exists():
        args += ["-FILTER_NAME", str(conv)]
    subprocess.run(args, check=True, capture_output=True, timeout=timeout, cwd=workdir)
    data = np.loadtxt(workdir / "sx.cat", comments="#", ndmin=2)
    if data.size == 0:
        data = np.zeros((0, 7))
    return {"x": data[:, 1] - 1.0, "y": data[:, 2] - 1.0, "flux_auto": data[:, 3],
            "fluxerr_auto": data[:, 4], "flux_aper": data[:, 5], "flags": data[:, 6]}


def run_sep(image: np.ndarray, scene, true_sigma: float = 5.0) -> dict[str, np.ndarray]:
    """SEP: background (64-pixel cells), extraction with the same filter and true threshold,
    Kron fluxes (2.5 Kron radii, the circle of SEP's documentation for small ones).

    Returns
    -------
    dict of numpy.ndarray
        ``x``, ``y`` (0-based barycentres), ``flux_auto``, ``fluxerr_auto``, ``flux_aper``.
    """
    import sep

    data = np.ascontiguousarray(image, dtype=np.float64)
    bkg = sep.Background(data, bw=64, bh=64, fw=3, fh=3)
    sub = data - bkg.back()
    rms = bkg.globalrms
    kernel = filter_kernel()
    objs = sep.extract(sub, _thresh(true_sigma, kernel), err=rms, minarea=3,
                       filter_kernel=kernel)
    x, y = objs["x"], objs["y"]
    a, b = objs["a"], objs["b"]
    kr, _flag = sep.kron_radius(sub, x, y, a, b, objs["theta"], 6.0)
    # degenerate shapes (a single-pixel object, no Kron radius) take the minimum circle
    theta = objs["theta"]
    valid = np.isfinite(kr) & (kr > 0) & (a > 0) & (b > 0) & (a >= b) & \
        (np.abs(theta) <= np.pi / 2)
    kr = np.where(valid, kr, 1.0)
    a, b = np.where(valid, a, 1.0), np.where(valid, b, 1.0)
    theta = np.where(valid, theta, 0.0)
    var = np.clip(data, 0, None) + scene.read_noise**2
    flux, ferr, _f = sep.sum_ellipse(sub, x, y, a, b, theta, 2.5 * kr, var=var, subpix=5)
    r_min = 1.75  # SEP's documented minimum: a diameter of 3.5 pixels
    small = (kr * np.sqrt(a * b) < r_min) | ~valid
    if small.any():
        cflux, cerr, _f = sep.sum_circle(sub, x[small], y[small], r_min, var=var, subpix=5)
        flux[small], ferr[small] = cflux, cerr
    aflux, _e, _f = sep.sum_circle(sub, x, y, 6.0, var=var, subpix=5)
    return {"x": x, "y": y, "flux_auto": flux, "fluxerr_auto": ferr, "flux_aper": aflux}
