"""Read the reference stars of a sky region from a sharded reference catalog.

:func:`load_reference_catalog` reads only the shards (HEALPix pixels) that a circle or convex
sky polygons overlap, applies the proper motions to the requested epoch and keeps exactly the
stars inside. :class:`ReferenceObjectLoader` does it for a CCD (its bounding box padded by
``pixelMargin`` pixels, through its WCS, at the date of its visit info), configured as in
LSST's Gen2 stack by :class:`LoadReferenceObjectsConfig` (``ref_dataset_name``,
``pixelMargin``, ``filterMap``); :class:`ReferenceLoaders` pairs the astrometric and the
photometric one for the calibration.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hpgeom
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hpcpipe.butler.errors import ButlerError
from hpcpipe.config import Config, DictField, Field, RangeField
from hpcpipe.refcat.layout import (
    DEFAULT_REFCAT_NAME,
    MANIFEST,
    REFCAT_ROOT,
    RefcatError,
    RefcatManifest,
    RefcatNotFoundError,
    arrow_to_numpy,
    list_reference_catalogs,
    read_manifest,
    shard_path,
)
from hpcpipe.table import Catalog, Schema

__all__ = ["LoadReferenceObjectsConfig", "ReferenceObjectLoader", "ReferenceLoaders",
           "load_reference_catalog", "find_reference_catalog", "apply_proper_motion",
           "SkyRegion", "LEGACY_DATASET"]

log = logging.getLogger(__name__)

#: The single-file reference catalog dataset of repositories made before sharded catalogs.
LEGACY_DATASET = "ref_cat"
_DAYS_PER_YEAR = 365.25


# --- geometry -----------------------------------------------------------------------------------

def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors of ``ra``, ``dec`` in radians."""
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


@dataclass
class SkyRegion:
    """A circle (``center`` ra, dec and ``radius``, degrees) or convex sky polygons (each an
    (n, 2) array of ra, dec vertices in degrees, joined by great circles)."""

    center: tuple[float, float] | None = None
    radius: float | None = None
    polygons: Sequence[np.ndarray] = ()

    def __post_init__(self) -> None:
        if (self.center is None) == (not self.polygons):
            raise ValueError("a sky region is a center and radius, or polygons")
        if self.center is not None and (self.radius is None or not self.radius > 0):
            raise ValueError("a circle needs a positive radius (degrees)")
        self.polygons = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in self.polygons]
        for poly in self.polygons:
            if len(poly) < 3:
                raise ValueError("a sky polygon needs at least 3 vertices")

    def pixels(self, order: int, pad: float = 0.0) -> np.ndarray:
        """HEALPix pixels (nested, ``order``) that overlap the region grown by ``pad`` deg."""
        nside = hpgeom.order_to_nside(order)
        if self.center is not None:
            assert self.radius is not None
            return hpgeom.query_circle(nside, self.center[0], self.center[1],
                                       self.radius + pad, inclusive=True)
        found = []
        for poly in self.polygons:
            if pad > 0:
                vec = _unit_vectors(np.radians(poly[:, 0]), np.radians(poly[:, 1]))
                mid = vec.sum(axis=0)
                mid /= np.linalg.norm(mid)
                reach = float(np.degrees(np.arccos(np.clip(vec @ mid, -1, 1)).max()))
                ra0 = math.degrees(math.atan2(mid[1], mid[0])) % 360.0
                dec0 = math.degrees(math.asin(np.clip(mid[2], -1, 1)))
                found.append(hpgeom.query_circle(nside, ra0, dec0, reach + pad,
                                                 inclusive=True))
            else:
                found.append(hpgeom.query_polygon(nside, poly[:, 0], poly[:, 1],
                                                  inclusive=True))
        return np.unique(np.concatenate(found))

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Which of the positions (radians) are inside (edges included)."""
        p = _unit_vectors(ra, dec)
        if self.center is not None:
            assert self.radius is not None
            c = _unit_vectors(np.radians(self.center[0]), np.radians(self.center[1]))
            return p @ c >= math.cos(math.radians(self.radius))
        inside = np.zeros(len(ra), dtype=bool)
        for poly in self.polygons:
            vec = _unit_vectors(np.radians(poly[:, 0]), np.radians(poly[:, 1]))
            normals = np.cross(vec, np.roll(vec, -1, axis=0))
            mid = vec.sum(axis=0)
            sign = 1.0 if float(normals[0] @ mid) >= 0 else -1.0
            inside |= np.all(p @ normals.T * sign >= 0, axis=1)
        return inside


def apply_proper_motion(ra: np.ndarray, dec: np.ndarray, pm_ra: np.ndarray,
                        pm_dec: np.ndarray, years: np.ndarray | float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Move stars by their proper motions for ``years`` (Julian years).

    Each star moves in a straight line in space at constant velocity with no radial motion
    (as ERFA's ``starpm`` for a distant star): its direction becomes
    ``p + t (pm_ra e_ra + pm_dec e_dec)``, normalized. All angles in radians; ``pm_ra``
    includes the cos(dec) factor. NaN proper motions count as zero.
    """
    pm_ra = np.nan_to_num(pm_ra)
    pm_dec = np.nan_to_num(pm_dec)
    sin_ra, cos_ra = np.sin(ra), np.cos(ra)
    sin_dec, cos_dec = np.sin(dec), np.cos(dec)
    t = np.asarray(years, dtype=np.float64)
    x = cos_dec * cos_ra + t * (-pm_ra * sin_ra - pm_dec * sin_dec * cos_ra)
    y = cos_dec * sin_ra + t * (pm_ra * cos_ra - pm_dec * sin_dec * sin_ra)
    z = sin_dec + t * pm_dec * cos_dec
    new_ra = np.mod(np.arctan2(y, x), 2 * math.pi)
    new_dec = np.arctan2(z, np.hypot(x, y))
    return new_ra, new_dec


