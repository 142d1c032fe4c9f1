"""``hpcpipe solarsystem REPO --output OUT --night DATE``: the night's solar-system processing.

After a night's alert production (``hpcpipe alerts``, whose APDB is ``OUT/apdb.sqlite`` or
``--apdb``), on the diaSources that are new transients (their diaObject has one diaSource)
and attributed to no solar-system object, over the night and the ``windowDays`` before it:

1. **attribution** to the known orbits of the APDB's SSOrbit table
   (:mod:`hpcpipe.solarsystem.attribution`): predicted positions and uncertainty ellipses
   at every visit, detections within ``attributionSigma``; the attributed orbits are fitted
   again with their new detections (differential correction from the stored state);
2. **tracklets** (:mod:`hpcpipe.solarsystem.tracklets`) of what is left, night by night;
3. **HelioLinC** (:mod:`hpcpipe.solarsystem.heliolinc`) over the grid of (r, rdot)
   hypotheses, the hypotheses spread over the MPI pool's workers (one unit: a slice of
   ``hypothesesPerUnit`` hypotheses; serially in one process without MPI), then the
   orbit fits of the candidate linkages on the master;
4. the **catalogue update**, in one transaction: new and refitted SSOrbit and SSObject rows,
   an SSSource per attributed or linked diaSource and its ``ssObjectId`` in DiaSource.

The night is Rubin's ``dayObs``: the date in the UTC-12h time zone, so ``--night 2026-03-01``
covers MJD TAI from 2026-03-01T12:00 to 2026-03-02T12:00 UTC. The run writes a report,
``OUT/solarsystem/<night>.json`` (counts, timings per step, the new orbits), and prints a
summary. Exit status 0, 2 for a usage error (a bad date, no APDB), 1 for another failure.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import erfa
import numpy as np

from hpcpipe.ap.apdb import Apdb, ApdbError, new_rows
from hpcpipe.ap.ssdb import SSOBJECT_DTYPE, SSORBIT_DTYPE, SSSOURCE_DTYPE, SolarSystemDb
from hpcpipe.config import Config, Field
from hpcpipe.io.atomic import atomic_path
from hpcpipe.solarsystem import attribution, heliolinc, kepler, tracklets
from hpcpipe.solarsystem.orbit_fit import OrbitFit, fit_orbit

__all__ = ["SolarSystemConfig", "NightSummary", "night_window", "run_solarsystem",
           "format_summary"]
log = logging.getLogger("hpcpipe.solarsystem")


class SolarSystemConfig(Config):
    """Settings of the night's solar-system processing."""

    windowDays = Field("days before the night whose unattributed diaSources are linked with "
                       "it", float, 15.0, check=lambda v: v >= 0)
    minRate = Field("slowest tracklet rate (deg/day)", float, 0.02, check=lambda v: v >= 0)
    maxRate = Field("fastest tracklet rate (deg/day)", float, 2.0, check=lambda v: v > 0)
    minPairMinutes = Field("shortest time between a tracklet's detections (minutes)", float,
                           5.0, check=lambda v: v > 0)
    maxPairHours = Field("longest time between a tracklet's detections (hours)", float, 6.0,
                         check=lambda v: v > 0)
    rMin = Field("smallest heliocentric distance hypothesis (au)", float, 1.7,
                 check=lambda v: v > 0)
    rMax = Field("largest heliocentric distance hypothesis (au)", float, 4.2,
                 check=lambda v: v > 0)
    nR = Field("distance hypotheses (geometric steps)", int, 24, check=lambda v: v >= 1)
    rdotMax = Field("largest |radial velocity| hypothesis (au/day)", float, 0.006,
                    check=lambda v: v >= 0)
    nRdot = Field("radial-velocity hypotheses (odd: zero included)", int, 5,
                  check=lambda v: v >= 1)
    clusterRadius = Field("HelioLinC clustering radius per au of distance (au/au)", float, 3e-4,
                          check=lambda v: v > 0)
    minNights = Field("nights a new linkage spans", int, 3, check=lambda v: v >= 2)
    maxReducedChi2 = Field("largest reduced chi-square of an accepted orbit", float, 4.0,
                           check=lambda v: v > 0)
    rejectSigma = Field("outlier rejection of the orbit fits (sigma)", float, 5.0,
                        check=lambda v: v > 0)
    attributionSigma = Field("attribution gate (Mahalanobis sigma)", float, 5.0,
                             check=lambda v: v > 0)
    modelSigmaArcsec = Field("error added per axis for the two-body model's limits (arcsec)",
                             float, 0.2, check=lambda v: v >= 0)
    hypothesesPerUnit = Field("HelioLinC hypotheses per unit of parallel work", int, 6,
                              check=lambda v: v >= 1)

    def linking(self) -> heliolinc.LinkingConfig:
        """The :class:`~hpcpipe.solarsystem.heliolinc.LinkingConfig` of these settings."""
        rdot = (np.linspace(-self.rdotMax, self.rdotMax, self.nRdot) if self.nRdot > 1
                else np.zeros(1))
        return heliolinc.LinkingConfig(
            r_values=tuple(float(r) for r in np.geomspace(self.rMin, self.rMax, self.nR)),
            rdot_values=tuple(float(v) for v in rdot), cluster_radius=self.clusterRadius,
            min_nights=self.minNights, min_tracklets=self.minNights,
            max_reduced_chi2=self.maxReducedChi2, reject_sigma=self.rejectSigma)


