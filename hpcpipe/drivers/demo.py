"""``hpcpipe demo``: simulate a small survey and run the whole production on it under MPI.

The master simulates the survey into ``OUTPUT/repo`` (the frames are made by the workers),
runs the production (:mod:`hpcpipe.drivers.standard_production`) into ``OUTPUT/rerun`` on the
same pool, then checks the results against the simulation's truth and prints a summary: units
done per step, sources found, the astrometric and photometric scatter of bright stars against
the truth, the coadd's depth against a single visit's, and the wall time. The run report
(``OUTPUT/report``: JSON, timeline PNG, interactive HTML, and ``quality.png``: astrometric
and photometric residuals against the reference catalog across the focal plane, PSF size over
the field, depth per visit, :mod:`hpcpipe.drivers.quality_figure`) and a colour picture of
the coadds with their objects marked (``OUTPUT/coadd.png``, :mod:`hpcpipe.drivers.sky_picture`)
are written beside them, and every rank then writes its share
of the data release files (``OUTPUT/rerun/release``, :mod:`hpcpipe.drivers.release`).

Running it again resumes: the survey is simulated once, and done units are skipped.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.butler import Butler
from hpcpipe.comm.pool import Pool
from hpcpipe.comm.world import World
from hpcpipe.drivers.drp import DrpRequest, run_production
from hpcpipe.drivers.quality_figure import collect_run_quality, write_quality_figure
from hpcpipe.drivers.release import write_release
from hpcpipe.drivers.report import rebuild_report
from hpcpipe.drivers.simulate import simulate_repository, survey_config_for
from hpcpipe.drivers.sky_picture import tract_mosaic, write_tract_picture
from hpcpipe.drivers.standard_production import make_production
from hpcpipe.io.generation import release_generation
from hpcpipe.pipe.quality import (
    astrometric_offsets_mas,
    depth_5sigma,
    photometric_residuals,
    robust_scatter,
)
from hpcpipe.sim.camera import SimCamera

if TYPE_CHECKING:
    from hpcpipe.butler import Butler

__all__ = ["DemoSettings", "run_production_demo", "format_demo_summary", "demo_configs",
           "assess_release"]

log = logging.getLogger("hpcpipe.drivers.demo")


class DemoSettings:
    """The demo survey: visits per filter, CCDs, filters, CCD size, seed, stars per square
    degree (a field at lower galactic latitude than the simulation's default, so that its
    small CCDs have enough calibration stars)."""

    def __init__(self, visits: int = 2, ccds: int = 4, filters: tuple[str, ...] = ("g", "r"),
                 size: int = 1024, seed: int = 42, star_density: float = 100000.0) -> None:
        self.visits = visits
        self.ccds = ccds
        self.filters = tuple(filters)
        self.size = size
        self.seed = seed
        self.star_density = star_density

    def survey(self) -> Any:
        return survey_config_for(self.visits, self.ccds, self.filters, self.seed, self.size,
                                 self.star_density)


def demo_configs(production: Any, settings: DemoSettings) -> dict[str, Any]:
    """Each step's config for the demo: defaults, with patches sized to the focal plane
    (a tract of a few patches)."""
    configs = {}
    survey = settings.survey()
    camera = survey.camera
    width = camera.nx * camera.width + (camera.nx - 1) * camera.gap
    inner = int(math.ceil((width * 0.6) / 100.0) * 100)
    for step in production.steps:
        config = step.task_class.ConfigClass()
        if step.name == "makeSkyMap":
            config.patchInnerDimensions = [inner, inner]
            config.patchBorder = 50
        if step.name == "multifit":  # the demo fits the brightest objects of each patch
            config.maxObjects = 10
            config.psfCellSize = 1024
            config.psfGaussians = 2
        config.freeze()
        configs[step.name] = config
    return configs


def assess_release(butler: Butler) -> dict[str, Any]:
    """Quality of a finished production against the truth catalog.

    Returns
    -------
    dict
        ``n_src`` (single-frame sources), ``n_objects`` (primary coadd objects),
        ``astrom_mas`` (median offset of bright calibration stars from the truth),
        ``photom_mag`` (robust scatter of their calibrated PSF magnitudes), ``depth``
        (per filter: median single-visit 5-sigma depth, the coadd's, their difference and
        the number of visits, in the patch where most visits overlap),
        ``patch`` (the patch with the most objects, for the picture).
    """

    truth = butler.get("truth_cat")
    n_src = 0
    offsets, residuals = [], []
    visit_depth: dict[str, list[float]] = {}
    for ref in butler.subset("raw"):
        d = ref.dataId
        if not butler.datasetExists("src", visit=d["visit"], ccd=d["ccd"]):
            continue
        src = butler.get("src", visit=d["visit"], ccd=d["ccd"])
        calexp = butler.get("calexp", visit=d["visit"], ccd=d["ccd"])
        n_src += int(np.count_nonzero(src["detect_isPrimary"]))
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = src["base_PsfFlux_instFlux"] / src["base_PsfFlux_instFluxErr"]
        bright = src["detect_isPrimary"] & (snr > 100) & ~src["base_PixelFlags_flag_saturated"]
        ra, dec = np.degrees(src["coord_ra"][bright]), np.degrees(src["coord_dec"][bright])
        offsets.append(astrometric_offsets_mas(ra, dec, truth))
        mag = calexp.photo_calib.instflux_to_magnitude(src["base_PsfFlux_instFlux"][bright])
        residuals.append(photometric_residuals(ra, dec, mag, truth, d["filter"]))
        noise = float(np.sqrt(np.median(calexp.variance.array)))
        sigma = calexp.psf.sigma_at(calexp.width / 2, calexp.height / 2)
        visit_depth.setdefault(d["filter"], []).append(
            depth_5sigma(sigma, noise, calexp.photo_calib.zero_point))
    n_objects = 0
    coadd_depth: dict[str, list[tuple[float, int]]] = {}
    best_patch, best_count = None, -1
    sky_map = butler.get("skyMap") if butler.datasetExists("skyMap") else None
    for tract in sky_map or []:
        for patch_info in tract:
            patch = "{},{}".format(*patch_info.index)
            key = {"tract": tract.tract_id, "patch": patch}
            if not butler.datasetExists("deepCoadd_ref", **key):
                continue
            ref_cat = butler.get("deepCoadd_ref", **key)
            count = int(np.count_nonzero(ref_cat["detect_isPrimary"]))
            n_objects += count
            if count > best_count:
                best_patch, best_count = key, count
            for band in visit_depth:
                gain = _coadd_gain(butler, key, band)
                if gain is not None:
                    coadd_depth.setdefault(band, []).append(gain)
    depth = {}
    for band, values in visit_depth.items():
        single = float(np.median(values))
        gains = coadd_depth.get(band) or [(float("nan"), 0)]
        best = max(gains, key=lambda g: g[1])  # the patch with the most visits overlapping
        depth[band] = (single, single + best[0], best[0], best[1])
    offsets_all = np.concatenate(offsets) if offsets else np.zeros(0)
    residuals_all = np.concatenate(residuals) if residuals else np.zeros(0)
    return {
        "n_src": n_src, "n_objects": n_objects,
        "astrom_mas": float(np.median(offsets_all)) if offsets_all.size else float("nan"),
        "n_astrom": int(offsets_all.size),
        "photom_mag": robust_scatter(residuals_all), "n_photom": int(residuals_all.size),
        "depth": depth, "patch": best_patch,
    }


def _coadd_gain(butler: Butler, key: dict[str, Any], band: str) -> tuple[float, int] | None:
    """How much deeper (mag) a patch's coadd is than its single warps, where they all overlap.

    Returns ``(gain, n_visits)``: ``2.5 log10`` of the ratio of the median single-warp noise
    to the coadd's noise over the pixels every warp covers (the point-source depth gain for
    PSFs of equal size), or None without a coadd or an overlap of every warp.
    """
    if not butler.datasetExists("deepCoadd", filter=band, **key):
        return None
    coadd = butler.get("deepCoadd", filter=band, **key)
    warps = [butler.get("deepCoadd_directWarp", visit=v, filter=band, **key)
             for v in butler.queryMetadata("raw", "visit", {"filter": band})
             if butler.datasetExists("deepCoadd_directWarp", visit=v, filter=band, **key)]
    if not warps:
        return None
    common = np.isfinite(coadd.variance.array)
    for warp in warps:
        common &= np.isfinite(warp.variance.array) & (warp.variance.array > 0)
    if common.sum() < 1000:
        return None
    single = np.median([np.sqrt(np.median(w.variance.array[common])) for w in warps])
    deep = np.sqrt(np.median(coadd.variance.array[common]))
    return float(2.5 * np.log10(single / deep)), len(warps)


def run_production_demo(output: Path, settings: DemoSettings | None = None,
                        world: World | None = None, progress: bool = False
                        ) -> dict[str, Any] | None:
    """Simulate, run the production, assess it; rank 0 returns the summary, others None."""

    settings = settings or DemoSettings()
    world = world or World()
    pool = Pool(world, progress=progress)
    output = Path(output)

    def main(pool: Pool) -> dict[str, Any]:
        start = time.perf_counter()
        output.mkdir(parents=True, exist_ok=True)
        repo = output / "repo"
        marker = repo / "_simulated"
        if not marker.exists():
            simulate_repository(pool, repo, settings.survey())
            marker.write_text(f"seed={settings.seed}\n")
        simulated = time.perf_counter()
        production = make_production()
        request = DrpRequest(production, repo, output / "rerun", [{}], None,
                             demo_configs(production, settings), report_dir=output / "report")
        result = run_production(pool, request)
        processed = time.perf_counter()
        butler = Butler(repo, outputs=output / "rerun")
        quality = assess_release(butler)
        png = quality_png = None
        if quality["patch"] is not None:
            mosaic = tract_mosaic(butler, quality["patch"]["tract"])
            if mosaic is not None:
                png = write_tract_picture(mosaic, output / "coadd.png")
        run_quality = collect_run_quality(
            butler, SimCamera(settings.survey().camera).focal_plane_offset,
            coadd_depth={band: d[1] for band, d in quality["depth"].items()})
        if run_quality.visits:
            quality_png = write_quality_figure(
                run_quality, output / "report" / "quality.png",
                title=f"hpcpipe demo: {len(run_quality.visits)} visit(s) of "
                      f"{len(run_quality.ccds)} CCD(s) against the reference catalog")
            rebuild_report(output / "report")  # report.html shows the figure too
        states: dict[str, Counter[str]] = {}
        for rec in result.records:
            states.setdefault(rec.job, Counter())[rec.state] += 1
        return {
            "steps": states, "exit_status": result.exit_status, "ranks": world.size,
            "quality": quality, "report": result.report.get("html"), "png": png,
            "quality_png": quality_png,
            "simulate_seconds": simulated - start, "production_seconds": processed - simulated,
            "wall_seconds": time.perf_counter() - start,
        }

    summary = pool.run(main)
    # every rank writes its share of the release files (collective parallel HDF5 writes)

    started = time.perf_counter()
    # and the same rows as HATS catalogs, for `hpcpipe query` and `hpcpipe serve` (the HATS
    # libraries are imported here: start-up cost); both published together
    from hpcpipe.drivers.release_hats import write_release_hats

    with release_generation(output / "rerun" / "release", world) as generation:
        release = write_release(Butler(output / "repo", outputs=output / "rerun"),
                                generation.directory, world, command="hpcpipe demo")
        hats = write_release_hats(Butler(output / "repo", outputs=output / "rerun"),
                                  generation.directory / "hats", world,
                                  command="hpcpipe demo")
    release["files"] = [str(generation.published_path(f)) for f in release["files"]]
    release["rows"] = {str(generation.published_path(f)): n
                       for f, n in release["rows"].items()}
    if summary is None:
        return None
    summary["release"] = release["files"]
    summary["release_rows"] = release["rows"]
    summary["release_hats"] = {name: r["rows"] for name, r in hats.items()}
    summary["release_seconds"] = time.perf_counter() - started
    summary["wall_seconds"] += summary["release_seconds"]
    return summary


def format_demo_summary(summary: dict[str, Any]) -> str:
    """The table printed at the end of the demo."""
    lines = [f"{'step':<24}{'done':>6}{'skipped':>9}{'failed':>8}{'blocked':>9}"]
    for step, counts in summary["steps"].items():
        lines.append(f"{step:<24}{counts.get('done', 0):>6}{counts.get('skipped', 0):>9}"
                     f"{counts.get('failed', 0):>8}{counts.get('blocked', 0):>9}")
    q = summary["quality"]
    lines.append("")
    lines.append(f"single-frame sources (primary): {q['n_src']}; coadd objects (primary): "
                 f"{q['n_objects']}")
    lines.append(f"astrometry: median offset of {q['n_astrom']} bright stars from the truth "
                 f"{q['astrom_mas']:.1f} mas")
    lines.append(f"photometry: scatter of {q['n_photom']} bright stars' PSF magnitudes "
                 f"about the truth {q['photom_mag']:.4f} mag")
    for band, (single, deep, gain, n) in sorted(q["depth"].items()):
        lines.append(f"5-sigma depth {band}: single visit {single:.2f}, coadd of {n} "
                     f"{deep:.2f} (deeper by {gain:.2f} mag; 1.25 log10({n}) = "
                     f"{1.25 * np.log10(max(n, 1)):.2f})")
    lines.append(f"wall time {summary['wall_seconds']:.1f} s on {summary['ranks']} rank(s) "
                 f"(simulation {summary['simulate_seconds']:.1f} s, production "
                 f"{summary['production_seconds']:.1f} s)")
    if summary.get("release"):
        rows = sum(summary["release_rows"].values())
        lines.append(f"release: {len(summary['release'])} HDF5 files, {rows} catalog rows, "
                     f"written by {summary['ranks']} rank(s) in "
                     f"{summary['release_seconds']:.1f} s, under "
                     f"{Path(summary['release'][0]).parent.parent}")
    if summary.get("release_hats"):
        lines.append("HATS catalogs (hpcpipe query / serve): " + ", ".join(
            f"{name} {rows} rows" for name, rows in summary["release_hats"].items()))
    lines.append(f"report {summary['report']}")
    if summary.get("png"):
        lines.append(f"coadd picture {summary['png']}")
    if summary.get("quality_png"):
        lines.append(f"quality figure {summary['quality_png']}")
    return "\n".join(lines)
