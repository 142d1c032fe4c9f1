"""Warps and coadds: hpcpipe beside SWarp on the same calexps and patch grid; coadd depth.

Cases (``--cases``, comma-separated):

``demo``
    The r-band calexps of ``hpcpipe demo`` (``--demo DIR``; run into a temporary directory
    if not given) onto tract 0 patch 2,2 (8 CCDs of 1024^2, 2 visits, 1400^2 grid).
``large``
    Synthetic calexps (TAN-SIP WCS, stars on sky noise): 6 visits of 10 CCDs of 2048^2
    onto a 4200^2 patch.
``depth``
    ``--depth`` synthetic warps (default 6,50,200) of a ``--depth-size`` square patch on disk
    (``--distinct`` different files, the others hard links to them), coadded by
    ``AssembleCoaddTask`` through the butler: its peak memory at each depth.

Each tool runs in a child process of its own (hpcpipe: read the calexps, warp each visit,
write the warps, coadd them sub-region by sub-region, write the coadd; SWarp 2.41:
LANCZOS3 resampling, WEIGHTED combination, one thread, its resampled images on disk), timed
by wall clock with the child's peak resident memory (``ru_maxrss`` from ``wait4``, the child
started by a small launcher so that it does not inherit the benchmark's own peak). SWarp
gets the calexps as image + weight map (1 / variance, 0 where masked), their TAN-SIP WCS
converted to TPV (tests/swarp_run.py), and ``FLXSCALE`` so that both coadds are in nJy.
Agreement: the median and the spread of (hpcpipe - SWarp) / sigma over the pixels both
cover (sigma from hpcpipe's coadd variance), and the worst pixel.

    python perf/bench_coadd.py                              # everything
    python perf/bench_coadd.py --cases depth --depth 6,50,200 --depth-size 4096
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402
from swarp_run import run_swarp, swarp_binary, write_swarp_input  # noqa: E402

from hpcpipe.geom import Box2I  # noqa: E402
from hpcpipe.image import Exposure, PhotoCalib  # noqa: E402
from hpcpipe.image.calib import FilterLabel  # noqa: E402
from hpcpipe.image.psf import GaussianPsf  # noqa: E402
from hpcpipe.io.exposure_io import wcs_to_header  # noqa: E402
from hpcpipe.skymap import BaseSkyMap, DiscreteSkyMap, SkyMapConfig  # noqa: E402

BAD = ["NO_DATA", "BAD", "SAT", "CR"]


# --- children -----------------------------------------------------------------------------
#: Runs a command in a grandchild and writes its exit code, wall time and ru_maxrss (KB).
#: (A child forked from this process would carry this process's peak memory over exec in
#: its ru_maxrss: Linux keeps the larger; a grandchild of a small launcher does not.)
_LAUNCHER = """
import json, os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump([os.waitstatus_to_exitcode(status), time.perf_counter() - t0, usage.ru_maxrss], f)
"""


def _measure(args: list[str], cwd: Path | None = None) -> dict[str, float]:
    """Run a command; its wall time and peak resident memory (MB), and the JSON it prints."""
    with tempfile.NamedTemporaryFile(suffix=".json") as rusage:
        proc = subprocess.run([sys.executable, "-c", _LAUNCHER, rusage.name, *args], cwd=cwd,
                              capture_output=True, text=True)
        code, wall, maxrss = json.loads(Path(rusage.name).read_text())
    if code != 0 or proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({code}): {proc.stderr[-2000:]}")
    result = {"wall": wall, "maxrss_mb": maxrss / 1024.0}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            result.update(json.loads(line))
    return result


def child_hpcpipe(case: Path) -> None:
    """Warp every visit of ``case`` and coadd the warps (the timed hpcpipe run)."""
    from hpcpipe.pipe.assemble_coadd import AssembleCoaddTask
    from hpcpipe.pipe.coadd_warp import MakeCoaddTempExpTask

    spec = json.loads((case / "case.json").read_text())
    sky_map = BaseSkyMap.from_dict(spec["skymap"])
    patch = sky_map[spec["tract"]].get_patch_info(tuple(spec["patch"]))
    out = case / "hpcpipe"
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    split = {"wcsTime": 0.0, "resampleTime": 0.0, "assignTime": 0.0}
    warps = []
    for visit, files in spec["visits"].items():
        task = MakeCoaddTempExpTask()
        result = task.run((Exposure.read(case / f) for f in files), patch)
        for key in split:
            split[key] += task.metadata.get(key, 0.0)
        if result.exposure is not None:
            path = out / f"warp_{visit}.fits"
            result.exposure.write(path)
            warps.append(path)
        del result
    t1 = time.perf_counter()
    readers = [(lambda box, p=p: Exposure.read(p, box)) for p in warps]
    coadd = AssembleCoaddTask().run_readers(readers, patch.outer_bbox).coadd
    coadd.write(out / "coadd.fits")
    t2 = time.perf_counter()
    print(json.dumps({"warp": t1 - t0, "coadd": t2 - t1, **split}))


def child_depth(repo: Path, max_mb: float) -> None:
    """Coadd the depth repository's warps through the butler (the timed depth run)."""
    from coadd_depth import KEY

    from hpcpipe.butler import Butler
    from hpcpipe.pipe.assemble_coadd import AssembleCoaddTask

    butler = Butler(repo)
    task = AssembleCoaddTask()
    task.config.maxInputMemory = max_mb
    t0 = time.perf_counter()
    result = task.run_data_ref(butler.dataRef("deepCoadd", **KEY))
    print(json.dumps({"coadd": time.perf_counter() - t0, "n": result.n_inputs,
                      "subregions": task.metadata["nSubregions"]}))


