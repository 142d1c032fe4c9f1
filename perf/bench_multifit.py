"""Benchmark of the multi-epoch model fit (multifit) against the same fit rendered by GalSim.

Usage: python perf/bench_multifit.py [--objects 200] [--epochs 10,30] [--half 12]
       [--galsim-objects 4] [--ranks 2]

Objects: exponential galaxies of S/N 20-200 (tests/multifit_sim.py: GalSim-drawn stamps of
``2 half + 1`` pixels, Kolmogorov PSFs of 0.6-1.2 arcsec, one 3-Gaussian PSF mixture per
epoch). For each number of epochs it prints:

* objects fitted per second on one core (exponential model, centre + shape + flux, started
  from a round 0.5 arcsec guess), and the time split between the pixel work (the
  ``gm_moments`` kernel: rendering, derivatives and their sums) and the rest (the solve: normal
  equations, fluxes, steps);
* the same fit with GalSim rendering the same models (the Hogg & Lang exponential replaced by
  GalSim's exact ``Exponential``, convolved with the same PSF mixture as a sum of GalSim
  Gaussians, ``method="no_pixel"``), solved by SciPy's Levenberg-Marquardt with finite-difference
  derivatives (GalSim gives no analytic derivatives): seconds per object and the ratio;
* with ``--ranks``, the parallel efficiency of fitting the objects on 1 and on ``ranks`` MPI
  ranks (``mpirun``; static split): ``T1 / (ranks T_ranks)``. This machine is small and
  shared: compare ratios, not absolute times.

The goal of the issue: at least 100 objects a second per core at 10 epochs (exponential).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402

import hpcpipe.meas.multifit.fit as fit_module  # noqa: E402
from hpcpipe.kernels import kernel_status  # noqa: E402
from hpcpipe.meas.multifit import EpochSet, fit_model, initial_theta  # noqa: E402

GOAL = 100.0


def make(n: int, epochs: int, half: int, seed: int = 0) -> list:
    from multifit_sim import make_objects

    return make_objects(n, seed=seed, n_epochs=epochs, half=half, snr_range=(20.0, 200.0))


def time_fits(objects: list) -> tuple[float, float, int]:
    """Seconds for fitting every object, seconds inside gm_moments, fits not flagged."""
    kernel = fit_module.gm_moments
    spent = [0.0]

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        out = kernel(*args, **kwargs)
        spent[0] += time.perf_counter() - t
        return out

    sets = [EpochSet(o.epochs) for o in objects]
    fit_module.gm_moments = timed
    try:
        t0 = time.perf_counter()
        good = 0
        for es in sets:
            good += fit_model(es, "exp", initial_theta("exp", 0.5)).flags == 0
        total = time.perf_counter() - t0
    finally:
        fit_module.gm_moments = kernel
    return total, spent[0], good


def galsim_fit(obj) -> float:  # type: ignore[no-untyped-def]
    """Fit one object with GalSim rendering; returns its flux (nJy)."""
    import galsim
    from scipy.optimize import least_squares

    epochs = obj.epochs
    scale = 1.0 / abs(np.linalg.det(epochs[0].jacobian)) ** 0.5  # arcsec per pixel
    psfs = []
    for e in epochs:
        comps = []
        for a, m, c in zip(e.psf.amp, e.psf.mean, e.psf.cov):
            cov = np.array([[c[0], c[1]], [c[1], c[2]]])
            # a Gaussian of this covariance: a circular one sheared (GalSim's way)
            ev, evec = np.linalg.eigh(cov)
            sa, sb = np.sqrt(ev[1]), np.sqrt(ev[0])
            g = (sa - sb) / (sa + sb)
            beta = np.arctan2(evec[1, 1], evec[0, 1])
            comps.append(galsim.Gaussian(sigma=scale * np.sqrt(sa * sb), flux=a)
                         .shear(g=g, beta=beta * galsim.radians).shift(*(scale * m)))
        psfs.append(galsim.Sum(comps))
    shape = epochs[0].image.shape

    def residuals(p: np.ndarray) -> np.ndarray:
        u0, v0, e1, e2, lnr, flux = p
        g1, g2 = fit_module.shear_from_eta(e1, e2)
        gal = galsim.Exponential(half_light_radius=float(np.exp(lnr)), flux=1.0).shear(
            g1=g1, g2=g2).shift(u0, v0)
        out = []
        for e, psf in zip(epochs, psfs):
            off = (e.center[0] - (shape[1] - 1) / 2.0, e.center[1] - (shape[0] - 1) / 2.0)
            img = galsim.Convolve([gal, psf]).drawImage(nx=shape[1], ny=shape[0], scale=scale,
                                                        offset=off, method="no_pixel").array
            out.append(((e.image - flux * e.calib * img) * np.sqrt(e.weight)).ravel())
        return np.concatenate(out)

    p0 = np.r_[initial_theta("exp", 0.5), obj.flux]
    return float(least_squares(residuals, p0, method="lm", x_scale="jac").x[-1])


def worker(args: argparse.Namespace) -> None:
    """One rank of the parallel-efficiency run (under mpirun)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    objects = make(args.objects, args.worker_epochs, args.half, seed=7)
    mine = objects[comm.rank::comm.size]
    comm.Barrier()
    t = time.perf_counter()
    time_fits(mine)
    elapsed = comm.reduce(time.perf_counter() - t, op=MPI.MAX)
    if comm.rank == 0:
        print(json.dumps({"seconds": elapsed}))


