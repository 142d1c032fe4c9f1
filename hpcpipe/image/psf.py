"""Point-spread function models that can be evaluated at any position of an image.

Every model is persisted as a small dictionary of scalars plus at most one array (see
:meth:`Psf.to_persisted` and :func:`psf_from_persisted`), so that FITS and HDF5 writers store
any PSF the same way and a new model only has to register itself.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

__all__ = ["Psf", "GaussianPsf", "PixelPsf", "psf_from_persisted", "PSF_TYPES",
           "adaptive_moments", "unweighted_sigma"]

#: Registered PSF classes by their persisted type name.
PSF_TYPES: dict[str, type[Psf]] = {}


def unweighted_sigma(image: np.ndarray) -> float:
    """``sqrt((Ixx + Iyy) / 2)`` of the unweighted second moments of an image (negative
    pixels, the noise of a fitted model's wings, are left out)."""
    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, None)
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    total = img.sum()
    mx = (img * xx).sum() / total
    my = (img * yy).sum() / total
    ixx = (img * (xx - mx) ** 2).sum() / total
    iyy = (img * (yy - my) ** 2).sum() / total
    return float(np.sqrt(0.5 * (ixx + iyy)))


def adaptive_moments(image: np.ndarray, max_iter: int = 100, tol: float = 1e-6
                     ) -> tuple[float, float, float, float, float] | None:
    """Adaptive (elliptical-Gaussian-weighted, iterated) moments of a well-sampled image.

    Bernstein & Jarvis (2002) / HSM, as the measurement kernel's ``base_SdssShape``: the
    weight's covariance ``M`` and centre are iterated until the weighted moments ``A`` give
    ``M^-1 = A^-1 - M^-1`` unchanged (exact for a Gaussian, whose covariance is then ``M``).

    Returns
    -------
    tuple of float or None
        ``(xc, yc, Ixx, Iyy, Ixy)`` in array coordinates, or None when the iteration fails
        (no positive flux, a non-positive matrix, no convergence within ``max_iter``).
    """
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xc, yc = (w - 1) / 2.0, (h - 1) / 2.0
    s2 = max(unweighted_sigma(img), 0.5) ** 2
    mxx, myy, mxy = s2, s2, 0.0
    for _ in range(max_iter):
        det = mxx * myy - mxy * mxy
        if not det > 0:
            return None
        dx, dy = xx - xc, yy - yc
        q = (myy * dx * dx - 2.0 * mxy * dx * dy + mxx * dy * dy) / det
        v = np.exp(-0.5 * q) * img
        s0 = v.sum()
        if not s0 > 0:
            return None
        xc += (v * dx).sum() / s0
        yc += (v * dy).sum() / s0
        axx, ayy, axy = (v * dx * dx).sum() / s0, (v * dy * dy).sum() / s0, \
            (v * dx * dy).sum() / s0
        dm = axx * ayy - axy * axy
        if not (dm > 0 and axx > 0):
            return None
        ia, ib, ic = ayy / dm - myy / det, axx / dm - mxx / det, -axy / dm + mxy / det
        dd = ia * ib - ic * ic
        if not (ia > 0 and dd > 0):
            return None
        nxx, nyy, nxy = ib / dd, ia / dd, -ic / dd
        change = abs(nxx - mxx) + abs(nyy - myy) + abs(nxy - mxy)
        mxx, myy, mxy = nxx, nyy, nxy
        if change < tol * (mxx + myy):
            return float(xc), float(yc), float(mxx), float(myy), float(mxy)
    return None


