"""A whole simulated survey: visits planned over a field, raw files, calibrations, catalogs.

:func:`plan_survey` lays out the visits (dithered pointings, one PSF and one pointing error
per visit, times in order); :func:`write_survey_files` writes every raw frame, the master
calibrations, the reference catalog and the truth catalog into a directory, spreading the
(visit, ccd) frames over the pool's workers. The same seed gives the same survey, whatever
the number of ranks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.time import Time, TimeDelta

from hpcpipe.comm.pool import Pool
from hpcpipe.io.atomic import atomic_path
from hpcpipe.sim.camera import CameraConfig, SimCamera
from hpcpipe.sim.raw import VisitPlan, make_master_calibs, make_raw
from hpcpipe.sim.sky import BANDS, SkyConfig, make_sky, reference_catalog
from hpcpipe.sim.transients import (
    TransientConfig,
    epoch_truth,
    light_curve_catalog,
    light_curves,
    make_transients,
    transient_truth_catalog,
    visit_mjd,
)
from hpcpipe.table import Catalog, Schema

__all__ = ["SurveyConfig", "plan_survey", "write_survey_files", "survey_truth_catalog",
           "survey_transients"]


@dataclass(frozen=True)
class SurveyConfig:
    """A simulated survey.

    Parameters
    ----------
    camera : CameraConfig
    visits_per_band : int
    bands : tuple of str
    seed : int
    dither : float
        Largest pointing offset from the field centre, arcsec.
    start : str
        Start of the first exposure (ISO 8601, TAI).
    psf_sigma_range : tuple of float
        Range of the per-visit PSF width, pixels.
    pointing_error : float
        Standard deviation of the header WCS's pointing error, arcsec.
    calib_date : str
        Date of the master calibrations (valid for the whole survey).
    ccds : int, optional
        Simulate only CCDs ``0 .. ccds - 1`` of the focal plane (default: all).
    star_density : float
        Stars per square degree (r from 16 to 25): 15,000 at high galactic latitude; a
        field nearer the plane gives small CCDs enough calibration stars.
    visit_interval : float
        Seconds between the starts of consecutive visits (60: one night's sequence; a day or
        more to see transients evolve).
    transients, variables, movers : int
        Supernova-like transients, periodic variable stars and moving objects injected into
        the raw frames (:mod:`hpcpipe.sim.transients`; none by default).
    """

    camera: CameraConfig = field(default_factory=CameraConfig)
    visits_per_band: int = 3
    bands: tuple[str, ...] = BANDS
    seed: int = 1
    ra: float = 150.0
    dec: float = 2.0
    dither: float = 60.0
    start: str = "2026-01-10T03:00:00"
    psf_sigma_range: tuple[float, float] = (1.5, 2.3)
    pointing_error: float = 1.0
    calib_date: str = "2026-01-01"
    ccds: int | None = None
    star_density: float = 15000.0
    visit_interval: float = 60.0
    transients: int = 0
    variables: int = 0
    movers: int = 0

    def __post_init__(self) -> None:
        if not self.visit_interval > 0:
            raise ValueError(f"visit_interval must be positive (seconds); got "
                             f"{self.visit_interval}")
        self.transient_config()  # checks the counts

    def transient_config(self) -> TransientConfig:
        """The injected population (:mod:`hpcpipe.sim.transients`)."""
        return TransientConfig(transients=self.transients, variables=self.variables,
                               movers=self.movers)

    def ccd_ids(self) -> list[int]:
        """The CCDs this survey simulates."""
        n = SimCamera(self.camera).num_ccds
        if self.ccds is not None and not 1 <= self.ccds <= n:
            raise ValueError(f"ccds must be between 1 and {n} (the camera's CCDs); "
                             f"got {self.ccds}")
        return list(range(n if self.ccds is None else self.ccds))

    def sky(self) -> SkyConfig:
        """The sky around the field, wide enough for every dithered CCD."""
        radius = SimCamera(self.camera).field_radius_deg() + self.dither / 3600.0 + 0.02
        return SkyConfig(ra=self.ra, dec=self.dec, radius=radius,
                         star_density=self.star_density)


def plan_survey(config: SurveyConfig) -> list[VisitPlan]:
    """The visits, in time order, band after band."""
    rng = np.random.default_rng([config.seed, 7])
    start = Time(config.start, format="isot", scale="tai")
    plans: list[Any] = []
    for b, band in enumerate(config.bands):
        for k in range(config.visits_per_band):
            n = len(plans)
            offset = rng.uniform(-config.dither, config.dither, 2) / 3600.0
            dec = config.dec + offset[1]
            plans.append(VisitPlan(
                visit=1000 + 100 * b + k,
                band=band,
                date=(start + TimeDelta(config.visit_interval * n, format="sec")).tai.isot,
                ra=config.ra + offset[0] / np.cos(np.radians(dec)),
                dec=dec,
                psf_sigma=float(rng.uniform(*config.psf_sigma_range)),
                exp_time=30.0,
                airmass=float(1.1 + 0.02 * n),
                pointing_error=tuple(rng.normal(0, config.pointing_error, 2)),
            ))
    return plans


def survey_truth_catalog(truth: dict[str, np.ndarray]) -> Any:
    """The truth as a :class:`~hpcpipe.table.Catalog` (positions in degrees, true mags)."""

    schema = Schema()
    schema.add_field("id", "L", doc="object id")
    schema.add_field("ra", "D", doc="true right ascension", units="deg")
    schema.add_field("dec", "D", doc="true declination", units="deg")
    schema.add_flag("is_star", doc="a star (else a galaxy)")
    for band in BANDS:
        schema.add_field(f"mag_{band}", "D", doc=f"true {band} AB magnitude", units="mag")
    schema.add_field("sigma", "D", doc="galaxy Gaussian size", units="arcsec")
    schema.add_field("e1", "D", doc="galaxy ellipticity component 1")
    schema.add_field("e2", "D", doc="galaxy ellipticity component 2")
    return Catalog.from_columns(schema, {name: truth[name] for name in schema.names})


def survey_transients(config: SurveyConfig) -> dict[str, np.ndarray] | None:
    """The injected transients, variables and movers of a survey (None if it has none).

    They are placed on the simulated CCDs at the field centre, farther from the CCD edges than
    the dither plus 30 pixels.
    """
    tconfig = config.transient_config()
    if tconfig.total == 0:
        return None
    plans = plan_survey(config)
    mjds = [visit_mjd(p) for p in plans]
    margin = config.dither / config.camera.pixel_scale + 30.0
    return make_transients(tconfig, SimCamera(config.camera), config.ccd_ids(), config.ra,
                           config.dec, (min(mjds), max(mjds)), margin, config.seed)


def _frame_unit(cache: Any, unit: tuple[int, int], config: SurveyConfig, directory: str
                ) -> str:
    """Pool unit: simulate and write one raw frame (and its truth positions)."""
    plan_index, ccd = unit
    if getattr(cache, "survey_truth", None) is None:
        cache.survey_truth = make_sky(config.sky(), config.seed)
        cache.survey_transients = survey_transients(config)
    plan = plan_survey(config)[plan_index]
    camera = SimCamera(config.camera)
    truth = cache.survey_truth
    if cache.survey_transients is not None:
        epoch = epoch_truth(cache.survey_transients, plan)
        truth = {key: np.concatenate([value, epoch[key]]) for key, value in truth.items()}
    raw, ccd_truth = make_raw(camera, plan, truth, ccd, config.seed)
    path = Path(directory) / "raw" / f"raw-v{plan.visit:07d}-c{ccd:03d}.fits"
    raw.write(path)
    return str(path)


def _calib_unit(cache: Any, ccd: int, config: SurveyConfig, directory: str) -> list[str]:
    camera = SimCamera(config.camera)
    paths = []
    for name, exposure in make_master_calibs(camera, ccd, config.bands, config.calib_date,
                                             config.seed).items():
        path = Path(directory) / "calib" / f"{name}-c{ccd:03d}.fits"
        exposure.write(path)
        paths.append(str(path))
    return paths


def write_survey_files(directory: str | Path, config: SurveyConfig, pool: Any = None
                       ) -> dict[str, Any]:
    """Write the survey's raw frames, master calibrations, reference and truth catalogs.

    Call on the master of ``pool`` (a :class:`~hpcpipe.comm.pool.Pool`; serial if None).

    Returns
    -------
    dict
        ``raw`` and ``calib`` (lists of paths), ``refcat`` and ``truth`` (paths), ``failed``
        (units that failed) and ``plans`` (the visits, as dicts); with injected objects,
        also ``transient_truth`` and ``transient_lightcurves`` (paths of their truth).
    """

    directory = Path(directory)
    pool = pool or Pool()
    plans = plan_survey(config)
    ccds = config.ccd_ids()
    truth = make_sky(config.sky(), config.seed)
    refcat = reference_catalog(truth, config.sky(), config.seed)
    refcat.write_fits(directory / "refcat.fits")
    survey_truth_catalog(truth).write_fits(directory / "truth.fits")
    transients = survey_transients(config)
    extra: dict[str, str] = {}
    if transients is not None:
        transient_truth_catalog(transients).write_fits(directory / "transient_truth.fits")
        light_curve_catalog(light_curves(transients, plans)).write_fits(
            directory / "transient_lightcurves.fits")
        extra = {"transient_truth": str(directory / "transient_truth.fits"),
                 "transient_lightcurves": str(directory / "transient_lightcurves.fits")}
    units = [(p, c) for p in range(len(plans)) for c in ccds]
    raws = pool.map(_frame_unit, units, config, str(directory),
                    keys=[f"visit={plans[p].visit} ccd={c}" for p, c in units],
                    name="simulate")
    calibs = pool.map(_calib_unit, ccds, config, str(directory),
                      keys=[f"ccd={c}" for c in ccds], name="calibs")
    with atomic_path(directory / "survey.json") as tmp:
        tmp.write_text(json.dumps({"config": asdict(config),
                                   "plans": [asdict(p) for p in plans]}, indent=1))
    return {
        "raw": [r for r in raws if r],
        "calib": [p for group in calibs if group for p in group],
        "refcat": str(directory / "refcat.fits"),
        "truth": str(directory / "truth.fits"),
        "failed": [r for r in raws + calibs if not r],
        "plans": [asdict(p) for p in plans],
        **extra,
    }