@dataclass
class NightSummary:
    """What a night's run did (the run report's content)."""

    night: str
    window: tuple[float, float]
    candidates: int = 0
    attributed: int = 0
    refitted: int = 0
    refit_failed: int = 0
    tracklets: int = 0
    hypotheses: int = 0
    linkage_candidates: int = 0
    new_objects: int = 0
    linked_sources: int = 0
    ranks: int = 1
    seconds: dict[str, float] = field(default_factory=dict)
    new_orbits: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, window=list(self.window))


def night_window(night: str) -> tuple[float, float]:
    """MJD (TAI, to the second) of Rubin's ``dayObs`` ``night``: UTC noon to UTC noon."""
    day = datetime.date.fromisoformat(night)
    mjd = float(day.toordinal() - datetime.date(1858, 11, 17).toordinal())
    return mjd + 0.5, mjd + 1.5


def _hypothesis_unit(cache: Any, unit: tuple[int, np.ndarray]) -> list[heliolinc.Candidate]:
    """One unit of the linking: the candidates of a slice of hypotheses."""
    first, hyps = unit
    return heliolinc.candidates_for_hypotheses(cache.ss_linking_input, hyps,
                                               cache.ss_linking_config, first_index=first)


def _known_orbits(orbit_rows: np.ndarray, cov: np.ndarray) -> attribution.KnownOrbits:
    return attribution.KnownOrbits(
        orbit_rows["ssObjectId"].astype(np.int64), orbit_rows["epoch"].astype(float),
        np.stack([orbit_rows[k] for k in ("x", "y", "z")], axis=-1).reshape(-1, 3),
        np.stack([orbit_rows[k] for k in ("vx", "vy", "vz")], axis=-1).reshape(-1, 3), cov)


def _orbit_row(ss_id: int, fit: OrbitFit, mjd: np.ndarray, now: float) -> np.void:
    row = np.zeros(1, SSORBIT_DTYPE)[0]
    row["ssObjectId"], row["epoch"] = ss_id, fit.epoch
    row["x"], row["y"], row["z"] = fit.r
    row["vx"], row["vy"], row["vz"] = fit.v
    el = fit.elements
    row["a"], row["e"], row["q"] = el["a"], el["e"], el["q"]
    for key, name in (("inc", "incl"), ("node", "node"), ("argperi", "peri"),
                      ("mean_anomaly", "M")):
        row[name] = np.degrees(el[key])
    row["rmsArcsec"], row["chi2"], row["dof"] = fit.rms_arcsec, fit.chi2, fit.dof
    row["nObs"] = int(fit.used.sum())
    row["arcStartMjdTai"], row["arcEndMjdTai"] = mjd.min(), mjd.max()
    row["lastUpdateMjdTai"] = now
    return row


