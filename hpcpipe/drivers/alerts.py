"""``hpcpipe alerts``: Level 1 alert production, visit by visit, over the MPI pool.

For each visit, in time order (``--visit V``, ``--night YYYY-MM-DD`` or ``--id``):

1. every CCD of the visit, spread over the ranks: ``processCcd`` (unless its
   ``processCcd_metadata``, the completion marker, is there already), then
   ``imageDifference`` (the coadd template warped onto the calexp, PSF-matched,
   subtracted; diaSources detected and measured);
2. on the master: association of the visit's diaSources with the diaObjects of the APDB
   (:func:`hpcpipe.ap.association.associate_visit`), stored in one transaction;
3. every CCD again, on the rank that holds its images in memory (the pool's
   ``mode="previous"``): one alert per diaSource, with its object's history and cutouts,
   written to ``ALERT_DIR/v<visit>/alerts_v<visit>_c<ccd>.avro`` (Avro, see
   :mod:`hpcpipe.ap.alerts`).

A CCD that fails (no template, a bad raw file...) is reported with its reason and the others
go on. Running the same command again resumes: (visit, ccd) pairs already in the APDB are not
associated again, and alert files already written are kept. The run ends with a table per
visit and the run report (``report.json``, ``timeline.png``, ``report.html``); the exit
status is the number of failed units (at most 255), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcpipe.ap.alerts import make_alert, write_alerts
from hpcpipe.ap.apdb import DIA_SOURCE_DTYPE, Apdb
from hpcpipe.ap.association import associate_visit
from hpcpipe.comm.journal import Journal
from hpcpipe.config import Config, ConfigField, Field
from hpcpipe.diffim.image_difference import ImageDifferenceTask
from hpcpipe.drivers.report import JOURNAL_NAME
from hpcpipe.pipe.process_ccd import ProcessCcdTask
from hpcpipe.table import Catalog
from hpcpipe.task.cmdline import process_data_ref

__all__ = ["AlertsConfig", "AlertRequest", "FLAG_BITS", "add_alerts_command",
           "alert_path", "dia_source_rows", "run_alerts", "run_alerts_command"]

PROG = "hpcpipe alerts"
log = logging.getLogger("hpcpipe.alerts")

#: The diaSource flag bits of the APDB and the alerts, and the diaSrc fields they come from.
FLAG_BITS = (
    (1 << 0, "base_PixelFlags_flag_edge"),
    (1 << 1, "base_PixelFlags_flag_saturated"),
    (1 << 2, "base_PixelFlags_flag_interpolated"),
    (1 << 3, "base_PixelFlags_flag_bad"),
    (1 << 4, "is_negative"),
    (1 << 5, "base_PsfFlux_flag"),
    (1 << 6, "ip_diffim_forced_PsfFlux_flag"),
    (1 << 7, "ip_diffim_DipoleFit_flag"),
)


class AlertsConfig(Config):
    """The alert production's config: its two tasks' configs and its own settings."""

    processCcd = ConfigField("single-frame processing of CCDs not processed yet",
                             ProcessCcdTask.ConfigClass)
    imageDifference = ConfigField("template subtraction, diaSource detection and measurement",
                                  ImageDifferenceTask.ConfigClass)
    matchRadius = Field("association radius (arcsec)", float, 1.0, check=lambda v: v > 0)
    cutoutSize = Field("side of the alerts' cutouts (pixels)", int, 30, check=lambda v: v >= 5)


@dataclass
class AlertRequest:
    """What ``hpcpipe alerts`` was asked to do."""

    inputs: Path
    output: Path
    data_ids: list[dict[str, Any]]
    config: Any
    apdb: Path
    alert_dir: Path
    report_dir: Path
    clobber_config: bool = False
    retries: int = 0
    timeout: float | None = None
    doraise: bool = False


@dataclass
class VisitSummary:
    """One visit's outcome."""

    visit: int
    band: str
    ccds: int = 0
    failed: list[str] = field(default_factory=list)
    dia_sources: int = 0
    new_objects: int = 0
    alerts: int = 0
    seconds: float = 0.0


def alert_path(alert_dir: Path, visit: int, ccd: int) -> Path:
    """Where the alerts of (visit, ccd) go."""
    return Path(alert_dir) / f"v{visit:07d}" / f"alerts_v{visit:07d}_c{ccd:03d}.avro"


