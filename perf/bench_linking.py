"""HelioLinC linking rate: tracklets per second per core, 1 and 2 ranks, and LSST on paper.

Usage: python perf/bench_linking.py [--objects 30000] [--radius 3.5] [--fits 200]
       [--ranks 1,2]

Draws ``objects`` main-belt asteroids seen in a field of ``radius`` degrees (by default
about 800 per square degree, the density LSST sees near the ecliptic to r ~ 24.5), observes
them on 3 nights (LSST pairs, 2-4 nights apart; 0.1 arcsec astrometry; with 5% false
detections), makes the tracklets (about 10^5 with the defaults), then times:

* the tracklets (KD-tree pairing);
* the HelioLinC clustering over the default 24 x 5 grid of (r, rdot) hypotheses, the
  hypotheses split statically over the ranks (mpi4py: each rank takes every n-th, the
  candidates gathered and merged on rank 0), for each rank count of ``--ranks`` (the script
  runs itself under ``mpirun -n N`` for N > 1);
* the orbit fits (differential correction) of ``--fits`` candidate linkages, serially.

It prints the rates (tracklets per second per core for the clustering, fits per second), the
2-rank speed-up against the 1-rank run of the same invocation, the linking's completeness
and purity, and an extrapolation to LSST's ~10^6 tracklets a night (3-night windows). The
machine may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from hpcpipe.solarsystem import heliolinc, population, synthetic, tracklets  # noqa: E402

T0 = 61060.2   # MJD TAI (2026-01-20): the field below is near opposition
FIELD = (120.0, 20.0)


def scene(objects: int, radius: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray, float]:
    """Detections and their tracklets; returns them and the seconds the tracklets took."""
    rng = np.random.default_rng(seed)
    orbits = population.population_in_field(objects, *FIELD, radius, T0 + 3, rng)
    times = synthetic.lsst_cadence(T0, 3, rng)
    det = synthetic.synthetic_detections(orbits, times, *FIELD, radius, rng, sigma_arcsec=0.1,
                                         n_false_per_visit=max(1, objects // 20))
    start = time.perf_counter()
    trk = tracklets.make_tracklets(det["mjd"], det["ra"], det["dec"])
    return det, trk, time.perf_counter() - start


def clustering(det: np.ndarray, trk: np.ndarray, comm: object | None
               ) -> tuple[list[heliolinc.Candidate], float, heliolinc.LinkingInput]:
    """HelioLinC candidates over the hypothesis grid split across the ranks of ``comm``."""
    config = heliolinc.LinkingConfig()
    data = heliolinc.LinkingInput.build(det, trk)
    grid = config.hypotheses()
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    if comm is not None:
        comm.Barrier()
    start = time.perf_counter()
    mine = [heliolinc.candidates_for_hypotheses(data, grid[k:k + 1], config, first_index=k)
            for k in range(rank, len(grid), size)]
    parts = comm.gather(mine, root=0) if comm is not None else [mine]
    merged = heliolinc.merge_candidates([c for p in parts for c in p]) if rank == 0 else []
    return merged, time.perf_counter() - start, data


def worker_main(args: argparse.Namespace) -> None:
    """One timing of the clustering under mpirun; rank 0 writes the seconds."""
    from mpi4py import MPI  # only under mpirun

    comm = MPI.COMM_WORLD
    det, trk, _ = scene(args.objects, args.radius)
    cands, seconds, _ = clustering(det, trk, comm)
    if comm.Get_rank() == 0:
        Path(args.result).write_text(json.dumps({"seconds": seconds,
                                                 "candidates": len(cands)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=30000)
    parser.add_argument("--radius", type=float, default=3.5, help="field radius (deg)")
    parser.add_argument("--fits", type=int, default=200, help="orbit fits timed")
    parser.add_argument("--ranks", default="1,2", help="rank counts timed (default 1,2)")
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.result:
        worker_main(args)
        return
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    start = time.perf_counter()
    det, trk, t_trk = scene(args.objects, args.radius)
    area = np.pi * args.radius ** 2
    print(f"{args.objects} objects, {len(det)} detections on 3 nights in {area:.0f} deg^2 "
          f"(simulated in {time.perf_counter() - start - t_trk:.1f} s)")
    print(f"tracklets: {len(trk)} in {t_trk:.2f} s ({len(det) / t_trk:,.0f} detections/s)")
    timings: dict[int, float] = {}
    cands: list[heliolinc.Candidate] = []
    data = None
    for n in [int(x) for x in args.ranks.split(",")]:
        if n == 1:
            cands, timings[1], data = clustering(det, trk, None)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            subprocess.run(["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", str(n),
                            sys.executable, __file__, "--objects", str(args.objects),
                            "--radius", str(args.radius), "--result", str(out)], check=True)
            timings[n] = json.loads(out.read_text())["seconds"]
    n_hyp = len(heliolinc.LinkingConfig().hypotheses())
    best = min(timings.values())
    for n, sec in sorted(timings.items()):
        print(f"HelioLinC clustering, {n} rank(s): {sec:.1f} s for {n_hyp} hypotheses: "
              f"{len(trk) / sec:,.0f} tracklets/s, {len(trk) / sec / n:,.0f} tracklets/s/core, "
              f"{len(trk) * n_hyp / sec / n:,.0f} tracklet-hypotheses/s/core; "
              f"{sec / best:.2f}x the best")
    if 1 in timings and 2 in timings:
        print(f"speed-up 1 -> 2 ranks: {timings[1] / timings[2]:.2f} "
              f"(efficiency {timings[1] / timings[2] / 2:.0%})")
    if data is None:
        return
    # orbit fits of a sample of the candidates (largest first, as select_linkages takes them)
    sample = cands[: args.fits]
    start = time.perf_counter()
    links = heliolinc.select_linkages(data, sample, heliolinc.LinkingConfig())
    t_fit = time.perf_counter() - start
    fit_rate = len(sample) / t_fit if sample else float("nan")
    print(f"orbit fits: {len(sample)} candidates in {t_fit:.1f} s ({fit_rate:.1f}/s/core), "
          f"{len(links)} accepted")
    truth = det["objectId"]
    pure = sum(len(np.unique(truth[lk.detections])) == 1 and truth[lk.detections][0] >= 0
               for lk in links)
    print(f"purity of the fitted sample: {pure}/{len(links)}; candidates in all: {len(cands)}")
    # LSST on paper: 10^6 tracklets a night, linked over 3-night windows (3 x 10^6 tracklets)
    rate = len(trk) / timings[1] if 1 in timings else len(trk) / best
    lsst = 3e6
    core_s = lsst / rate
    fits_needed = len(cands) / len(trk) * lsst
    print(f"LSST on paper: clustering 3e6 tracklets x {n_hyp} hypotheses at this rate: "
          f"{core_s / 3600:.1f} core-hours a night (linear in tracklets at fixed density per "
          f"hypothesis; {core_s / 3600 / 100:.2f} h on 100 cores); orbit fits of "
          f"~{fits_needed:,.0f} candidates at {fit_rate:.1f}/s/core: "
          f"{fits_needed / fit_rate / 3600:.1f} core-hours")


if __name__ == "__main__":
    main()
