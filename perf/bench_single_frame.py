"""Single-frame processing against Source Extractor and SEP on GalSim images, in one run.

Usage: python perf/bench_single_frame.py [--size 2048] [--sparse 1000] [--crowded 5000]
       [--seed 1] [--threshold 5.0] [--no-sextractor]

Two CCDs rendered by GalSim (tests/galsim_sky.py: Kolmogorov plus optical PSF of FWHM about
0.75", 0.2"/pixel, Sersic galaxies, sky 1000 e-/pixel, gain 1, read noise 5): a sparse field
and a crowded one (``--sparse`` and ``--crowded`` objects, half stars, half galaxies). On each,
side by side:

* hpcpipe's single-frame processing through its Python API: the characterization
  (background, cosmic rays, PSF model, aperture corrections) and the calibration's detection
  and measurement (astrometric and photometric fits off: no reference catalog); the time of
  detection plus measurement alone on the characterized image is given too (``det+meas``);
* Source Extractor (``source-extractor``, skipped when not installed) and SEP, configured to
  the same *true* threshold: ``--threshold`` sigmas of the filtered image (Source Extractor's
  DETECT_THRESH is in units of the unfiltered noise: the threshold given to it is
  ``threshold * sqrt(sum(K**2))``, see tests/sextractor_run.py).

Metrics against the truth (tests/galsim_science.py): completeness at true S/N > 5 and > 20
(the S/N of an optimal measurement of a point source of that flux), spurious fraction (no
true object within 2 pixels), centroid error of isolated stars at S/N > 100 (median and 90th
percentile), bias and robust scatter (mag) of isolated stars at S/N > 100 (hpcpipe: PSF flux
with aperture correction; Source Extractor: FLUX_AUTO; SEP: Kron), the spread of
``(flux - truth) / error`` of isolated stars at S/N > 5, Kron / FLUX_AUTO of isolated galaxies
at S/N > 50 (median bias, mag), and the wall time of each tool with the ratio to Source
Extractor's. hpcpipe's PSF flux is also given for the galaxies' neighbour check: none. The
machine may be shared: timings are indicative, the science columns are not.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
from galsim_science import (  # noqa: E402
    exposure_from_scene,
    isolated,
    match_to_truth,
    psf_noise_area,
    robust_sigma,
    true_snr,
)
from galsim_sky import make_scene, psf_image, render_scene  # noqa: E402
from sextractor_run import run_sep, run_source_extractor, sextractor_binary  # noqa: E402

from hpcpipe.kernels import kernel_status  # noqa: E402
from hpcpipe.pipe.calibrate import CalibrateConfig, CalibrateTask  # noqa: E402
from hpcpipe.pipe.characterize import CharacterizeImageTask  # noqa: E402
from hpcpipe.pipe.sources import measure_detections  # noqa: E402


def score(scene, x, y, flux, err, kron, label: str) -> dict[str, float]:
    """The science columns of one tool's catalog."""
    truth = scene.truth
    match = match_to_truth(truth, x, y, radius=2.0)
    snr = true_snr(scene, truth["flux"], psf_noise_area(psf_image(scene, 41)))
    iso = isolated(truth)
    is_star = np.asarray(truth["is_star"])
    tflux = np.asarray(truth["flux"], float)
    found = match.truth_index >= 0
    ti = match.truth_index[found]
    f, e, k = (np.asarray(a, float)[found] for a in (flux, err, kron))
    s = snr[ti]
    star = is_star[ti] & iso[ti] & np.isfinite(f) & (f > 0)
    bright = star & (s > 100)
    dm = -2.5 * np.log10(f[bright] / tflux[ti][bright])
    pull = (f - tflux[ti]) / e
    spread = robust_sigma(pull[star & (s > 5) & np.isfinite(pull)])
    gal = ~is_star[ti] & iso[ti] & (s > 50) & np.isfinite(k) & (k > 0)
    dk = -2.5 * np.log10(k[gal] / tflux[ti][gal])
    dist = match.distance[found][bright]
    # the scatter the photon noise alone gives these stars (an optimal measurement: the true
    # S/N), whatever the tool: the floor of the scatter column
    rng = np.random.default_rng(15)
    sigma_mag = 2.5 / np.log(10.0) / s[bright]
    floor = float(np.median([robust_sigma(rng.normal(0.0, sigma_mag)) for _ in range(400)])) \
        if bright.any() else np.nan
    return {
        "floor": floor,
        "spread100": robust_sigma(pull[bright & np.isfinite(pull)]),
        "complete5": float(match.detected[snr > 5].mean()),
        "complete20": float(match.detected[snr > 20].mean()),
        "spurious": match.spurious_fraction(),
        "n_spurious": int(match.spurious.sum()),
        "cen50": float(np.median(dist)) if dist.size else np.nan,
        "cen90": float(np.percentile(dist, 90)) if dist.size else np.nan,
        "bias": float(np.median(dm)) if dm.size else np.nan,
        "scatter": robust_sigma(dm),
        "n_bright": int(bright.sum()),
        "spread": spread,
        "kron": float(np.median(dk)) if dk.size else np.nan,
        "n_gal": int(gal.sum()),
        "label": label,
    }


