"""Tracts and patches of a sky map (LSST ``skymap`` style).

A tract is a gnomonic (TAN) projection of one region of the sky, centred on the tract centre.
Its pixel bounding box covers the tract's *inner region* (the part of the sky that belongs to
this tract and no other) grown by the tract overlap, and rounded up to a whole number of
patches. The patches' *inner* boxes tile the tract box exactly; a patch's *outer* box is its
inner box grown by the patch border and clipped to the tract box.

Pixels follow :mod:`hpcpipe.geom`: 0-based, pixel ``(x, y)`` is the pixel's centre, so a tract
covers the continuous region ``[-0.5, width - 0.5) x [-0.5, height - 0.5)``. Pixel ``x`` grows
towards the west (decreasing right ascension) and ``y`` towards the north, as in a FITS image
with ``CD = diag(-scale, scale)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from hpcpipe.errors import HpcpipeError
from hpcpipe.geom import Box2I

__all__ = [
    "SkyMapError",
    "SkyMapConfigError",
    "SkyMapIndexError",
    "SkyMapLookupError",
    "InnerPartition",
    "PatchInfo",
    "TractInfo",
]

ARCSEC_RAD = math.pi / (180.0 * 3600.0)
MAX_TRACT_RADIUS = 80.0
"""The largest angle (degrees) from a tract centre at which its TAN projection is used."""


class SkyMapError(HpcpipeError):
    """Base class of the errors raised by :mod:`hpcpipe.skymap`."""


class SkyMapConfigError(SkyMapError, ValueError):
    """A sky map configuration or construction parameter with an invalid value."""


class SkyMapIndexError(SkyMapError, IndexError):
    """A tract id or patch index outside the valid range."""


class SkyMapLookupError(SkyMapError, LookupError):
    """A sky position outside the tract or sky map in which it was looked up."""


class InnerPartition(Protocol):
    """Assigns sky positions to the tract whose inner region holds them."""

    def tract_ids(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Return the tract id of each position (ICRS degrees), -1 where no tract holds it."""
        ...


# --------------------------------------------------------------------------------------------
# Validation and spherical helpers (shared by the sky maps)
# --------------------------------------------------------------------------------------------


