"""The sky map base class and its configuration.

A sky map is a fixed sequence of overlapping tracts covering (part of) the sky. Each position
belongs to the *inner region* of at most one tract (:meth:`BaseSkyMap.find_tract`), and may lie
in the pixel boxes of several (:meth:`BaseSkyMap.find_all_tracts`). Tracts are built lazily,
and a pickled sky map holds only its definition (:meth:`BaseSkyMap.to_dict`), so broadcasting
one to MPI ranks is cheap.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from astropy.coordinates import SkyCoord

from hpcpipe.geom import Box2D, Box2I
from hpcpipe.skymap.tract import (
    InnerPartition,
    PatchInfo,
    SkyMapConfigError,
    SkyMapError,
    SkyMapIndexError,
    SkyMapLookupError,
    TractInfo,
    check_float,
    check_int,
    coord_to_radec,
    radec_to_vec,
)

__all__ = ["SkyMapConfig", "BaseSkyMap"]

_CHUNK = 4_000_000  # elements of a (positions x tracts) matrix handled at once


@dataclass(frozen=True)
class SkyMapConfig:
    """Pixel and patch parameters shared by every tract of a sky map.

    Parameters
    ----------
    pixel_scale : float
        Pixel size in arcseconds.
    patch_inner_dimensions : tuple of int
        Patch inner ``(width, height)`` in pixels.
    patch_border : int
        Pixels by which a patch's outer box exceeds its inner box.
    tract_overlap : float
        Degrees by which each tract box extends past the tract's inner region.
    projection : str
        The tracts' projection; only ``"TAN"`` is supported.

    Raises
    ------
    SkyMapConfigError
        If a value is invalid; the message names the field and the value.
    """

    pixel_scale: float = 0.2
    patch_inner_dimensions: tuple[int, int] = (4000, 4000)
    patch_border: int = 100
    tract_overlap: float = 1.0 / 60.0
    projection: str = "TAN"

    def __post_init__(self) -> None:
        scale = check_float(self.pixel_scale, "SkyMapConfig.pixel_scale", positive=True)
        object.__setattr__(self, "pixel_scale", scale)
        dims = self.patch_inner_dimensions
        if isinstance(dims, (str, bytes)) or not hasattr(dims, "__len__") or len(dims) != 2:
            raise SkyMapConfigError(
                f"SkyMapConfig.patch_inner_dimensions must be (width, height), got {dims!r}"
            )
        checked = tuple(
            check_int(v, f"SkyMapConfig.patch_inner_dimensions[{i}]", 1) for i, v in enumerate(dims)
        )
        object.__setattr__(self, "patch_inner_dimensions", checked)
        border = check_int(self.patch_border, "SkyMapConfig.patch_border", 0)
        object.__setattr__(self, "patch_border", border)
        overlap = check_float(self.tract_overlap, "SkyMapConfig.tract_overlap", positive=False)
        object.__setattr__(self, "tract_overlap", overlap)
        if self.projection != "TAN":
            raise SkyMapConfigError(
                f"SkyMapConfig.projection {self.projection!r} is not supported (only 'TAN')"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain (YAML- and JSON-friendly) types."""
        return {
            "pixel_scale": self.pixel_scale,
            "patch_inner_dimensions": list(self.patch_inner_dimensions),
            "patch_border": self.patch_border,
            "tract_overlap": self.tract_overlap,
            "projection": self.projection,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkyMapConfig:
        """Rebuild a config from :meth:`to_dict` output (missing fields take defaults)."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise SkyMapConfigError(f"unknown SkyMapConfig fields: {sorted(unknown)}")
        values = dict(data)
        if "patch_inner_dimensions" in values:
            dims = values["patch_inner_dimensions"]
            values["patch_inner_dimensions"] = tuple(dims) if isinstance(dims, list) else dims
        return cls(**values)


def _skymap_from_dict(data: Mapping[str, Any]) -> BaseSkyMap:
    """Unpickle a sky map (module level so that pickle can find it)."""
    return BaseSkyMap.from_dict(data)


class BaseSkyMap:
    """A sequence of tracts indexed by tract id (``0 .. len - 1``).

    Subclasses set :attr:`type_name`, call ``super().__init__(config)``, set
    ``self._partition`` and implement ``__len__``, :meth:`_make_tract`, :meth:`_tract_centres`
    and :meth:`_params`.

    Parameters
    ----------
    config : SkyMapConfig, optional
        Pixel and patch parameters (the defaults if omitted).
    """

    type_name: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[BaseSkyMap]]] = {}
    _partition: InnerPartition

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.type_name:
            BaseSkyMap._registry[cls.type_name] = cls

    def __init__(self, config: SkyMapConfig | None = None) -> None:
        if config is None:
            config = SkyMapConfig()
        if not isinstance(config, SkyMapConfig):
            raise TypeError(f"config must be a SkyMapConfig, not {type(config).__name__}")
        self._config = config
        self._tracts: dict[int, TractInfo] = {}
        self._centre_vecs: np.ndarray | None = None
        self._radii: np.ndarray | None = None

    # -- subclass hooks ---------------------------------------------------------------------

    def __len__(self) -> int:
        raise NotImplementedError

    def _make_tract(self, tract_id: int) -> TractInfo:
        """Build tract ``tract_id`` (a valid id)."""
        raise NotImplementedError

    def _tract_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Right ascension and declination (degrees) of every tract centre, by id."""
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        """The constructor arguments besides ``config``, as plain types."""
        raise NotImplementedError

    def _tract_bounding_radii(self) -> np.ndarray:
        """An upper bound (degrees) on each tract's :attr:`TractInfo.bounding_radius`."""
        return np.array([tract.bounding_radius for tract in self])

    def _new_tract(
        self,
        tract_id: int,
        ctr: tuple[float, float],
        vertices: np.ndarray,
        boundary: np.ndarray | None = None,
    ) -> TractInfo:
        """Build a :class:`TractInfo` with this map's config and partition."""
        cfg = self._config
        return TractInfo(
            tract_id,
            ctr,
            vertices,
            pixel_scale=cfg.pixel_scale,
            patch_inner_dimensions=cfg.patch_inner_dimensions,
            patch_border=cfg.patch_border,
            tract_overlap=cfg.tract_overlap,
            boundary=boundary,
            partition=self._partition,
        )

    # -- sequence --------------------------------------------------------------------------

    @property
    def config(self) -> SkyMapConfig:
        """The sky map's pixel and patch parameters."""
        return self._config

    def __getitem__(self, tract_id: int) -> TractInfo:
        if isinstance(tract_id, (bool, np.bool_)) or not isinstance(tract_id, (int, np.integer)):
            raise TypeError(f"tract id must be an integer, got {tract_id!r}")
        if not 0 <= tract_id < len(self):
            raise SkyMapIndexError(
                f"tract id {tract_id} is out of range for {type(self).__name__} "
                f"(valid ids 0..{len(self) - 1})"
            )
        tract_id = int(tract_id)
        tract = self._tracts.get(tract_id)
        if tract is None:
            tract = self._tracts[tract_id] = self._make_tract(tract_id)
        return tract

    def __iter__(self) -> Iterator[TractInfo]:
        for tract_id in range(len(self)):
            yield self[tract_id]

    # -- look-ups --------------------------------------------------------------------------

    def find_tract_ids(self, coord: SkyCoord) -> int | np.ndarray:
        """Return the id of the tract whose inner region holds each position.

        Parameters
        ----------
        coord : astropy.coordinates.SkyCoord
            One position or an array of them.

        Returns
        -------
        int or numpy.ndarray
            Tract ids shaped like ``coord``; -1 where no tract holds the position.
        """
        ra, dec, shape = coord_to_radec(coord)
        ids = np.asarray(self._partition.tract_ids(ra, dec), dtype=np.int64)
        return int(ids[0]) if shape == () else ids.reshape(shape)

    def find_tract(self, coord: SkyCoord) -> TractInfo | list[TractInfo]:
        """Return the tract whose inner region holds ``coord``.

        Parameters
        ----------
        coord : astropy.coordinates.SkyCoord
            One position or an array of them.

        Returns
        -------
        TractInfo or list of TractInfo
            The tract, or for an array ``coord`` a flat list with one tract per position.

        Raises
        ------
        SkyMapLookupError
            If a position lies in no tract's inner region (possible only for maps that do not
            cover the whole sky, such as :class:`~hpcpipe.skymap.discrete.DiscreteSkyMap`).
        """
        ra, dec, shape = coord_to_radec(coord)
        ids = np.asarray(self._partition.tract_ids(ra, dec), dtype=np.int64)
        missing = np.flatnonzero(ids < 0)
        if missing.size:
            i = missing[0]
            raise SkyMapLookupError(
                f"position (ra, dec) = ({ra[i]:.8f}, {dec[i]:.8f}) deg is in no tract of "
                f"this {type(self).__name__}"
            )
        tracts = [self[int(i)] for i in ids]
        return tracts[0] if shape == () else tracts

    def _candidates(self, vec: np.ndarray, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (position index, tract id) with the position within a tract's bound."""
        if self._centre_vecs is None:
            self._centre_vecs = radec_to_vec(*self._tract_centres())
        if self._radii is None:
            self._radii = self._tract_bounding_radii()
        cos_lim = np.cos(np.radians(np.minimum(self._radii + margin + 1e-6, 180.0)))
        pos_parts, tract_parts = [], []
        step = max(1, _CHUNK // max(1, len(self)))
        for start in range(0, len(vec), step):
            dots = vec[start : start + step] @ self._centre_vecs.T
            pos, tract = np.nonzero(dots >= cos_lim[None, :])
            pos_parts.append(pos + start)
            tract_parts.append(tract)
        if not pos_parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(pos_parts), np.concatenate(tract_parts)

    def _tract_members(self, ra: np.ndarray, dec: np.ndarray) -> dict[int, np.ndarray]:
        """For each tract whose box holds some positions, the indices of those positions."""
        pos, tract_ids = self._candidates(radec_to_vec(ra, dec))
        order = np.argsort(tract_ids, kind="stable")
        pos, tract_ids = pos[order], tract_ids[order]
        starts = np.flatnonzero(np.diff(tract_ids, prepend=-1))
        members: dict[int, np.ndarray] = {}
        for idx, tract_id in zip(np.split(pos, starts[1:]), tract_ids[starts]):
            inside = self[int(tract_id)]._contains_radec(ra[idx], dec[idx])
            if inside.any():
                members[int(tract_id)] = idx[inside]
        return members

    def find_all_tracts(self, coord: SkyCoord) -> list[TractInfo] | list[list[TractInfo]]:
        """Return every tract whose box holds ``coord``.

        Parameters
        ----------
        coord : astropy.coordinates.SkyCoord
            One position or an array of them.

        Returns
        -------
        list of TractInfo, or list of list of TractInfo
            The tracts in id order; for an array ``coord``, one such list per position.
        """
        ra, dec, shape = coord_to_radec(coord)
        result: list[list[TractInfo]] = [[] for _ in range(len(ra))]
        for tract_id, idx in sorted(self._tract_members(ra, dec).items()):
            for i in idx:
                result[i].append(self[tract_id])
        return result[0] if shape == () else result

    def find_tract_patch_list(self, coords: SkyCoord) -> list[tuple[TractInfo, list[PatchInfo]]]:
        """Return the tracts and patches holding any of a set of positions.

        Parameters
        ----------
        coords : astropy.coordinates.SkyCoord
            The positions.

        Returns
        -------
        list of tuple
            ``(tract, patches)`` for each tract whose box holds a position, in id order;
            ``patches`` are the tract's patches whose outer box holds a position, in
            sequential-index order.
        """
        ra, dec, _ = coord_to_radec(coords)
        result = []
        for tract_id, idx in sorted(self._tract_members(ra, dec).items()):
            tract = self[tract_id]
            result.append((tract, tract._find_patch_list_radec(ra[idx], dec[idx])))
        return result

    def find_overlapping(
        self, wcs: Any, bbox: Box2I, *, edge_points: int = 16
    ) -> list[tuple[TractInfo, list[PatchInfo]]]:
        """Return the tracts and patches whose outer boxes overlap an exposure's footprint.

        Parameters
        ----------
        wcs : astropy.wcs.WCS
            The exposure's WCS (any object with an astropy-style ``pixel_to_world``).
        bbox : hpcpipe.geom.Box2I
            The exposure's pixel box in the frame of ``wcs`` (0-based pixels).
        edge_points : int
            Points sampled along each edge of the box, on top of the corners; the footprint is
            the polygon through them as projected into each tract (exact for TAN exposures,
            whose edges are great circles).

        Returns
        -------
        list of tuple
            ``(tract, patches)`` in id order, ``patches`` in sequential-index order; tracts
            none of whose patches overlap are left out.

        Raises
        ------
        SkyMapError
            If the footprint is too large to project into a tract's tangent plane.
        """
        if bbox.is_empty():
            return []
        edge_points = check_int(edge_points, "edge_points", 0)
        box = Box2D.from_box2i(bbox)
        t = np.linspace(0.0, 1.0, edge_points + 1, endpoint=False)
        xs = np.concatenate(
            [
                box.xmin + t * box.width,
                np.full_like(t, box.xmax),
                box.xmax - t * box.width,
                np.full_like(t, box.xmin),
            ]
        )
        ys = np.concatenate(
            [
                np.full_like(t, box.ymin),
                box.ymin + t * box.height,
                np.full_like(t, box.ymax),
                box.ymax - t * box.height,
            ]
        )
        sky = wcs.pixel_to_world(xs, ys)
        ra, dec, _ = coord_to_radec(sky)
        vec = radec_to_vec(ra, dec)
        if not np.all(np.isfinite(vec)):
            raise SkyMapError(f"the exposure WCS gives no sky position for part of {bbox}")
        centre = vec.sum(axis=0)
        centre /= np.linalg.norm(centre)
        radius = math.degrees(math.acos(float(np.clip((vec @ centre).min(), -1.0, 1.0))))
        _, candidates = self._candidates(centre[None, :], margin=radius)
        result = []
        for tract_id in np.sort(candidates):
            tract = self[int(tract_id)]
            patches = tract._patches_overlapping_radec_polygon(ra, dec)
            if patches:
                result.append((tract, patches))
        return result

    # -- persistence and identity ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return everything needed to rebuild the sky map, as plain YAML-friendly types."""
        return {"type": self.type_name, "params": self._params(), "config": self._config.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BaseSkyMap:
        """Rebuild a sky map from :meth:`to_dict` output.

        Raises
        ------
        SkyMapConfigError
            If the dictionary is malformed or names an unknown sky map type.
        """
        if not isinstance(data, Mapping) or not {"type", "params", "config"} <= set(data):
            raise SkyMapConfigError(
                f"a sky map dictionary needs 'type', 'params' and 'config', got {data!r}"
            )
        kind = data["type"]
        subclass = BaseSkyMap._registry.get(kind)
        if subclass is None:
            raise SkyMapConfigError(
                f"unknown sky map type {kind!r} (known: {sorted(BaseSkyMap._registry)})"
            )
        if cls is not BaseSkyMap and not issubclass(subclass, cls):
            raise SkyMapConfigError(f"sky map type {kind!r} is not a {cls.__name__}")
        config = SkyMapConfig.from_dict(data["config"])
        return subclass(config=config, **dict(data["params"]))

    def fingerprint(self) -> str:
        """Return a stable SHA-1 hex digest of the sky map's definition (type, params, config)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseSkyMap):
            return NotImplemented
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_skymap_from_dict, (self.to_dict(),))

    def __repr__(self) -> str:
        params = ", ".join(
            f"{k}={v!r}" for k, v in self._params().items() if not isinstance(v, list)
        )
        return f"{type(self).__name__}({params}, {len(self)} tracts, config={self._config})"