class Psf:
    """Base class of PSF models.

    A PSF image is normalised to a sum of 1 and has odd dimensions; its centre pixel is at
    index ``(height // 2, width // 2)``.
    """

    type_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.type_name:
            PSF_TYPES[cls.type_name] = cls

    def compute_kernel_image(self, x: float = 0.0, y: float = 0.0) -> np.ndarray:
        """The PSF at parent position ``(x, y)``, centred on the middle pixel (float64)."""
        raise NotImplementedError

    def compute_image(self, x: float, y: float) -> tuple[np.ndarray, tuple[int, int]]:
        """The PSF centred exactly on ``(x, y)``, on the parent pixel grid.

        Returns
        -------
        image : numpy.ndarray
            The PSF model, sum 1, shifted by the sub-pixel offset of ``(x, y)``.
        xy0 : tuple of int
            Parent coordinates of the stamp's first pixel.
        """
        from scipy.ndimage import shift  # start-up cost: scipy.ndimage (~0.3 s)

        kernel = self.compute_kernel_image(x, y)
        cx, cy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        dx, dy = x - cx, y - cy
        stamp = shift(kernel, (dy, dx), order=3, mode="constant")
        total = stamp.sum()
        if total > 0:
            stamp /= total
        h, w = kernel.shape
        return stamp, (cx - w // 2, cy - h // 2)

    def sigma_at(self, x: float = 0.0, y: float = 0.0) -> float:
        """The Gaussian-equivalent width (pixels) from the second moments of the kernel image
        (negative pixels, the noise of a fitted model's wings, are left out)."""
        return unweighted_sigma(self.compute_kernel_image(x, y))

    def adaptive_sigma_at(self, x: float = 0.0, y: float = 0.0) -> float:
        """The width (pixels) of the core at ``(x, y)``: ``sqrt((Ixx + Iyy) / 2)`` of the
        kernel image's adaptive moments (:func:`adaptive_moments`; :meth:`sigma_at` when
        they fail). Unweighted moments overweight the wings (for a Kolmogorov PSF by about
        20%); this is the width of the matched filter of detection and of the measurement's
        weights, as ``base_SdssShape`` of the PSF in LSST."""
        img = self.compute_kernel_image(x, y)
        moments = adaptive_moments(img)
        if moments is not None:
            return float(np.sqrt(0.5 * (moments[2] + moments[3])))
        return unweighted_sigma(img)

    def to_persisted(self) -> tuple[dict[str, Any], np.ndarray | None]:
        """The model as ``(scalars, array or None)``; ``scalars["PSFTYPE"]`` names the class."""
        raise NotImplementedError

    @classmethod
    def from_persisted(cls, scalars: dict[str, Any], array: np.ndarray | None) -> Psf:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        mine, theirs = self.to_persisted(), other.to_persisted()
        if mine[0] != theirs[0]:
            return False
        if mine[1] is None or theirs[1] is None:
            return mine[1] is theirs[1]
        return bool(np.array_equal(mine[1], theirs[1]))

    __hash__ = None  # type: ignore[assignment]


class GaussianPsf(Psf):
    """A circular Gaussian PSF, the same everywhere.

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels.
    size : int, optional
        Odd width and height of the kernel image (default: the odd integer nearest
        ``2 * ceil(5 * sigma) + 1``).
    """

    type_name = "GaussianPsf"

    def __init__(self, sigma: float, size: int | None = None) -> None:
        if not sigma > 0:
            raise ValueError(f"GaussianPsf sigma must be positive; got {sigma}")
        self.sigma = float(sigma)
        self.size = int(size) if size is not None else 2 * int(np.ceil(5 * sigma)) + 1
        if self.size % 2 == 0 or self.size < 3:
            raise ValueError(f"GaussianPsf size must be odd and at least 3; got {self.size}")

    def compute_kernel_image(self, x: float = 0.0, y: float = 0.0) -> np.ndarray:
        r = np.arange(self.size) - self.size // 2
        g = np.exp(-0.5 * (r / self.sigma) ** 2)
        img = np.outer(g, g)
        return img / img.sum()

    def compute_image(self, x: float, y: float) -> tuple[np.ndarray, tuple[int, int]]:
        cx, cy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        half = self.size // 2
        rx = np.arange(cx - half, cx + half + 1) - x
        ry = np.arange(cy - half, cy + half + 1) - y
        img = np.outer(np.exp(-0.5 * (ry / self.sigma) ** 2), np.exp(-0.5 * (rx / self.sigma) ** 2))
        return img / img.sum(), (cx - half, cy - half)

    def sigma_at(self, x: float = 0.0, y: float = 0.0) -> float:
        return self.sigma

    def adaptive_sigma_at(self, x: float = 0.0, y: float = 0.0) -> float:
        return self.sigma

    def to_persisted(self) -> tuple[dict[str, Any], np.ndarray | None]:
        return {"PSFTYPE": self.type_name, "SIGMA": self.sigma, "SIZE": self.size}, None

    @classmethod
    def from_persisted(cls, scalars: dict[str, Any], array: np.ndarray | None) -> GaussianPsf:
        return cls(float(scalars["SIGMA"]), int(scalars["SIZE"]))

    def __repr__(self) -> str:
        return f"GaussianPsf(sigma={self.sigma}, size={self.size})"


class PixelPsf(Psf):
    """A pixelised PSF whose image may vary as a polynomial over the detector.

    The PSF at ``(x, y)`` is ``sum_k P_k(u, v) * basis[k]``, normalised to sum 1, where
    ``u, v`` are ``x, y`` scaled to ``[-1, 1]`` over ``bbox`` and ``P_k`` runs over the
    monomials ``u**i * v**j`` with ``i + j <= order`` (in the order ``(0,0), (1,0), (0,1),
    (2,0), (1,1), (0,2), ...``). With ``order = 0`` it is one fixed image.

    Parameters
    ----------
    basis : numpy.ndarray
        ``(n_terms, height, width)`` or, for a constant PSF, ``(height, width)``; odd sizes.
    order : int, optional
        Polynomial order of the spatial variation.
    bbox : tuple of float, optional
        ``(xmin, ymin, xmax, ymax)`` over which ``x, y`` are scaled (needed if ``order > 0``).
    """

    type_name = "PixelPsf"

    def __init__(
        self,
        basis: np.ndarray,
        order: int = 0,
        bbox: tuple[float, float, float, float] | None = None,
    ) -> None:
        basis = np.asarray(basis, dtype=np.float64)
        if basis.ndim == 2:
            basis = basis[np.newaxis]
        if basis.ndim != 3 or basis.shape[1] % 2 == 0 or basis.shape[2] % 2 == 0:
            raise ValueError(f"PixelPsf basis must be (n, odd, odd); got shape {basis.shape}")
        n_terms = (order + 1) * (order + 2) // 2
        if basis.shape[0] != n_terms:
            raise ValueError(
                f"PixelPsf of order {order} needs {n_terms} basis images; got {basis.shape[0]}"
            )
        if order > 0 and bbox is None:
            raise ValueError("a spatially varying PixelPsf needs the bbox it was fitted over")
        self.basis = basis
        self.order = int(order)
        self.bbox = tuple(float(b) for b in bbox) if bbox is not None else (0.0, 0.0, 1.0, 1.0)

    @staticmethod
    def monomials(u: np.ndarray | float, v: np.ndarray | float, order: int) -> np.ndarray:
        """The polynomial terms ``u**i v**j`` (``i + j <= order``) in PixelPsf's order."""
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        terms = []
        for total in range(order + 1):
            for j in range(total + 1):
                terms.append(u ** (total - j) * v**j)
        return np.array(terms)

    def scaled_position(self, x: float | np.ndarray, y: float | np.ndarray) -> tuple[Any, Any]:
        """``(x, y)`` scaled to ``[-1, 1]`` over the fitting bbox."""
        xmin, ymin, xmax, ymax = self.bbox
        u = 2.0 * (x - xmin) / max(xmax - xmin, 1e-12) - 1.0
        v = 2.0 * (y - ymin) / max(ymax - ymin, 1e-12) - 1.0
        return u, v

    def compute_kernel_image(self, x: float = 0.0, y: float = 0.0) -> np.ndarray:
        coeffs = self.monomials(*self.scaled_position(x, y), self.order)
        img = np.tensordot(coeffs, self.basis, axes=1)
        total = img.sum()
        if not np.isfinite(total) or total <= 0:
            raise ValueError(f"PixelPsf evaluates to a non-positive image at ({x}, {y})")
        return img / total

    def to_persisted(self) -> tuple[dict[str, Any], np.ndarray | None]:
        xmin, ymin, xmax, ymax = self.bbox
        return (
            {"PSFTYPE": self.type_name, "ORDER": self.order,
             "BBXMIN": xmin, "BBYMIN": ymin, "BBXMAX": xmax, "BBYMAX": ymax},
            self.basis,
        )

    @classmethod
    def from_persisted(cls, scalars: dict[str, Any], array: np.ndarray | None) -> PixelPsf:
        if array is None:
            raise ValueError("a persisted PixelPsf has no basis images")
        bbox = tuple(float(scalars[k]) for k in ("BBXMIN", "BBYMIN", "BBXMAX", "BBYMAX"))
        return cls(np.asarray(array), int(scalars["ORDER"]), bbox)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"PixelPsf(shape={self.basis.shape[1:]}, order={self.order})"


def psf_from_persisted(scalars: dict[str, Any], array: np.ndarray | None) -> Psf:
    """Rebuild a PSF from what :meth:`Psf.to_persisted` gave."""
    name = scalars.get("PSFTYPE")
    if name not in PSF_TYPES:
        known = ", ".join(sorted(PSF_TYPES))
        raise ValueError(f"unknown PSF type {name!r} (known: {known})")
    return PSF_TYPES[str(name)].from_persisted(scalars, array)
