"""``hpcpipe alerts``: Level 1 alert production, visit by visit, over the MPI pool.

For each visit, in time order (``--visit V``, ``--night YYYY-MM-DD`` or ``--id``):

1. every CCD of the visit, spread over the ranks: ``processCcd`` (unless its
   ``processCcd_metadata``, the completion marker, is there already), then
   ``imageDifference`` (the coadd template warped onto the calexp, PSF-matched,
   subtracted; diaSources detected and measured);
2. on the master: association of the visit's diaSources with the diaObjects of the APDB
   (:func:`hpcpipe.ap.association.associate_visit`), stored in one transaction;
3. every CCD again, on the rank that holds its images in memory (the pool's
   ``mode="previous"``): forced photometry of the APDB's diaObjects on the CCD
   (:mod:`hpcpipe.ap.forced`), then one alert per diaSource in Rubin's alert schema, with
   its object's history, forced photometry and cutouts, written to
   ``ALERT_DIR/v<visit>/alerts_v<visit>_c<ccd>.alerts`` (Rubin's wire format, see
   :mod:`hpcpipe.ap.alerts`; or one file per alert) and, with ``--kafka-bootstrap``,
   produced to a Kafka topic;
4. on the master: the forced photometry stored, with the objects' forced-flux statistics.

``hpcpipe alerts --validate DIR`` reads every alert under DIR back with the Rubin schema file
and fastavro alone, as a broker would, and prints the counts.

A CCD that fails (no template, a bad raw file...) is reported with its reason and the others
go on. Running the same command again resumes: (visit, ccd) pairs already in the APDB are not
associated again, and alert files already written are kept. The run ends with a table per
visit and the run report (``report.json``, ``timeline.png``, ``report.html``); the exit
status is the number of failed units (at most 255), 2 for a usage error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.ap.alerts import (
    STREAM_SUFFIX,
    frame_alert,
    make_alert,
    produce_alerts,
    write_alert_packets,
    write_alert_stream,
)
from hpcpipe.ap.apdb import DIA_FORCED_SOURCE_DTYPE, DIA_SOURCE_DTYPE, Apdb, ApdbError
from hpcpipe.ap.association import associate_visit, now_mjd_tai, with_forced_stats
from hpcpipe.ap.forced import forced_photometry
from hpcpipe.ap.rows import dia_source_rows
from hpcpipe.ap.sdm import DEFAULT_ALERT_SCHEMA, available_alert_schemas
from hpcpipe.butler import Butler
from hpcpipe.comm.journal import Journal
from hpcpipe.comm.records import UnitFailure
from hpcpipe.config import ChoiceField, Config, ConfigField, Field
from hpcpipe.diffim.image_difference import ImageDifferenceTask
from hpcpipe.diffim.template import GetCoaddAsTemplateTask
from hpcpipe.drivers.drp import worker_butler, write_configs
from hpcpipe.drivers.report import JOURNAL_NAME
from hpcpipe.pipe.process_ccd import ProcessCcdTask
from hpcpipe.task.cmdline import process_data_ref

if TYPE_CHECKING:
    from hpcpipe.butler import Butler


log = logging.getLogger("hpcpipe.alerts")

class AlertsConfig(Config):
    """The alert production's config: its two tasks' configs and its own settings."""

    processCcd = ConfigField("single-frame processing of CCDs not processed yet",
                             ProcessCcdTask.ConfigClass)
    imageDifference = ConfigField("template subtraction, diaSource detection and measurement",
                                  ImageDifferenceTask.ConfigClass)
    matchRadius = Field("association radius (arcsec)", float, 1.0, check=lambda v: v > 0)
    cutoutSize = Field("side of the alerts' cutouts (pixels)", int, 30, check=lambda v: v >= 5)
    alertSchemaVersion = Field(
        "Rubin alert schema version (MAJOR.MINOR, shipped by lsst-alert-packet; major 11)",
        str, DEFAULT_ALERT_SCHEMA, check=lambda v: v in available_alert_schemas()
        and v.startswith("11."))
    alertFiles = ChoiceField("how the alert stream is written to files", str, {
        "ccd": "one file per CCD: length-prefixed Confluent frames (concatenate to replay)",
        "packet": "one file per alert (the exact Kafka message), a directory per CCD"},
        default="ccd")
    kafkaTopic = Field("Kafka topic the alerts go to (with --kafka-bootstrap)", str,
                       "hpcpipe-alerts", check=lambda v: bool(v))


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
    kafka_bootstrap: str | None = None


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
    forced: int = 0
    seconds: float = 0.0


def alert_path(alert_dir: Path, visit: int, ccd: int, files: str = "ccd") -> Path:
    """Where the alerts of (visit, ccd) go: a stream file, or (``files="packet"``) the
    directory of its one-alert files."""
    base = Path(alert_dir) / f"v{visit:07d}"
    if files == "packet":
        return base / f"c{ccd:03d}"
    return base / f"alerts_v{visit:07d}_c{ccd:03d}{STREAM_SUFFIX}"


# --- the units (run on the workers) ---------------------------------------------------------
def _butler(cache: Any) -> Any:
    butler, opened = worker_butler(cache, "alert", cache.alert_inputs, cache.alert_output)
    if opened:  # a new run (the master stored alert_butler=None)
        cache.alert_images = {}
    return butler


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
    info = calexp.visit_info
    return dia_source_rows(result.diaSources, band, result.subtractedExposure, now_mjd_tai(),
                           exposure_time=info.exposure_time if info is not None else np.nan)


def _alert_unit(cache: Any, unit: tuple[int, int, str]) -> tuple[int, np.ndarray]:
    """Forced photometry and the alerts of one CCD, from the APDB and the CCD's images.

    Returns the number of alerts and the forced photometry (stored by the master). Alerts
    already written (a resumed run) are not written or sent again.
    """
    visit, ccd, band = unit
    butler = _butler(cache)
    config = cache.alert_config
    images = cache.alert_images.pop((visit, ccd), None)
    if images is None:  # another rank made them (a retry, or a resumed run): read them

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
        since = float(sources["midpointMjdTai"].min()) - 365.0 if len(sources) else 0.0
        history = apdb.sources_of(ids, since)
        forced_history = apdb.forced_sources_of(ids, since)
        objects = apdb.objects(ids)
        corners = _corners(difference)
        on_ccd = apdb.objects_in_polygon(*corners) if corners is not None else objects
    info = science.visit_info
    midpoint = float(info.date.tai.mjd) if info is not None and info.date is not None else (
        float(sources["midpointMjdTai"][0]) if len(sources) else np.nan)
    forced = forced_photometry(on_ccd, difference, science, visit=visit, detector=ccd,
                               band=band, midpoint_mjd_tai=midpoint,
                               time_processed=now_mjd_tai())
    target = alert_path(cache.alert_dir, visit, ccd, config.alertFiles)
    if target.exists():
        return 0, forced
    by_id = {int(o["diaObjectId"]): o for o in objects}
    size = int(config.cutoutSize)
    packets = []
    for source in sources:
        oid = int(source["diaObjectId"])
        alert = make_alert(source, history[history["diaObjectId"] == oid], by_id.get(oid),
                           difference, science, template, cutout_size=size,
                           forced_history=forced_history[forced_history["diaObjectId"] == oid],
                           schema_version=config.alertSchemaVersion)
        packets.append((int(source["diaSourceId"]),
                        frame_alert(alert, config.alertSchemaVersion)))
    if cache.alert_kafka:
        produce_alerts(packets, cache.alert_kafka, config.kafkaTopic)
    if config.alertFiles == "packet":
        count = write_alert_packets(target, packets)
    else:
        count = write_alert_stream(target, (frame for _, frame in packets))
    return count, forced


def _corners(exposure: Any) -> tuple[list[float], list[float]] | None:
    """The sky positions of an exposure's corners (degrees), or None without a WCS."""
    if exposure.wcs is None:
        return None
    x0, y0 = exposure.xy0
    xs = [x0 - 0.5, x0 + exposure.width - 0.5, x0 + exposure.width - 0.5, x0 - 0.5]
    ys = [y0 - 0.5, y0 - 0.5, y0 + exposure.height - 0.5, y0 + exposure.height - 0.5]
    ra, dec = exposure.wcs.all_pix2world(xs, ys, 0)
    return [float(r) for r in ra], [float(d) for d in dec]


