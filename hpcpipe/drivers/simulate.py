"""``hpcpipe simulate REPO``: a simulated survey, written and ingested into a repository.

The raw frames and master calibrations are simulated by the pool's workers into a staging
directory inside the repository, then ingested (moved into the SimCam layout and registered);
the reference catalog (the sharded reference catalog ``sim_ref`` that the calibration reads,
see :mod:`hpcpipe.refcat`, and the single-file ``ref_cat`` dataset) and the truth
(``truth_cat``; with injected transients, variables or movers also ``transient_truth`` and
``transient_lightcurves``) are put through the butler.
The same seed gives the same survey, whatever the number of ranks.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from hpcpipe.butler import Butler, create_repository, ingest
from hpcpipe.comm.pool import Pool
from hpcpipe.refcat.ingest import IngestSpec, ingest_reference_catalog
from hpcpipe.refcat.layout import DEFAULT_REFCAT_NAME
from hpcpipe.sim.camera import CameraConfig, SimCamera
from hpcpipe.sim.sky import BANDS
from hpcpipe.sim.survey import SurveyConfig, write_survey_files
from hpcpipe.table import Catalog

__all__ = ["simulate_repository", "survey_config_for",
           "write_simulated_refcat"]


def survey_config_for(visits: int, ccds: int, bands: tuple[str, ...], seed: int,
                      size: int = 2048, star_density: float = 15000.0, *,
                      transients: int = 0, variables: int = 0, movers: int = 0,
                      cadence: float | None = None) -> SurveyConfig:
    """A survey of ``visits`` visits per band over the first ``ccds`` CCDs of a square-ish
    focal plane of ``size``-pixel CCDs, with ``star_density`` stars per square degree.

    ``transients``, ``variables`` and ``movers`` are injected objects
    (:mod:`hpcpipe.sim.transients`); ``cadence`` is the number of days between visits
    (default: one minute).
    """
    nx = max(1, math.ceil(math.sqrt(ccds)))
    ny = max(1, math.ceil(ccds / nx))
    camera = CameraConfig(nx=nx, ny=ny, width=size, height=size, gap=max(10, size // 20))
    return SurveyConfig(camera=camera, visits_per_band=visits, bands=bands, seed=seed,
                        ccds=ccds, dither=min(60.0, 0.1 * size * camera.pixel_scale),
                        star_density=star_density,
                        visit_interval=60.0 if cadence is None else cadence * 86400.0,
                        transients=transients, variables=variables, movers=movers)


def simulate_repository(pool: Pool, repo: str | Path, config: SurveyConfig) -> dict[str, Any]:
    """Simulate ``config`` into repository ``repo`` (created if needed), on the master of
    ``pool`` (this is a ``Pool.run`` main function)."""

    repo = Path(repo)
    if not (repo / "_mapper").exists():  # the camera file of the simulated geometry
        create_repository(repo, description=SimCamera(config.camera).description_text())
    staging = repo / "_staging"
    files = write_survey_files(staging, config, pool)
    report = ingest(repo, [*files["raw"], *files["calib"]], mode="move")
    butler = Butler(repo)
    butler.put(Catalog.read_fits(files["refcat"]), "ref_cat")
    write_simulated_refcat(repo, files["refcat"], config)
    butler.put(Catalog.read_fits(files["truth"]), "truth_cat")
    for name in ("transient_truth", "transient_lightcurves"):
        if name in files:
            butler.put(Catalog.read_fits(files[name]), name)
    shutil.rmtree(staging, ignore_errors=True)
    return {"ingested": len(report.ingested) + len(report.already), "failed": report.failed,
            "simulation_failures": files["failed"], "visits": len(files["plans"])}


def write_simulated_refcat(repo: str | Path, path: str | Path, config: SurveyConfig,
                           name: str = DEFAULT_REFCAT_NAME) -> None:
    """Ingest the survey's reference catalog file ``path`` (LSST columns, no proper motions,
    positions at the survey's start) as the sharded reference catalog ``name``."""
    from astropy.time import Time  # start-up cost: the `hpcpipe` parser imports this module

    spec = IngestSpec(ra="coord_ra", dec="coord_dec", coord_unit="rad", ra_err="coord_raErr",
                      dec_err="coord_decErr", pos_err_unit="rad",
                      fluxes={b: f"{b}_flux" for b in BANDS},
                      flux_errs={b: f"{b}_fluxErr" for b in BANDS}, id="id",
                      epoch=float(Time(config.start, format="isot", scale="tai").mjd))
    ingest_reference_catalog(repo, name, path, spec, clobber=True)
