"""Sky background: a mesh of clipped means, median-filtered, splined back to every pixel.

The algorithm follows LSST's ``SubtractBackgroundTask`` and SExtractor/SEP:

1. The image is cut into ``bin_y`` x ``bin_x`` cells; each cell gets the sigma-clipped mean of
   its good pixels (:func:`hpcpipe.kernels.stats.binned_clipped_mean`: a first pass centred on
   the median with a width of 0.7413 interquartile ranges, then ``niter`` mean/standard
   deviation passes). Masked, NaN and infinite pixels are left out.
2. Cells without any good pixel are filled with the mean of their valid neighbours
   (repeatedly, growing inwards), then the mesh is median-filtered over ``filter_size``
   cells (3x3 by default, edges repeating the nearest cell, as
   ``scipy.ndimage.median_filter(mode="nearest")``).
3. The mesh, placed at the cells' centres, is interpolated back to every pixel by a spline
   along the rows of the mesh followed by a spline down the columns: Akima (LSST's default),
   a natural cubic spline, or piecewise linear. Beyond the outer cell centres the end
   pieces are extended.

Defined results: a mesh of one cell gives a constant background; an image whose pixels are
all masked or not finite gives a background of NaN everywhere (and ``rms`` NaN).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hpcpipe.kernels._checks import flag_image, float_image
from hpcpipe.kernels._loader import load_native
from hpcpipe.kernels.stats import binned_clipped_mean, binned_clipped_mean_reference

__all__ = [
    "Background",
    "estimate_background",
    "estimate_background_reference",
    "fill_mesh",
    "median_filter_mesh",
    "spline_coefficients",
    "INTERPOLATIONS",
]

#: The interpolation methods of the mesh.
INTERPOLATIONS = ("akima", "natural", "linear")


class Background:
    """A background estimate: the mesh, and the model at every pixel (made when first used).

    Attributes
    ----------
    mesh : numpy.ndarray
        The filled, median-filtered cell values, float64 ``(n_cells_y, n_cells_x)``.
    mesh_std : numpy.ndarray
        The clipped standard deviation of each cell (NaN where a cell had no good pixel).
    count : numpy.ndarray
        The number of pixels kept in each cell.
    rms : float
        The median over the cells of their clipped standard deviations: a global per-pixel
        noise (NaN if no cell had good pixels).
    """

    def __init__(self, shape: tuple[int, int], dtype: np.dtype, mesh: np.ndarray,
                 mesh_std: np.ndarray, count: np.ndarray, rms: float,
                 model: Callable[[np.ndarray | None], np.ndarray] | None = None) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.mesh = mesh
        self.mesh_std = mesh_std
        self.count = count
        self.rms = rms
        # model(None) -> the model image; model(data) -> data - model, in one pass
        self._model = model
        self._image: np.ndarray | None = None

    @property
    def image(self) -> np.ndarray:
        """The background at every pixel (the input's shape and type; NaN everywhere when no
        pixel was good). Computed on first use and kept."""
        if self._image is None:
            if self._model is None:
                self._image = np.full(self.shape, np.nan, self.dtype)
            else:
                self._image = self._model(None)
        return self._image

    def subtract(self, data: np.ndarray) -> np.ndarray:
        """``data - self.image`` as a new array (as SEP's ``data - bkg``).

        Without the model image made yet, the model is evaluated row by row and subtracted
        at once (one pass over the pixels, no model image kept); the values are the same.
        """
        data = np.asarray(data)
        if data.shape != self.shape:
            raise ValueError(f"Background.subtract: the data's shape {data.shape} differs from "
                             f"the background's {self.shape}")
        if self._image is not None or self._model is None or data.dtype != self.dtype:
            return data - self.image
        return self._model(np.ascontiguousarray(data))


def fill_mesh(mesh: np.ndarray) -> np.ndarray:
    """Replace NaN cells by the mean of their valid 8-neighbours, repeatedly.

    Returns a new array; an all-NaN mesh comes back all NaN.
    """
    mesh = np.array(mesh, dtype=np.float64)
    bad = ~np.isfinite(mesh)
    if bad.all() or not bad.any():
        return mesh
    mesh[bad] = 0.0
    ny, nx = mesh.shape
    while bad.any():
        pv = np.pad(np.where(bad, 0.0, mesh), 1)
        pw = np.pad((~bad).astype(np.float64), 1)
        total = np.zeros_like(mesh)
        weight = np.zeros_like(mesh)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                if dy == 1 and dx == 1:
                    continue
                total += pv[dy:dy + ny, dx:dx + nx]
                weight += pw[dy:dy + ny, dx:dx + nx]
        fill = bad & (weight > 0)
        mesh[fill] = total[fill] / weight[fill]
        bad &= ~fill
    return mesh


def median_filter_mesh(mesh: np.ndarray, size: int | tuple[int, int] = 3) -> np.ndarray:
    """Median filter of a (finite) mesh over ``size`` cells, edges repeating the nearest cell.

    The same as ``scipy.ndimage.median_filter(mesh, size, mode="nearest")`` for odd sizes.
    """
    if isinstance(size, tuple | list | np.ndarray):
        fy, fx = (int(s) for s in size)
    else:
        fy = fx = int(size)
    if fy < 1 or fx < 1 or fy % 2 == 0 or fx % 2 == 0:
        raise ValueError(f"the mesh filter size must be odd and positive; got {size}")
    if fy == 1 and fx == 1:
        return np.array(mesh, dtype=np.float64)
    ny, nx = mesh.shape
    padded = np.pad(np.asarray(mesh, dtype=np.float64), ((fy // 2,), (fx // 2,)), mode="edge")
    windows = [padded[dy:dy + ny, dx:dx + nx] for dy in range(fy) for dx in range(fx)]
    return np.median(np.stack(windows), axis=0)


def _akima_slopes(h: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Secant slopes and Akima derivatives of the knots (along axis 0; m >= 3)."""
    s = np.diff(y, axis=0) / h[:, None]
    m = s.shape[0]
    ext = np.empty((m + 4,) + s.shape[1:])
    ext[2:m + 2] = s
    ext[1] = 2.0 * s[0] - s[1]
    ext[0] = 2.0 * ext[1] - s[0]
    ext[m + 2] = 2.0 * s[m - 1] - s[m - 2]
    ext[m + 3] = 2.0 * ext[m + 2] - s[m - 1]
    d = np.abs(np.diff(ext, axis=0))      # m + 3 differences
    f1 = d[2:]                            # |s_{i+1} - s_i| for knot i
    f2 = d[:-2]                           # |s_{i-1} - s_{i-2}|
    f12 = f1 + f2
    s_left = ext[1:m + 2]                 # s_{i-1}
    s_right = ext[2:m + 3]                # s_i
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(f12 > 0, (f1 * s_left + f2 * s_right) / np.where(f12 > 0, f12, 1.0),
                     0.5 * (s_left + s_right))
    return s, t


def spline_coefficients(x: np.ndarray, y: np.ndarray, method: str = "akima") -> np.ndarray:
    """Piecewise cubic coefficients through the knots ``(x, y)``, for many curves at once.

    Parameters
    ----------
    x : numpy.ndarray
        ``m`` increasing knot positions.
    y : numpy.ndarray
        ``(m, n)`` knot values of ``n`` curves.
    method : {"akima", "natural", "linear"}
        Akima spline, natural cubic spline, or straight lines. Fewer than three knots
        give straight lines (one knot a constant).

    Returns
    -------
    numpy.ndarray
        ``(4, max(m - 1, 1), n)``: coefficient of ``t**p`` on interval ``k``, with ``t``
        measured from ``x[k]``.
    """
    if method not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {method!r}; choose one of {INTERPOLATIONS}")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = x.size
    coef = np.zeros((4, max(m - 1, 1)) + y.shape[1:])
    if m == 1:
        coef[0, 0] = y[0]
        return coef
    h = np.diff(x)
    s = np.diff(y, axis=0) / h[:, None]
    coef[0] = y[:-1]
    if method == "linear" or m == 2:
        coef[1] = s
        return coef
    if method == "akima":
        s, t = _akima_slopes(h, y)
        hk = h[:, None]
        coef[1] = t[:-1]
        coef[2] = (3.0 * s - 2.0 * t[:-1] - t[1:]) / hk
        coef[3] = (t[:-1] + t[1:] - 2.0 * s) / hk**2
        return coef
    # natural cubic spline: second derivatives M with M[0] = M[-1] = 0 (Thomas algorithm)
    n_in = m - 2
    diag = 2.0 * (h[:-1] + h[1:])
    rhs = 6.0 * (s[1:] - s[:-1])
    cp = np.zeros(n_in)
    dp = np.zeros((n_in,) + y.shape[1:])
    for i in range(n_in):
        lower = h[i] if i > 0 else 0.0
        denom = diag[i] - lower * (cp[i - 1] if i > 0 else 0.0)
        cp[i] = h[i + 1] / denom
        dp[i] = (rhs[i] - lower * (dp[i - 1] if i > 0 else 0.0)) / denom
    second = np.zeros((m,) + y.shape[1:])
    for i in range(n_in - 1, -1, -1):
        second[i + 1] = dp[i] - cp[i] * (second[i + 2] if i + 1 < n_in else 0.0)
    hk = h[:, None]
    coef[1] = s - hk * (2.0 * second[:-1] + second[1:]) / 6.0
    coef[2] = second[:-1] / 2.0
    coef[3] = (second[1:] - second[:-1]) / (6.0 * hk)
    return coef


def _evaluate(coef: np.ndarray, knots: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The piecewise cubics at ``points`` (along axis 0): ``(points.size, n)``."""
    m = knots.size
    k = np.clip(np.searchsorted(knots, points, side="right") - 1, 0, max(m - 2, 0))
    t = (points - knots[k])[:, None]
    return coef[0, k] + t * (coef[1, k] + t * (coef[2, k] + t * coef[3, k]))


def _cell_centres(n: int, bin_size: int) -> np.ndarray:
    starts = np.arange(0, n, bin_size)
    ends = np.minimum(starts + bin_size, n)
    return (starts + ends - 1) / 2.0


def _check(image, bad, bin_size, interpolation, filter_size):
    image = float_image(image, "image", "estimate_background")
    bad = flag_image(bad, image.shape, "bad", "estimate_background")
    bin_y, bin_x = (bin_size, bin_size) if np.isscalar(bin_size) else bin_size
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose one of "
                         f"{INTERPOLATIONS}")
    median_filter_mesh(np.zeros((1, 1)), filter_size)  # validates the size
    return image, bad, int(bin_y), int(bin_x)


def _column_coefficients(mesh: np.ndarray, shape: tuple[int, int], bin_y: int, bin_x: int,
                         interpolation: str) -> tuple[np.ndarray, np.ndarray]:
    """The spline along each mesh row evaluated at every column, then splined down columns."""
    ny, nx = shape
    yc = _cell_centres(ny, bin_y)
    xc = _cell_centres(nx, bin_x)
    coef_x = spline_coefficients(xc, mesh.T, interpolation)          # curves: mesh rows
    rows = _evaluate(coef_x, xc, np.arange(nx, dtype=np.float64)).T    # (n_cells_y, nx)
    return spline_coefficients(yc, rows, interpolation), yc


def _finish(image, mesh, std, count, bin_y, bin_x, interpolation, filter_size, model):
    good_std = std[count > 0]
    rms = float(np.median(good_std)) if good_std.size else float("nan")
    mesh = fill_mesh(mesh)
    if not np.isfinite(mesh).any():
        return Background(image.shape, image.dtype, mesh, std, count, rms)
    mesh = median_filter_mesh(mesh, filter_size)
    coef, yc = _column_coefficients(mesh, image.shape, bin_y, bin_x, interpolation)

    def evaluate(data):
        return model(coef, yc, data)

    return Background(image.shape, image.dtype, mesh, std, count, rms, evaluate)


def estimate_background_reference(image: np.ndarray, bad: np.ndarray | None = None,
                                  bin_size: int | tuple[int, int] = 128, nsigma: float = 3.0,
                                  niter: int = 3, filter_size: int | tuple[int, int] = 3,
                                  interpolation: str = "akima") -> Background:
    """NumPy reference of :func:`estimate_background`."""
    image, bad, bin_y, bin_x = _check(image, bad, bin_size, interpolation, filter_size)
    mean, std, count = binned_clipped_mean_reference(image, bad, bin_x, bin_y, nsigma, niter)

    def model(coef, yc, data):
        out = _evaluate(coef, yc, np.arange(image.shape[0], dtype=np.float64))
        out = out.astype(image.dtype)
        return out if data is None else data - out

    return _finish(image, mean, std, count, bin_y, bin_x, interpolation, filter_size, model)


def estimate_background(image: np.ndarray, bad: np.ndarray | None = None,
                        bin_size: int | tuple[int, int] = 128, nsigma: float = 3.0,
                        niter: int = 3, filter_size: int | tuple[int, int] = 3,
                        interpolation: str = "akima") -> Background:
    """Estimate the sky background of an image (see the module's description).

    Parameters
    ----------
    image : numpy.ndarray
        2-D float32 or float64 pixels.
    bad : numpy.ndarray, optional
        Non-zero (or True) where a pixel must be left out (for example
        ``mask & mask.get_plane_bitmask(["BAD", "SAT", "DETECTED"]) != 0``).
    bin_size : int or (int, int)
        Cell size in pixels, or ``(bin_y, bin_x)``; the last cells may be smaller.
    nsigma, niter : float, int
        Clipping limit and number of mean/standard deviation passes in each cell.
    filter_size : int or (int, int)
        Odd size of the median filter over the mesh (1: no filter).
    interpolation : {"akima", "natural", "linear"}
        Spline through the cell centres.

    Returns
    -------
    Background
        The mesh, and the background image (input's type) made when first used;
        ``Background.subtract(image)`` gives ``image - background`` in one pass.
    """
    image, bad, bin_y, bin_x = _check(image, bad, bin_size, interpolation, filter_size)
    mean, std, count = binned_clipped_mean(image, bad, bin_x, bin_y, nsigma, niter)
    native = load_native("background")

    def model(coef, yc, data):
        if native is None:
            out = _evaluate(coef, yc, np.arange(image.shape[0], dtype=np.float64))
            out = out.astype(image.dtype)
            return out if data is None else data - out
        out = np.empty_like(image)
        if data is None:
            native.evaluate_columns(np.ascontiguousarray(coef), yc, out)
        else:
            native.subtract_columns(np.ascontiguousarray(coef), yc, data, out)
        return out

    return _finish(image, mean, std, count, bin_y, bin_x, interpolation, filter_size, model)
