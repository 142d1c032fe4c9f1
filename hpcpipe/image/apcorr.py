"""Aperture corrections: smooth fields over a CCD (afw.math ``ChebyshevBoundedField``) and
the exposure's map of them (afw.image ``ApCorrMap``).

An aperture correction is the factor that brings a flux (PSF, Kron, a small aperture) to the
scale of a large reference aperture; it varies smoothly over the CCD with the PSF. LSST fits
it as a 2-D Chebyshev series in the CCD's bounding box and keeps, per flux, two fields: the
correction (``<flux>_instFlux``) and its uncertainty (``<flux>_instFluxErr``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.polynomial import chebyshev

__all__ = ["ApCorrMap", "ChebyshevBoundedField"]


class ChebyshevBoundedField:
    """A 2-D Chebyshev series over a bounding box (LSST's ``ChebyshevBoundedField``).

    ``f(x, y) = sum c[j, i] T_i(u) T_j(v)`` with ``u, v`` the position scaled to ``[-1, 1]``
    over ``bbox``; a triangular field keeps only the terms ``i + j <= order``.

    Parameters
    ----------
    bbox : tuple of float
        ``(xmin, ymin, xmax, ymax)`` in parent pixel coordinates.
    coefficients : numpy.ndarray
        ``(order_y + 1, order_x + 1)`` coefficients (zeros where a triangular fit has none).
    """

    def __init__(self, bbox: tuple[float, float, float, float], coefficients: Any) -> None:
        self.bbox = tuple(float(v) for v in bbox)
        if len(self.bbox) != 4 or not (self.bbox[2] > self.bbox[0] and self.bbox[3] > self.bbox[1]):
            raise ValueError(f"ChebyshevBoundedField: bbox must be (xmin, ymin, xmax, ymax) with "
                             f"max > min; got {bbox}")
        self.coefficients = np.atleast_2d(np.asarray(coefficients, dtype=np.float64))
        if self.coefficients.ndim != 2:
            raise ValueError("ChebyshevBoundedField: coefficients must be 2-D")

    def _scaled(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        x0, y0, x1, y1 = self.bbox
        u = (2.0 * np.asarray(x, dtype=np.float64) - (x0 + x1)) / (x1 - x0)
        v = (2.0 * np.asarray(y, dtype=np.float64) - (y0 + y1)) / (y1 - y0)
        return u, v

    def evaluate(self, x: Any, y: Any) -> np.ndarray:
        """The field at parent positions ``(x, y)`` (arrays broadcast)."""
        u, v = self._scaled(x, y)
        # chebval2d(a, b, c) = sum c[i, j] T_i(a) T_j(b): rows of c go with v (y)
        return chebyshev.chebval2d(v, u, self.coefficients)

    __call__ = evaluate

    @staticmethod
    def _terms(order: int, triangular: bool) -> list[tuple[int, int]]:
        return [(j, i) for j in range(order + 1) for i in range(order + 1)
                if not triangular or i + j <= order]

    @classmethod
    def fit(cls, bbox: tuple[float, float, float, float], x: np.ndarray, y: np.ndarray,
            values: np.ndarray, weights: np.ndarray | None = None, order: int = 1,
            triangular: bool = True) -> ChebyshevBoundedField:
        """The weighted least-squares field of ``values`` at ``(x, y)``.

        Parameters
        ----------
        order : int
            Largest Chebyshev degree in x and in y (with ``triangular``: of ``x^i y^j``).
        weights : numpy.ndarray, optional
            Inverse variances of ``values`` (default: equal).
        """
        if order < 0:
            raise ValueError(f"ChebyshevBoundedField.fit: order must be >= 0; got {order}")
        x, y, values = (np.asarray(a, dtype=np.float64).ravel() for a in (x, y, values))
        w = np.ones_like(values) if weights is None else np.asarray(weights, float).ravel()
        terms = cls._terms(order, triangular)
        if values.size < len(terms):
            raise ValueError(f"ChebyshevBoundedField.fit: {values.size} points for "
                             f"{len(terms)} terms")
        field = cls(bbox, np.zeros((order + 1, order + 1)))
        u, v = field._scaled(x, y)
        tu = chebyshev.chebvander(u, order)
        tv = chebyshev.chebvander(v, order)
        design = np.stack([tv[:, j] * tu[:, i] for j, i in terms], axis=1)
        sw = np.sqrt(np.clip(w, 0.0, None))
        coeffs, *_ = np.linalg.lstsq(design * sw[:, None], values * sw, rcond=None)
        for (j, i), c in zip(terms, coeffs, strict=True):
            field.coefficients[j, i] = c
        return field

    def mean(self, shape: int = 16) -> float:
        """The field's mean over its box (on a ``shape x shape`` grid)."""
        x0, y0, x1, y1 = self.bbox
        gx, gy = np.meshgrid(np.linspace(x0, x1, shape), np.linspace(y0, y1, shape))
        return float(np.mean(self.evaluate(gx, gy)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        return {"bbox": list(self.bbox), "coefficients": self.coefficients.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChebyshevBoundedField:
        """The field of :meth:`to_dict`."""
        return cls(tuple(data["bbox"]), np.asarray(data["coefficients"], dtype=np.float64))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChebyshevBoundedField):
            return NotImplemented
        return self.bbox == other.bbox and np.array_equal(self.coefficients, other.coefficients)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"ChebyshevBoundedField(bbox={self.bbox}, "
                f"order={self.coefficients.shape[0] - 1})")


class ApCorrMap(Mapping[str, ChebyshevBoundedField]):
    """The aperture corrections of an exposure, by field name (LSST's ``ApCorrMap``).

    Keys are ``<flux>_instFlux`` (the correction, multiplying the flux) and
    ``<flux>_instFluxErr`` (its uncertainty), ``<flux>`` a flux's field prefix such as
    ``base_PsfFlux``.
    """

    def __init__(self, fields: Mapping[str, ChebyshevBoundedField] | None = None) -> None:
        self._fields: dict[str, ChebyshevBoundedField] = dict(fields or {})

    def __getitem__(self, name: str) -> ChebyshevBoundedField:
        return self._fields[name]

    def __setitem__(self, name: str, field: ChebyshevBoundedField) -> None:
        if not isinstance(field, ChebyshevBoundedField):
            raise TypeError(f"ApCorrMap[{name!r}]: expected a ChebyshevBoundedField; got "
                            f"{type(field).__name__}")
        self._fields[name] = field

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def flux_names(self) -> list[str]:
        """The flux prefixes that have a correction (``base_PsfFlux``, ...)."""
        return [k[:-len("_instFlux")] for k in self._fields if k.endswith("_instFlux")]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        return {name: field.to_dict() for name, field in self._fields.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApCorrMap:
        """The map of :meth:`to_dict`."""
        return cls({name: ChebyshevBoundedField.from_dict(d) for name, d in data.items()})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApCorrMap):
            return NotImplemented
        return self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ApCorrMap({sorted(self._fields)})"
