"""How a sharded reference catalog is laid out in a repository, and its manifest.

A reference catalog named ``NAME`` lives in ``REPO/ref_cats/NAME/``: one Parquet file per
HEALPix pixel (nested scheme) of order ``order`` that holds at least one star, named
``<pixel>.parquet``, and ``config.yaml``, the manifest (:class:`RefcatManifest`): the name, the
format version, the HEALPix order, the row count, the columns with their units, the epochs and
the proper-motion convention. The columns follow LSST's reference catalogs (``coord_ra``,
``coord_dec``, ``<band>_flux``...); see ``docs/refcat.md``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from hpcpipe.errors import HpcpipeError
from hpcpipe.io.atomic import TEMP_PREFIX, atomic_path

__all__ = ["FORMAT_VERSION", "MANIFEST", "REFCAT_ROOT", "DEFAULT_REFCAT_NAME", "RefcatError",
           "RefcatInputError", "RefcatNotFoundError", "ColumnInfo", "RefcatManifest",
           "check_refcat_name", "refcat_directory", "shard_path", "read_manifest",
           "write_manifest", "list_reference_catalogs", "arrow_to_numpy"]

#: Version of the layout written by this code; a reader refuses a newer one.
FORMAT_VERSION = 1
#: The manifest's file name inside ``ref_cats/NAME/``.
MANIFEST = "config.yaml"
#: The directory of the reference catalogs, relative to the repository root.
REFCAT_ROOT = "ref_cats"
#: The reference catalog that ``hpcpipe simulate`` writes and the calibration reads by default.
DEFAULT_REFCAT_NAME = "sim_ref"

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


class RefcatError(HpcpipeError, ValueError):
    """A reference catalog that cannot be written or read as asked."""


class RefcatInputError(RefcatError):
    """An input catalog or an ingest option at fault (a usage error: exit status 2)."""


class RefcatNotFoundError(RefcatError, LookupError):
    """No reference catalog of that name in the repository (or its parents)."""


@dataclass
class ColumnInfo:
    """One column of the shards: its name, numpy type, units (astropy string) and meaning."""

    name: str
    dtype: str
    units: str = ""
    doc: str = ""


@dataclass
class RefcatManifest:
    """The ``config.yaml`` of a sharded reference catalog.

    Attributes
    ----------
    name : str
        The catalog's name (its directory under ``ref_cats/``).
    order : int
        HEALPix order of the shards (nside = 2**order, nested numbering).
    row_count, shard_count : int
        Stars and shard files.
    columns : list of ColumnInfo
        The columns of every shard, in order.
    bands : list of str
        Bands with ``<band>_flux`` and ``<band>_fluxErr`` columns (nJy).
    epoch_min, epoch_max : float
        Range of the ``epoch`` column (MJD, TAI).
    has_proper_motion : bool
        ``pm_ra`` and ``pm_dec`` (rad/yr; ``pm_ra`` includes the cos(dec) factor) present.
    max_proper_motion : float
        Largest total proper motion (rad/yr): the loader pads its shard search by it.
    source : str
        The file it was ingested from.
    format_version : int
        :data:`FORMAT_VERSION` of the writer.
    """

    name: str
    order: int
    row_count: int
    shard_count: int
    columns: list[ColumnInfo]
    bands: list[str]
    epoch_min: float
    epoch_max: float
    has_proper_motion: bool = False
    max_proper_motion: float = 0.0
    source: str = ""
    indexing: str = "HEALPix nested"
    shard_format: str = "parquet"
    format_version: int = FORMAT_VERSION
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> RefcatManifest:
        try:
            values = dict(data)
            values["columns"] = [ColumnInfo(**c) for c in values["columns"]]
            return cls(**values)
        except (TypeError, KeyError) as exc:
            raise RefcatError(f"{where}: not a reference catalog manifest ({exc})") from exc

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def arrow_to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A NumPy copy (or view) of an Arrow column, chunk by chunk; nulls become NaN in
    floating-point columns."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not chunks:
        return pa.array([], type=column.type).to_numpy(zero_copy_only=False)
    if len(chunks) == 1:
        return chunks[0].to_numpy(zero_copy_only=False)
    return np.concatenate([c.to_numpy(zero_copy_only=False) for c in chunks])


def check_refcat_name(name: str) -> str:
    """``name`` if it can name a reference catalog (a letter, then letters, digits, ``_.-``)."""
    if not _NAME_RE.match(name) or name.startswith(TEMP_PREFIX):
        raise RefcatInputError(f"reference catalog name {name!r}: use a letter followed by "
                               "letters, digits, '_', '.' or '-'")
    return name


def refcat_directory(root: str | Path, name: str) -> Path:
    """``root/ref_cats/name``."""
    return Path(root) / REFCAT_ROOT / name


def shard_path(directory: Path, pixel: int) -> Path:
    """The shard file of HEALPix ``pixel`` in a catalog's ``directory``."""
    return directory / f"{int(pixel)}.parquet"


def write_manifest(directory: Path, manifest: RefcatManifest) -> None:
    """Write ``directory/config.yaml`` atomically."""
    with atomic_path(directory / MANIFEST) as tmp:
        tmp.write_text(yaml.safe_dump(manifest.to_dict(), sort_keys=False))


_CACHE: dict[tuple[str, int], RefcatManifest] = {}


def read_manifest(directory: str | Path) -> RefcatManifest:
    """The manifest of the reference catalog in ``directory`` (cached by modification time)."""
    path = Path(directory) / MANIFEST
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError as exc:
        raise RefcatNotFoundError(f"{directory}: not a reference catalog (no {MANIFEST})"
                                  ) from exc
    key = (str(path), stamp)
    if key not in _CACHE:
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict):
            raise RefcatError(f"{path}: not a reference catalog manifest")
        manifest = RefcatManifest.from_dict(data, str(path))
        if manifest.format_version > FORMAT_VERSION:
            raise RefcatError(f"{path}: format version {manifest.format_version} is newer "
                              f"than this hpcpipe reads ({FORMAT_VERSION})")
        _CACHE[key] = manifest
    return _CACHE[key]


def list_reference_catalogs(root: str | Path) -> list[str]:
    """Names of the sharded reference catalogs in repository ``root`` (not its parents)."""
    base = Path(root) / REFCAT_ROOT
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists())