def check_int(value: Any, name: str, minimum: int) -> int:
    """Return ``value`` as an int, raising :class:`SkyMapConfigError` unless ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise SkyMapConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise SkyMapConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_float(value: Any, name: str, *, positive: bool) -> float:
    """Return ``value`` as a finite float, ``> 0`` if ``positive`` else ``>= 0``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise SkyMapConfigError(f"{name} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or result < 0 or (positive and result == 0):
        bound = "> 0" if positive else ">= 0"
        raise SkyMapConfigError(f"{name} must be finite and {bound}, got {value!r}")
    return result


def coord_to_radec(coord: SkyCoord) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Return the flattened ICRS right ascension and declination (degrees) and the shape."""
    if not isinstance(coord, SkyCoord):
        raise TypeError(f"expected an astropy SkyCoord, not {type(coord).__name__}")
    icrs = coord if coord.frame.name == "icrs" else coord.icrs
    ra = np.array(icrs.ra.deg, dtype=float).ravel()
    dec = np.array(icrs.dec.deg, dtype=float).ravel()
    return ra, dec, tuple(coord.shape)


def radec_to_vec(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Return unit vectors, shape ``(..., 3)``, of positions given in degrees."""
    ra_r = np.radians(ra)
    dec_r = np.radians(dec)
    cos_dec = np.cos(dec_r)
    return np.stack([cos_dec * np.cos(ra_r), cos_dec * np.sin(ra_r), np.sin(dec_r)], axis=-1)


def vec_to_radec(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return right ascension in ``[0, 360)`` and declination (degrees) of vectors ``(..., 3)``."""
    x, y, z = vec[..., 0], vec[..., 1], vec[..., 2]
    ra = np.degrees(np.arctan2(y, x)) % 360.0
    ra = np.where(ra >= 360.0, 0.0, ra)
    return ra, np.degrees(np.arctan2(z, np.hypot(x, y)))


def tangent_basis(ra0: float, dec0: float) -> np.ndarray:
    """Return the rows (centre, east, north) of the tangent-plane basis at ``(ra0, dec0)``."""
    a, d = math.radians(ra0), math.radians(dec0)
    return np.array(
        [
            [math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)],
            [-math.sin(a), math.cos(a), 0.0],
            [-math.sin(d) * math.cos(a), -math.sin(d) * math.sin(a), math.cos(d)],
        ]
    )


def points_in_polygon(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Return whether each point ``(x, y)`` lies inside the closed polygon ``(px, py)``."""
    x = np.asarray(x, dtype=float)[:, None]
    y = np.asarray(y, dtype=float)[:, None]
    xi, yi = px[None, :], py[None, :]
    xj, yj = np.roll(px, -1)[None, :], np.roll(py, -1)[None, :]
    crosses = (yi > y) != (yj > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = xi + (xj - xi) * (y - yi) / (yj - yi)
    return np.count_nonzero(crosses & (x < x_cross), axis=1) % 2 == 1


def polygon_overlaps_rects(
    px: np.ndarray, py: np.ndarray, rects: np.ndarray
) -> np.ndarray:
    """Return whether the polygon ``(px, py)`` overlaps each rectangle.

    Parameters
    ----------
    px, py : numpy.ndarray
        The polygon's vertices, in order (the last joins the first).
    rects : numpy.ndarray
        Shape ``(M, 4)``: ``xmin, ymin, xmax, ymax`` of each rectangle.

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(M,)``: whether an edge of the polygon crosses the rectangle or the
        rectangle lies inside the polygon.
    """
    xmin, ymin, xmax, ymax = (rects[:, i : i + 1] for i in range(4))
    x0, y0 = px[None, :], py[None, :]
    dx, dy = np.roll(px, -1)[None, :] - x0, np.roll(py, -1)[None, :] - y0
    t_in = np.zeros((len(rects), len(px)))
    t_out = np.ones_like(t_in)
    ok = np.ones(t_in.shape, dtype=bool)
    for p, q in ((-dx, x0 - xmin), (dx, xmax - x0), (-dy, y0 - ymin), (dy, ymax - y0)):
        p, q = np.broadcast_arrays(p, q)
        parallel = p == 0
        ok &= ~(parallel & (q < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = q / p
        t_in = np.where(~parallel & (p < 0), np.maximum(t_in, t), t_in)
        t_out = np.where(~parallel & (p > 0), np.minimum(t_out, t), t_out)
    crossed = (ok & (t_in <= t_out)).any(axis=1)
    centres_x = 0.5 * (rects[:, 0] + rects[:, 2])
    centres_y = 0.5 * (rects[:, 1] + rects[:, 3])
    return crossed | points_in_polygon(centres_x, centres_y, px, py)


def _radec_points(points: SkyCoord | np.ndarray, name: str) -> np.ndarray:
    """Return ``points`` (a SkyCoord, or ``(N, 2)`` degrees) as an ``(N, 2)`` float array."""
    if isinstance(points, SkyCoord):
        ra, dec, _ = coord_to_radec(points)
        return np.column_stack([ra, dec])
    array = np.array(points, dtype=float).reshape(-1, 2)
    if not np.all(np.isfinite(array)) or np.any(np.abs(array[:, 1]) > 90.0):
        raise SkyMapConfigError(f"{name} must hold finite (ra, dec) degrees, got {points!r}")
    return array


# --------------------------------------------------------------------------------------------
# Patches and tracts
# --------------------------------------------------------------------------------------------


class PatchInfo:
    """One patch of a tract: its index and its inner and outer pixel boxes.

    Parameters
    ----------
    index : tuple of int
        The patch's ``(ix, iy)`` in the tract's patch grid.
    inner_bbox, outer_bbox : hpcpipe.geom.Box2I
        The inner box (tiling the tract) and the outer box (inner grown by the patch border,
        clipped to the tract), in the tract's pixel frame.
    tract : TractInfo
        The tract the patch belongs to.
    """

    __slots__ = ("_index", "_inner", "_outer", "_tract")

    def __init__(
        self, index: tuple[int, int], inner_bbox: Box2I, outer_bbox: Box2I, tract: TractInfo
    ) -> None:
        self._index = (int(index[0]), int(index[1]))
        self._inner = inner_bbox
        self._outer = outer_bbox
        self._tract = tract

    @property
    def index(self) -> tuple[int, int]:
        """The ``(ix, iy)`` index in the tract's patch grid."""
        return self._index

    @property
    def sequential_index(self) -> int:
        """The index ``ix + iy * nx`` in the tract's patch sequence."""
        return self._index[0] + self._index[1] * self._tract.num_patches[0]

    @property
    def inner_bbox(self) -> Box2I:
        """The inner box, in the tract's pixel frame."""
        return self._inner

    @property
    def outer_bbox(self) -> Box2I:
        """The outer box (inner grown by the border, clipped to the tract)."""
        return self._outer

    @property
    def tract_id(self) -> int:
        """The id of the tract the patch belongs to."""
        return self._tract.tract_id

    @property
    def tract(self) -> TractInfo:
        """The tract the patch belongs to."""
        return self._tract

    @property
    def wcs(self) -> WCS:
        """The tract's WCS (patches share their tract's pixel frame)."""
        return self._tract.wcs

    def _key(self) -> tuple[Any, ...]:
        return (self.tract_id, self._index, self._inner, self._outer)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PatchInfo):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"PatchInfo(tract_id={self.tract_id}, index={self._index}, "
            f"inner_bbox={self._inner}, outer_bbox={self._outer})"
        )


class TractInfo:
    """One tract: a TAN projection of part of the sky, cut into a grid of patches.

    Parameters
    ----------
    tract_id : int
        The tract's id in its sky map.
    ctr_coord : astropy.coordinates.SkyCoord or tuple of float
        The tract centre (the projection's tangent point), or ``(ra, dec)`` in degrees.
    vertices : astropy.coordinates.SkyCoord or numpy.ndarray
        The corners of the tract's inner region, or an ``(N, 2)`` array of ``(ra, dec)``
        degrees; the tract box covers their projections grown by ``tract_overlap``.
    pixel_scale : float
        Pixel size in arcseconds.
    patch_inner_dimensions : tuple of int
        Patch inner ``(width, height)`` in pixels.
    patch_border : int
        Pixels by which a patch's outer box exceeds its inner box.
    tract_overlap : float
        Degrees by which the tract box extends past the inner region.
    boundary : astropy.coordinates.SkyCoord or numpy.ndarray, optional
        More points on the inner region's edge that the box must cover (for edges that are not
        great circles, such as lines of constant declination).
    partition : InnerPartition, optional
        The sky map's assignment of positions to tracts, which defines :meth:`inner_contains`;
        without it the inner region is the polygon of ``vertices`` in the tangent plane.

    Raises
    ------
    SkyMapConfigError
        If a parameter is invalid or the inner region reaches more than
        :data:`MAX_TRACT_RADIUS` degrees from the centre.
    """

    def __init__(
        self,
        tract_id: int,
        ctr_coord: SkyCoord | tuple[float, float],
        vertices: SkyCoord | np.ndarray,
        *,
        pixel_scale: float,
        patch_inner_dimensions: tuple[int, int],
        patch_border: int,
        tract_overlap: float,
        boundary: SkyCoord | np.ndarray | None = None,
        partition: InnerPartition | None = None,
    ) -> None:
        self._tract_id = check_int(tract_id, "tract_id", 0)
        ctr = _radec_points(ctr_coord, "ctr_coord")
        if len(ctr) != 1:
            raise SkyMapConfigError(f"ctr_coord must be a single position, got {len(ctr)}")
        self._ctr = (float(ctr[0, 0]) % 360.0, float(ctr[0, 1]))
        self._vertices = _radec_points(vertices, "vertices")
        self._pixel_scale = check_float(pixel_scale, "pixel_scale", positive=True)
        dims = tuple(patch_inner_dimensions)
        if len(dims) != 2:
            raise SkyMapConfigError(f"patch_inner_dimensions must be (width, height), got {dims}")
        self._patch_dims = (
            check_int(dims[0], "patch_inner_dimensions[0]", 1),
            check_int(dims[1], "patch_inner_dimensions[1]", 1),
        )
        self._patch_border = check_int(patch_border, "patch_border", 0)
        self._tract_overlap = check_float(tract_overlap, "tract_overlap", positive=False)
        self._partition = partition
        self._basis = tangent_basis(*self._ctr)
        self._wcs: WCS | None = None

        points = self._vertices
        if boundary is not None:
            points = np.concatenate([points, _radec_points(boundary, "boundary")])
        xi, eta = self._project(points[:, 0], points[:, 1])
        if not np.all(np.isfinite(xi)):
            raise SkyMapConfigError(
                f"tract {self._tract_id}: its inner region reaches more than "
                f"{MAX_TRACT_RADIUS} deg from its centre {self._ctr}"
            )
        scale = self._pixel_scale * ARCSEC_RAD
        grow = self._tract_overlap * 3600.0 / self._pixel_scale
        px, py = -xi / scale, eta / scale
        lo = (px.min() - grow, py.min() - grow)
        hi = (px.max() + grow, py.max() + grow)
        counts = tuple(
            max(1, math.ceil((hi[i] - lo[i]) / self._patch_dims[i] - 1e-9)) for i in range(2)
        )
        self._num_patches = (int(counts[0]), int(counts[1]))
        width, height = (self._num_patches[i] * self._patch_dims[i] for i in range(2))
        self._bbox = Box2I(0, 0, width, height)
        self._crpix = (
            0.5 * (width - 1) - 0.5 * (lo[0] + hi[0]),
            0.5 * (height - 1) - 0.5 * (lo[1] + hi[1]),
        )

    # -- pickling: drop the cached WCS ------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_wcs"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- properties -------------------------------------------------------------------------

    @property
    def tract_id(self) -> int:
        """The tract's id in its sky map."""
        return self._tract_id

    @property
    def ctr_coord(self) -> SkyCoord:
        """The tract centre (ICRS), the tangent point of its projection."""
        return SkyCoord(self._ctr[0], self._ctr[1], unit="deg", frame="icrs")

    @property
    def vertices(self) -> SkyCoord:
        """The corners of the tract's inner region on the sky (ICRS)."""
        return SkyCoord(self._vertices[:, 0], self._vertices[:, 1], unit="deg", frame="icrs")

    @property
    def bbox(self) -> Box2I:
        """The tract's pixel box: the inner region plus the overlap, in whole patches."""
        return self._bbox

    @property
    def pixel_scale(self) -> float:
        """Pixel size in arcseconds."""
        return self._pixel_scale

    @property
    def tract_overlap(self) -> float:
        """Degrees by which the tract box extends past the inner region."""
        return self._tract_overlap

    @property
    def patch_inner_dimensions(self) -> tuple[int, int]:
        """Patch inner ``(width, height)`` in pixels."""
        return self._patch_dims

    @property
    def patch_border(self) -> int:
        """Pixels by which a patch's outer box exceeds its inner box."""
        return self._patch_border

    @property
    def num_patches(self) -> tuple[int, int]:
        """The patch grid's size ``(nx, ny)``."""
        return self._num_patches

    @property
    def crpix(self) -> tuple[float, float]:
        """The 0-based pixel position of the tract centre."""
        return self._crpix

    @property
    def wcs(self) -> WCS:
        """The tract's WCS: TAN, centred on the tract centre (built once, do not modify)."""
        if self._wcs is None:
            wcs = WCS(naxis=2)
            wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
            wcs.wcs.crval = list(self._ctr)
            wcs.wcs.crpix = [self._crpix[0] + 1.0, self._crpix[1] + 1.0]
            scale = self._pixel_scale / 3600.0
            wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
            wcs.wcs.radesys = "ICRS"
            wcs.wcs.lonpole = 180.0
            wcs.wcs.set()
            wcs.pixel_shape = (self._bbox.width, self._bbox.height)
            self._wcs = wcs
        return self._wcs

    @property
    def bounding_radius(self) -> float:
        """The largest angle (degrees) from the centre to a corner of the tract box."""
        scale = self._pixel_scale * ARCSEC_RAD
        xs = np.array([-0.5, self._bbox.width - 0.5]) - self._crpix[0]
        ys = np.array([-0.5, self._bbox.height - 0.5]) - self._crpix[1]
        rho = math.hypot(np.abs(xs).max(), np.abs(ys).max()) * scale
        return math.degrees(math.atan(rho))

    # -- projection ------------------------------------------------------------------------

    def _project(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tangent-plane ``(xi, eta)`` in radians; NaN beyond :data:`MAX_TRACT_RADIUS`."""
        vec = radec_to_vec(ra, dec)
        along = vec @ self._basis[0]
        valid = along > math.cos(math.radians(MAX_TRACT_RADIUS))
        along = np.where(valid, along, np.nan)
        return (vec @ self._basis[1]) / along, (vec @ self._basis[2]) / along

    def _radec_to_pixel(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xi, eta = self._project(ra, dec)
        scale = self._pixel_scale * ARCSEC_RAD
        return self._crpix[0] - xi / scale, self._crpix[1] + eta / scale

    def sky_to_pixel(self, coord: SkyCoord) -> tuple[Any, Any]:
        """Return the pixel position ``(x, y)`` of ``coord`` in the tract's frame.

        Parameters
        ----------
        coord : astropy.coordinates.SkyCoord
            One position or an array of them.

        Returns
        -------
        x, y : float or numpy.ndarray
            0-based pixel positions, shaped like ``coord``; NaN more than
            :data:`MAX_TRACT_RADIUS` degrees from the centre.
        """
        ra, dec, shape = coord_to_radec(coord)
        x, y = self._radec_to_pixel(ra, dec)
        if shape == ():
            return float(x[0]), float(y[0])
        return x.reshape(shape), y.reshape(shape)

    def pixel_to_sky(self, x: Any, y: Any) -> SkyCoord:
        """Return the sky position (ICRS) of pixel position ``(x, y)`` (vectorised)."""
        x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        scale = self._pixel_scale * ARCSEC_RAD
        xi = -(x - self._crpix[0]) * scale
        eta = (y - self._crpix[1]) * scale
        vec = self._basis[0] + xi[..., None] * self._basis[1] + eta[..., None] * self._basis[2]
        ra, dec = vec_to_radec(vec)
        return SkyCoord(ra, dec, unit="deg", frame="icrs")

    # -- containment -----------------------------------------------------------------------

    def _contains_radec(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        x, y = self._radec_to_pixel(ra, dec)
        return np.asarray(self._bbox.contains_point(x, y), dtype=bool).reshape(np.shape(ra))

    def contains(self, coord: SkyCoord) -> bool | np.ndarray:
        """Return whether ``coord`` lies in the tract box.

        Parameters
        ----------
        coord : astropy.coordinates.SkyCoord
            One position or an array of them.

        Returns
        -------
        bool or numpy.ndarray
            A bool for a scalar ``coord``, else a boolean array shaped like it.
        """
        ra, dec, shape = coord_to_radec(coord)
        inside = self._contains_radec(ra, dec)
        return bool(inside[0]) if shape == () else inside.reshape(shape)

    def _inner_contains_radec(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        if self._partition is not None:
            return self._partition.tract_ids(ra, dec) == self._tract_id
        x, y = self._radec_to_pixel(ra, dec)
        vx, vy = self._radec_to_pixel(self._vertices[:, 0], self._vertices[:, 1])
        return points_in_polygon(x, y, vx, vy) & np.isfinite(x)

    def inner_contains(self, coord: SkyCoord) -> bool | np.ndarray:
        """Return whether ``coord`` lies in the tract's inner region (vectorised).

        The inner regions of a sky map's tracts do not overlap: a position is in the inner
        region of the tract that :meth:`BaseSkyMap.find_tract` returns for it, and no other.
        """
        ra, dec, shape = coord_to_radec(coord)
        inside = self._inner_contains_radec(ra, dec)
        return bool(inside[0]) if shape == () else inside.reshape(shape)

    # -- patches ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._num_patches[0] * self._num_patches[1]

    def __iter__(self) -> Iterator[PatchInfo]:
        nx, ny = self._num_patches
        for iy in range(ny):
            for ix in range(nx):
                yield self._patch(ix, iy)

    def _patch(self, ix: int, iy: int) -> PatchInfo:
        width, height = self._patch_dims
        inner = Box2I(ix * width, iy * height, width, height)
        outer = inner.grown(self._patch_border).clipped_to(self._bbox)
        return PatchInfo((ix, iy), inner, outer, self)

    def get_patch_info(self, index: int | tuple[int, int]) -> PatchInfo:
        """Return the patch with grid index ``(ix, iy)`` or sequential index ``ix + iy * nx``.

        Raises
        ------
        SkyMapIndexError
            If the index is outside the patch grid (also an :class:`IndexError`).
        """
        nx, ny = self._num_patches
        valid = (
            f"valid ix 0..{nx - 1}, iy 0..{ny - 1}, sequential 0..{nx * ny - 1}"
        )
        if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
            if not 0 <= index < nx * ny:
                raise SkyMapIndexError(
                    f"patch index {index} is out of range for tract {self._tract_id} ({valid})"
                )
            return self._patch(int(index) % nx, int(index) // nx)
        try:
            ix, iy = index  # type: ignore[misc]
            ok = all(
                isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))
                for i in (ix, iy)
            )
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise TypeError(f"patch index must be an int or (ix, iy) ints, got {index!r}")
        if not (0 <= ix < nx and 0 <= iy < ny):
            raise SkyMapIndexError(
                f"patch index ({ix}, {iy}) is out of range for tract {self._tract_id} ({valid})"
            )
        return self._patch(int(ix), int(iy))

    def _pixel_indices(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whole-pixel positions (``-1`` on both axes where outside the tract)."""
        x, y = self._radec_to_pixel(ra, dec)
        inside = np.asarray(self._bbox.contains_point(x, y), dtype=bool).reshape(np.shape(ra))
        with np.errstate(invalid="ignore"):
            px = np.where(inside, np.floor(np.nan_to_num(x) + 0.5), -1).astype(np.int64)
            py = np.where(inside, np.floor(np.nan_to_num(y) + 0.5), -1).astype(np.int64)
        return px, py

    def find_patch(self, coord: SkyCoord) -> PatchInfo | list[PatchInfo]:
        """Return the patch whose inner box holds ``coord``.

        Parameters
        ----------
        coord : astropy.coordinates.SkyCoord
            One position or an array of them.

        Returns
        -------
        PatchInfo or list of PatchInfo
            The patch, or for an array ``coord`` a flat list with one patch per position.

        Raises
        ------
        SkyMapLookupError
            If a position lies outside the tract box (also a :class:`LookupError`).
        """
        ra, dec, shape = coord_to_radec(coord)
        px, py = self._pixel_indices(ra, dec)
        outside = np.flatnonzero(px < 0)
        if outside.size:
            i = outside[0]
            raise SkyMapLookupError(
                f"position (ra, dec) = ({ra[i]:.8f}, {dec[i]:.8f}) deg is outside tract "
                f"{self._tract_id} (pixel box {self._bbox.width}x{self._bbox.height})"
            )
        ix, iy = px // self._patch_dims[0], py // self._patch_dims[1]
        patches = [self._patch(int(a), int(b)) for a, b in zip(ix, iy)]
        return patches[0] if shape == () else patches

    def _find_patch_list_radec(self, ra: np.ndarray, dec: np.ndarray) -> list[PatchInfo]:
        px, py = self._pixel_indices(ra, dec)
        keep = px >= 0
        px, py = px[keep], py[keep]
        found: set[tuple[int, int]] = set()
        b = self._patch_border
        w, h = self._patch_dims
        nx, ny = self._num_patches
        reach_x, reach_y = -(-b // w), -(-b // h)
        base_x, base_y = px // w, py // h
        for dx in range(-reach_x, reach_x + 1):
            ix = base_x + dx
            in_x = (ix >= 0) & (ix < nx) & (px >= ix * w - b) & (px <= (ix + 1) * w - 1 + b)
            for dy in range(-reach_y, reach_y + 1):
                iy = base_y + dy
                in_y = (iy >= 0) & (iy < ny) & (py >= iy * h - b) & (py <= (iy + 1) * h - 1 + b)
                sel = in_x & in_y
                found.update(zip(ix[sel].tolist(), iy[sel].tolist()))
        return [self._patch(ix, iy) for iy, ix in sorted((iy, ix) for ix, iy in found)]

    def find_patch_list(self, coords: SkyCoord) -> list[PatchInfo]:
        """Return the patches whose outer box holds any of ``coords``.

        Parameters
        ----------
        coords : astropy.coordinates.SkyCoord
            Positions; those outside the tract are ignored.

        Returns
        -------
        list of PatchInfo
            In sequential-index order; empty if no position is inside the tract.
        """
        ra, dec, _ = coord_to_radec(coords)
        return self._find_patch_list_radec(ra, dec)

    def _patches_overlapping_radec_polygon(
        self, ra: np.ndarray, dec: np.ndarray
    ) -> list[PatchInfo]:
        """The patches whose outer box overlaps the sky polygon with vertices ``(ra, dec)``.

        Raises
        ------
        SkyMapError
            If a vertex lies more than :data:`MAX_TRACT_RADIUS` degrees from the centre.
        """
        x, y = self._radec_to_pixel(ra, dec)
        if not np.all(np.isfinite(x)):
            raise SkyMapError(
                f"footprint reaches more than {MAX_TRACT_RADIUS} deg from the centre of tract "
                f"{self._tract_id}; split it into smaller pieces"
            )
        w, h = self._patch_dims
        b = self._patch_border
        nx, ny = self._num_patches
        ix = np.arange(nx)
        iy = np.arange(ny)
        # continuous extents of the outer boxes, clipped to the tract
        x_lo = np.maximum(ix * w - b, 0) - 0.5
        x_hi = np.minimum((ix + 1) * w - 1 + b, self._bbox.x1) + 0.5
        y_lo = np.maximum(iy * h - b, 0) - 0.5
        y_hi = np.minimum((iy + 1) * h - 1 + b, self._bbox.y1) + 0.5
        cand_x = ix[(x_lo <= x.max()) & (x_hi >= x.min())]
        cand_y = iy[(y_lo <= y.max()) & (y_hi >= y.min())]
        if cand_x.size == 0 or cand_y.size == 0:
            return []
        gx, gy = np.meshgrid(cand_x, cand_y)
        gx, gy = gx.ravel(), gy.ravel()
        rects = np.column_stack([x_lo[gx], y_lo[gy], x_hi[gx], y_hi[gy]])
        hits = polygon_overlaps_rects(x, y, rects)
        return [self._patch(int(a), int(c)) for a, c in zip(gx[hits], gy[hits])]

    # -- comparison ------------------------------------------------------------------------

    def _key(self) -> tuple[Any, ...]:
        return (
            self._tract_id,
            self._ctr,
            self._crpix,
            self._bbox,
            self._pixel_scale,
            self._patch_dims,
            self._patch_border,
            self._tract_overlap,
            self._vertices.tobytes(),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TractInfo):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self._tract_id, self._ctr, self._bbox))

    def __repr__(self) -> str:
        return (
            f"TractInfo(tract_id={self._tract_id}, ctr=({self._ctr[0]:.6f}, "
            f"{self._ctr[1]:.6f}) deg, bbox={self._bbox}, num_patches={self._num_patches})"
        )