def _ss_object_row(ss_id: int, det: np.ndarray, used: np.ndarray) -> np.void:
    row = new_rows(SSOBJECT_DTYPE, 1)[0]
    mjd = det["midpointMjdTai"]
    row["ssObjectId"] = ss_id
    row["designation"] = f"hpc{ss_id:07d}"
    row["nObs"] = len(det)
    row["arc"] = float(np.ptp(mjd))
    row["firstObservationMjdTai"] = float(mjd.min())
    for band in "ugrizy":
        mine = det["band"] == band
        row[f"{band}_nObs"] = int(mine.sum())
        row[f"{band}_nObsUsed"] = int((mine & used).sum())
    return row


def _ss_source_rows(ss_id: int, fit: OrbitFit, det: np.ndarray, obs_pos: np.ndarray
                    ) -> np.ndarray:
    """SSSource rows of detections of one orbit: the ephemeris and the geometry."""
    rows = new_rows(SSSOURCE_DTYPE, len(det))
    rows["diaSourceId"], rows["ssObjectId"] = det["diaSourceId"], ss_id
    rows["designation"] = f"hpc{ss_id:07d}"
    mjd = det["midpointMjdTai"].astype(float)
    eph = kepler.observe(fit.r[None, :], fit.v[None, :], fit.epoch, mjd, obs_pos, iterations=2)
    unit = kepler.vectors_from_radec(det["ra"], det["dec"])
    lam, beta = kepler.radec_from_vectors(kepler.equatorial_to_ecliptic(unit))
    rows["eclLambda"], rows["eclBeta"] = lam, beta
    glon, glat = erfa.icrs2g(np.radians(det["ra"].astype(float)),
                             np.radians(det["dec"].astype(float)))
    rows["galLon"], rows["galLat"] = np.degrees(glon), np.degrees(glat)
    rows["ephRa"], rows["ephDec"] = eph["ra"], eph["dec"]
    dra = ((det["ra"] - eph["ra"] + 180.0) % 360.0 - 180.0) * np.cos(np.radians(eph["dec"]))
    rows["ephOffsetRa"], rows["ephOffsetDec"] = dra * 3600.0, (det["dec"] - eph["dec"]) * 3600.0
    rows["ephOffset"] = kepler.angular_separation_arcsec(det["ra"], det["dec"], eph["ra"],
                                                         eph["dec"])
    helio, vel = eph["helio"], eph["velocity"]
    topo = helio - obs_pos
    rows["phaseAngle"], rows["topoRange"], rows["helioRange"] = eph["phase"], eph["delta"], \
        eph["r"]
    rows["helioRangeRate"] = np.sum(helio * vel, axis=1) / eph["r"]
    for k, axis in enumerate("xyz"):
        rows[f"helio_{axis}"], rows[f"topo_{axis}"] = helio[:, k], topo[:, k]
        rows[f"helio_v{axis}"] = vel[:, k]
    rows["helio_vtot"] = np.linalg.norm(vel, axis=1)
    return rows