# --- the cases ----------------------------------------------------------------------------
def _write_case(case: Path, sky_map: BaseSkyMap, tract: int, patch: tuple[int, int],
                visits: dict[int, list[Exposure]]) -> None:
    """Write the calexps for hpcpipe and SWarp, and case.json."""
    (case / "calexps").mkdir(parents=True, exist_ok=True)
    (case / "swarp_in").mkdir(exist_ok=True)
    spec = {"skymap": sky_map.to_dict(), "tract": tract, "patch": list(patch), "visits": {}}
    tpv_err = 0.0
    for visit, calexps in visits.items():
        names = []
        for k, calexp in enumerate(calexps):
            name = f"calexp_{visit}_{k}.fits"
            calexp.write(case / "calexps" / name)
            names.append(f"calexps/{name}")
            bad = calexp.mask.get_plane_bitmask([p for p in BAD if p in calexp.mask.planes])
            tpv_err = max(tpv_err, write_swarp_input(
                calexp, case / "swarp_in" / f"{visit}_{k}.fits",
                case / "swarp_in" / f"{visit}_{k}.weight.fits", bad))
        spec["visits"][str(visit)] = names
    spec["tpv_error_pixels"] = tpv_err
    (case / "case.json").write_text(json.dumps(spec))


def demo_case(case: Path, demo: Path) -> None:
    """The r-band calexps of a demo output, onto tract 0 patch 2,2."""
    from hpcpipe.butler import Butler

    butler = Butler(demo / "rerun")
    sky_map = butler.get("skyMap")
    visits: dict[int, list[Exposure]] = {}
    for visit, ccd in butler.queryMetadata("raw", ["visit", "ccd"], filter="r"):
        if butler.datasetExists("calexp", visit=visit, ccd=ccd):
            visits.setdefault(int(visit), []).append(butler.get("calexp", visit=visit, ccd=ccd))
    _write_case(case, sky_map, 0, (2, 2), visits)


def _sip_wcs(ra: float, dec: float, crpix: tuple[float, float], scale: float) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [crpix[0] + 1, crpix[1] + 1]
    wcs.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]])
    header = wcs.to_header(relax=True)
    header["A_ORDER"] = header["B_ORDER"] = 2
    header["A_2_0"], header["A_1_1"], header["B_0_2"], header["B_1_1"] = 2e-8, -1e-8, 2e-8, 1e-8
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    return WCS(header, relax=True)


