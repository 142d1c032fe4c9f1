"""PSF matching of two images (Alard & Lupton 1998; LSST's ``ImagePsfMatchTask``).

The matching kernel ``K`` turns the *reference* image (the one convolved: the template, or
the science image when its PSF is the broader one) into the *target*::

    target(x, y) ~ (reference * K_{x,y})(x, y) + b(x, y)

Kernel basis
    Alard & Lupton's Gaussians times polynomials: for each width ``sigma_k`` of
    :func:`alard_lupton_basis` and each ``p + q <= degree_k``, the image
    ``G(u) (u / sigma)**p  G(v) (v / sigma)**q`` (``G`` a Gaussian of width ``sigma``), each
    normalised to unit L2 norm. The basis is made *differential* (as LSST's
    ``renormalizeKernelList``): the first function is the plain narrowest Gaussian scaled to
    a sum of 1, and every other function has that Gaussian times its own sum subtracted, so
    that it sums to 0. The kernel's sum (the photometric scale between the images) is then the
    coefficient of the first function alone. Every raw function is separable, so that
    convolving an image by it costs two 1-D passes (:func:`hpcpipe.kernels.convolve.
    correlate_separable`).
Spatial variation
    The coefficient of each basis function is a polynomial in the image position (scaled to
    ``[-1, 1]`` over the image's box), of order ``spatialKernelOrder`` (the kernel's sum:
    ``spatialKernelSumOrder``); the differential background ``b`` is a polynomial of order
    ``spatialBgOrder``. The convolution evaluates the coefficients at each *output* pixel, so
    that ``(reference * K_{x,y})(x, y) = sum_i a_i(x, y) (reference * B_i)(x, y)``: the
    spatially varying convolution is exact: grouping the basis by monomial of the position,
    ``sum_t m_t(x, y) (reference * K_t)(x, y)``, one convolution per spatial term (by FFT).
Fitting
    On stamps around bright isolated stars (:func:`select_kernel_candidates`), by weighted
    linear least squares (weights: the inverse of the sum of the two images' variances).
    Every stamp is first fitted alone (a constant kernel and background); stamps whose
    reduced chi-square or kernel sum is an outlier are rejected (a chi-square more than
    ``candidateClip`` robust standard deviations above the median; a sum farther from the
    median sum than ``candidateClip`` times its error, or times the robust scatter of those
    deviations if larger): a variable star, a transient, a cosmic ray, a blend. The spatial
    model is then fitted to all stamps' pixels jointly, and stamps whose residuals under the
    spatial model are outliers are rejected and the fit repeated, up to
    ``maxSpatialIterations`` times. (Each stamp's normal equations are formed once; each
    iteration solves their sum over the stamps it uses, by Cholesky when the column-scaled
    design is well conditioned, by SVD otherwise.)
Subtraction
    ``difference = target - (reference * K) - b`` (convolving the template), or, convolving the
    science image, ``difference = ((science * K) - template - b) / sum(K)``, which keeps the
    science image's photometric scale. The variance is ``var_target + var_reference * K**2``
    (divided by ``sum(K)**2`` in the second mode), where the convolution of the variance by
    ``K**2`` uses the kernel at the centre of each cell of a grid of ``varianceCellSize``
    pixels (``K**2`` is not a sum of the basis functions; its variation over a cell is
    negligible). The covariance the convolution introduces between neighbouring pixels is not
    carried. Mask planes of the convolved image are grown by the kernel's half width (a pixel
    of the output gets every plane of the input pixels under the kernel); the band of the
    image's border where the kernel leaves the image is marked EDGE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.ndimage import maximum_filter
from scipy.signal import fftconvolve
from scipy.spatial import cKDTree

from hpcpipe.config import ChoiceField, Config, Field, ListField, RangeField
from hpcpipe.image import Exposure
from hpcpipe.kernels.convolve import correlate_separable
from hpcpipe.task import Struct, Task, timed_method

__all__ = ["KernelBasis", "alard_lupton_basis", "spatial_terms", "n_spatial_terms",
           "SpatialKernelSolution", "ImagePsfMatchConfig", "ImagePsfMatchTask",
           "select_kernel_candidates", "alard_lupton_sigmas", "grow_mask"]


# --------------------------------------------------------------------------------------------
# the basis
# --------------------------------------------------------------------------------------------
@dataclass
class KernelBasis:
    """A kernel basis: ``basis[i] = sum_j transform[i, j] raw[j]`` with separable ``raw[j]``.

    Attributes
    ----------
    half_width : int
        Kernel images are ``2 * half_width + 1`` pixels square, centred.
    factors : list of tuple of numpy.ndarray
        ``(fx, fy)`` of each raw function: ``raw[j][v, u] = fy[v] * fx[u]`` (index ``u`` is
        the offset ``u - half_width`` in x).
    transform : numpy.ndarray
        ``(n_basis, n_raw)``.
    """

    half_width: int
    factors: list[tuple[np.ndarray, np.ndarray]]
    transform: np.ndarray

    @property
    def n_basis(self) -> int:
        """The number of basis functions."""
        return int(self.transform.shape[0])

    @property
    def size(self) -> int:
        """Width and height of the kernel images."""
        return 2 * self.half_width + 1

    def raw_images(self) -> np.ndarray:
        """``(n_raw, size, size)`` images of the raw separable functions."""
        return np.array([np.outer(fy, fx) for fx, fy in self.factors])

    def images(self) -> np.ndarray:
        """``(n_basis, size, size)`` images of the basis functions."""
        return np.tensordot(self.transform, self.raw_images(), axes=1)

    def convolve_raw(self, image: np.ndarray, j: int) -> np.ndarray:
        """``image`` convolved by raw function ``j`` (float64; edges repeat the border)."""
        fx, fy = self.factors[j]
        return correlate_separable(np.asarray(image, dtype=np.float64), fx[::-1], fy[::-1])


def alard_lupton_sigmas(target_sigma: float, reference_sigma: float, beta: float = 2.0,
                        min_sigma: float = 0.7) -> list[float]:
    """Widths of the three Gaussians of the basis for matching ``reference`` to ``target``.

    The matching kernel of two Gaussian PSFs is a Gaussian of width ``sqrt(target**2 -
    reference**2)``; the basis brackets it by a factor ``beta`` on either side (never
    narrower than ``min_sigma``), as LSST's ``generateAlardLuptonBasisList`` with
    ``scaleByFwhm``.
    """
    match = float(np.sqrt(max(target_sigma**2 - reference_sigma**2, 0.0)))
    match = max(match, min_sigma)
    return [max(min_sigma, match / beta), match, match * beta]


def alard_lupton_basis(sigmas: list[float] | tuple[float, ...],
                       degrees: list[int] | tuple[int, ...], half_width: int) -> KernelBasis:
    """The differential Alard-Lupton basis (see the module's documentation).

    Parameters
    ----------
    sigmas : sequence of float
        Gaussian widths, pixels; the first (normally the narrowest) carries the kernel's sum.
    degrees : sequence of int
        Polynomial degree of each Gaussian's family.
    half_width : int
        Half the kernel's width, pixels.

    Returns
    -------
    KernelBasis
    """
    if len(sigmas) != len(degrees) or not len(sigmas):
        raise ValueError(f"alard_lupton_basis: give one degree per Gaussian width; got sigmas "
                         f"{list(sigmas)} and degrees {list(degrees)}")
    if half_width < 1:
        raise ValueError(f"alard_lupton_basis: half_width must be >= 1; got {half_width}")
    u = np.arange(-half_width, half_width + 1, dtype=np.float64)
    factors: list[tuple[np.ndarray, np.ndarray]] = []
    for sigma, degree in zip(sigmas, degrees, strict=True):
        if not sigma > 0 or degree < 0:
            raise ValueError(f"alard_lupton_basis: widths must be positive and degrees >= 0; "
                             f"got sigma {sigma}, degree {degree}")
        g = np.exp(-0.5 * (u / sigma) ** 2)
        for total in range(degree + 1):
            for q in range(total + 1):
                fx = g * (u / sigma) ** (total - q)
                fy = g * (u / sigma) ** q
                norm = np.sqrt(np.sum(fx**2) * np.sum(fy**2))
                factors.append((fx / np.sqrt(norm), fy / np.sqrt(norm)))
    sums = np.array([fx.sum() * fy.sum() for fx, fy in factors])
    n = len(factors)
    transform = np.eye(n)
    transform[0, 0] = 1.0 / sums[0]
    # every other function minus its sum times the first (normalised) one: sum 0
    transform[1:, 0] = -sums[1:] / sums[0]
    return KernelBasis(int(half_width), factors, transform)


def n_spatial_terms(order: int) -> int:
    """Number of monomials ``u**i v**j`` with ``i + j <= order``."""
    return (order + 1) * (order + 2) // 2


def spatial_terms(u: np.ndarray | float, v: np.ndarray | float, order: int) -> np.ndarray:
    """The monomials ``u**(t - j) v**j`` (``t <= order``), in :class:`PixelPsf`'s order."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    return np.array([u ** (t - j) * v**j for t in range(order + 1) for j in range(t + 1)])


def _exponents(order: int) -> list[tuple[int, int]]:
    return [(t - j, j) for t in range(order + 1) for j in range(t + 1)]


# --------------------------------------------------------------------------------------------
# the solution
# --------------------------------------------------------------------------------------------
@dataclass
class SpatialKernelSolution:
    """A fitted, spatially varying matching kernel and differential background.

    Attributes
    ----------
    basis : KernelBasis
    orders : list of int
        Spatial order of each basis function's coefficient.
    coeffs : list of numpy.ndarray
        Each basis function's polynomial coefficients (``n_spatial_terms(orders[i])``).
    bg_order : int
        Spatial order of the background (-1: no background).
    bg_coeffs : numpy.ndarray
    bbox : tuple of float
        ``(xmin, ymin, xmax, ymax)``: parent coordinates scaled to ``[-1, 1]``.
    """

    basis: KernelBasis
    orders: list[int]
    coeffs: list[np.ndarray]
    bg_order: int
    bg_coeffs: np.ndarray
    bbox: tuple[float, float, float, float]
    info: dict[str, Any] = field(default_factory=dict)

    def scaled(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Parent pixel coordinates scaled to ``[-1, 1]`` over :attr:`bbox`."""
        xmin, ymin, xmax, ymax = self.bbox
        u = 2.0 * (np.asarray(x, dtype=np.float64) - xmin) / max(xmax - xmin, 1e-12) - 1.0
        v = 2.0 * (np.asarray(y, dtype=np.float64) - ymin) / max(ymax - ymin, 1e-12) - 1.0
        return u, v

    def basis_coefficients(self, x: float, y: float) -> np.ndarray:
        """The coefficient of every basis function at parent position ``(x, y)``."""
        u, v = self.scaled(x, y)
        return np.array([float(c @ spatial_terms(u, v, o))
                         for c, o in zip(self.coeffs, self.orders, strict=True)])

    def kernel_image(self, x: float, y: float) -> np.ndarray:
        """The matching kernel (a convolution kernel, centred) at parent position ``(x, y)``."""
        return np.tensordot(self.basis_coefficients(x, y), self.basis.images(), axes=1)

    def kernel_sum(self, x: Any, y: Any) -> np.ndarray:
        """The kernel's sum (the photometric scale) at parent positions ``(x, y)``."""
        u, v = self.scaled(x, y)
        terms = spatial_terms(u, v, self.orders[0])
        return np.tensordot(self.coeffs[0], terms, axes=1) * float(self.basis.transform[0, 0]
                                                                   * _raw_sum(self.basis, 0))

    def background(self, x: Any, y: Any) -> np.ndarray:
        """The differential background at parent positions ``(x, y)``."""
        if self.bg_order < 0:
            return np.zeros(np.broadcast(np.asarray(x), np.asarray(y)).shape)
        u, v = self.scaled(x, y)
        return np.tensordot(self.bg_coeffs, spatial_terms(u, v, self.bg_order), axes=1)

    def _polynomial_map(self, coeffs: np.ndarray, order: int, shape: tuple[int, int],
                        xy0: tuple[int, int]) -> np.ndarray:
        """``sum_t coeffs[t] u**a v**b`` over an image, as sums of outer products."""
        ny, nx = shape
        u, _ = self.scaled(xy0[0] + np.arange(nx), xy0[1])
        _, v = self.scaled(xy0[0], xy0[1] + np.arange(ny))
        out = np.zeros(shape)
        for c, (a, b) in zip(coeffs, _exponents(order), strict=True):
            if c != 0.0:
                out += c * np.outer(v**b, u**a)
        return out

    def background_image(self, shape: tuple[int, int], xy0: tuple[int, int] = (0, 0)
                         ) -> np.ndarray:
        """The differential background over an image of ``shape`` at ``xy0``."""
        if self.bg_order < 0:
            return np.zeros(shape)
        return self._polynomial_map(self.bg_coeffs, self.bg_order, shape, xy0)

    def kernel_sum_image(self, shape: tuple[int, int], xy0: tuple[int, int] = (0, 0)
                         ) -> np.ndarray:
        """The kernel's sum at every pixel of an image of ``shape`` at ``xy0``."""
        scale = float(self.basis.transform[0, 0] * _raw_sum(self.basis, 0))
        return self._polynomial_map(self.coeffs[0] * scale, self.orders[0], shape, xy0)

    def _per_raw(self) -> tuple[np.ndarray, int]:
        """``(n_raw, n_terms)``: each raw function's coefficient per spatial term."""
        order = max(self.orders)
        per_basis = np.zeros((self.basis.n_basis, n_spatial_terms(order)))
        for i, c in enumerate(self.coeffs):
            per_basis[i, :len(c)] = c
        return self.basis.transform.T @ per_basis, order

    def convolve(self, image: np.ndarray, xy0: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Convolve ``image`` (whose pixel ``[0, 0]`` is parent ``xy0``) by the spatially
        varying kernel, exactly.

        The kernel is ``sum_t m_t(x, y) K_t`` (``m_t`` the spatial monomials, ``K_t`` the
        basis combined with each monomial's coefficients), so the result is
        ``sum_t m_t(x, y) (image * K_t)(x, y)``: one FFT of the image (padded by repeating
        its border, as :meth:`convolve_reference`), one inverse transform along y per spatial
        term, weighted by its power of y, and one inverse transform along x per power of x.
        The result is the same as :meth:`convolve_reference`'s to float rounding (the FFT's
        rounding error is about 1e-15 of the image's largest absolute value, at every pixel).

        Non-finite pixels count as 0 (mask them around the result).
        """
        image = np.where(np.isfinite(image), image, 0.0).astype(np.float64)
        per_raw, order = self._per_raw()
        hw = self.basis.half_width
        size = self.basis.size
        ny, nx = image.shape
        # the padded image's linear convolution is free of wrap-around in its valid part
        # when the transform is at least as long as the padded image
        shape = (sfft.next_fast_len(ny + 2 * hw), sfft.next_fast_len(nx + 2 * hw))
        spectrum = sfft.rfft2(np.pad(image, hw, mode="edge"), shape)
        del image
        # the kernels' spectra, K_t zero-padded to ``shape``, as small matrix products
        m = np.arange(size)
        ey = np.exp(-2j * np.pi * np.outer(np.arange(shape[0]), m) / shape[0])
        ex = np.exp(-2j * np.pi * np.outer(m, np.arange(shape[1] // 2 + 1)) / shape[1])
        raw = self.basis.raw_images()
        u, _ = self.scaled(xy0[0] + np.arange(nx), xy0[1])
        _, v = self.scaled(xy0[0], xy0[1] + np.arange(ny))
        rows = slice(2 * hw, 2 * hw + ny)
        # the inverse transform along y first; terms of one power of u share the one along x
        by_power: dict[int, np.ndarray] = {}
        for t, (a, b) in enumerate(_exponents(order)):
            if not np.any(per_raw[:, t]):
                continue
            kernel = np.tensordot(per_raw[:, t], raw, axes=1)
            half = sfft.ifft(spectrum * (ey @ (kernel @ ex)), axis=0, overwrite_x=True)[rows]
            if b:
                half *= (v**b)[:, None]
            if a in by_power:
                by_power[a] += half
            else:
                by_power[a] = half
        out = np.zeros((ny, nx))
        for a, half in by_power.items():
            term = sfft.irfft(half, shape[1], axis=1, overwrite_x=True)[:, 2 * hw:2 * hw + nx]
            if a:
                term *= u**a
            out += term
        return out

    def convolve_reference(self, image: np.ndarray, xy0: tuple[int, int] = (0, 0)
                           ) -> np.ndarray:
        """:meth:`convolve` by direct sums: one full-image separable convolution per raw
        basis function, weighted by its spatial coefficients at each output pixel (slow)."""
        image = np.where(np.isfinite(image), image, 0.0).astype(np.float64)
        per_raw, order = self._per_raw()
        out = np.zeros(image.shape)
        for j in range(len(self.basis.factors)):
            if not np.any(per_raw[j]):
                continue
            weight = self._polynomial_map(per_raw[j], order, image.shape, xy0)
            out += weight * self.basis.convolve_raw(image, j)
        return out

    def convolve_variance(self, variance: np.ndarray, xy0: tuple[int, int], cell: int
                          ) -> np.ndarray:
        """``variance`` convolved by ``K**2``, with the kernel at each grid cell's centre."""
        variance = np.where(np.isfinite(variance), variance, 0.0).astype(np.float64)
        ny, nx = variance.shape
        hw = self.basis.half_width
        out = np.empty((ny, nx))
        padded = np.pad(variance, hw, mode="edge")
        for y0 in range(0, ny, cell):
            for x0 in range(0, nx, cell):
                y1, x1 = min(y0 + cell, ny), min(x0 + cell, nx)
                k2 = self.kernel_image(xy0[0] + 0.5 * (x0 + x1 - 1),
                                       xy0[1] + 0.5 * (y0 + y1 - 1)) ** 2
                block = padded[y0:y1 + 2 * hw, x0:x1 + 2 * hw]
                out[y0:y1, x0:x1] = fftconvolve(block, k2, mode="valid")
        return np.clip(out, 0.0, None)


def _raw_sum(basis: KernelBasis, j: int) -> float:
    fx, fy = basis.factors[j]
    return float(fx.sum() * fy.sum())


def _or_filter(values: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Bitwise OR of ``values`` over a window of ``2 * radius + 1`` along ``axis`` (zeros
    outside): running ORs of doubling length, then two overlapping windows."""
    length = 2 * radius + 1
    pad = [(0, 0)] * values.ndim
    pad[axis] = (radius, radius)
    run = np.pad(values, pad)
    n = values.shape[axis]
    span = 1
    while 2 * span <= length:
        head = [slice(None)] * values.ndim
        tail = [slice(None)] * values.ndim
        head[axis] = slice(0, run.shape[axis] - span)
        tail[axis] = slice(span, None)
        run = run[tuple(head)] | run[tuple(tail)]   # run[i] = OR of 2 span values from i
        span *= 2
    first = [slice(None)] * values.ndim
    second = [slice(None)] * values.ndim
    first[axis] = slice(0, n)
    second[axis] = slice(length - span, length - span + n)
    return run[tuple(first)] | run[tuple(second)]


def grow_mask(mask: np.ndarray, bits: int, radius: int) -> np.ndarray:
    """Each of ``bits`` set wherever it is set within ``radius`` pixels (a square), so that a
    convolved pixel gets the planes of every input pixel under the kernel."""
    selected = (np.asarray(mask) & bits).astype(np.int32)
    if radius < 1 or not selected.any():
        return selected
    return _or_filter(_or_filter(selected, radius, 1), radius, 0)


# --------------------------------------------------------------------------------------------
# the task
# --------------------------------------------------------------------------------------------
class ImagePsfMatchConfig(Config):
    """The kernel basis, its spatial variation, the stamps and their rejection."""

    mode = ChoiceField("which image is convolved", str, {
        "auto": "the one with the narrower PSF (normally the template)",
        "convolveTemplate": "the template, to the science image's PSF",
        "convolveScience": "the science image, to the template's PSF",
    }, default="auto")
    alardDegGauss = ListField("polynomial degree of each Gaussian's family", int,
                              default=[4, 2, 2])
    alardGaussBeta = RangeField("the basis Gaussians are the matching width divided and "
                                "multiplied by this", float, default=2.0, min=1.0)
    alardMinSig = RangeField("narrowest basis Gaussian, pixels", float, default=0.7, min=0.1)
    alardSigGauss = ListField("fixed basis widths (pixels), one per degree; empty: from the "
                              "two PSFs (alardGaussBeta, alardMinSig)", float, default=[])
    kernelSizeFactor = RangeField("kernel half width, in units of the widest basis Gaussian",
                                  float, default=3.0, min=1.0)
    kernelSizeMin = RangeField("smallest kernel half width, pixels", int, default=5, min=1)
    kernelSizeMax = RangeField("largest kernel half width, pixels", int, default=15, min=1)
    spatialKernelOrder = RangeField("spatial order of the kernel's shape", int, default=2,
                                    min=0)
    spatialKernelSumOrder = RangeField("spatial order of the kernel's sum (the photometric "
                                       "scale)", int, default=0, min=0)
    fitForBackground = Field("fit a differential background", bool, default=True)
    spatialBgOrder = RangeField("spatial order of the differential background", int,
                                default=1, min=0)
    stampSizeFactor = RangeField("stamps extend this many target PSF sigmas from the star "
                                 "(at least the kernel's half width)", float, default=4.0,
                                 min=1.0)
    candidateClip = RangeField("reject stamps this many robust standard deviations from the "
                               "median (chi-square, kernel sum)", float, default=3.0, min=1.0)
    maxSpatialIterations = RangeField("spatial fits, each after rejecting outlier stamps",
                                      int, default=3, min=1)
    minStamps = RangeField("fewest stamps left for a fit", int, default=5, min=1)
    badMaskPlanes = ListField("stamps touching these planes (either image) are not used",
                              str, default=["NO_DATA", "BAD", "SAT", "EDGE", "CR", "INTRP"])
    growMaskPlanes = ListField("planes of the convolved image grown by the kernel", str,
                               default=["NO_DATA", "BAD", "SAT", "EDGE", "CR", "INTRP",
                                        "SUSPECT"])
    varianceCellSize = RangeField("cells (pixels) over which the kernel is taken as constant "
                                  "for the variance's convolution by K**2", int, default=256,
                                  min=16)


class ImagePsfMatchTask(Task):
    """Fit a spatially varying matching kernel and subtract PSF-matched images."""

    ConfigClass = ImagePsfMatchConfig
    _DefaultName = "subtract"

    # --- the basis -------------------------------------------------------------------------
    def make_basis(self, target_sigma: float, reference_sigma: float) -> KernelBasis:
        """The basis for matching a PSF of ``reference_sigma`` to one of ``target_sigma``."""
        c = self.config
        degrees = list(c.alardDegGauss)
        if c.alardSigGauss:
            sigmas = list(c.alardSigGauss)
            if len(sigmas) != len(degrees):
                raise ValueError(f"subtract.alardSigGauss has {len(sigmas)} widths but "
                                 f"alardDegGauss {len(degrees)} degrees")
        else:
            if len(degrees) != 3:
                raise ValueError("subtract.alardDegGauss needs 3 degrees when the widths come "
                                 f"from the PSFs; got {degrees}")
            sigmas = alard_lupton_sigmas(target_sigma, reference_sigma, c.alardGaussBeta,
                                         c.alardMinSig)
        half = int(np.ceil(c.kernelSizeFactor * max(sigmas)))
        half = int(np.clip(half, c.kernelSizeMin, max(c.kernelSizeMin, c.kernelSizeMax)))
        return alard_lupton_basis(sigmas, degrees, half)

    # --- fitting ---------------------------------------------------------------------------
    def _stamps(self, reference: Exposure, target: Exposure, x: np.ndarray, y: np.ndarray,
                basis: KernelBasis, half: int) -> list[dict[str, Any]]:
        """Cut the stamps: the raw-basis convolutions of the reference and the target pixels."""
        hw = basis.half_width
        x0, y0 = reference.xy0
        ny, nx = reference.image.array.shape
        bad_planes = [p for p in self.config.badMaskPlanes if p in reference.mask.planes]
        rbad = reference.mask.get_plane_bitmask(bad_planes) if bad_planes else 0
        tplanes = [p for p in self.config.badMaskPlanes if p in target.mask.planes]
        tbad = target.mask.get_plane_bitmask(tplanes) if tplanes else 0
        size = basis.size
        flipped = basis.images()[:, ::-1, ::-1].reshape(basis.n_basis, size * size)
        stamps = []
        for k, (xc, yc) in enumerate(zip(x, y, strict=True)):
            if not (np.isfinite(xc) and np.isfinite(yc)):
                continue
            ix, iy = int(round(xc)) - x0, int(round(yc)) - y0
            outer = half + hw
            if ix - outer < 0 or iy - outer < 0 or ix + outer >= nx or iy + outer >= ny:
                continue
            big = (slice(iy - outer, iy + outer + 1), slice(ix - outer, ix + outer + 1))
            small = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
            ref = reference.image.array[big].astype(np.float64)
            rvar = reference.variance.array[small].astype(np.float64)
            tgt = target.image.array[small].astype(np.float64)
            tvar = target.variance.array[small].astype(np.float64)
            if (reference.mask.array[big] & rbad).any() or (target.mask.array[small]
                                                            & tbad).any():
                continue
            if not (np.isfinite(ref).all() and np.isfinite(tgt).all()
                    and np.isfinite(rvar).all() and np.isfinite(tvar).all()):
                continue
            var = rvar + tvar
            if not np.all(var > 0):
                continue
            # the basis convolutions over the stamp (where the kernel stays within ``ref``):
            # every kernel-sized window of ``ref`` times every flipped basis image
            windows = np.lib.stride_tricks.sliding_window_view(ref, (size, size))
            conv = (flipped @ windows.reshape(-1, size * size).T).reshape(
                -1, 2 * half + 1, 2 * half + 1)                  # (n_basis, h, w)
            yy, xx = np.mgrid[iy - half:iy + half + 1, ix - half:ix + half + 1]
            stamps.append({"index": k, "x": float(xc), "y": float(yc), "conv": conv,
                           "target": tgt, "weight": 1.0 / var, "xx": xx + x0, "yy": yy + y0})
        return stamps

    @staticmethod
    def _solve(design: np.ndarray, data: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Weighted least squares with column scaling."""
        sw = np.sqrt(weight)
        a = design * sw[:, None]
        norms = np.sqrt((a**2).sum(axis=0))
        norms[norms == 0] = 1.0
        sol, *_ = np.linalg.lstsq(a / norms, data * sw, rcond=1e-10)
        return sol / norms

    @staticmethod
    def _solve_normal(normal: np.ndarray, rhs: np.ndarray, max_condition: float = 1e5
                      ) -> np.ndarray | None:
        """:meth:`_solve` from the normal equations ``normal x = rhs`` (``A^T W A`` and
        ``A^T W b``), with the same column scaling, by Cholesky; None when the column-scaled
        design's condition number exceeds ``max_condition`` (or it is singular), where only
        :meth:`_solve`'s SVD keeps its precision. Below it the two agree to float rounding
        amplified by the condition number squared (1e-16 * 1e10)."""
        norms = np.sqrt(np.diag(normal))
        norms = np.where(norms > 0, norms, 1.0)
        scaled = normal / np.outer(norms, norms)
        eig = np.linalg.eigvalsh(scaled)
        if not (eig[0] > 0 and eig[-1] < max_condition**2 * eig[0]):
            return None
        try:
            sol = cho_solve(cho_factor(scaled), rhs / norms)
        except LinAlgError:
            return None
        return sol / norms

    def _single_fit(self, stamp: dict[str, Any]) -> tuple[float, float, float]:
        """Fit one stamp with a constant kernel (and background): its chi2/dof, the kernel's
        sum and the sum's error."""
        n_basis = stamp["conv"].shape[0]
        cols = [stamp["conv"][i].ravel() for i in range(n_basis)]
        if self.config.fitForBackground:
            cols.append(np.ones(stamp["target"].size))
        design = np.column_stack(cols)
        data = stamp["target"].ravel()
        weight = stamp["weight"].ravel()
        sol = self._solve(design, data, weight)
        resid = data - design @ sol
        dof = max(data.size - design.shape[1], 1)
        # the error of the kernel's sum (the first coefficient) from the normal matrix
        normal = design.T @ (design * weight[:, None])
        try:
            err = float(np.sqrt(abs(np.linalg.pinv(normal, rcond=1e-12)[0, 0])))
        except np.linalg.LinAlgError:
            err = float("nan")
        return float((resid**2 * weight).sum() / dof), float(sol[0]), err

    def _spatial_design(self, stamp: dict[str, Any], orders: list[int], bg_order: int,
                        scale: Any) -> np.ndarray:
        u, v = scale(stamp["xx"].ravel(), stamp["yy"].ravel())
        max_order = max(orders + [max(bg_order, 0)])
        terms = spatial_terms(u, v, max_order)
        cols = []
        for i, o in enumerate(orders):
            ci = stamp["conv"][i].ravel()
            cols += [ci * terms[t] for t in range(n_spatial_terms(o))]
        if bg_order >= 0:
            cols += [terms[t] for t in range(n_spatial_terms(bg_order))]
        return np.column_stack(cols)

    @staticmethod
    def _outliers(values: np.ndarray, clip: float, two_sided: bool,
                  among: np.ndarray | None = None, floor: float = 0.0) -> np.ndarray:
        """Values more than ``clip`` robust standard deviations (at least ``floor``) from the
        median of the values selected by ``among`` (all by default): above it only, or on
        either side."""
        ref = values if among is None else values[among]
        ref = ref[np.isfinite(ref)]
        med = np.median(ref)
        scatter = 1.4826 * np.median(np.abs(ref - med))
        scatter = max(scatter, 1e-3 * abs(med), 1e-12, floor)
        dev = (values - med) / scatter
        return (np.abs(dev) > clip) if two_sided else (dev > clip)

    @timed_method
    def fit(self, reference: Exposure, target: Exposure, x: np.ndarray, y: np.ndarray,
            basis: KernelBasis) -> Struct:
        """Fit the spatially varying kernel that matches ``reference`` to ``target``.

        Parameters
        ----------
        reference, target : Exposure
            On one pixel grid (same bbox), in the same units.
        x, y : numpy.ndarray
            Parent positions of the kernel candidates (bright isolated stars).
        basis : KernelBasis

        Returns
        -------
        Struct
            ``solution`` (:class:`SpatialKernelSolution`), ``stamps`` (a dict of arrays: the
            candidates' ``x``, ``y``, ``chi2_single``, ``sum_single``, ``chi2_spatial`` and
            ``used``), ``n_used`` and ``n_rejected``.

        Raises
        ------
        ValueError
            If fewer than ``minStamps`` usable stamps remain.
        """
        c = self.config
        if reference.bbox != target.bbox:
            raise ValueError(f"PSF matching needs images on one pixel grid; got {reference.bbox}"
                             f" and {target.bbox}")
        psf = target.psf
        t_sigma = psf.sigma_at(*_centre(target)) if psf is not None else 2.0
        half = max(basis.half_width, int(np.ceil(c.stampSizeFactor * t_sigma)))
        stamps = self._stamps(reference, target, np.asarray(x, float), np.asarray(y, float),
                              basis, half)
        if len(stamps) < c.minStamps:
            raise ValueError(f"PSF matching: only {len(stamps)} usable kernel stamps of "
                             f"{len(x)} candidates (subtract.minStamps is {c.minStamps})")
        singles = np.array([self._single_fit(s) for s in stamps])
        chi2_single, sum_single, sum_err = singles[:, 0], singles[:, 1], singles[:, 2]
        # the kernel's sum is the flux ratio of the star in the two images: a variable star's
        # differs from the others' by more than its error allows
        with np.errstate(invalid="ignore", divide="ignore"):
            sum_dev = (sum_single - np.median(sum_single)) / sum_err
        sum_dev = np.where(np.isfinite(sum_dev), sum_dev, np.inf)
        keep = ~(self._outliers(chi2_single, c.candidateClip, two_sided=False)
                 | self._outliers(sum_dev, c.candidateClip, two_sided=True, floor=1.0))
        bbox = target.bbox
        box = (float(bbox.x0), float(bbox.y0), float(bbox.x1), float(bbox.y1))
        orders = [c.spatialKernelSumOrder] + [c.spatialKernelOrder] * (basis.n_basis - 1)
        bg_order = c.spatialBgOrder if c.fitForBackground else -1
        n_params = sum(n_spatial_terms(o) for o in orders) + (
            n_spatial_terms(bg_order) if bg_order >= 0 else 0)
        # too few stamps to constrain the spatial variation: fall back to a constant kernel
        if keep.sum() * 4 < n_params and (max(orders) > 0 or bg_order > 0):
            self.log.warning("%d stamps are too few for a spatial order %d kernel: using a "
                             "constant kernel and background", int(keep.sum()), max(orders))
            orders = [0] * basis.n_basis
            bg_order = 0 if c.fitForBackground else -1
        probe = SpatialKernelSolution(basis, orders, [], bg_order, np.zeros(0), box)
        chi2_spatial = np.full(len(stamps), np.nan)
        solution = None
        designs = [self._spatial_design(s, orders, bg_order, probe.scaled) for s in stamps]
        # each stamp's weighted normal matrix and right-hand side, summed over the stamps
        # used by each iteration
        normals = []
        for s, design in zip(stamps, designs, strict=True):
            sw = np.sqrt(s["weight"].ravel())
            a = design * sw[:, None]
            normals.append((a.T @ a, a.T @ (s["target"].ravel() * sw)))
        for _ in range(c.maxSpatialIterations):
            if keep.sum() < c.minStamps:
                raise ValueError(f"PSF matching: only {int(keep.sum())} kernel stamps survive "
                                 f"the rejection (subtract.minStamps is {c.minStamps})")
            used = np.nonzero(keep)[0]
            sol = self._solve_normal(sum(normals[k][0] for k in used),
                                     sum(normals[k][1] for k in used))
            if sol is None:
                sol = self._solve(np.vstack([designs[k] for k in used]),
                                  np.concatenate([stamps[k]["target"].ravel() for k in used]),
                                  np.concatenate([stamps[k]["weight"].ravel() for k in used]))
            for k, s in enumerate(stamps):
                resid = s["target"].ravel() - designs[k] @ sol
                chi2_spatial[k] = float((resid**2 * s["weight"].ravel()).sum()
                                        / max(resid.size - 1, 1))
            coeffs, start = [], 0
            for o in orders:
                coeffs.append(sol[start:start + n_spatial_terms(o)])
                start += n_spatial_terms(o)
            solution = SpatialKernelSolution(basis, orders, coeffs, bg_order, sol[start:], box)
            bad = keep & self._outliers(chi2_spatial, c.candidateClip, two_sided=False,
                                        among=keep)
            if not bad.any():
                break
            keep &= ~bad
        assert solution is not None
        n_used = int(keep.sum())
        solution.info.update(nStamps=n_used, nRejected=len(stamps) - n_used,
                             chi2=float(np.median(chi2_spatial[keep])))
        self.metadata["nKernelStamps"] = n_used
        self.metadata["nKernelRejected"] = len(stamps) - n_used
        self.log.info("matching kernel: %d stamps used, %d rejected, median chi2/dof %.2f",
                      n_used, len(stamps) - n_used, float(np.median(chi2_spatial[keep])))
        table = {"x": np.array([s["x"] for s in stamps]),
                 "y": np.array([s["y"] for s in stamps]),
                 "chi2_single": chi2_single, "sum_single": sum_single,
                 "chi2_spatial": chi2_spatial, "used": keep.copy()}
        return Struct(solution=solution, stamps=table, n_used=n_used,
                      n_rejected=len(stamps) - n_used)

    # --- convolution and subtraction ---------------------------------------------------------
    def convolve_exposure(self, exposure: Exposure, solution: SpatialKernelSolution
                          ) -> Exposure:
        """``exposure`` convolved by the kernel: image, variance (by ``K**2``) and the mask
        planes ``growMaskPlanes`` grown by the kernel; the border band is EDGE, pixels that
        were not finite are NO_DATA (and NaN)."""
        hw = solution.basis.half_width
        image = exposure.image.array
        finite = np.isfinite(image) & np.isfinite(exposure.variance.array)
        out = Exposure(exposure.bbox, **exposure.info())
        out.metadata = dict(exposure.metadata)
        out.mask.array[:] = exposure.mask.array
        xy0 = exposure.xy0
        conv = solution.convolve(image, xy0)
        var = solution.convolve_variance(exposure.variance.array, xy0,
                                         self.config.varianceCellSize)
        mask = out.mask
        planes = [p for p in self.config.growMaskPlanes if p in mask.planes]
        grown = grow_mask(mask.array, mask.get_plane_bitmask(planes), hw) if planes else 0
        mask.array[:] = mask.array | grown
        nodata = mask.get_plane_bitmask("NO_DATA")
        if not finite.all():
            missing = maximum_filter(~finite, size=2 * hw + 1, mode="constant", cval=False)
            mask.array[missing] |= nodata
            conv[missing] = np.nan
            var[missing] = np.nan
        edge = np.ones(image.shape, bool)
        edge[hw:-hw or None, hw:-hw or None] = False
        mask.array[edge] |= mask.get_plane_bitmask("EDGE")
        out.image.array[:] = conv
        out.variance.array[:] = var
        return out

    def choose_mode(self, science: Exposure, template: Exposure) -> str:
        """``convolveTemplate`` unless the science PSF is the narrower (config ``mode``)."""
        if self.config.mode != "auto":
            return self.config.mode
        if science.psf is None or template.psf is None:
            raise ValueError("image subtraction needs the PSFs of both images")
        s_sigma = science.psf.sigma_at(*_centre(science))
        t_sigma = template.psf.sigma_at(*_centre(template))
        return "convolveTemplate" if s_sigma >= t_sigma else "convolveScience"

    @timed_method
    def subtract_exposures(self, template: Exposure, science: Exposure, x: np.ndarray,
                           y: np.ndarray) -> Struct:
        """PSF-match and subtract: ``science - template``, in the science image's units.

        Parameters
        ----------
        template : Exposure
            The template, already on the science image's pixel grid and photometric scale,
            with its PSF.
        science : Exposure
            The science image, with its PSF.
        x, y : numpy.ndarray
            Parent positions of the kernel candidates.

        Returns
        -------
        Struct
            ``difference`` (Exposure: the science image's WCS, PhotoCalib and filter; the PSF
            of the image that was not convolved), ``matched_template`` (the template on the
            difference's PSF and scale), ``solution``, ``stamps``, ``mode``.
        """
        if science.psf is None or template.psf is None:
            raise ValueError("image subtraction needs the PSFs of both images")
        mode = self.choose_mode(science, template)
        s_sigma = science.psf.sigma_at(*_centre(science))
        t_sigma = template.psf.sigma_at(*_centre(template))
        if mode == "convolveTemplate":
            reference, target = template, science
            basis = self.make_basis(s_sigma, t_sigma)
        else:
            reference, target = science, template
            basis = self.make_basis(t_sigma, s_sigma)
        fit = self.fit(reference, target, x, y, basis)
        sol = fit.solution
        convolved = self.convolve_exposure(reference, sol)
        shape = science.image.array.shape
        bg = sol.background_image(shape, science.xy0)
        diff = Exposure(science.bbox, **science.info())
        diff.metadata = dict(science.metadata)
        if mode == "convolveTemplate":
            # science ~ template * K + b
            matched = convolved
            matched.image.array[:] = convolved.image.array + bg
            image = science.image.array - matched.image.array
            variance = science.variance.array + convolved.variance.array
            mask = science.mask.array | science.mask.translate_bits(matched.mask.array,
                                                                    matched.mask.planes)
            diff.psf = science.psf
        else:
            # template ~ science * K + b: in the science image's scale, divide by sum(K)
            if sol.orders[0] == 0:
                # a constant sum: the same divisions by one float64 number
                ksum = np.float64(sol.kernel_sum_image((1, 1), science.xy0)[0, 0])
            else:
                ksum = sol.kernel_sum_image(shape, science.xy0)
            matched = Exposure(template.bbox, **template.info())
            matched.metadata = dict(template.metadata)
            matched.image.array[:] = (template.image.array - bg) / ksum
            matched.variance.array[:] = template.variance.array / ksum**2
            matched.mask.array[:] = template.mask.array
            image = convolved.image.array / ksum - matched.image.array
            variance = convolved.variance.array / ksum**2 + matched.variance.array
            mask = science.mask.translate_bits(convolved.mask.array, convolved.mask.planes) | \
                science.mask.translate_bits(matched.mask.array, matched.mask.planes)
            diff.psf = template.psf
        diff.image.array[:] = image
        diff.variance.array[:] = variance
        diff.mask.array[:] = mask
        for plane in ("DETECTED", "DETECTED_NEGATIVE"):
            if plane in diff.mask.planes:
                diff.mask.clear_plane(plane)
        matched.photo_calib = science.photo_calib
        matched.psf = diff.psf
        ksum_centre = float(sol.kernel_sum(*_centre(science)))
        diff.metadata.update({"DIFFMODE": mode, "KERNSUM": ksum_centre,
                              "KERNHW": sol.basis.half_width,
                              "NKSTAMP": int(fit.n_used), "KCHI2": sol.info.get("chi2", 0.0)})
        self.metadata["mode"] = mode
        self.metadata["kernelSum"] = ksum_centre
        return Struct(difference=diff, matched_template=matched, solution=sol,
                      stamps=fit.stamps, mode=mode)


def _centre(exposure: Exposure) -> tuple[float, float]:
    x0, y0 = exposure.xy0
    return x0 + (exposure.width - 1) / 2.0, y0 + (exposure.height - 1) / 2.0


def select_kernel_candidates(catalog: Any, exposure: Exposure, *, min_snr: float = 30.0,
                             max_candidates: int = 150, cell_size: int = 256,
                             isolation: float = 12.0, star_tolerance: float = 0.3
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Bright isolated stars of a source catalog (``src``) as kernel candidates.

    Kept: PSF flux signal to noise above ``min_snr``; no centroid, shape, PSF-flux or pixel
    flag; not blended (``parent == 0`` and ``deblend_nChild == 0`` when the columns exist);
    no other source within ``isolation`` pixels; second moments within ``star_tolerance``
    (relative) of the PSF's (stars; if fewer than 10 stars, any shape). They are spread over
    the image: the brightest of each ``cell_size`` cell first, round-robin, up to
    ``max_candidates``.

    Returns
    -------
    x, y : numpy.ndarray
        Parent pixel positions.
    """
    n = len(catalog)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    x = np.asarray(catalog["base_SdssCentroid_x"], float)
    y = np.asarray(catalog["base_SdssCentroid_y"], float)
    flux = np.asarray(catalog["base_PsfFlux_instFlux"], float)
    err = np.asarray(catalog["base_PsfFlux_instFluxErr"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.isfinite(x) & np.isfinite(y) & (flux / err > min_snr)
    for flag in ("base_SdssCentroid_flag", "base_SdssShape_flag", "base_PsfFlux_flag",
                 "base_PixelFlags_flag_edge", "base_PixelFlags_flag_saturated",
                 "base_PixelFlags_flag_interpolated", "base_PixelFlags_flag_cr",
                 "base_PixelFlags_flag_bad"):
        if flag in catalog.schema:
            ok &= ~np.asarray(catalog[flag], bool)
    if "parent" in catalog.schema:
        ok &= np.asarray(catalog["parent"]) == 0
    if "deblend_nChild" in catalog.schema:
        ok &= np.asarray(catalog["deblend_nChild"]) == 0
    finite = np.isfinite(x) & np.isfinite(y)
    tree = cKDTree(np.column_stack([x[finite], y[finite]]))
    counts = np.zeros(n, int)
    counts[finite] = np.array([len(v) for v in tree.query_ball_point(
        np.column_stack([x[finite], y[finite]]), isolation)])
    ok &= counts <= 1
    if exposure.psf is not None and "base_SdssShape_xx" in catalog.schema:
        size = 0.5 * (np.asarray(catalog["base_SdssShape_xx"], float)
                      + np.asarray(catalog["base_SdssShape_yy"], float))
        psf_size = np.array([exposure.psf.sigma_at(xi, yi) ** 2 if ok[k] else np.nan
                             for k, (xi, yi) in enumerate(zip(x, y, strict=True))])
        with np.errstate(invalid="ignore"):
            star = ok & (np.abs(size / psf_size - 1.0) < star_tolerance)
        if star.sum() >= 10:
            ok = star
    idx = np.nonzero(ok)[0]
    idx = idx[np.argsort(-flux[idx])]
    x0, y0 = exposure.xy0
    cells = ((x[idx] - x0) // cell_size).astype(int) * 100000 + ((y[idx] - y0)
                                                                 // cell_size).astype(int)
    rank = np.zeros(idx.size, int)
    seen: dict[int, int] = {}
    for k, cell in enumerate(cells):
        rank[k] = seen.get(int(cell), 0)
        seen[int(cell)] = rank[k] + 1
    order = np.lexsort((np.arange(idx.size), rank))
    chosen = idx[order][:max_candidates]
    return x[chosen], y[chosen]