def run_solarsystem(pool: Any, apdb_location: Any, night: str, output: Path,
                    config: SolarSystemConfig | None = None,
                    site: kepler.Site | None = kepler.RUBIN_SITE) -> NightSummary:
    """The night's attribution, linking and catalogue update (on the pool's master).

    Parameters
    ----------
    pool : hpcpipe.comm.pool.Pool
        The pool whose workers run the linking's hypotheses.
    apdb_location : str or Path
        The APDB.
    night : str
        The ``dayObs`` (YYYY-MM-DD).
    output : Path
        Where the report goes (``output/solarsystem/<night>.json``).
    config : SolarSystemConfig, optional
        Settings (defaults if None).
    site : kepler.Site or None
        The observatory (None: the geocentre).

    Returns
    -------
    NightSummary
    """
    config = config or SolarSystemConfig()
    config.validate()
    start, end = night_window(night)
    summary = NightSummary(night, (start - config.windowDays, end),
                           ranks=pool.world.size)
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        summary.seconds[step] = round(now - clock, 3)
        clock = now

    now_mjd = float(time.time() / 86400.0 + 40587.0 + 37.0 / 86400.0)
    with Apdb(apdb_location) as apdb:
        db = SolarSystemDb(apdb)
        det = db.unattributed_sources(start - config.windowDays, end)
        orbit_rows, cov = db.orbits()
        next_id = db.next_ss_object_id()
        summary.candidates = len(det)
        lap("read")
        obs_all = kepler.observer_position(det["midpointMjdTai"], site) if len(det) else \
            np.zeros((0, 3))
        detections = np.zeros(len(det), [("mjd", "f8"), ("ra", "f8"), ("dec", "f8"),
                                         ("raErr", "f8"), ("decErr", "f8")])
        for a, b in (("mjd", "midpointMjdTai"), ("ra", "ra"), ("dec", "dec"),
                     ("raErr", "raErr"), ("decErr", "decErr")):
            detections[a] = det[b]
        bad_err = ~(np.isfinite(detections["raErr"]) & (detections["raErr"] > 0))
        detections["raErr"][bad_err] = 0.1 / 3600.0
        bad_err = ~(np.isfinite(detections["decErr"]) & (detections["decErr"] > 0))
        detections["decErr"][bad_err] = 0.1 / 3600.0

        # 1. attribution to known orbits, then their refits
        new_orbits, new_cov, new_objects, new_sources = [], [], [], []
        attributed: dict[int, int] = {}
        ss_of = np.full(len(det), -1, np.int64)
        if len(orbit_rows) and len(det):
            known = _known_orbits(orbit_rows, cov)
            ss_of, _ = attribution.attribute(
                known, detections, attribution.AttributionConfig(
                    n_sigma=config.attributionSigma,
                    model_sigma_arcsec=config.modelSigmaArcsec), site)
        summary.attributed = int((ss_of >= 0).sum())
        lap("attribution")
        for ss_id in np.unique(ss_of[ss_of >= 0]):
            mine = np.flatnonzero(ss_of == ss_id)
            old = db.sources_of([int(ss_id)])
            row = orbit_rows[np.searchsorted(orbit_rows["ssObjectId"], ss_id)]
            both = np.concatenate([old, det[mine]])
            obs = np.concatenate([kepler.observer_position(old["midpointMjdTai"], site)
                                  if len(old) else np.zeros((0, 3)), obs_all[mine]])
            fit = _fit(both, obs, np.array([row["x"], row["y"], row["z"]]),
                       np.array([row["vx"], row["vy"], row["vz"]]), float(row["epoch"]),
                       config)
            if not fit.accepted:
                # the detections are kept on the old orbit, which predicted them
                summary.refit_failed += 1
                i = int(np.searchsorted(orbit_rows["ssObjectId"], ss_id))
                fit = OrbitFit(float(row["epoch"]), np.array([row["x"], row["y"], row["z"]]),
                               np.array([row["vx"], row["vy"], row["vz"]]), cov[i],
                               float(row["chi2"]), int(row["dof"]), float(row["rmsArcsec"]),
                               np.ones(len(both), bool), True, True)
                fit.elements = {"a": row["a"], "e": row["e"], "q": row["q"],
                                "inc": np.radians(row["incl"]), "node": np.radians(row["node"]),
                                "argperi": np.radians(row["peri"]),
                                "mean_anomaly": np.radians(row["M"])}
            else:
                summary.refitted += 1
            new_orbits.append(_orbit_row(int(ss_id), fit, both["midpointMjdTai"], now_mjd))
            new_cov.append(fit.covariance)
            new_objects.append(_ss_object_row(int(ss_id), both, fit.used))
            new_sources.append(_ss_source_rows(int(ss_id), fit, det[mine], obs_all[mine]))
            attributed.update({int(d): int(ss_id) for d in det["diaSourceId"][mine]})
        lap("refit")

        # 2. tracklets of the rest, 3. HelioLinC
        free = np.flatnonzero(ss_of < 0)
        trk = tracklets.make_tracklets(detections["mjd"][free], detections["ra"][free],
                                       detections["dec"][free], min_rate=config.minRate,
                                       max_rate=config.maxRate,
                                       min_dt=config.minPairMinutes / 1440.0,
                                       max_dt=config.maxPairHours / 24.0)
        summary.tracklets = len(trk)
        lap("tracklets")
        links: list[heliolinc.Linkage] = []
        if len(trk):
            data = heliolinc.LinkingInput.build(detections[free], trk, site)
            linking = config.linking()
            grid = linking.hypotheses()
            summary.hypotheses = len(grid)
            step = config.hypothesesPerUnit
            units = [(i, grid[i:i + step]) for i in range(0, len(grid), step)]
            pool.store(ss_linking_input=data, ss_linking_config=linking)
            parts = pool.map(_hypothesis_unit, units, mode="dynamic", name="heliolinc",
                             keys=[f"hypotheses {i}-{i + len(h) - 1}" for i, h in units])
            failed = [p for p in parts if not isinstance(p, list)]
            if failed:
                raise ApdbError(f"{len(failed)} HelioLinC unit(s) failed: {failed[0]}")
            cands = heliolinc.merge_candidates(parts)
            summary.linkage_candidates = len(cands)
            lap("linking")
            links = heliolinc.select_linkages(data, cands, linking)
        lap("orbit fits")
        for link in links:
            ss_id = next_id
            next_id += 1
            rows = det[free][link.detections]
            mjd = rows["midpointMjdTai"]
            new_orbits.append(_orbit_row(ss_id, link.fit, mjd, now_mjd))
            new_cov.append(link.fit.covariance)
            new_objects.append(_ss_object_row(ss_id, rows, link.fit.used))
            new_sources.append(_ss_source_rows(ss_id, link.fit, rows,
                                               obs_all[free][link.detections]))
            attributed.update({int(d): ss_id for d in rows["diaSourceId"]})
            summary.linked_sources += len(rows)
            summary.new_orbits.append({
                "ssObjectId": ss_id, "a": round(float(link.fit.elements["a"]), 6),
                "e": round(float(link.fit.elements["e"]), 6),
                "incl": round(float(np.degrees(link.fit.elements["inc"])), 4),
                "nObs": len(rows), "arcDays": round(float(np.ptp(mjd)), 4),
                "rmsArcsec": round(float(link.fit.rms_arcsec), 4)})
        summary.new_objects = len(links)

        # 4. the catalogue update, one transaction
        if new_orbits:
            db.store(np.array(new_orbits, SSORBIT_DTYPE), np.array(new_cov),
                     np.array(new_objects, SSOBJECT_DTYPE), np.concatenate(new_sources),
                     attributed, now_mjd)
        lap("store")
    report = Path(output) / "solarsystem" / f"{night}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(report) as tmp:
        tmp.write_text(json.dumps(summary.as_dict(), indent=1) + "\n")
    return summary