def _store_forced(apdb_path: Path, visit: int, ccd: int, forced: np.ndarray) -> None:
    """Store one CCD's forced photometry, with its objects' forced-flux statistics."""
    with Apdb(apdb_path) as apdb:
        if (visit, ccd) in set(apdb.forced_ccd_visits()):
            return
        forced = np.asarray(forced, DIA_FORCED_SOURCE_DTYPE)
        ids = np.unique(forced["diaObjectId"])
        every = np.concatenate([apdb.forced_sources_of(ids), forced])
        objects = with_forced_stats(apdb.objects(ids), every)
        apdb.store_forced(visit, ccd, forced, objects)


# --- the master -----------------------------------------------------------------------------
def _visits(butler: Butler, data_ids: list[dict[str, Any]]) -> list[tuple[int, str, str, list]]:
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

    butler = Butler(request.inputs, outputs=request.output)
    visits = _visits(butler, request.data_ids)
    if not visits:
        raise AlertUsageError("--id", f"no raw data in {request.inputs} matches "
                              f"{request.data_ids}")
    write_configs(butler, {"processCcd": request.config.processCcd,
                           "imageDifference": request.config.imageDifference},
                  request.clobber_config)
    bands = tuple(sorted({str(b) for b in butler.queryMetadata("raw", "filter")}))
    try:
        Apdb(request.apdb).close()
    except ApdbError:  # none yet (another problem is reported again, by the creation)
        Apdb(request.apdb, bands=bands, create=True).close()
    # every unit's end goes to the journal as it happens (hpcpipe report rebuilds the report
    # from it after a run that was killed)
    pool.journal = Journal(request.report_dir / JOURNAL_NAME,
                           f"hpcpipe alerts: {request.inputs}")
    pool.store(alert_inputs=str(request.inputs), alert_output=str(request.output),
               alert_config=request.config, alert_apdb=str(request.apdb),
               alert_dir=str(request.alert_dir), alert_butler=None,
               alert_kafka=request.kafka_bootstrap)
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
        with Apdb(request.apdb) as apdb:
            forced_done = {c for v, c in apdb.forced_ccd_visits() if v == visit}
        files = request.config.alertFiles
        alert_units = [(visit, c, band) for c in ccds if c in stored or (visit, c, band) in done]
        alert_units = [u for u in alert_units
                       if not (alert_path(request.alert_dir, u[0], u[1], files).exists()
                               and u[1] in forced_done)]
        alert_keys = [f"alerts visit={v} ccd={c}" for v, c, _ in alert_units]
        results = pool.map(_alert_unit, alert_units, keys=alert_keys, mode="previous",
                           name="alerts")
        summary.failed += [f"{k}: {r.error}" for k, r in zip(alert_keys, results, strict=True)
                           if _failed(r)]
        for (_, c, _), r in zip(alert_units, results, strict=True):
            if not _failed(r):
                _store_forced(request.apdb, visit, c, r[1])
                summary.alerts += int(r[0])
                summary.forced += len(r[1])
        with Apdb(request.apdb) as apdb:
            summary.dia_sources = len(apdb.sources_of_visit(visit))
        summary.seconds = time.perf_counter() - start
        log.info("visit %d (%s): %d CCDs, %d diaSources, %d new diaObjects, %d alerts, "
                 "%d forced sources, %d failed, %.1f s", visit, band, summary.ccds,
                 summary.dia_sources, summary.new_objects, summary.alerts, summary.forced,
                 len(summary.failed), summary.seconds)
        summaries.append(summary)
    pool.journal.close()
    pool.journal = None
    return summaries, pool.records


def _failed(result: Any) -> bool:

    return isinstance(result, UnitFailure)


class AlertUsageError(Exception):
    """A usage error found once the repository is open (exit status 2)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"argument {option}: {message}")


def format_alert_summary(summaries: Sequence[VisitSummary], seconds: float, ranks: int) -> str:
    """The table printed at the end of a run."""
    lines = [f"{'visit':>8} {'band':>4} {'ccds':>5} {'failed':>6} {'diaSources':>10} "
             f"{'new objects':>11} {'alerts':>7} {'forced':>7} {'seconds':>8}"]
    for s in summaries:
        lines.append(f"{s.visit:>8} {s.band:>4} {s.ccds:>5} {len(s.failed):>6} "
                     f"{s.dia_sources:>10} {s.new_objects:>11} {s.alerts:>7} {s.forced:>7} "
                     f"{s.seconds:>8.1f}")
    for s in summaries:
        for key in s.failed:
            lines.append(f"FAILED {key}")
    lines.append(f"{len(summaries)} visit(s) in {seconds:.1f} s on {ranks} rank(s)")
    return "\n".join(lines)
