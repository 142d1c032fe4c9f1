"""Coaddition: a per-pixel sigma-clipped weighted mean over a stack of warps, in row blocks.

The rule, per output pixel (LSST's ``AssembleCoaddTask`` with ``statistic="MEANCLIP"``):

1. An input is left out where its mask has any of ``bad_bits`` or its value or variance is
   not finite.
2. ``niter`` clipping passes over the inputs left: centre = their median, width = their
   standard deviation, inputs with ``value < centre - width * nsigma`` or ``value > centre +
   width * nsigma`` are dropped; the passes stop early when none is dropped. This is
   ``astropy.stats.sigma_clip(stack, sigma=nsigma, maxiters=niter, cenfunc="median",
   stdfunc="std", axis=0)`` (computed here in float64 from float32 values).
3. The weighted mean of the inputs kept, with one weight per input (LSST: the inverse of
   the mean variance of that warp, :func:`inverse_variance_weights`): ``image = sum(w v) /
   sum(w)``, ``variance = sum(w**2 var) / sum(w)**2``, ``mask`` = OR of the kept inputs'
   masks, plus ``clipped_bit`` where an input was clipped in step 2, ``count`` = the number
   of inputs kept.
4. Where no input is kept: ``image`` and ``variance`` NaN, ``mask = no_data_bit``,
   ``count = 0``.

Inputs are read ``rows_per_block`` rows at a time (NumPy arrays, ``np.memmap`` or h5py
datasets), so the memory in use beyond the outputs is about ``n_inputs * rows_per_block *
nx * 12`` bytes. Values and variances are computed from float32 (float64 inputs are
rounded); masks are int32.

Default ``bad_bits``: NO_DATA | BAD | SAT. LSST leaves out only NO_DATA because its warps
carry BAD and SAT pixels already interpolated (INTRP); hpcpipe's warps may not, so the
physically bad and the saturated values are left out as well.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpcpipe.errors import PixelTypeError
from hpcpipe.kernels._loader import load_native

__all__ = [
    "CoaddResult",
    "DEFAULT_BAD_BITS",
    "clipped_mean_stack",
    "clipped_mean_stack_reference",
    "inverse_variance_weights",
]

_BAD, _SAT, _NO_DATA, _CLIPPED = 1 << 0, 1 << 1, 1 << 8, 1 << 12

#: The mask bits that leave an input out of a coadd pixel: NO_DATA | BAD | SAT.
DEFAULT_BAD_BITS = _NO_DATA | _BAD | _SAT

_FUNC = "clipped_mean_stack"


@dataclass
class CoaddResult:
    """The coadd of a stack of warps.

    Attributes
    ----------
    image, variance : numpy.ndarray
        float32 weighted mean and its variance (NaN where no input was kept).
    mask : numpy.ndarray
        int32 OR of the kept inputs' masks, with the clipped and no-data bits.
    count : numpy.ndarray
        int32 number of inputs kept at each pixel.
    """

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    count: np.ndarray


def _shape_dtype(array: Any, name: str) -> tuple[tuple[int, ...], np.dtype]:
    if not (hasattr(array, "shape") and hasattr(array, "dtype")):
        raise TypeError(f"{_FUNC}: {name} must be an array or an h5py dataset; got "
                        f"{type(array).__name__}")
    return tuple(array.shape), np.dtype(array.dtype)


def _check_inputs(images: Sequence[Any], variances: Sequence[Any],
                  masks: Sequence[Any] | None) -> tuple[int, int]:
    if isinstance(images, np.ndarray) and images.ndim == 2:
        raise ValueError(f"{_FUNC}: images must be a sequence of 2-D inputs (or a 3-D array)")
    n = len(images)
    if n == 0:
        raise ValueError(f"{_FUNC}: images must hold at least one input")
    if len(variances) != n:
        raise ValueError(f"{_FUNC}: {n} images but {len(variances)} variances")
    if masks is not None and len(masks) != n:
        raise ValueError(f"{_FUNC}: {n} images but {len(masks)} masks")
    shape, _ = _shape_dtype(images[0], "images[0]")
    if len(shape) != 2 or shape[0] * shape[1] == 0:
        raise ValueError(f"{_FUNC}: images[0] must be a non-empty 2-D array; got shape {shape}")
    groups = [("images", images, "f"), ("variances", variances, "f")]
    if masks is not None:
        groups.append(("masks", masks, "iu"))
    for label, seq, kinds in groups:
        for k in range(n):
            name = f"{label}[{k}]"
            s, dt = _shape_dtype(seq[k], name)
            if s != shape:
                raise ValueError(f"{_FUNC}: {name} has shape {s}; images[0] has {shape}")
            if dt.kind not in kinds or (kinds == "f" and dt.itemsize not in (4, 8)):
                want = "float32 or float64" if kinds == "f" else "an integer mask"
                raise PixelTypeError(f"{_FUNC}: {name} must be {want}; got {dt}")
    return shape


def _read_rows(array: Any, r0: int, r1: int, dtype: np.dtype) -> np.ndarray:
    """Rows r0:r1 of an input as a C-contiguous array of ``dtype`` (a view when possible)."""
    block = array[r0:r1]
    if isinstance(block, np.ndarray) and block.dtype == dtype and block.flags.c_contiguous:
        return block.view(np.ndarray)
    return np.ascontiguousarray(block, dtype=dtype)


def inverse_variance_weights(variances: Sequence[Any], masks: Sequence[Any] | None = None,
                             bad_bits: int = DEFAULT_BAD_BITS, rows_per_block: int = 256
                             ) -> np.ndarray:
    """LSST's coadd weights: 1 / the mean variance of each input's good pixels.

    Good pixels have a finite, positive variance and none of ``bad_bits`` in their mask.
    An input without good pixels gets weight 1 (it is never used: all its pixels are left
    out). Reads ``rows_per_block`` rows at a time.
    """
    weights = np.ones(len(variances))
    for k, var in enumerate(variances):
        ny = var.shape[0]
        total, count = 0.0, 0
        for r0 in range(0, ny, rows_per_block):
            r1 = min(r0 + rows_per_block, ny)
            v = np.asarray(var[r0:r1], dtype=np.float64)
            good = np.isfinite(v) & (v > 0)
            if masks is not None:
                good &= (np.asarray(masks[k][r0:r1]) & bad_bits) == 0
            total += float(v[good].sum())
            count += int(good.sum())
        if count > 0 and total > 0:
            weights[k] = count / total
    return weights


def _check_params(n: int, weights: Any, nsigma: float, niter: int, rows_per_block: int
                  ) -> np.ndarray | None:
    if not nsigma > 0:
        raise ValueError(f"{_FUNC}: nsigma must be positive; got {nsigma}")
    if int(niter) < 0:
        raise ValueError(f"{_FUNC}: niter must be >= 0; got {niter}")
    if int(rows_per_block) < 1:
        raise ValueError(f"{_FUNC}: rows_per_block must be >= 1; got {rows_per_block}")
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{_FUNC}: weights must hold one value per input ({n}); got shape "
                         f"{w.shape}")
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError(f"{_FUNC}: weights must be finite and positive; got {w}")
    return w


def _reference_rows(images: list[np.ndarray], variances: list[np.ndarray],
                    masks: list[np.ndarray], weights: np.ndarray, nsigma: float, niter: int,
                    bad_bits: int, clipped_bit: int, no_data_bit: int, out_image: np.ndarray,
                    out_var: np.ndarray, out_mask: np.ndarray, out_count: np.ndarray) -> None:
    """The NumPy version of the compiled ``clipped_mean_rows`` (one block of rows)."""
    v = np.stack(images).astype(np.float64)
    var = np.stack(variances).astype(np.float64)
    msk = np.stack(masks)
    good = ((msk & bad_bits) == 0) & np.isfinite(v) & np.isfinite(var)
    data = np.where(good, v, np.nan)
    clipped = np.zeros(out_image.shape, bool)
    with np.errstate(invalid="ignore"), _quiet_nan_warnings():
        for _ in range(niter):
            center = np.nanmedian(data, axis=0)
            width = np.nanstd(data, axis=0)
            new = (data < center - width * nsigma) | (data > center + width * nsigma)
            if not new.any():
                break
            data[new] = np.nan
            clipped |= new.any(axis=0)
    kept = np.isfinite(data)
    w = np.where(kept, weights[:, None, None], 0.0)
    sw = w.sum(axis=0)
    count = kept.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w * np.where(kept, data, 0.0)).sum(axis=0) / sw
        variance = (w**2 * np.where(kept, var, 0.0)).sum(axis=0) / sw**2
    mask = np.bitwise_or.reduce(np.where(kept, msk, 0), axis=0) | np.where(clipped,
                                                                           clipped_bit, 0)
    none = count == 0
    out_image[...] = np.where(none, np.nan, mean)
    out_var[...] = np.where(none, np.nan, variance)
    out_mask[...] = np.where(none, no_data_bit, mask)
    out_count[...] = count


class _quiet_nan_warnings:
    """Silence NumPy's "All-NaN slice" and "Degrees of freedom" warnings in the reference."""

    def __enter__(self) -> None:

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def _stack(rows_fn, images, variances, masks, weights, nsigma, niter, bad_bits, clipped_bit,
           no_data_bit, rows_per_block) -> CoaddResult:
    ny, nx = _check_inputs(images, variances, masks)
    n = len(images)
    w = _check_params(n, weights, nsigma, niter, rows_per_block)
    if w is None:
        w = inverse_variance_weights(variances, masks, bad_bits, int(rows_per_block))
    out = CoaddResult(np.empty((ny, nx), np.float32), np.empty((ny, nx), np.float32),
                      np.empty((ny, nx), np.int32), np.empty((ny, nx), np.int32))
    f32, i32 = np.dtype(np.float32), np.dtype(np.int32)
    step = int(rows_per_block)
    zeros = np.zeros((min(step, ny), nx), np.int32) if masks is None else None
    for r0 in range(0, ny, step):
        r1 = min(r0 + step, ny)
        imgs = [_read_rows(a, r0, r1, f32) for a in images]
        vars_ = [_read_rows(a, r0, r1, f32) for a in variances]
        if masks is None:
            assert zeros is not None
            msks = [zeros[:r1 - r0]] * n
        else:
            msks = [_read_rows(a, r0, r1, i32) for a in masks]
        rows_fn(imgs, vars_, msks, w, float(nsigma), int(niter), int(bad_bits),
                int(clipped_bit), int(no_data_bit), out.image[r0:r1], out.variance[r0:r1],
                out.mask[r0:r1], out.count[r0:r1])
    return out