def large_case(case: Path, n_visits: int = 6, n_ccds: int = 10, size: int = 2048,
               patch_size: int = 4200) -> None:
    """Synthetic calexps: ``n_visits`` visits of ``n_ccds`` CCDs (5 x 2) onto one patch."""
    scale = 0.2 / 3600
    border = 100
    inner = patch_size - 2 * border
    sky_map = DiscreteSkyMap([150.0], [2.0], [inner * scale / 2],
                             config=SkyMapConfig(patch_inner_dimensions=(inner, inner),
                                                 patch_border=border))
    tract = sky_map[0]
    patch = tract.get_patch_info((0, 0))
    centre = patch.wcs.pixel_to_world_values(patch.outer_bbox.x0 + patch_size / 2,
                                             patch.outer_bbox.y0 + patch_size / 2)
    rng = np.random.default_rng(5)
    n_stars = 6000
    star_ra = centre[0] + rng.uniform(-0.2, 0.2, n_stars) / np.cos(np.radians(2.0))
    star_dec = centre[1] + rng.uniform(-0.2, 0.2, n_stars)
    star_flux = 10 ** rng.uniform(2.0, 5.0, n_stars)  # nJy x 10
    cols = (n_ccds + 1) // 2
    visits: dict[int, list[Exposure]] = {}
    for visit in range(n_visits):
        dra, ddec = rng.uniform(-60, 60, 2) * 0.2 / 3600
        zp = 31.4 + rng.uniform(-0.1, 0.1)
        calib = PhotoCalib(zp)
        sigma_sky = 8.0 * (1 + 0.05 * visit)
        psf_sigma = 1.6 + 0.1 * visit
        calexps = []
        for k in range(n_ccds):
            cx, cy = k % cols - (cols - 1) / 2, k // cols - 0.5
            ra = centre[0] + dra + cx * size * scale / np.cos(np.radians(2.0))
            dec = centre[1] + ddec + cy * size * scale
            wcs = _sip_wcs(ra, dec, (size / 2, size / 2), scale)
            exp = Exposure(Box2I(0, 0, size, size), wcs=wcs, photo_calib=calib,
                           filter=FilterLabel(band="r", physical="r"),
                           psf=GaussianPsf(psf_sigma, size=25))
            img = rng.normal(0.0, sigma_sky, (size, size)).astype(np.float32)
            x, y = wcs.all_world2pix(star_ra, star_dec, 0)
            inside = (x > -10) & (x < size + 10) & (y > -10) & (y < size + 10)
            counts = star_flux[inside] / calib.calibration_mean
            for sx, sy, f in zip(x[inside], y[inside], counts):
                x0, x1 = max(int(sx) - 8, 0), min(int(sx) + 9, size)
                y0, y1 = max(int(sy) - 8, 0), min(int(sy) + 9, size)
                if x1 <= x0 or y1 <= y0:
                    continue
                yy, xx = np.mgrid[y0:y1, x0:x1]
                img[y0:y1, x0:x1] += (f / (2 * np.pi * psf_sigma**2) * np.exp(
                    -((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * psf_sigma**2))).astype(np.float32)
            exp.image.array[:] = img
            exp.variance.array[:] = np.float32(sigma_sky**2)
            # a bad column, interpolated over as ISR does (BAD | INTRP, the sky's level)
            exp.mask.array[:, 700:702] = exp.mask.get_plane_bitmask(["BAD", "INTRP"])
            exp.image.array[:, 700:702] = 0.5 * (exp.image.array[:, 699:700]
                                                 + exp.image.array[:, 702:703])
            calexps.append(exp)
        visits[visit + 1] = calexps
    _write_case(case, sky_map, 0, (0, 0), visits)


# --- comparisons --------------------------------------------------------------------------
def compare(case: Path, swarp_dir: Path) -> dict[str, float]:
    """(hpcpipe - SWarp) / sigma over the pixels both cover."""
    coadd = Exposure.read(case / "hpcpipe" / "coadd.fits")
    sw = fits.getdata(swarp_dir / "coadd.fits").astype(np.float64)
    sw_weight = fits.getdata(swarp_dir / "coadd.weight.fits")
    hp = coadd.image.array.astype(np.float64)
    sigma = np.sqrt(coadd.variance.array.astype(np.float64))
    if sw.shape != hp.shape:
        raise RuntimeError(f"SWarp's grid {sw.shape} is not hpcpipe's {hp.shape}")
    both = np.isfinite(hp) & np.isfinite(sigma) & (sigma > 0) & (sw_weight > 0)
    z = (hp - sw)[both] / sigma[both]
    iy, ix = np.nonzero(both)
    worst = int(np.argmax(np.abs(z)))
    x0, y0 = coadd.xy0
    return {"pixels": int(both.sum()), "median_z": float(np.median(z)),
            "p99_abs_z": float(np.percentile(np.abs(z), 99)),
            "max_abs_z": float(np.abs(z[worst])),
            "worst_xy_local": [int(ix[worst]), int(iy[worst])],
            "worst_xy_parent": [int(ix[worst] + x0), int(iy[worst] + y0)]}


def run_pair(case: Path, name: str) -> dict[str, object]:
    """hpcpipe then SWarp on a prepared case."""
    hp = _measure([sys.executable, __file__, "--child-hpcpipe", str(case)])
    spec = json.loads((case / "case.json").read_text())
    sky_map = BaseSkyMap.from_dict(spec["skymap"])
    patch = sky_map[spec["tract"]].get_patch_info(tuple(spec["patch"]))
    header = wcs_to_header(patch.wcs, patch.outer_bbox.xy0)
    header["NAXIS"] = 2
    header["NAXIS1"], header["NAXIS2"] = patch.outer_bbox.width, patch.outer_bbox.height
    images = sorted((case / "swarp_in").glob("*[0-9].fits"))
    swarp_dir = case / "swarp"
    shutil.rmtree(swarp_dir, ignore_errors=True)
    found: dict[str, float] = {}

    def popen(args: list[str], cwd: Path) -> None:
        found.update(_measure(args, cwd))

    run_swarp(images, header, swarp_dir, popen=popen)
    agreement = compare(case, swarp_dir)
    return {"case": name, "hpcpipe": hp, "swarp": found, "agreement": agreement,
            "tpv_error_pixels": spec["tpv_error_pixels"]}


def report_pair(r: dict[str, object]) -> None:
    hp, sw, ag = r["hpcpipe"], r["swarp"], r["agreement"]
    print(f"\n== {r['case']} ==")
    print(f"hpcpipe: {hp['wall']:.2f} s (warps {hp['warp']:.2f}: WCS {hp['wcsTime']:.2f}, "
          f"resampling {hp['resampleTime']:.2f}, placing {hp['assignTime']:.2f}; coadd "
          f"{hp['coadd']:.2f}), peak {hp['maxrss_mb']:.0f} MB")
    print(f"SWarp:   {sw['wall']:.2f} s, peak {sw['maxrss_mb']:.0f} MB")
    print(f"time ratio hpcpipe/SWarp {hp['wall'] / sw['wall']:.2f}; memory ratio "
          f"{hp['maxrss_mb'] / sw['maxrss_mb']:.2f}")
    print(f"(hpcpipe - SWarp)/sigma over {ag['pixels']} pixels: median {ag['median_z']:+.4f}, "
          f"99th percentile |z| {ag['p99_abs_z']:.2f}, worst {ag['max_abs_z']:.1f} at parent "
          f"x,y = {ag['worst_xy_parent']} (local {ag['worst_xy_local']}); "
          f"TPV fit error {r['tpv_error_pixels']:.1e} px")


def depth_case(work: Path, depths: list[int], size: int, distinct: int, max_mb: float
               ) -> list[dict[str, object]]:
    from coadd_depth import make_depth_repo

    rows = []
    for n in depths:
        root = work / f"depth{n}"
        t0 = time.perf_counter()
        make_depth_repo(root, n, size, distinct=min(distinct, n))
        made = time.perf_counter() - t0
        r = _measure([sys.executable, __file__, "--child-depth", str(root / "repo"),
                      "--max-mb", str(max_mb)])
        rows.append({"n": n, "size": size, "made_s": made, **r})
        print(f"depth {n:4d} warps of {size}^2: assembleCoadd {r['coadd']:.1f} s in "
              f"{r['subregions']} sub-regions, peak {r['maxrss_mb']:.0f} MB "
              f"(maxInputMemory {max_mb:.0f} MB)", flush=True)
        shutil.rmtree(root)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="demo,large,depth")
    parser.add_argument("--demo", type=Path, help="an `hpcpipe demo` output directory")
    parser.add_argument("--depth", default="6,50,200")
    parser.add_argument("--depth-size", type=int, default=4096)
    parser.add_argument("--distinct", type=int, default=6,
                        help="different warp files in the depth case (others: hard links)")
    parser.add_argument("--max-mb", type=float, default=256.0,
                        help="assembleCoadd.maxInputMemory in the depth case")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the cases' files (under --workdir)")
    parser.add_argument("--child-hpcpipe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-depth", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_hpcpipe:
        child_hpcpipe(args.child_hpcpipe)
        return 0
    if args.child_depth:
        child_depth(args.child_depth, args.max_mb)
        return 0
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - {"demo", "large", "depth"}
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; choose from demo, large, depth")
    if {"demo", "large"} & set(cases) and swarp_binary() is None:
        print("SWarp is not installed (apt-get install swarp): the demo and large cases need "
              "it", file=sys.stderr)
        return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_coadd_"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}
    try:
        if "demo" in cases:
            demo = args.demo
            if demo is None:
                demo = work / "demo"
                subprocess.run([sys.executable, "-m", "hpcpipe", "demo", "--output", str(demo)],
                               check=True, capture_output=True)
            demo_case(work / "case_demo", demo)
            results["demo"] = run_pair(work / "case_demo", "demo: 8 CCDs of 1024^2, 2 visits, "
                                       "tract 0 patch 2,2 r")
            report_pair(results["demo"])
            if not args.keep:
                shutil.rmtree(work / "case_demo")
        if "large" in cases:
            if not (work / "case_large" / "case.json").exists():
                large_case(work / "case_large")
            results["large"] = run_pair(work / "case_large",
                                        "large: 6 visits x 10 CCDs of 2048^2, 4200^2 patch")
            report_pair(results["large"])
            if not args.keep:
                shutil.rmtree(work / "case_large")
        if "depth" in cases:
            print(f"\n== depth: {args.depth} warps of {args.depth_size}^2 ==")
            depths = [int(v) for v in args.depth.split(",")]
            results["depth"] = depth_case(work, depths, args.depth_size, args.distinct,
                                          args.max_mb)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