# --- finding and reading ------------------------------------------------------------------------

def _roots(source: Any) -> list[Path]:
    """The local directories of a butler's chain, a repository, or a path."""
    chain = getattr(source, "chain", None)
    if chain is not None:
        return [Path(repo.storage.local_path("")) for repo in chain]
    storage = getattr(source, "storage", None)
    if storage is not None:
        return [Path(storage.local_path(""))]
    return [Path(source)]


def find_reference_catalog(source: Any, name: str) -> Path:
    """The directory of the sharded reference catalog ``name`` in ``source`` (a butler: its
    output repository, then its parents; a repository; or a repository path)."""
    roots = _roots(source)
    for root in roots:
        directory = root / REFCAT_ROOT / name
        if (directory / MANIFEST).exists():
            return directory
    known = sorted({n for root in roots for n in list_reference_catalogs(root)})
    raise RefcatNotFoundError(
        f"no reference catalog {name!r} in {', '.join(str(r) for r in roots)} "
        f"(it has: {', '.join(known) if known else 'none'}; "
        "`hpcpipe refcat ingest` writes one)")


def _epoch_mjd(epoch: Any) -> float | None:
    if epoch is None:
        return None
    if hasattr(epoch, "tai"):
        return float(epoch.tai.mjd)
    return float(epoch)


def _schema(manifest: RefcatManifest, columns: Sequence[str]) -> Schema:
    schema = Schema()
    info = {c.name: c for c in manifest.columns}
    for name in columns:
        c = info[name]
        schema.add_field(name, "L" if c.dtype == "int64" else "D", doc=c.doc, units=c.units)
    return schema


