"""``hpcpipe refcat``: external reference catalogs in a repository.

::

    hpcpipe refcat ingest REPO NAME catalog.parquet --ra ra --dec dec \\
        --mag g=phot_g_mean_mag --mag-err g=g_err --pm-ra pmra --pm-dec pmdec --epoch 2016.0
    hpcpipe refcat list REPO
    hpcpipe refcat describe REPO NAME

``ingest`` runs on every rank under ``mpirun``/``srun`` and shares the work. Usage errors (a
missing column, an existing NAME without ``--clobber``, a bad option) print one line and exit
with status 2, with nothing written.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from hpcpipe.commands.options import usage_error

__all__ = ["add_refcat_command"]


def _band_column(text: str) -> tuple[str, str]:
    band, sep, column = text.partition("=")
    if not sep or not band.strip() or not column.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: use BAND=COLUMN (e.g. g=phot_g_mean_mag)")
    return band.strip(), column.strip()


def _mapping(pairs: list[tuple[str, str]] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for band, column in pairs or []:
        if band in out:
            raise ValueError(f"{option} {band}=...: band given twice")
        out[band] = column
    return out


def _hdu(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _cmd_ingest(args: argparse.Namespace) -> int:
    # imported when the command runs (start-up cost): building the parser stays light
    from hpcpipe.butler.errors import ButlerError
    from hpcpipe.comm.world import World
    from hpcpipe.refcat.ingest import IngestSpec, ingest_reference_catalog, jyear_to_mjd
    from hpcpipe.refcat.layout import RefcatError, RefcatInputError

    world = World()
    prog = "hpcpipe refcat ingest"
    try:
        spec = IngestSpec(
            ra=args.ra, dec=args.dec, coord_unit=args.coord_unit, ra_err=args.ra_err,
            dec_err=args.dec_err, pos_err_unit=args.pos_err_unit,
            mags=_mapping(args.mag, "--mag"), mag_errs=_mapping(args.mag_err, "--mag-err"),
            fluxes=_mapping(args.flux, "--flux"),
            flux_errs=_mapping(args.flux_err, "--flux-err"), flux_unit=args.flux_unit,
            pm_ra=args.pm_ra, pm_dec=args.pm_dec, pm_ra_err=args.pm_ra_err,
            pm_dec_err=args.pm_dec_err, pm_ra_cos_dec=not args.pm_ra_no_cos_dec,
            epoch=None if args.epoch is None else float(jyear_to_mjd(args.epoch)),
            epoch_col=args.epoch_col, epoch_format=args.epoch_format,
            parallax=args.parallax, parallax_err=args.parallax_err, id=args.id)
        start = time.perf_counter()
        manifest = ingest_reference_catalog(args.repo, args.name, args.catalog, spec,
                                            clobber=args.clobber, order=args.order,
                                            hdu=args.hdu, world=world)
    except (RefcatInputError, ButlerError, ValueError) as exc:
        if world.rank == 0:
            print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except RefcatError as exc:
        if world.rank == 0:
            print(f"{prog}: failed: {exc}", file=sys.stderr, flush=True)
        return 1
    if world.rank == 0:
        seconds = time.perf_counter() - start
        print(f"reference catalog {manifest.name!r}: {manifest.row_count} stars in "
              f"{manifest.shard_count} shards (HEALPix order {manifest.order}), bands "
              f"{', '.join(manifest.bands)}, in {seconds:.1f} s on {world.size} rank(s)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    # imported when the command runs (start-up cost): building the parser stays light
    from hpcpipe.butler.errors import ButlerError
    from hpcpipe.butler.repository import Repository
    from hpcpipe.refcat.layout import list_reference_catalogs, read_manifest, refcat_directory

    try:
        root = Repository.open(args.repo).storage.local_path("")
    except ButlerError as exc:
        return usage_error("refcat list", f"{exc}")
    for name in list_reference_catalogs(root):
        m = read_manifest(refcat_directory(root, name))
        print(f"{name}: {m.row_count} stars, bands {','.join(m.bands)}, "
              f"{'proper motions' if m.has_proper_motion else 'no proper motions'}")
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    # imported when the command runs (start-up cost): building the parser stays light
    from hpcpipe.butler.errors import ButlerError
    from hpcpipe.butler.repository import Repository
    from hpcpipe.refcat.layout import RefcatError, read_manifest, refcat_directory

    try:
        root = Repository.open(args.repo).storage.local_path("")
        m = read_manifest(refcat_directory(root, args.name))
    except (ButlerError, RefcatError) as exc:
        return usage_error("refcat describe", f"{exc}")
    print(f"reference catalog {m.name} (format {m.format_version}) from {m.source}")
    print(f"  {m.row_count} stars in {m.shard_count} Parquet shards, {m.indexing} order "
          f"{m.order}")
    print(f"  epochs MJD {m.epoch_min:.2f} to {m.epoch_max:.2f} (TAI); "
          + ("proper motions, at most "
             f"{m.max_proper_motion * 206264806.2:.1f} mas/yr" if m.has_proper_motion
             else "no proper motions"))
    for c in m.columns:
        print(f"  {c.name:16s} {c.dtype:8s} {c.units or '-':8s} {c.doc}")
    return 0


def add_refcat_command(subparsers: Any) -> None:
    """Add ``hpcpipe refcat ingest|list|describe`` to the command line."""
    refcat = subparsers.add_parser("refcat", help="external reference catalogs in a repository",
                                   description=__doc__.split("\n")[0])
    sub = refcat.add_subparsers(dest="refcat_command", required=True, metavar="ACTION")
    ing = sub.add_parser(
        "ingest", help="write a FITS, CSV or Parquet star catalog as a sharded reference "
        "catalog", description="Write a star catalog into REPO/ref_cats/NAME as HEALPix shards "
        "with LSST's reference-catalog columns (see docs/refcat.md). Runs in parallel under "
        "mpirun.")
    ing.add_argument("repo", metavar="REPO", help="the repository")
    ing.add_argument("name", metavar="NAME", help="the reference catalog's name (e.g. gaia_dr3)")
    ing.add_argument("catalog", metavar="CATALOG",
                     help="the input: .fits (binary table), .csv (header line) or .parquet")
    ing.add_argument("--ra", required=True, metavar="COL", help="right ascension column (deg)")
    ing.add_argument("--dec", required=True, metavar="COL", help="declination column (deg)")
    ing.add_argument("--coord-unit", choices=("deg", "rad"), default="deg",
                     help="unit of --ra and --dec (deg)")
    ing.add_argument("--ra-err", metavar="COL", help="RA error column (along the sky, as "
                     "Gaia's ra_error)")
    ing.add_argument("--dec-err", metavar="COL", help="Dec error column")
    ing.add_argument("--pos-err-unit", default="mas", choices=("mas", "arcsec", "deg", "rad"),
                     help="unit of --ra-err, --dec-err (mas)")
    ing.add_argument("--mag", type=_band_column, action="append", metavar="BAND=COL",
                     help="an AB magnitude column for a band (repeat for each band)")
    ing.add_argument("--mag-err", type=_band_column, action="append", metavar="BAND=COL",
                     help="its error column (mag)")
    ing.add_argument("--flux", type=_band_column, action="append", metavar="BAND=COL",
                     help="a flux column for a band, in --flux-unit")
    ing.add_argument("--flux-err", type=_band_column, action="append", metavar="BAND=COL",
                     help="its error column")
    ing.add_argument("--flux-unit", default="nJy", help="unit of --flux columns (nJy; any "
                     "astropy flux density unit: uJy, mJy, Jy...)")
    ing.add_argument("--pm-ra", metavar="COL", help="proper motion in RA (mas/yr), including "
                     "the cos(dec) factor as Gaia's pmra (see --pm-ra-no-cos-dec)")
    ing.add_argument("--pm-dec", metavar="COL", help="proper motion in Dec (mas/yr)")
    ing.add_argument("--pm-ra-err", metavar="COL", help="pm RA error (mas/yr)")
    ing.add_argument("--pm-dec-err", metavar="COL", help="pm Dec error (mas/yr)")
    ing.add_argument("--pm-ra-no-cos-dec", action="store_true",
                     help="the --pm-ra column is dRA/dt without the cos(dec) factor")
    ing.add_argument("--epoch", type=float, metavar="YEAR",
                     help="epoch of the positions as a Julian year (2016.0 for Gaia DR3); "
                     "required with proper motions unless --epoch-col; default 2000.0")
    ing.add_argument("--epoch-col", metavar="COL", help="a column with each star's epoch")
    ing.add_argument("--epoch-format", choices=("jyear", "mjd", "jd"), default="jyear",
                     help="what --epoch-col holds (jyear)")
    ing.add_argument("--parallax", metavar="COL", help="parallax column (mas)")
    ing.add_argument("--parallax-err", metavar="COL", help="parallax error column (mas)")
    ing.add_argument("--id", metavar="COL", help="integer id column (default: row number)")
    ing.add_argument("--hdu", type=_hdu, default=None,
                     help="FITS table HDU (number or name; default: the first table)")
    ing.add_argument("--order", type=int, default=None,
                     help="HEALPix order of the shards (default: chosen so that no shard has "
                     "more than 20000 stars)")
    ing.add_argument("--clobber", action="store_true",
                     help="replace an existing reference catalog of that name")
    ing.set_defaults(handler=_cmd_ingest)
    lst = sub.add_parser("list", help="the reference catalogs of a repository")
    lst.add_argument("repo", metavar="REPO")
    lst.set_defaults(handler=_cmd_list)
    desc = sub.add_parser("describe", help="a reference catalog's columns, epochs and shards")
    desc.add_argument("repo", metavar="REPO")
    desc.add_argument("name", metavar="NAME")
    desc.set_defaults(handler=_cmd_describe)