def mpi_seconds(ranks: int, args: argparse.Namespace, epochs: int) -> float | None:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        return None
    cmd = [mpirun, "--oversubscribe", "--allow-run-as-root", "-n", str(ranks), sys.executable,
           __file__, "--worker", "--worker-epochs", str(epochs), "--objects",
           str(args.objects), "--half", str(args.half)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--epochs", default="10,30")
    parser.add_argument("--half", type=int, default=12, help="stamp half-size, pixels")
    parser.add_argument("--galsim-objects", type=int, default=4)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-epochs", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"kernel gmrender: {kernel_status()['gmrender']}; stamps {2 * args.half + 1}^2 "
          f"pixels; {args.objects} exponential galaxies")
    for epochs in [int(e) for e in args.epochs.split(",")]:
        objects = make(args.objects, epochs, args.half)
        time_fits(objects[:5])  # warm up
        total, kernel, good = time_fits(objects)
        rate = len(objects) / total
        print(f"{epochs:3d} epochs: {rate:7.1f} objects/s/core ({1e3 / rate:.2f} ms each; "
              f"{good}/{len(objects)} converged unflagged); pixel work (render + derivatives "
              f"+ sums) {100 * kernel / total:.0f}%, solve {100 * (1 - kernel / total):.0f}%"
              + (f"; goal >= {GOAL:.0f} objects/s/core at 10 epochs: "
                 f"{'met' if rate >= GOAL else 'NOT met'}" if epochs == 10 else ""))
        if args.galsim_objects:
            sub = objects[:args.galsim_objects]
            t = time.perf_counter()
            fluxes = [galsim_fit(o) for o in sub]
            gs = (time.perf_counter() - t) / len(sub)
            ours = total / len(objects)
            err = np.median(np.abs(np.array(fluxes) / [o.flux for o in sub] - 1))
            print(f"     GalSim-rendered fit: {gs * 1e3:.0f} ms/object (flux within "
                  f"{100 * err:.1f}% of the truth); ours / GalSim = {ours / gs:.4f} "
                  f"({gs / ours:.0f}x faster)")
        if args.ranks > 1:
            t1 = mpi_seconds(1, args, epochs)
            tn = mpi_seconds(args.ranks, args, epochs)
            if t1 is None or tn is None:
                print("     parallel efficiency: mpirun not found")
            else:
                print(f"     {args.ranks} MPI ranks: {t1:.2f} s on 1 rank, {tn:.2f} s on "
                      f"{args.ranks}: efficiency {t1 / (args.ranks * tn):.2f} (the machine's "
                      f"{os.cpu_count()} cores are shared)")


if __name__ == "__main__":
    main()
