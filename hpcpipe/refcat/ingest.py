"""Ingest an external star catalog (FITS, CSV or Parquet) as a sharded reference catalog.

The work is done in two passes, spread over the ranks of a :class:`~hpcpipe.comm.world.World`
when there are several (``mpirun -n N hpcpipe refcat ingest ...``):

1. Each rank reads its share of the input (a range of rows of a Parquet or FITS table, a range
   of lines of a CSV file), converts the columns to the LSST reference-catalog columns and
   units, computes each star's HEALPix pixel and sorts the rows into order-2 HEALPix
   *buckets* (192 of them), kept in memory up to ``spill_bytes`` (1 GiB) and appended to one
   part file per bucket beyond that; at the end of the pass, the rows of the buckets that
   another rank will write go to part files too. A histogram of the stars per order-8 pixel is
   summed over the ranks, and the shard order is the smallest order whose fullest shard holds
   at most ``max_shard_rows`` stars (unless ``order`` is given).
2. The buckets are shared out between the ranks (the largest first, each to the least loaded
   rank); a rank gathers the rows of its buckets (from memory and the part files), orders
   them by shard and by their row number in the input, and writes one Parquet file per
   shard.

Everything is written into a temporary directory beside ``ref_cats/NAME``, which is renamed
into place by rank 0 after it wrote the manifest: the catalog appears complete or not at all.
The shards do not depend on the number of ranks.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hpgeom
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from astropy import units as u

from hpcpipe.butler.repository import Repository
from hpcpipe.io.atomic import TEMP_PREFIX
from hpcpipe.refcat.layout import (
    MANIFEST,
    REFCAT_ROOT,
    ColumnInfo,
    RefcatError,
    RefcatInputError,
    RefcatManifest,
    arrow_to_numpy,
    check_refcat_name,
    refcat_directory,
    shard_path,
    write_manifest,
)

__all__ = ["IngestSpec", "ingest_reference_catalog", "choose_order", "AB_NJY_ZERO_POINT",
           "PIXEL_ORDER", "BUCKET_ORDER", "MAX_ORDER", "DEFAULT_MAX_SHARD_ROWS",
           "jyear_to_mjd"]

#: m_AB = 31.4 for a flux of 1 nJy.
AB_NJY_ZERO_POINT = 31.4
#: Order of the fine HEALPix pixel computed for every star (the shard pixel is derived from it).
PIXEL_ORDER = 12
#: Order of the buckets of the first pass (also the smallest shard order).
BUCKET_ORDER = 2
#: The largest shard order chosen automatically (nside 256: 0.23 degree pixels).
MAX_ORDER = 8
#: Largest number of stars in one shard when the order is chosen from the data
#: (perf/bench_refcat.py: reading a shard costs about 0.3 ms plus 0.1 us per star, so the one
#: to four shards that a 4k x 4k CCD overlaps read in a few ms; and fewer, larger shards keep
#: the ingest's file count low).
DEFAULT_MAX_SHARD_ROWS = 20000
#: Rows converted at a time by one rank.
CHUNK_ROWS = 1 << 20
#: Converted rows a rank keeps in memory between the two passes before writing them to part
#: files (about 100 bytes a star: 10 million stars).
SPILL_BYTES = 1 << 30
_RAD_PER_MAS = math.pi / 180.0 / 3.6e6
_POS_ERR_UNITS = {"mas": _RAD_PER_MAS, "arcsec": _RAD_PER_MAS * 1e3,
                  "deg": math.pi / 180.0, "rad": 1.0}


def jyear_to_mjd(year: Any) -> Any:
    """Julian epoch (2016.0) to MJD: J2000.0 is MJD 51544.5, a Julian year 365.25 days."""
    return 51544.5 + (np.asarray(year, dtype=np.float64) - 2000.0) * 365.25


@dataclass
class IngestSpec:
    """Which input columns hold what, and in which units.

    Attributes
    ----------
    ra, dec : str
        Position columns, in ``coord_unit`` (``"deg"`` or ``"rad"``).
    ra_err, dec_err : str or None
        Position errors in ``pos_err_unit`` (``mas``, ``arcsec``, ``deg``, ``rad``); the RA
        error is along the sky (times cos(dec)), as Gaia's ``ra_error``.
    mags, mag_errs : dict of str to str
        Band to AB magnitude column (and its error).
    fluxes, flux_errs : dict of str to str
        Band to flux column (and its error) in ``flux_unit`` (an astropy unit: ``nJy``,
        ``uJy``, ``Jy``...).
    pm_ra, pm_dec, pm_ra_err, pm_dec_err : str or None
        Proper motions in mas/yr; ``pm_ra`` includes the cos(dec) factor (as Gaia's
        ``pmra``) unless ``pm_ra_cos_dec`` is False.
    epoch : float or None
        The epoch of all positions, MJD (TAI); or ``epoch_col`` in ``epoch_format``
        (``jyear``, ``mjd`` or ``jd``). Required with proper motions; J2000.0 otherwise.
    parallax, parallax_err : str or None
        Parallax and its error in mas.
    id : str or None
        An integer id column; the row number in the input (from 1) otherwise.
    """

    ra: str
    dec: str
    coord_unit: str = "deg"
    ra_err: str | None = None
    dec_err: str | None = None
    pos_err_unit: str = "mas"
    mags: dict[str, str] = field(default_factory=dict)
    mag_errs: dict[str, str] = field(default_factory=dict)
    fluxes: dict[str, str] = field(default_factory=dict)
    flux_errs: dict[str, str] = field(default_factory=dict)
    flux_unit: str = "nJy"
    pm_ra: str | None = None
    pm_dec: str | None = None
    pm_ra_err: str | None = None
    pm_dec_err: str | None = None
    pm_ra_cos_dec: bool = True
    epoch: float | None = None
    epoch_col: str | None = None
    epoch_format: str = "jyear"
    parallax: str | None = None
    parallax_err: str | None = None
    id: str | None = None

    def named_columns(self) -> list[tuple[str, str]]:
        """(option, column) of every input column named."""
        out = [("--ra", self.ra), ("--dec", self.dec)]
        for option in ("ra_err", "dec_err", "pm_ra", "pm_dec", "pm_ra_err", "pm_dec_err",
                       "epoch_col", "parallax", "parallax_err", "id"):
            value = getattr(self, option)
            if value is not None:
                out.append(("--" + option.replace("_", "-"), value))
        for option, mapping in (("--mag", self.mags), ("--mag-err", self.mag_errs),
                                ("--flux", self.fluxes), ("--flux-err", self.flux_errs)):
            out.extend((f"{option} {band}=", col) for band, col in mapping.items())
        return out

    @property
    def bands(self) -> list[str]:
        return [*self.mags, *[b for b in self.fluxes if b not in self.mags]]

    def check(self) -> None:
        """Raise :class:`RefcatInputError` for inconsistent options."""
        if self.coord_unit not in ("deg", "rad"):
            raise RefcatInputError(f"coordinate unit {self.coord_unit!r}: use deg or rad")
        if self.pos_err_unit not in _POS_ERR_UNITS:
            raise RefcatInputError(f"--pos-err-unit {self.pos_err_unit!r}: use one of "
                                   f"{', '.join(_POS_ERR_UNITS)}")
        if self.epoch_format not in ("jyear", "mjd", "jd"):
            raise RefcatInputError(f"--epoch-format {self.epoch_format!r}: use jyear, mjd "
                                   "or jd")
        both = sorted(set(self.mags) & set(self.fluxes))
        if both:
            raise RefcatInputError(f"band {both[0]!r} given both as --mag and as --flux")
        for errs, values, what in ((self.mag_errs, self.mags, "--mag"),
                                   (self.flux_errs, self.fluxes, "--flux")):
            orphan = sorted(set(errs) - set(values))
            if orphan:
                raise RefcatInputError(f"{what}-err {orphan[0]}=...: no {what} "
                                       f"{orphan[0]}=COLUMN given")
        if not self.bands:
            raise RefcatInputError("no band: give at least one --mag BAND=COLUMN or --flux "
                                   "BAND=COLUMN")
        if (self.pm_ra is None) != (self.pm_dec is None):
            raise RefcatInputError("give both --pm-ra and --pm-dec, or neither")
        if self.epoch is not None and self.epoch_col is not None:
            raise RefcatInputError("give --epoch or --epoch-col, not both")
        if self.pm_ra is not None and self.epoch is None and self.epoch_col is None:
            raise RefcatInputError("proper motions need the epoch of the positions: give "
                                   "--epoch (e.g. 2016.0 for Gaia DR3) or --epoch-col")
        if self.fluxes:
            try:
                u.Unit(self.flux_unit).to(u.nJy)
            except (ValueError, TypeError, u.UnitConversionError) as exc:
                raise RefcatInputError(f"--flux-unit {self.flux_unit!r}: not a flux density "
                                       f"unit ({exc})") from exc

    def output_columns(self) -> list[ColumnInfo]:
        """The columns of the shards, in order."""
        cols = [ColumnInfo("id", "int64", "", "unique id"),
                ColumnInfo("coord_ra", "float64", "rad", "right ascension (ICRS) at epoch"),
                ColumnInfo("coord_dec", "float64", "rad", "declination (ICRS) at epoch")]
        if self.ra_err is not None:
            cols.append(ColumnInfo("coord_raErr", "float64", "rad",
                                   "right ascension error (along the sky)"))
        if self.dec_err is not None:
            cols.append(ColumnInfo("coord_decErr", "float64", "rad", "declination error"))
        for band in self.bands:
            cols.append(ColumnInfo(f"{band}_flux", "float64", "nJy", f"{band}-band flux"))
            cols.append(ColumnInfo(f"{band}_fluxErr", "float64", "nJy",
                                   f"{band}-band flux error (NaN: unknown)"))
        if self.pm_ra is not None:
            cols.append(ColumnInfo("pm_ra", "float64", "rad / yr",
                                   "proper motion in right ascension, times cos(dec)"))
            cols.append(ColumnInfo("pm_dec", "float64", "rad / yr",
                                   "proper motion in declination"))
            if self.pm_ra_err is not None:
                cols.append(ColumnInfo("pm_raErr", "float64", "rad / yr", "pm_ra error"))
            if self.pm_dec_err is not None:
                cols.append(ColumnInfo("pm_decErr", "float64", "rad / yr", "pm_dec error"))
        cols.append(ColumnInfo("epoch", "float64", "d", "epoch of the position (MJD, TAI)"))
        if self.parallax is not None:
            cols.append(ColumnInfo("parallax", "float64", "rad", "parallax"))
            if self.parallax_err is not None:
                cols.append(ColumnInfo("parallaxErr", "float64", "rad", "parallax error"))
        return cols


# --- input readers ------------------------------------------------------------------------------

def _share(n: int, rank: int, size: int) -> tuple[int, int]:
    return n * rank // size, n * (rank + 1) // size


class _Reader:
    """Columns and rank-wise chunks of one input file."""

    path: Path
    columns: list[str]

    def chunks(self, names: list[str], rank: int, size: int) -> Iterator[dict[str, np.ndarray]]:
        raise NotImplementedError


class _ParquetReader(_Reader):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = pq.ParquetFile(path)
        self.columns = list(self.file.schema_arrow.names)

    def chunks(self, names: list[str], rank: int, size: int) -> Iterator[dict[str, np.ndarray]]:
        meta = self.file.metadata
        lo, hi = _share(meta.num_rows, rank, size)
        start = 0
        for group in range(meta.num_row_groups):
            rows = meta.row_group(group).num_rows
            a, b = max(lo, start), min(hi, start + rows)
            if a < b:
                table = self.file.read_row_group(group, columns=names, use_threads=False)
                table = table.slice(a - start, b - a)
                for offset in range(0, b - a, CHUNK_ROWS):
                    part = table.slice(offset, CHUNK_ROWS)
                    yield {name: arrow_to_numpy(part.column(name)) for name in names}
            start += rows


class _FitsReader(_Reader):
    def __init__(self, path: Path, hdu: int | str | None) -> None:
        from astropy.io import fits  # start-up cost: astropy.io.fits (~0.4 s), FITS input only

        self.path = path
        self._hdul = fits.open(path, memmap=True)
        if hdu is None:
            tables = [h for h in self._hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)]
            if not tables:
                raise RefcatInputError(f"{path}: no table HDU")
            self.hdu = tables[0]
        else:
            try:
                self.hdu = self._hdul[hdu]
            except (KeyError, IndexError) as exc:
                raise RefcatInputError(f"{path}: no HDU {hdu!r}") from exc
            if not isinstance(self.hdu, fits.BinTableHDU | fits.TableHDU):
                raise RefcatInputError(f"{path}: HDU {hdu!r} is not a table")
        self.columns = list(self.hdu.columns.names)

    def chunks(self, names: list[str], rank: int, size: int) -> Iterator[dict[str, np.ndarray]]:
        n = int(self.hdu.header["NAXIS2"])
        lo, hi = _share(n, rank, size)
        data = self.hdu.data
        for a in range(lo, hi, CHUNK_ROWS):
            part = data[a:min(hi, a + CHUNK_ROWS)]
            yield {name: np.asarray(part.field(name)) for name in names}


class _CsvReader(_Reader):
    """A CSV file with a header line; ranks take ranges of lines (no newline inside a field)."""

    BLOCK = 32 << 20

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as handle:
            self.header = handle.readline()
        if not self.header.strip():
            raise RefcatInputError(f"{path}: empty CSV file (a header line is needed)")
        self.data_start = len(self.header)
        if not self.header.endswith(b"\n"):
            self.header += b"\n"
        table = pacsv.read_csv(io.BytesIO(self.header),
                               read_options=pacsv.ReadOptions(use_threads=False))
        self.columns = list(table.column_names)

    def _line_start(self, handle: Any, pos: int) -> int:
        """The first line start at or after byte ``pos``."""
        if pos <= self.data_start:
            return self.data_start
        handle.seek(pos - 1)
        if handle.read(1) == b"\n":
            return pos
        handle.readline()
        return handle.tell()

    def chunks(self, names: list[str], rank: int, size: int) -> Iterator[dict[str, np.ndarray]]:
        total = os.path.getsize(self.path)
        span = total - self.data_start
        with open(self.path, "rb") as handle:
            lo = self._line_start(handle, self.data_start + span * rank // size)
            hi = self._line_start(handle, self.data_start + span * (rank + 1) // size)
            pos = lo
            while pos < hi:
                handle.seek(pos)
                block = handle.read(min(self.BLOCK, hi - pos))
                if pos + len(block) < hi:
                    cut = block.rfind(b"\n") + 1
                    if cut == 0:  # a line longer than a block: read it whole
                        block += handle.readline()
                        cut = len(block)
                    block = block[:cut]
                pos += len(block)
                if not block.strip():
                    continue
                table = pacsv.read_csv(
                    io.BytesIO(self.header + block),
                    read_options=pacsv.ReadOptions(use_threads=False),
                    convert_options=pacsv.ConvertOptions(include_columns=names))
                yield {name: arrow_to_numpy(table.column(name)) for name in names}


def open_input(path: str | Path, hdu: int | str | None = None) -> _Reader:
    """A reader for ``path`` chosen by its suffix (``.fits``/``.fit``/``.fits.gz``, ``.csv``,
    ``.parquet``/``.pq``)."""
    path = Path(path)
    if not path.is_file():
        raise RefcatInputError(f"{path}: no such file")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return _ParquetReader(path)
        if name.endswith((".fits", ".fit", ".fits.gz", ".fts")):
            return _FitsReader(path, hdu)
        if name.endswith((".csv", ".csv.txt")):
            return _CsvReader(path)
    except RefcatInputError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise RefcatInputError(f"{path}: cannot be read: {exc}") from exc
    raise RefcatInputError(f"{path}: unknown catalog format (use .fits, .csv or .parquet)")


# --- conversion -------------------------------------------------------------------------------

def _float(values: np.ndarray, path: Path, column: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RefcatInputError(f"{path}: column {column!r} is not numeric") from exc


def _convert(chunk: dict[str, np.ndarray], spec: IngestSpec, path: Path, flux_scale: float
             ) -> dict[str, np.ndarray]:
    """The shard columns (without ``id`` when it is the row number) of one chunk."""
    ra = _float(chunk[spec.ra], path, spec.ra)
    dec = _float(chunk[spec.dec], path, spec.dec)
    if spec.coord_unit == "deg":
        ra, dec = np.radians(ra), np.radians(dec)
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= math.pi / 2 + 1e-12))
    if bad.any():
        i = int(np.argmax(bad))
        raise RefcatInputError(
            f"{path}: {int(bad.sum())} rows without a valid position in columns "
            f"{spec.ra!r}, {spec.dec!r} (e.g. {chunk[spec.ra][i]!r}, {chunk[spec.dec][i]!r})")
    out: dict[str, np.ndarray] = {}
    if spec.id is not None:
        try:
            out["id"] = np.asarray(chunk[spec.id], dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise RefcatInputError(f"{path}: id column {spec.id!r} is not an integer") from exc
    out["coord_ra"] = np.mod(ra, 2 * math.pi)
    out["coord_dec"] = np.clip(dec, -math.pi / 2, math.pi / 2)
    scale = _POS_ERR_UNITS[spec.pos_err_unit]
    if spec.ra_err is not None:
        out["coord_raErr"] = _float(chunk[spec.ra_err], path, spec.ra_err) * scale
    if spec.dec_err is not None:
        out["coord_decErr"] = _float(chunk[spec.dec_err], path, spec.dec_err) * scale
    n = len(ra)
    for band in spec.bands:
        if band in spec.mags:
            mag = _float(chunk[spec.mags[band]], path, spec.mags[band])
            flux = 10.0 ** (-0.4 * (mag - AB_NJY_ZERO_POINT))
            col = spec.mag_errs.get(band)
            err = (flux * _float(chunk[col], path, col) * (math.log(10) / 2.5)
                   if col is not None else np.full(n, np.nan))
        else:
            flux = _float(chunk[spec.fluxes[band]], path, spec.fluxes[band]) * flux_scale
            col = spec.flux_errs.get(band)
            err = (_float(chunk[col], path, col) * flux_scale if col is not None
                   else np.full(n, np.nan))
        out[f"{band}_flux"] = flux
        out[f"{band}_fluxErr"] = err
    if spec.pm_ra is not None and spec.pm_dec is not None:
        pm_ra = _float(chunk[spec.pm_ra], path, spec.pm_ra) * _RAD_PER_MAS
        if not spec.pm_ra_cos_dec:
            pm_ra = pm_ra * np.cos(dec)
        out["pm_ra"] = pm_ra
        out["pm_dec"] = _float(chunk[spec.pm_dec], path, spec.pm_dec) * _RAD_PER_MAS
        if spec.pm_ra_err is not None:
            err = _float(chunk[spec.pm_ra_err], path, spec.pm_ra_err) * _RAD_PER_MAS
            out["pm_raErr"] = err if spec.pm_ra_cos_dec else err * np.cos(dec)
        if spec.pm_dec_err is not None:
            out["pm_decErr"] = _float(chunk[spec.pm_dec_err], path,
                                      spec.pm_dec_err) * _RAD_PER_MAS
    if spec.epoch_col is not None:
        epoch = _float(chunk[spec.epoch_col], path, spec.epoch_col)
        if spec.epoch_format == "jyear":
            epoch = jyear_to_mjd(epoch)
        elif spec.epoch_format == "jd":
            epoch = epoch - 2400000.5
        out["epoch"] = epoch
    else:
        out["epoch"] = np.full(n, spec.epoch if spec.epoch is not None
                               else float(jyear_to_mjd(2000.0)))
    if spec.parallax is not None:
        out["parallax"] = _float(chunk[spec.parallax], path, spec.parallax) * _RAD_PER_MAS
        if spec.parallax_err is not None:
            out["parallaxErr"] = _float(chunk[spec.parallax_err], path,
                                        spec.parallax_err) * _RAD_PER_MAS
    return out


def choose_order(counts: np.ndarray, max_rows: int, counts_order: int = MAX_ORDER) -> int:
    """The smallest order from :data:`BUCKET_ORDER` to ``counts_order`` whose fullest pixel
    holds at most ``max_rows`` stars, given the stars per pixel of order ``counts_order``."""
    for order in range(BUCKET_ORDER, counts_order + 1):
        coarse = counts.reshape(-1, 4 ** (counts_order - order)).sum(axis=1)
        if coarse.max(initial=0) <= max_rows:
            return order
    return counts_order


# --- the two passes ---------------------------------------------------------------------------

class _SerialWorld:
    rank = 0
    size = 1

    def barrier(self) -> None:
        pass

    def bcast(self, value: Any, root: int = 0) -> Any:
        return value

    def allgather(self, value: Any) -> list[Any]:
        return [value]

    def allreduce(self, value: Any, op: str = "sum") -> Any:
        return value


def _agree(world: Any, error: BaseException | None, cleanup: Any = None) -> None:
    """Raise on every rank if any rank failed (after ``cleanup()`` on rank 0)."""
    text = None if error is None else f"{type(error).__name__}: {error}"
    usage = isinstance(error, RefcatInputError)
    reports = world.allgather((text, usage))
    failed = [(rank, t, u) for rank, (t, u) in enumerate(reports) if t is not None]
    if not failed:
        return
    if world.rank == 0 and cleanup is not None:
        cleanup()
    if error is not None:
        raise error
    rank, text, usage = failed[0]
    raise (RefcatInputError if usage else RefcatError)(f"rank {rank}: {text}")


class _Buckets:
    """The converted rows of one rank by bucket, as pieces (dicts of equal-length columns in
    the order of the rows' dtype): kept in memory up to ``limit`` bytes, then appended to the
    part files ``parts/b<bucket>-r<rank>.bin`` (per piece: its row count as int64, then each
    column's raw values)."""

    def __init__(self, parts: Path, rank: int, limit: int) -> None:
        self.parts = parts
        self.rank = rank
        self.limit = limit
        self.pending: dict[int, list[dict[str, np.ndarray]]] = {}
        self.bytes = 0

    def add(self, key: int, piece: dict[str, np.ndarray]) -> None:
        self.pending.setdefault(key, []).append(piece)
        self.bytes += sum(v.nbytes for v in piece.values())
        if self.bytes > self.limit:
            self.spill()

    def spill(self, keys: Any = None) -> None:
        """Append the pending rows of ``keys`` (default: all) to their part files."""
        for key in list(self.pending) if keys is None else list(keys):
            pieces = self.pending.pop(key, [])
            if not pieces:
                continue
            with open(self.parts / f"b{key:03d}-r{self.rank:05d}.bin", "ab") as handle:
                for piece in pieces:
                    handle.write(np.int64(len(next(iter(piece.values())))).tobytes())
                    for column in piece.values():
                        np.ascontiguousarray(column).tofile(handle)
                        self.bytes -= column.nbytes


def _read_pieces(path: Path, dtype: np.dtype) -> list[dict[str, np.ndarray]]:
    """The pieces of a part file (see :class:`_Buckets`)."""
    raw = np.fromfile(path, dtype=np.uint8)
    pieces, pos = [], 0
    while pos < raw.size:
        n = int(raw[pos:pos + 8].view(np.int64)[0])
        pos += 8
        piece = {}
        for name in dtype.names or ():
            column_type = dtype[name]
            size = n * column_type.itemsize
            piece[name] = raw[pos:pos + size].view(column_type)
            pos += size
        pieces.append(piece)
    return pieces


def _pass_one(reader: _Reader, spec: IngestSpec, buckets: _Buckets, rank: int, size: int
              ) -> dict[str, Any]:
    """Convert this rank's share of the input into rows by bucket."""
    names = sorted({col for _, col in spec.named_columns()})
    flux_scale = float(u.Unit(spec.flux_unit).to(u.nJy)) if spec.fluxes else 1.0
    nside = hpgeom.order_to_nside(PIXEL_ORDER)
    counts = np.zeros(12 * 4 ** MAX_ORDER, dtype=np.int64)
    dtype: np.dtype | None = None
    rows = 0
    epoch_min, epoch_max, pm_max = math.inf, -math.inf, 0.0
    for chunk in reader.chunks(names, rank, size):
        cols = _convert(chunk, spec, reader.path, flux_scale)
        n = len(cols["coord_ra"])
        pix = hpgeom.angle_to_pixel(nside, cols["coord_ra"], cols["coord_dec"],
                                    lonlat=True, degrees=False)
        counts += np.bincount(pix >> (2 * (PIXEL_ORDER - MAX_ORDER)),
                              minlength=counts.size)
        cols["_pix"] = pix
        cols["_row"] = np.arange(rows, rows + n, dtype=np.int64)
        epochs = cols["epoch"][np.isfinite(cols["epoch"])]
        if epochs.size:
            epoch_min = min(epoch_min, float(epochs.min()))
            epoch_max = max(epoch_max, float(epochs.max()))
        if "pm_ra" in cols:
            total = np.hypot(cols["pm_ra"], cols["pm_dec"])
            total = total[np.isfinite(total)]
            if total.size:
                pm_max = max(pm_max, float(total.max()))
        # 192 buckets fit in a byte: numpy's stable sort of bytes is a radix sort
        bucket = (pix >> (2 * (PIXEL_ORDER - BUCKET_ORDER))).astype(np.uint8)
        order = np.argsort(bucket, kind="stable")
        bucket = bucket[order]
        if dtype is None:
            dtype = np.dtype([(k, v.dtype) for k, v in cols.items()])
        ordered = {k: cols[k][order] for k in dtype.names or ()}
        edges = np.flatnonzero(np.diff(bucket)) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, n], strict=True):
            if a < b:
                buckets.add(int(bucket[a]), {k: v[a:b] for k, v in ordered.items()})
        rows += n
    return {"rows": rows, "counts": counts, "epoch_min": epoch_min, "epoch_max": epoch_max,
            "pm_max": pm_max, "dtype": None if dtype is None else dtype.descr}


