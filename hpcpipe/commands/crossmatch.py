"""``hpcpipe crossmatch REPO USER_FILE --output OUT``: the user's catalog matched with the release.

On a local Dask cluster (``--workers N`` processes), or, with ``--dask-mpi`` under ``mpirun``,
on a Dask cluster made of the MPI ranks by ``dask-mpi`` (rank 0: scheduler, rank 1: this
command, ranks 2 and up: workers; so ``mpirun -n 4`` gives 2 workers). The work is
:func:`hpcpipe.catalog.crossmatch.crossmatch_release` (hats-import, then LSDB).
"""

from __future__ import annotations

import argparse
from typing import Any

from hpcpipe.argtypes import positive_float, positive_int
from hpcpipe.commands.options import usage_error

__all__ = ["add_crossmatch_command"]


def run_crossmatch(args: argparse.Namespace) -> int:
    """Crossmatch on Dask; 2 for a bad REPO or USER_FILE."""
    # Dask, LSDB and hats-import are imported when the command runs: start-up cost
    from distributed import Client, LocalCluster

    # start-up cost: the catalog and the query driver, when the command runs
    from hpcpipe.catalog.crossmatch import crossmatch_release
    from hpcpipe.drivers.query import find_hats_directory
    from hpcpipe.errors import HpcpipeError

    if args.dask_mpi:
        from dask_mpi import initialize  # optional dependency: dask-mpi, only for --dask-mpi

        # ranks other than 1 serve as the scheduler or a worker and exit when the client ends
        initialize(interface=args.interface, nthreads=args.threads, dashboard=False)
    try:
        hats_dir = find_hats_directory(args.repo)
    except HpcpipeError as exc:
        return usage_error("crossmatch", f"argument REPO: {exc}")
    try:
        if args.dask_mpi:
            with Client() as client:
                count = crossmatch_release(hats_dir, args.user_file, args.output, client,
                                           table=args.table, radius_arcsec=args.radius,
                                           ra_column=args.ra_column, dec_column=args.dec_column)
        else:
            with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads,
                              processes=True, dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                count = crossmatch_release(hats_dir, args.user_file, args.output, client,
                                           table=args.table, radius_arcsec=args.radius,
                                           ra_column=args.ra_column, dec_column=args.dec_column)
    except HpcpipeError as exc:
        return usage_error("crossmatch", f"argument USER_FILE: {exc}")
    print(f"{args.output}: {count} matches within {args.radius:g} arcsec")
    return 0


def add_crossmatch_command(subparsers: Any) -> None:
    """Add ``hpcpipe crossmatch REPO USER_FILE --output OUT`` to the command line."""
    parser = subparsers.add_parser(
        "crossmatch", help="crossmatch a user catalog with the release (hats-import + LSDB on "
        "Dask)", description="Import the user's catalog (CSV, FITS, Parquet; ra/dec in "
        "degrees) as HATS with hats-import, crossmatch it with a release catalog with LSDB "
        "(nearest release row within the radius), and write the matches.")
    parser.add_argument("repo", metavar="REPO", help="repository, release or HATS directory")
    parser.add_argument("user_file", metavar="USER_FILE", help="the user's catalog")
    parser.add_argument("--output", required=True, metavar="FILE",
                        help="the matches (.parquet or .fits)")
    parser.add_argument("--table", choices=["objects", "sources", "forced"], default="objects",
                        help="the release catalog (default objects)")
    parser.add_argument("--radius", type=positive_float, default=1.0, metavar="ARCSEC",
                        help="match radius in arcsec (default 1)")
    parser.add_argument("--ra-column", default="ra", help="the user's RA column (degrees)")
    parser.add_argument("--dec-column", default="dec", help="the user's Dec column (degrees)")
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="local Dask worker processes (default 2)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="threads per Dask worker (default 1)")
    parser.add_argument("--dask-mpi", action="store_true",
                        help="use a Dask cluster started by dask-mpi over the MPI ranks (run "
                        "under mpirun with at least 3 ranks)")
    parser.add_argument("--interface", default=None,
                        help="network interface of the dask-mpi scheduler and workers (for "
                        "example ib0 on a cluster, lo on one machine)")
    parser.set_defaults(handler=run_crossmatch)