def _fit(det: np.ndarray, obs: np.ndarray, r0: np.ndarray, v0: np.ndarray, epoch: float,
         config: SolarSystemConfig) -> OrbitFit:
    err_ra = np.where(np.isfinite(det["raErr"]) & (det["raErr"] > 0), det["raErr"],
                      0.1 / 3600.0)
    err_dec = np.where(np.isfinite(det["decErr"]) & (det["decErr"] > 0), det["decErr"],
                       0.1 / 3600.0)
    mjd = det["midpointMjdTai"].astype(float)
    return fit_orbit(mjd, det["ra"], det["dec"], err_ra, err_dec, obs, r0, v0, epoch,
                     nights=tracklets.night_of(mjd), min_nights=config.minNights,
                     max_reduced_chi2=config.maxReducedChi2, reject_sigma=config.rejectSigma)


def format_summary(summary: NightSummary) -> str:
    """A few lines for the terminal."""
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    return (f"night {summary.night}: {summary.candidates} unattributed diaSources in the "
            f"window; {summary.attributed} attributed to known orbits ({summary.refitted} "
            f"orbits refitted, {summary.refit_failed} kept); {summary.tracklets} tracklets, "
            f"{summary.hypotheses} hypotheses on {summary.ranks} rank(s), "
            f"{summary.linkage_candidates} candidates, {summary.new_objects} new SSObjects "
            f"({summary.linked_sources} diaSources)\n  {secs}")
