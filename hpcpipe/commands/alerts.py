"""``hpcpipe alerts``: Level 1 alert production, visit by visit, over the MPI pool.

``hpcpipe alerts REPO --output OUT (--visit V ... | --night DATE | --id ...) [options]``
runs :func:`hpcpipe.drivers.alerts.run_alerts` (see that module for what a run does); its
options are those of every command-line task (``--id``, ``--output``/``--rerun``, ``-c``/``-C``
on :class:`~hpcpipe.drivers.alerts.AlertsConfig`, ``--doraise``...), ``--visit``, ``--night``,
``--apdb``, ``--kafka-bootstrap``, ``--alert-dir``, ``--retries``, ``--timeout`` and
``--report``, parsed by :func:`parse_alerts_args`. ``hpcpipe alerts --validate DIR`` reads
every alert under DIR back with the Rubin schema file and fastavro alone, as a broker would,
and prints the counts (:func:`run_validate_command`).

The exit status is the number of failed units (at most 255), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcpipe.commands.options import add_unit_options

if TYPE_CHECKING:
    from hpcpipe.drivers.alerts import AlertRequest

__all__ = ["add_alerts_command", "parse_alerts_args", "run_alerts_command",
           "run_validate_command"]

PROG = "hpcpipe alerts"


def parse_alerts_args(argv: Sequence[str]) -> AlertRequest:
    """Parse ``hpcpipe alerts`` arguments (exits with status 2 naming the option)."""
    # the driver (its config, and so the tasks) and the task argument parser: start-up cost
    from hpcpipe.drivers.alerts import AlertRequest, AlertsConfig
    from hpcpipe.task.argparser import build_argument_parser
    from hpcpipe.task.cmdline import camera_defaults, repository_keys, repository_paths

    parser = build_argument_parser(
        PROG, description="Level 1 alert production: difference imaging, association and "
        "alerts, visit by visit in time order.", config_class=AlertsConfig,
        task_name="alerts")
    parser.add_argument("--visit", type=int, nargs="+", metavar="V",
                        help="the visits to process (or --id visit=..., or --night)")
    parser.add_argument("--night", metavar="YYYY-MM-DD",
                        help="every visit of the night (the registry's date key)")
    parser.add_argument("--apdb", metavar="PATH|URL",
                        help="the APDB: an SQLite file (default OUT/apdb.sqlite) or an "
                        "SQLAlchemy URL (postgresql+psycopg://user@/db?host=/socket/dir)")
    parser.add_argument("--kafka-bootstrap", metavar="HOST:PORT",
                        help="also produce the alerts to Kafka (topic: config kafkaTopic)")
    parser.add_argument("--alert-dir", type=Path, metavar="DIR",
                        help="the alert stream directory (default OUT/alerts)")
    add_unit_options(parser, report_default="OUT/report-alerts")
    ns = parser.parse_task_args(
        list(argv), known_id_keys=repository_keys(parser),
        camera_defaults=camera_defaults(["processCcd", "imageDifference"], nested=True))
    data_ids = list(ns.data_ids) if ns.id_strings else []
    if ns.visit:
        data_ids += [{"visit": v} for v in ns.visit]
    if ns.night:

        try:
            datetime.date.fromisoformat(ns.night)
        except ValueError:
            parser.error(f"argument --night: expected a date YYYY-MM-DD, got {ns.night!r}")
        data_ids.append({"date": ns.night})
    if not data_ids:
        parser.error("argument --visit: give the visits (--visit V, --night DATE or --id)")
    if ns.processes != 1:
        parser.error("argument -j: hpcpipe alerts runs on the MPI ranks it is launched with")
    inputs, output = repository_paths(ns)
    if output is None:
        parser.error("argument --output: give the output repository (--output or --rerun)")
    config = ns.config.copy()
    config.freeze()
    if ns.kafka_bootstrap is not None and not _host_port(ns.kafka_bootstrap):
        parser.error(f"argument --kafka-bootstrap: expected HOST:PORT[,HOST:PORT...], got "
                     f"{ns.kafka_bootstrap!r}")
    apdb: Any = ns.apdb if ns.apdb and "://" in ns.apdb else (
        Path(ns.apdb) if ns.apdb else output / "apdb.sqlite")
    return AlertRequest(inputs, output, data_ids, config, apdb,
                        ns.alert_dir or output / "alerts", ns.report or output / "report-alerts",
                        clobber_config=ns.clobber_config, retries=ns.retries,
                        timeout=ns.timeout, doraise=ns.doraise,
                        kafka_bootstrap=ns.kafka_bootstrap)


def _host_port(text: str) -> bool:
    for part in text.split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return False
    return True


def run_validate_command(argv: Sequence[str]) -> int:
    """``hpcpipe alerts --validate DIR [--schema MAJOR.MINOR]``: read every alert under DIR
    with the Rubin schema file and fastavro alone; print the counts. Exit status: 0 when
    every alert decodes and validates, 1 otherwise, 2 for a usage error."""
    # the Rubin schemas and fastavro: start-up cost
    from hpcpipe.ap.alerts import validate_alert_dir
    from hpcpipe.ap.sdm import DEFAULT_ALERT_SCHEMA, available_alert_schemas

    parser = argparse.ArgumentParser(prog=f"{PROG} --validate",
                                     description="Read an alert stream back as a broker "
                                     "would: the Rubin schema and fastavro alone.")
    parser.add_argument("--validate", type=Path, required=True, metavar="DIR")
    parser.add_argument("--schema", default=DEFAULT_ALERT_SCHEMA, metavar="MAJOR.MINOR",
                        help=f"the Rubin alert schema version (default {DEFAULT_ALERT_SCHEMA})")
    try:
        ns = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    if not ns.validate.is_dir():
        print(f"{PROG}: error: argument --validate: {ns.validate} is not a directory",
              file=sys.stderr)
        return 2
    if ns.schema not in available_alert_schemas():
        print(f"{PROG}: error: argument --schema: {ns.schema} is not shipped by "
              f"lsst-alert-packet ({', '.join(available_alert_schemas())})", file=sys.stderr)
        return 2
    counts = validate_alert_dir(ns.validate, ns.schema)
    print(f"schema {ns.schema} ({counts['schemaFile']})")
    for key in ("files", "alerts", "invalid", "withDiaObject", "prvDiaSources",
                "prvDiaForcedSources", "cutouts"):
        print(f"{key:>20}: {counts[key]}")
    print(f"{'schemaIds':>20}: {counts['schemaIds']}")
    for error in counts["errors"]:
        print(f"INVALID {error}")
    return 1 if counts["invalid"] or not counts["alerts"] and counts["files"] else 0


def run_alerts_command(argv: Sequence[str], world: Any = None) -> int:
    """Parse the arguments and run on the ranks of ``world``; returns the exit status (0 on
    the workers)."""
    # the pool and the driver: start-up cost
    from hpcpipe.comm.pool import Pool
    from hpcpipe.comm.world import World
    from hpcpipe.drivers.alerts import AlertUsageError, format_alert_summary, run_alerts
    from hpcpipe.drivers.drp import DrpUsageError
    from hpcpipe.drivers.report import rebuild_report
    from hpcpipe.errors import HpcpipeError

    if any(a == "--validate" or a.startswith("--validate=") for a in argv):
        return run_validate_command(argv)
    try:
        request = parse_alerts_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    world = world or World()
    pool = Pool(world, retries=request.retries, timeout=request.timeout,
                doraise=request.doraise, progress=True)
    start = time.perf_counter()
    try:
        outcome = pool.run(run_alerts, request)
    except (AlertUsageError, DrpUsageError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except HpcpipeError as exc:
        print(f"{PROG}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if outcome is None:  # a worker
        return 0
    summaries, _records = outcome
    # the report is rewritten from the journal every unit's end went to (as hpcpipe drp does;
    # after a killed run, hpcpipe report OUT rebuilds it the same way)
    rebuild_report(request.report_dir)
    print(format_alert_summary(summaries, time.perf_counter() - start, world.size), flush=True)
    print(f"alerts in {request.alert_dir}; APDB {request.apdb}; report "
          f"{request.report_dir / 'report.html'}")
    return min(255, sum(len(s.failed) for s in summaries))


def add_alerts_command(subparsers: Any) -> None:
    """Register ``hpcpipe alerts`` (its arguments are parsed by :func:`parse_alerts_args`)."""
    cmd = subparsers.add_parser(
        "alerts", help="Level 1: difference imaging, association and alerts for visits",
        description="hpcpipe alerts REPO --output OUT (--visit V ... | --night DATE | --id ...) "
        "[options]; `hpcpipe alerts REPO --help` lists the options.")
    cmd.add_argument("--validate", metavar="DIR",
                     help="instead: read every alert under DIR with the Rubin schema and "
                     "fastavro alone, and print the counts")
    cmd.add_argument("--schema", metavar="MAJOR.MINOR",
                     help="with --validate: the Rubin alert schema version")
    cmd.add_argument("alerts_args", nargs=argparse.REMAINDER, metavar="...",
                     help="REPO and the options")
    cmd.set_defaults(handler=_handle_alerts)


def _handle_alerts(args: Any) -> int:
    if args.validate is not None:
        extra = ["--schema", args.schema] if args.schema else []
        return run_validate_command(["--validate", args.validate, *extra, *args.alerts_args])
    return run_alerts_command(args.alerts_args)