def clipped_mean_stack_reference(images: Sequence[Any], variances: Sequence[Any],
                                 masks: Sequence[Any] | None = None, weights: Any = None, *,
                                 nsigma: float = 3.0, niter: int = 2,
                                 bad_bits: int = DEFAULT_BAD_BITS,
                                 clipped_bit: int = _CLIPPED, no_data_bit: int = _NO_DATA,
                                 rows_per_block: int = 256) -> CoaddResult:
    """NumPy reference of :func:`clipped_mean_stack` (the same arguments and result)."""
    return _stack(_reference_rows, images, variances, masks, weights, nsigma, niter, bad_bits,
                  clipped_bit, no_data_bit, rows_per_block)


def clipped_mean_stack(images: Sequence[Any], variances: Sequence[Any],
                       masks: Sequence[Any] | None = None, weights: Any = None, *,
                       nsigma: float = 3.0, niter: int = 2, bad_bits: int = DEFAULT_BAD_BITS,
                       clipped_bit: int = _CLIPPED, no_data_bit: int = _NO_DATA,
                       rows_per_block: int = 256) -> CoaddResult:
    """Sigma-clipped weighted mean of a stack of warps, per pixel (see the module's rule).

    Parameters
    ----------
    images, variances : sequence of array_like
        The warps' pixels and variances: 2-D float32 or float64 arrays of one shape
        (NumPy arrays, ``np.memmap`` or h5py datasets), or 3-D arrays (input, y, x).
    masks : sequence of array_like, optional
        Their integer masks (int32 mask planes); None: no pixel is masked.
    weights : array_like, optional
        One positive weight per input; None: :func:`inverse_variance_weights` (one more
        pass over the variances).
    nsigma : float
        Clipping limit in standard deviations about the median.
    niter : int
        Maximum number of clipping passes (0: no clipping).
    bad_bits : int
        Mask bits that leave an input out of a pixel (default NO_DATA | BAD | SAT).
    clipped_bit, no_data_bit : int
        The bits set where an input was clipped (CLIPPED) and where none was kept
        (NO_DATA).
    rows_per_block : int
        Rows of every input read at a time (bounds the memory in use).

    Returns
    -------
    CoaddResult
        float32 image and variance, int32 mask and count.

    Raises
    ------
    ValueError
        No inputs, inputs of different shapes, empty or non-2-D inputs, bad parameters.
    PixelTypeError
        Non-float pixels or variances, or non-integer masks (the message names the input).
    """
    native = load_native("coadd")
    rows_fn = _reference_rows if native is None else native.clipped_mean_rows
    return _stack(rows_fn, images, variances, masks, weights, nsigma, niter, bad_bits,
                  clipped_bit, no_data_bit, rows_per_block)