def dia_source_rows(catalog: Catalog, band: str) -> np.ndarray:
    """A ``deepDiff_diaSrc`` catalog as APDB diaSource rows (:data:`DIA_SOURCE_DTYPE`)."""
    n = len(catalog)
    rows = np.zeros(n, DIA_SOURCE_DTYPE)
    if n == 0:
        return rows
    rows["diaSourceId"] = catalog["id"]
    rows["visit"], rows["ccd"], rows["band"] = catalog["visit"], catalog["ccd"], band
    rows["midpointMjdTai"] = catalog["midPointTai"]
    rows["ra"] = np.degrees(catalog["coord_ra"])
    rows["dec"] = np.degrees(catalog["coord_dec"])
    rows["x"], rows["y"] = catalog["base_SdssCentroid_x"], catalog["base_SdssCentroid_y"]
    rows["psfFlux"] = catalog["base_PsfFlux_flux"]
    rows["psfFluxErr"] = catalog["base_PsfFlux_fluxErr"]
    rows["scienceFlux"] = catalog["ip_diffim_forced_PsfFlux_flux"]
    rows["scienceFluxErr"] = catalog["ip_diffim_forced_PsfFlux_fluxErr"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rows["snr"] = rows["psfFlux"] / rows["psfFluxErr"]
    rows["isDipole"] = catalog["ip_diffim_DipoleFit_flag_classification"]
    names = set(catalog.schema.names)
    flags = np.zeros(n, np.int64)
    for bit, name in FLAG_BITS:
        if name in names:
            flags |= np.where(np.asarray(catalog[name], bool), bit, 0)
    rows["flags"] = flags
    return rows


# --- the units (run on the workers) ---------------------------------------------------------
def _butler(cache: Any) -> Any:
    from hpcpipe.butler import Butler

    if getattr(cache, "alert_butler", None) is None:
        cache.alert_butler = Butler(cache.alert_inputs, outputs=cache.alert_output)
        cache.alert_images = {}
    return cache.alert_butler


def _difference_unit(cache: Any, unit: tuple[int, int, str]) -> np.ndarray:
    """processCcd if needed, then imageDifference, of one CCD; its diaSources as rows."""
    visit, ccd, band = unit
    butler = _butler(cache)
    config = cache.alert_config
    ref = butler.dataRef("raw", visit=visit, ccd=ccd)
    # processCcd_metadata, written last, marks a finished processCcd (as for hpcpipe drp):
    # a calexp alone may be left by a run killed before the CCD's src was written
    if not butler.datasetExists("processCcd_metadata", visit=visit, ccd=ccd):
        process_data_ref(ProcessCcdTask(config=config.processCcd), ref)
    result = process_data_ref(ImageDifferenceTask(config=config.imageDifference), ref)
    calexp = butler.get("calexp", visit=visit, ccd=ccd)
    cache.alert_images[(visit, ccd)] = (result.subtractedExposure, calexp,
                                        result.warpedTemplate)
    return dia_source_rows(result.diaSources, band)


def _alert_unit(cache: Any, unit: tuple[int, int, str]) -> int:
    """Write the alerts of one CCD from the APDB and the CCD's images."""
    visit, ccd, band = unit
    butler = _butler(cache)
    images = cache.alert_images.pop((visit, ccd), None)
    if images is None:  # another rank made them (a retry, or a resumed run): read them
        from hpcpipe.diffim.template import GetCoaddAsTemplateTask

        calexp = butler.get("calexp", visit=visit, ccd=ccd)
        difference = butler.get("deepDiff_differenceExp", visit=visit, ccd=ccd)
        if butler.datasetExists("deepDiff_warpedExp", visit=visit, ccd=ccd):
            template = butler.get("deepDiff_warpedExp", visit=visit, ccd=ccd)
        else:
            template = GetCoaddAsTemplateTask().run_butler(butler, calexp, band).template
        images = (difference, calexp, template)
    difference, science, template = images
    with Apdb(cache.alert_apdb) as apdb:
        sources = apdb.sources_of_visit(visit, ccd)
        ids = np.unique(sources["diaObjectId"])
        history = apdb.sources_of(ids)
        objects = apdb.objects(ids)
    by_id = {int(o["diaObjectId"]): o for o in objects}
    alerts = []
    size = int(cache.alert_config.cutoutSize)
    for source in sources:
        oid = int(source["diaObjectId"])
        mine = history[history["diaObjectId"] == oid]
        alerts.append(make_alert(source, mine, by_id.get(oid), difference, science, template,
                                 cutout_size=size))
    return write_alerts(alert_path(cache.alert_dir, visit, ccd), alerts)


# --- the master -----------------------------------------------------------------------------
def _visits(butler: Any, data_ids: list[dict[str, Any]]) -> list[tuple[int, str, str, list]]:
    """(visit, filter, dateObs, [ccd...]) for the data ids, in time order."""
    found: dict[int, tuple[str, str, set[int]]] = {}
    for data_id in data_ids:
        for ref in butler.subset("raw", data_id):
            d = ref.dataId
            entry = found.setdefault(int(d["visit"]), (str(d["filter"]), str(d["dateObs"]),
                                                       set()))
            entry[2].add(int(d["ccd"]))
    ordered = sorted(found.items(), key=lambda kv: (kv[1][1], kv[0]))
    return [(v, f, t, sorted(c)) for v, (f, t, c) in ordered]


def run_alerts(pool: Any, request: AlertRequest) -> tuple[list[VisitSummary], list[Any]]:
    """Run the alert production (on the master of ``pool``); returns the per-visit summaries
    and the pool's unit records."""
    from hpcpipe.butler import Butler
    from hpcpipe.drivers.drp import write_configs

    butler = Butler(request.inputs, outputs=request.output)
    visits = _visits(butler, request.data_ids)
    if not visits:
        raise AlertUsageError("--id", f"no raw data in {request.inputs} matches "
                              f"{request.data_ids}")
    write_configs(butler, {"processCcd": request.config.processCcd,
                           "imageDifference": request.config.imageDifference},
                  request.clobber_config)
    bands = tuple(sorted({str(b) for b in butler.queryMetadata("raw", "filter")}))
    Apdb(request.apdb, bands=None if request.apdb.exists() else bands, create=True).close()
    # every unit's end goes to the journal as it happens (hpcpipe report rebuilds the report
    # from it after a run that was killed)
    pool.journal = Journal(request.report_dir / JOURNAL_NAME,
                           f"hpcpipe alerts: {request.inputs}")
    pool.store(alert_inputs=str(request.inputs), alert_output=str(request.output),
               alert_config=request.config, alert_apdb=str(request.apdb),
               alert_dir=str(request.alert_dir), alert_butler=None)
    summaries = []
    for visit, band, _date, ccds in visits:
        start = time.perf_counter()
        summary = VisitSummary(visit, band, ccds=len(ccds))
        with Apdb(request.apdb) as apdb:
            stored = {c for v, c in apdb.ccd_visits() if v == visit}
        todo = [(visit, c, band) for c in ccds if c not in stored]
        keys = [f"imageDifference visit={visit} ccd={c}" for _, c, _ in todo]
        results = pool.map(_difference_unit, todo, keys=keys, name="imageDifference")
        done = [u for u, r in zip(todo, results, strict=True) if not _failed(r)]
        summary.failed += [f"{k}: {r.error}" for k, r in zip(keys, results, strict=True)
                           if _failed(r)]
        rows = [r for r in results if not _failed(r)]
        if done:
            sources = np.concatenate(rows) if rows else np.zeros(0, DIA_SOURCE_DTYPE)
            with Apdb(request.apdb) as apdb:
                result = associate_visit(apdb, visit, sources,
                                         radius_arcsec=request.config.matchRadius,
                                         ccds=[c for _, c, _ in done])
            summary.new_objects = result.n_new
        alert_units = [(visit, c, band) for c in ccds if c in stored or (visit, c, band) in done]
        alert_units = [u for u in alert_units
                       if not alert_path(request.alert_dir, u[0], u[1]).exists()]
        alert_keys = [f"alerts visit={v} ccd={c}" for v, c, _ in alert_units]
        counts = pool.map(_alert_unit, alert_units, keys=alert_keys, mode="previous",
                          name="alerts")
        summary.failed += [f"{k}: {r.error}" for k, r in zip(alert_keys, counts, strict=True)
                           if _failed(r)]
        summary.alerts = sum(int(c) for c in counts if not _failed(c))
        with Apdb(request.apdb) as apdb:
            summary.dia_sources = len(apdb.sources_of_visit(visit))
        summary.seconds = time.perf_counter() - start
        log.info("visit %d (%s): %d CCDs, %d diaSources, %d new diaObjects, %d alerts, "
                 "%d failed, %.1f s", visit, band, summary.ccds, summary.dia_sources,
                 summary.new_objects, summary.alerts, len(summary.failed), summary.seconds)
        summaries.append(summary)
    pool.journal.close()
    pool.journal = None
    return summaries, pool.records


def _failed(result: Any) -> bool:
    from hpcpipe.comm.records import UnitFailure

    return isinstance(result, UnitFailure)


class AlertUsageError(Exception):
    """A usage error found once the repository is open (exit status 2)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"argument {option}: {message}")


def format_alert_summary(summaries: Sequence[VisitSummary], seconds: float, ranks: int) -> str:
    """The table printed at the end of a run."""
    lines = [f"{'visit':>8} {'band':>4} {'ccds':>5} {'failed':>6} {'diaSources':>10} "
             f"{'new objects':>11} {'alerts':>7} {'seconds':>8}"]
    for s in summaries:
        lines.append(f"{s.visit:>8} {s.band:>4} {s.ccds:>5} {len(s.failed):>6} "
                     f"{s.dia_sources:>10} {s.new_objects:>11} {s.alerts:>7} {s.seconds:>8.1f}")
    for s in summaries:
        for key in s.failed:
            lines.append(f"FAILED {key}")
    lines.append(f"{len(summaries)} visit(s) in {seconds:.1f} s on {ranks} rank(s)")
    return "\n".join(lines)


# --- the command line ---------------------------------------------------------------------
def parse_alerts_args(argv: Sequence[str]) -> AlertRequest:
    """Parse ``hpcpipe alerts`` arguments (exits with status 2 naming the option)."""
    from hpcpipe.task.argparser import build_argument_parser, non_negative_int, positive_float
    from hpcpipe.task.cmdline import camera_defaults, repository_keys, repository_paths

    parser = build_argument_parser(
        PROG, description="Level 1 alert production: difference imaging, association and "
        "alerts, visit by visit in time order.", config_class=AlertsConfig,
        task_name="alerts")
    parser.add_argument("--visit", type=int, nargs="+", metavar="V",
                        help="the visits to process (or --id visit=..., or --night)")
    parser.add_argument("--night", metavar="YYYY-MM-DD",
                        help="every visit of the night (the registry's date key)")
    parser.add_argument("--apdb", type=Path, metavar="PATH",
                        help="the APDB file (default OUT/apdb.sqlite)")
    parser.add_argument("--alert-dir", type=Path, metavar="DIR",
                        help="the alert stream directory (default OUT/alerts)")
    parser.add_argument("--retries", type=non_negative_int, default=0, metavar="N",
                        help="try a failed unit N more times (default 0)")
    parser.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help="fail a unit that runs longer than this")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="where to write the run report (default OUT/report-alerts)")
    ns = parser.parse_task_args(
        list(argv), known_id_keys=repository_keys(parser),
        camera_defaults=camera_defaults(["processCcd", "imageDifference"], nested=True))
    data_ids = list(ns.data_ids) if ns.id_strings else []
    if ns.visit:
        data_ids += [{"visit": v} for v in ns.visit]
    if ns.night:
        import datetime

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
    return AlertRequest(inputs, output, data_ids, config, ns.apdb or output / "apdb.sqlite",
                        ns.alert_dir or output / "alerts", ns.report or output / "report-alerts",
                        clobber_config=ns.clobber_config, retries=ns.retries,
                        timeout=ns.timeout, doraise=ns.doraise)


def run_alerts_command(argv: Sequence[str], world: Any = None) -> int:
    """Parse the arguments and run on the ranks of ``world``; returns the exit status (0 on
    the workers)."""
    from hpcpipe.comm.pool import Pool
    from hpcpipe.comm.world import World
    from hpcpipe.drivers.drp import DrpUsageError
    from hpcpipe.drivers.report import write_report
    from hpcpipe.errors import HpcpipeError

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
    summaries, records = outcome
    write_report(records, request.report_dir, title=f"hpcpipe alerts: {request.inputs}")
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
    cmd.add_argument("alerts_args", nargs=argparse.REMAINDER, metavar="...",
                     help="REPO and the options")
    cmd.set_defaults(handler=lambda args: run_alerts_command(args.alerts_args))