def run_hpcpipe(scene, image: np.ndarray, threshold: float) -> tuple[dict, dict]:
    """Characterize + calibrate (detection, measurement); the time of each part."""
    times = {}
    exposure = exposure_from_scene(scene, image)
    start = time.perf_counter()
    CharacterizeImageTask().run(exposure)
    times["characterize"] = time.perf_counter() - start
    config = CalibrateConfig()
    config.doAstrometry = False
    config.doPhotoCal = False
    config.detection.thresholdValue = threshold
    calibrate = CalibrateTask(config=config)
    detect_input = exposure.clone()
    start = time.perf_counter()
    catalog = calibrate.run(exposure, None).sourceCat
    times["calibrate"] = time.perf_counter() - start
    # detection + measurement alone on the characterized (calibrated-style) image
    start = time.perf_counter()
    det = calibrate.detection.run(detect_input)
    measure_detections(calibrate.measurement, detect_input, det.detections, 0, calibrate.schema)
    times["det+meas"] = time.perf_counter() - start
    times["total"] = times["characterize"] + times["calibrate"]
    cat = catalog.where(catalog["detect_isPrimary"])
    return times, score(scene, cat["base_SdssCentroid_x"], cat["base_SdssCentroid_y"],
                        cat["base_PsfFlux_instFlux"], cat["base_PsfFlux_instFluxErr"],
                        cat["ext_photometryKron_KronFlux_instFlux"], "hpcpipe")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--sparse", type=int, default=1000, help="objects in the sparse field")
    parser.add_argument("--crowded", type=int, default=5000,
                        help="objects in the crowded field (0: skip it)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=5.0,
                        help="true detection threshold of every tool, sigmas of the "
                             "filtered image")
    parser.add_argument("--no-sextractor", action="store_true")
    args = parser.parse_args(argv)
    if args.size < 256 or args.sparse < 10:
        parser.error("--size must be >= 256 and --sparse >= 10")
    print(f"kernels: {kernel_status()}")
    have_sx = sextractor_binary() is not None and not args.no_sextractor
    if not have_sx:
        print("source-extractor: not installed (or --no-sextractor): its column is skipped")
    fields = [("sparse", args.sparse)] + ([("crowded", args.crowded)] if args.crowded else [])
    for name, n in fields:
        scene = make_scene(seed=args.seed, shape=(args.size, args.size), n_stars=n // 2,
                           n_galaxies=n - n // 2)
        start = time.perf_counter()
        image = render_scene(scene, seed=args.seed)
        print(f"\n== {name} field: {args.size}x{args.size}, {n} objects (rendered by GalSim "
              f"in {time.perf_counter() - start:.1f} s), true threshold {args.threshold} "
              "sigma")
        rows = []
        times: dict[str, float] = {}
        ht, hs = run_hpcpipe(scene, image, args.threshold)
        rows.append(hs)
        times["hpcpipe"] = ht["total"]
        sx_time = np.nan
        if have_sx:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                sx = run_source_extractor(image, scene, Path(tmp), args.threshold)
                sx_time = time.perf_counter() - start
            rows.append(score(scene, sx["x"], sx["y"], sx["flux_auto"], sx["fluxerr_auto"],
                              sx["flux_auto"], "SExtractor"))
            times["SExtractor"] = sx_time
        start = time.perf_counter()
        sp = run_sep(image, scene, args.threshold)
        times["SEP"] = time.perf_counter() - start
        rows.append(score(scene, sp["x"], sp["y"], sp["flux_auto"], sp["fluxerr_auto"],
                          sp["flux_auto"], "SEP"))
        header = ("metric", *[r["label"] for r in rows])
        lines = [
            ("completeness S/N>5", *[f"{r['complete5']:.1%}" for r in rows]),
            ("completeness S/N>20", *[f"{r['complete20']:.1%}" for r in rows]),
            ("spurious fraction (n)", *[f"{r['spurious']:.2%} ({r['n_spurious']})"
                                        for r in rows]),
            ("centroid err S/N>100 med/90% px", *[f"{r['cen50']:.4f}/{r['cen90']:.4f}"
                                                  for r in rows]),
            ("stars S/N>100 bias/scatter mag (n)",
             *[f"{r['bias']:+.4f}/{r['scatter']:.4f} ({r['n_bright']})" for r in rows]),
            ("  photon-noise floor of that scatter", *[f"{r['floor']:.4f}" for r in rows]),
            ("error spread, stars S/N>5", *[f"{r['spread']:.2f}" for r in rows]),
            ("error spread, stars S/N>100", *[f"{r['spread100']:.2f}" for r in rows]),
            ("galaxies S/N>50 Kron bias mag (n)", *[f"{r['kron']:+.4f} ({r['n_gal']})"
                                                    for r in rows]),
            ("wall time s", *[f"{times[r['label']]:.2f}" for r in rows]),
            ("time / SExtractor", *[f"{times[r['label']] / sx_time:.2f}" if have_sx else "-"
                                    for r in rows]),
        ]
        widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
        for line in (header, *lines):
            print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))
        print("hpcpipe split: " + ", ".join(f"{k} {v:.2f} s" for k, v in ht.items())
              + (f"; det+meas / SExtractor {ht['det+meas'] / sx_time:.2f}" if have_sx else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