def _assign_buckets(bucket_rows: np.ndarray, size: int) -> list[list[int]]:
    """Buckets per rank: the largest first, each to the least loaded rank (deterministic)."""
    load = [0] * size
    out: list[list[int]] = [[] for _ in range(size)]
    for bucket in sorted(np.flatnonzero(bucket_rows), key=lambda b: (-bucket_rows[b], b)):
        rank = min(range(size), key=lambda r: (load[r], r))
        out[rank].append(int(bucket))
        load[rank] += int(bucket_rows[bucket])
    return out


def _pass_two(buckets: list[int], local: _Buckets, out_dir: Path, order: int,
              offsets: list[int], columns: list[str], dtype: np.dtype) -> int:
    """Write the shards of this rank's buckets (from the part files and the rows this rank
    kept in memory); return how many were written."""
    shards = 0
    shift = 2 * (PIXEL_ORDER - order)
    files: dict[int, list[tuple[int, Path]]] = {}
    for entry in sorted(os.listdir(local.parts)):  # b<bucket>-r<rank>.bin
        if entry.endswith(".bin"):
            bucket_text, rank_text = entry[1:-4].split("-r")
            files.setdefault(int(bucket_text), []).append((int(rank_text),
                                                           local.parts / entry))
    for bucket in buckets:
        # the pieces in rank order (a rank's file before the rows it kept): rows in input order
        pieces = []
        for rank in range(len(offsets)):
            mine = []
            for source, part in files.get(bucket, []):
                if source == rank:
                    mine += _read_pieces(part, dtype)
                    part.unlink()
            if rank == local.rank:
                mine += local.pending.pop(bucket, [])
            for piece in mine:
                piece = dict(piece)
                piece["_row"] = piece["_row"] + offsets[rank]
                pieces.append(piece)
        if not pieces:
            continue
        merged = {name: np.concatenate([p[name] for p in pieces]) if len(pieces) > 1
                  else pieces[0][name] for name in dtype.names or ()}
        shard = merged["_pix"] >> shift
        # a stable sort by shard keeps the input order within a shard; the shard's rank
        # within the bucket fits 16 bits up to order 10, which numpy sorts by radix
        within = shard - (bucket << (2 * (order - BUCKET_ORDER)))
        if order <= BUCKET_ORDER + 8:
            within = within.astype(np.uint16)
        order_ = np.argsort(within, kind="stable")
        shard = shard[order_]
        data = {name: merged[name][order_] for name in columns if name in merged}
        if "id" not in data:
            data["id"] = merged["_row"][order_] + 1
        table = pa.table({name: data[name] for name in columns})
        edges = np.flatnonzero(np.diff(shard)) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, len(shard)], strict=True):
            # no dictionary encoding (slow and useless on floating-point columns): about
            # 5x faster writes on 5000-row shards; through memory and one write: 30% faster
            sink = pa.BufferOutputStream()
            pq.write_table(table.slice(a, b - a), sink, compression="none",
                           use_dictionary=False, write_statistics=False)
            with open(shard_path(out_dir, int(shard[a])), "wb") as handle:
                handle.write(sink.getvalue())
            shards += 1
    return shards