def load_reference_catalog(source: Any, name: str, *, center: tuple[float, float] | None = None,
                           radius: float | None = None,
                           polygons: Sequence[Any] | None = None, epoch: Any = None,
                           columns: Sequence[str] | None = None) -> Catalog:
    """The stars of reference catalog ``name`` inside a circle or convex sky polygons.

    Parameters
    ----------
    source : Butler, Repository, str or Path
        Where the catalog is (see :func:`find_reference_catalog`); or the catalog directory.
    name : str
        The reference catalog's name.
    center, radius : (float, float) and float, optional
        A circle: center ra, dec and radius in degrees.
    polygons : sequence of (n, 2) arrays, optional
        Convex sky polygons, vertices ra, dec in degrees (e.g. a CCD's corners).
    epoch : astropy.time.Time or float, optional
        Apply the proper motions to this epoch (a Time, or MJD in TAI); None: positions at
        the catalog's epoch.
    columns : sequence of str, optional
        Columns to read (default: all); ``id``, ``coord_ra``, ``coord_dec`` are always read.

    Returns
    -------
    Catalog
        The stars inside, with the manifest's columns; positions (and position errors, with
        the proper-motion errors) at ``epoch``. Metadata ``REFCAT`` (name), ``EPOCH`` (MJD
        TAI applied, or NaN).
    """
    if isinstance(source, str | Path) and (Path(source) / MANIFEST).exists():
        directory = Path(source)  # the catalog's own directory
    else:
        directory = find_reference_catalog(source, name)
    manifest = read_manifest(directory)
    region = SkyRegion(center=center, radius=radius, polygons=polygons or ())
    target = _epoch_mjd(epoch)
    names = manifest.column_names
    wanted = list(names) if columns is None else [
        n for n in names if n in {"id", "coord_ra", "coord_dec", *columns}]
    unknown = sorted(set(columns or ()) - set(names))
    if unknown:
        raise RefcatError(f"reference catalog {name!r} has no column {unknown[0]!r} "
                          f"(it has: {', '.join(names)})")
    move = manifest.has_proper_motion and target is not None
    read = list(wanted)
    if move:
        read += [n for n in ("pm_ra", "pm_dec", "epoch", "pm_raErr", "pm_decErr")
                 if n in names and n not in read]
    pad = 0.0
    if move:
        assert target is not None
        span = max(abs(target - manifest.epoch_min), abs(target - manifest.epoch_max))
        pad = math.degrees(manifest.max_proper_motion * span / _DAYS_PER_YEAR)
    tables = []
    for pixel in region.pixels(manifest.order, pad):
        path = shard_path(directory, int(pixel))
        if not path.exists():  # no star in that pixel
            continue
        # ParquetFile.read: a third of read_table's time on a shard (no dataset machinery)
        tables.append(pq.ParquetFile(path).read(columns=read, use_threads=False))
    data: dict[str, np.ndarray]
    if tables:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        data = {n: arrow_to_numpy(table.column(n)) for n in read}
    else:
        data = {n: np.zeros(0, dtype=np.int64 if n == "id" else np.float64) for n in read}
    if move:
        assert target is not None
        years = (target - data["epoch"]) / _DAYS_PER_YEAR
        data["coord_ra"], data["coord_dec"] = apply_proper_motion(
            data["coord_ra"], data["coord_dec"], data["pm_ra"], data["pm_dec"], years)
        for err, pm_err in (("coord_raErr", "pm_raErr"), ("coord_decErr", "pm_decErr")):
            if err in data and pm_err in data:
                data[err] = np.hypot(data[err], np.nan_to_num(data[pm_err]) * years)
    keep = region.contains(data["coord_ra"], data["coord_dec"])
    out = {n: data[n][keep] for n in wanted}
    return Catalog.from_columns(_schema(manifest, wanted), out,
                                metadata={"REFCAT": manifest.name,
                                          "EPOCH": target if move else float("nan")})


# --- the calibration's loaders ------------------------------------------------------------------

class LoadReferenceObjectsConfig(Config):
    """Which reference catalog, and how much around the CCD (LSST's names)."""

    ref_dataset_name = Field("name of the reference catalog (a directory of the repository's "
                             "ref_cats/, written by `hpcpipe refcat ingest`)", str,
                             default=DEFAULT_REFCAT_NAME)
    pixelMargin = RangeField("pad the CCD's bounding box by this many pixels", int,
                             default=250, min=0)
    filterMap = DictField("band of the exposure -> band of the reference catalog, where they "
                          "differ", str, str, default={})


def _has_legacy(source: Any) -> bool:
    """Whether ``source`` is a butler with the single-file ``ref_cat`` dataset."""
    exists = getattr(source, "datasetExists", None)
    if exists is None:
        return False
    try:
        return bool(exists(LEGACY_DATASET))
    except ButlerError:  # a mapper without that dataset type
        return False


