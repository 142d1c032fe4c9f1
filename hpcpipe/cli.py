"""The ``hpcpipe`` command line.

Commands, each in one module of :mod:`hpcpipe.commands` (its parser and its handler):

* ``hpcpipe demo``: the built-in demonstration (run it under ``mpiexec`` for several ranks).
* ``hpcpipe info``: versions, MPI and parallel HDF5 support, and which kernels are compiled.
* ``hpcpipe report OUT``: a run's report rebuilt from its journal (after a killed run).
* ``hpcpipe submit``: a batch job script from ``jobs/``, submitted to SLURM or PBS
  (``--chain N``: a campaign of N dependent jobs).
* ``hpcpipe butler create|describe|provenance`` and ``hpcpipe ingest``: data repositories.
* ``hpcpipe camera check|list``: camera files and what raw files would become.
* ``hpcpipe simulate REPO``: a simulated survey, ingested into a repository.
* ``hpcpipe drp REPO --output OUT --id ...``: a data release production.
* ``hpcpipe release REPO``: the HDF5 (and HATS) data release files of a finished production.
* ``hpcpipe status OUT``: where a campaign stands.
* ``hpcpipe release-convert RELEASE``: the HATS catalogs of an existing HDF5 release.
* ``hpcpipe query REPO SQL``: SQL or ADQL on the release's HATS catalogs.
* ``hpcpipe serve REPO``: the release's HATS catalogs as a TAP service.
* ``hpcpipe crossmatch REPO USER_FILE``: a user's catalog matched with the release.
* ``hpcpipe alerts REPO --output OUT --visit ...``: Level 1 alert production.
* ``hpcpipe solarsystem REPO --output OUT --night DATE``: the night's solar-system processing.
* ``hpcpipe refcat ingest|list|describe``: external reference catalogs.
* ``hpcpipe run TASK REPO --id ...``: a command-line task.

The parsers are built without importing the drivers or the science: ``hpcpipe --help`` and
usage errors answer at once, and a command imports what it needs when it runs. Usage errors
exit with status 2 and a message naming the option at fault.
"""

from __future__ import annotations

import argparse
import logging
import sys

from hpcpipe.commands.alerts import add_alerts_command
from hpcpipe.commands.butler import add_butler_command
from hpcpipe.commands.camera import add_camera_command
from hpcpipe.commands.crossmatch import add_crossmatch_command
from hpcpipe.commands.demo import add_demo_command
from hpcpipe.commands.drp import add_drp_command
from hpcpipe.commands.info import add_info_command
from hpcpipe.commands.ingest import add_ingest_command
from hpcpipe.commands.query import add_query_command
from hpcpipe.commands.refcat import add_refcat_command
from hpcpipe.commands.release import add_release_command
from hpcpipe.commands.release_convert import add_release_convert_command
from hpcpipe.commands.report import add_report_command
from hpcpipe.commands.run import add_run_command
from hpcpipe.commands.serve import add_serve_command
from hpcpipe.commands.simulate import add_simulate_command
from hpcpipe.commands.solarsystem import add_solarsystem_command
from hpcpipe.commands.status import add_status_command
from hpcpipe.commands.submit import add_submit_command

__all__ = ["main", "build_parser", "COMMANDS"]

#: The commands, in the order ``hpcpipe --help`` lists them.
COMMANDS = (
    add_demo_command,
    add_info_command,
    add_report_command,
    add_submit_command,
    add_butler_command,
    add_ingest_command,
    add_camera_command,
    add_simulate_command,
    add_drp_command,
    add_release_command,
    add_status_command,
    add_release_convert_command,
    add_query_command,
    add_serve_command,
    add_crossmatch_command,
    add_alerts_command,
    add_solarsystem_command,
    add_refcat_command,
    add_run_command,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``hpcpipe`` parser: every command of :data:`COMMANDS`, each setting ``handler``."""
    parser = argparse.ArgumentParser(prog="hpcpipe", description=__doc__.split("\n")[0])
    parser.add_argument("--loglevel", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    # imported once the arguments parsed (start-up cost: --help and usage errors skip it)
    from hpcpipe.comm.logs import LOG_FORMAT, install_record_fields

    install_record_fields()  # records carry rank@host (lines of many ranks in one batch log)
    logging.basicConfig(level=args.loglevel, format=LOG_FORMAT)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