def ingest_reference_catalog(repo: str | Path, name: str, catalog: str | Path,
                             spec: IngestSpec, *, clobber: bool = False,
                             order: int | None = None,
                             max_shard_rows: int = DEFAULT_MAX_SHARD_ROWS,
                             hdu: int | str | None = None, world: Any = None,
                             spill_bytes: int = SPILL_BYTES) -> RefcatManifest:
    """Write ``catalog`` into repository ``repo`` as the sharded reference catalog ``name``.

    Parameters
    ----------
    repo : str or Path
        A repository (a directory with a mapper) on a POSIX file system.
    name : str
        The reference catalog's name: it goes to ``repo/ref_cats/name/``.
    catalog : str or Path
        FITS (binary table), CSV (with a header line) or Parquet file.
    spec : IngestSpec
        Which columns hold what.
    clobber : bool
        Replace an existing catalog of that name (otherwise refuse).
    order : int, optional
        HEALPix order of the shards (default: chosen so that no shard has more than
        ``max_shard_rows`` stars, between 2 and 8).
    hdu : int or str, optional
        The FITS table's HDU (default: the first table).
    world : hpcpipe.comm.world.World, optional
        The ranks sharing the work (all must call this); default: this process alone.
    spill_bytes : int
        Converted rows a rank keeps in memory between the passes; beyond, they go through
        part files on disk.

    Returns
    -------
    RefcatManifest
        What was written (on every rank).

    Raises
    ------
    RefcatInputError
        A missing file or column, a bad option, an existing catalog without ``clobber``, bad
        values: on every rank, with nothing written.
    """
    world = world if world is not None else _SerialWorld()
    check_refcat_name(name)
    spec.check()
    if order is not None and not BUCKET_ORDER <= order <= PIXEL_ORDER:
        raise RefcatInputError(f"--order {order}: use {BUCKET_ORDER} to {PIXEL_ORDER}")
    root = Path(Repository.open(repo).storage.local_path(""))
    final = refcat_directory(root, name)
    if final.exists() and not clobber:
        raise RefcatInputError(f"{final}: a reference catalog {name!r} exists (use --clobber "
                               "to replace it)")
    reader = open_input(catalog, hdu)
    for option, column in spec.named_columns():
        if column not in reader.columns:
            raise RefcatInputError(
                f"{reader.path}: no column {column!r} (given by {option}{column}); "
                f"its columns: {', '.join(reader.columns)}" if option.endswith("=") else
                f"{reader.path}: no column {column!r} (given by {option}); its columns: "
                f"{', '.join(reader.columns)}")
    columns = spec.output_columns()

    error: BaseException | None = None
    tmp = None
    if world.rank == 0:
        try:
            (root / REFCAT_ROOT).mkdir(parents=True, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{name}-", dir=root / REFCAT_ROOT)
        except OSError as exc:
            error = RefcatError(f"{root / REFCAT_ROOT}: cannot write: {exc}")
    _agree(world, error)
    out_dir = Path(world.bcast(tmp))
    parts = out_dir / "_parts"

    def cleanup() -> None:
        shutil.rmtree(out_dir, ignore_errors=True)

    stats: dict[str, Any] = {}
    local = _Buckets(parts, world.rank, spill_bytes)
    try:
        parts.mkdir(parents=True, exist_ok=True)
        stats = _pass_one(reader, spec, local, world.rank, world.size)
    except (RefcatError, OSError, ValueError, pa.ArrowException) as exc:
        error = exc if isinstance(exc, RefcatError) else RefcatInputError(
            f"{reader.path}: cannot be read: {exc}")
    _agree(world, error, cleanup)
    world.barrier()
    rows = world.allgather(stats["rows"])
    offsets = [int(x) for x in np.cumsum([0, *rows[:-1]])]
    counts = world.allreduce(stats["counts"], "sum")
    total = int(sum(rows))
    if total == 0:
        _agree(world, RefcatInputError(f"{reader.path}: no rows"), cleanup)
    shard_order = order if order is not None else choose_order(counts, max_shard_rows)
    bucket_rows = counts.reshape(-1, 4 ** (MAX_ORDER - BUCKET_ORDER)).sum(axis=1)
    mine = _assign_buckets(bucket_rows, world.size)[world.rank]
    descrs = [d for d in world.allgather(stats["dtype"]) if d is not None]
    dtype = np.dtype([tuple(x) for x in descrs[0]]) if descrs else None
    written = 0
    try:
        local.spill(set(local.pending) - set(mine))  # the other ranks' buckets
    except OSError as exc:
        error = RefcatError(f"{parts}: cannot write: {exc}")
    _agree(world, error, cleanup)
    try:
        written = _pass_two(mine, local, out_dir, shard_order, offsets,
                            [c.name for c in columns],
                            dtype if dtype is not None else np.dtype([]))  # no rows: unused
    except (OSError, ValueError, pa.ArrowException) as exc:
        error = RefcatError(f"{out_dir}: writing the shards failed: {exc}\n"
                            f"{traceback.format_exc()}")
    _agree(world, error, cleanup)
    shard_count = int(world.allreduce(written, "sum"))
    epoch_min = world.allreduce(stats["epoch_min"], "min")
    epoch_max = world.allreduce(stats["epoch_max"], "max")
    pm_max = world.allreduce(stats["pm_max"], "max")
    manifest = RefcatManifest(
        name=name, order=int(shard_order), row_count=total, shard_count=shard_count,
        columns=columns, bands=spec.bands,
        epoch_min=float(epoch_min), epoch_max=float(epoch_max),
        has_proper_motion=spec.pm_ra is not None, max_proper_motion=float(pm_max),
        source=str(Path(catalog).resolve()),
        options={"pm_ra_includes_cos_dec": True, "input_ranks": world.size})
    if world.rank == 0:
        try:
            shutil.rmtree(parts, ignore_errors=True)
            write_manifest(out_dir, manifest)
            _move_into_place(out_dir, final, clobber)
        except (OSError, RefcatError) as exc:
            error = exc if isinstance(exc, RefcatError) else RefcatError(
                f"{final}: cannot be put in place: {exc}")
    _agree(world, error, cleanup)
    world.barrier()
    return manifest


def _move_into_place(tmp: Path, final: Path, clobber: bool) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` (with ``clobber``) is removed after."""
    if not (tmp / MANIFEST).exists():
        raise RefcatError(f"{tmp}: no manifest written")
    trash = None
    if final.exists():
        if not clobber:
            raise RefcatInputError(f"{final}: a reference catalog exists (use --clobber)")
        trash = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}old-", dir=final.parent))
        os.replace(final, trash / final.name)
    os.replace(tmp, final)
    if trash is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(trash)
