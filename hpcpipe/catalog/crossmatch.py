"""Crossmatch a user's catalog with the release through LSDB, on a Dask cluster.

1. The user's file (CSV, FITS or Parquet with ``ra``/``dec`` in degrees, or other column
   names) becomes a HATS catalog with ``hats-import``'s own pipeline
   (:func:`hats_import.pipeline_with_client`) on the Dask cluster;
2. LSDB crossmatches it, partition by partition on the cluster, with the release's
   ``objects`` (or ``sources``, ``forced``): for every row of the user's catalog, the nearest
   release row within the radius. The release catalog is the right-hand side because it has
   a margin cache, so matches across HEALPix pixel edges are not lost;
3. the matches (the user's columns with suffix ``_user``, the release's with ``_release``,
   and ``_dist_arcsec``) are written to Parquet or FITS.

The Dask cluster is either a local one (:class:`distributed.LocalCluster` with ``workers``
processes) or one started by ``dask-mpi`` over the ranks of an ``mpirun`` (rank 0 the
scheduler, rank 1 runs this code, the other ranks are workers): see
``jobs/crossmatch.slurm`` and ``docs/release_database.md``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import hats_import
import lsdb
import pyarrow.parquet as pq
from astropy.table import Table
from hats_import.catalog.arguments import ImportArguments

from hpcpipe.errors import HpcpipeError
from hpcpipe.io.atomic import atomic_path

__all__ = ["CrossmatchError", "import_user_catalog", "crossmatch_release"]


class CrossmatchError(HpcpipeError, ValueError):
    """A user catalog that cannot be imported or matched (format, columns)."""


_READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".fits": "fits",
            ".fit": "fits"}


def import_user_catalog(path: str | Path, output: str | Path, client: Any, *,
                        name: str = "user", ra_column: str = "ra", dec_column: str = "dec",
                        pixel_threshold: int = 1_000_000) -> Path:
    """Make a HATS catalog of the user's file with hats-import on the Dask ``client``.

    Returns
    -------
    Path
        The catalog directory (``output/name``).
    """
    path = Path(path)
    if not path.is_file():
        raise CrossmatchError(f"{path}: no such file")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise CrossmatchError(f"{path}: unknown format (use .csv, .parquet or .fits)")
    try:
        if reader == "fits":
            names = Table.read(path).colnames
        elif reader == "parquet":
            names = pq.read_schema(path).names
        else:
            names = path.open().readline().strip().split(",")
    except (OSError, ValueError) as exc:
        raise CrossmatchError(f"{path}: cannot be read ({exc})") from None
    for column in (ra_column, dec_column):
        if column not in names:
            raise CrossmatchError(f"{path}: no column {column!r} (has: {', '.join(names)})")
    args = ImportArguments(
        output_path=str(output), output_artifact_name=name, input_file_list=[str(path)],
        file_reader=reader, ra_column=ra_column, dec_column=dec_column,
        catalog_type="object", pixel_threshold=pixel_threshold, simple_progress_bar=True,
        progress_bar=False, tmp_dir=str(output), resume=False)
    hats_import.pipeline_with_client(args, client)
    return Path(output) / name


def crossmatch_release(hats_dir: str | Path, user_file: str | Path, output: str | Path,
                       client: Any, *, table: str = "objects", radius_arcsec: float = 1.0,
                       ra_column: str = "ra", dec_column: str = "dec",
                       work_dir: str | Path | None = None) -> int:
    """Crossmatch the user's file with a release catalog; write the matches; their count.

    Parameters
    ----------
    hats_dir : str or Path
        The release's HATS directory.
    user_file : str or Path
        The user's catalog (CSV, FITS, Parquet; positions in degrees).
    output : str or Path
        The matches, Parquet (``.parquet``) or FITS (``.fits``).
    client : distributed.Client
        The Dask cluster.
    table : str
        The release catalog (``objects``, ``sources``, ``forced``).
    radius_arcsec : float
        Match radius.
    ra_column, dec_column : str
        The user's position columns (degrees).
    work_dir : str or Path, optional
        Where the user's HATS catalog is made (default: a temporary directory, removed).
    """
    output = Path(output)
    if output.suffix.lower() not in (".parquet", ".fits"):
        raise CrossmatchError(f"{output}: the output must be .parquet or .fits")
    release = Path(hats_dir) / table
    if not (release / "collection.properties").exists():
        raise CrossmatchError(f"{release}: no HATS catalog {table!r} in the release")
    if not radius_arcsec > 0:
        raise CrossmatchError(f"radius {radius_arcsec} arcsec is not positive")
    scratch = Path(tempfile.mkdtemp(prefix="hpcpipe-xmatch-", dir=work_dir))
    try:
        user_dir = import_user_catalog(user_file, scratch, client, ra_column=ra_column,
                                       dec_column=dec_column)
        user: lsdb.Catalog = lsdb.read_hats(user_dir)  # type: ignore[assignment]
        right: lsdb.Catalog = lsdb.read_hats(release)  # type: ignore[assignment]
        matched = user.crossmatch(right, n_neighbors=1, radius_arcsec=radius_arcsec,
                                  suffixes=("_user", "_release"), suffix_method="all_columns",
                                  require_right_margin=True)
        frame = matched.compute()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    frame = frame.reset_index(drop=True)
    result = Table.from_pandas(frame)
    with atomic_path(output) as tmp:
        result.write(tmp, format="parquet" if output.suffix.lower() == ".parquet" else "fits")
    return len(result)