class ReferenceObjectLoader:
    """Loads the reference stars of an exposure from one reference catalog.

    Parameters
    ----------
    source : Butler, Repository, str or Path
        Where the catalogs are (a butler searches its chain).
    config : LoadReferenceObjectsConfig
        The catalog's name, the margin and the band map.

    Notes
    -----
    A repository made before sharded catalogs has a single-file ``ref_cat`` dataset instead:
    with a butler, and when no sharded catalog of the configured name exists, the default
    name (``sim_ref``) or the name ``ref_cat`` read that dataset (no proper motions).
    """

    def __init__(self, source: Any, config: LoadReferenceObjectsConfig) -> None:
        self.source = source
        self.config = config
        self.name = config.ref_dataset_name
        self._directory: Path | None = None
        self._legacy: Catalog | None = None
        try:
            self._directory = find_reference_catalog(source, self.name)
        except RefcatNotFoundError:
            if (self.name not in (DEFAULT_REFCAT_NAME, LEGACY_DATASET)
                    or not _has_legacy(source)):
                raise
            log.info("no sharded reference catalog %r: reading the single-file %r dataset",
                     self.name, LEGACY_DATASET)

    def reference_band(self, band: str | None) -> str | None:
        """The catalog's band for the exposure's ``band`` (``filterMap``)."""
        if band is None:
            return None
        return self.config.filterMap.get(band, band)

    def polygon(self, bbox: Any, wcs: Any, margin: float | None = None) -> np.ndarray:
        """The sky corners (ra, dec degrees) of ``bbox`` padded by ``margin`` pixels."""
        pad = self.config.pixelMargin if margin is None else margin
        x0, y0 = bbox.x0 - 0.5 - pad, bbox.y0 - 0.5 - pad
        x1, y1 = bbox.x1 + 0.5 + pad, bbox.y1 + 0.5 + pad
        ra, dec = wcs.all_pix2world([x0, x1, x1, x0], [y0, y0, y1, y1], 0)
        return np.column_stack([ra, dec])

    def load_pixel_box(self, bbox: Any, wcs: Any, epoch: Any = None) -> Catalog:
        """The stars inside ``bbox`` (padded by ``pixelMargin``) through ``wcs``, at
        ``epoch`` (see :func:`load_reference_catalog`)."""
        poly = self.polygon(bbox, wcs)
        if self._directory is None:
            return self._legacy_stars(poly)
        return load_reference_catalog(self._directory, self.name, polygons=[poly],
                                      epoch=epoch)

    def load_exposure(self, exposure: Any) -> Catalog:
        """The stars of ``exposure`` (its bbox and WCS) at the middle of its exposure."""
        if exposure.wcs is None:
            raise RefcatError("the exposure has no WCS: its reference stars cannot be found")
        info = exposure.visit_info
        epoch = info.date if info is not None else None
        if epoch is None:
            log.warning("the exposure has no date: reference positions at the catalog's epoch")
        return self.load_pixel_box(exposure.bbox, exposure.wcs, epoch)

    def _legacy_stars(self, poly: np.ndarray) -> Catalog:
        if self._legacy is None:
            self._legacy = self.source.get(LEGACY_DATASET)
        cat = self._legacy
        region = SkyRegion(polygons=[poly])
        return cat.where(region.contains(np.asarray(cat["coord_ra"]),
                                         np.asarray(cat["coord_dec"])))


class ReferenceLoaders:
    """The astrometric and the photometric reference loaders of a calibration.

    Parameters
    ----------
    source : Butler, Repository, str or Path
        Where the catalogs are.
    astrom_config, photo_config : LoadReferenceObjectsConfig
        ``calibrate.astromRefObjLoader`` and ``calibrate.photoRefObjLoader``.
    """

    def __init__(self, source: Any, astrom_config: LoadReferenceObjectsConfig,
                 photo_config: LoadReferenceObjectsConfig) -> None:
        self.astrom = ReferenceObjectLoader(source, astrom_config)
        same = (photo_config.ref_dataset_name == astrom_config.ref_dataset_name
                and photo_config.pixelMargin == astrom_config.pixelMargin)
        self.photo = self.astrom if same else ReferenceObjectLoader(source, photo_config)
        self.photo_config = photo_config

    def load(self, exposure: Any) -> tuple[Catalog, Catalog]:
        """The astrometric and photometric reference stars of ``exposure`` (the same object
        when both configs name the same catalog and margin)."""
        astrom = self.astrom.load_exposure(exposure)
        photo = astrom if self.photo is self.astrom else self.photo.load_exposure(exposure)
        return astrom, photo
