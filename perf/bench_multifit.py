"""Benchmark of the multi-epoch model fit (multifit) against the same fit rendered by GalSim.

Usage: python perf/bench_multifit.py [--objects 200] [--epochs 10,30] [--half 12]
       [--galsim-objects 4] [--ranks 2]
       python perf/bench_multifit.py --plot docs/multifit_errors.png

Objects: exponential galaxies of S/N 20-200 (tests/multifit_sim.py: GalSim-drawn stamps of
``2 half + 1`` pixels, Kolmogorov PSFs of 0.6-1.2 arcsec, one 3-Gaussian PSF mixture per
epoch). For each number of epochs it prints:

* objects fitted per second of one core's CPU time (this process's, so that other jobs on
  the machine do not count; the wall-clock rate is printed beside it): exponential model,
  centre + shape + flux, started from a round 0.5 arcsec guess; and the time split between
  the pixel work (the ``gm_moments`` kernel: rendering, derivatives and their sums) and the
  rest (the solve: normal equations, fluxes, steps);
* the CPU time of every model of the production step (exponential, de Vaucouleurs, CModel,
  point source) per object;
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
from hpcpipe.meas.multifit import (  # noqa: E402
    EpochSet,
    fit_cmodel,
    fit_model,
    initial_theta,
)

GOAL = 100.0


def make(n: int, epochs: int, half: int, seed: int = 0) -> list:
    from multifit_sim import make_objects

    return make_objects(n, seed=seed, n_epochs=epochs, half=half, snr_range=(20.0, 200.0))


def time_fits(objects: list) -> tuple[float, float, float, int]:
    """Wall seconds and CPU seconds of this process for fitting every object, CPU seconds
    inside gm_moments, and the number of fits not flagged."""
    kernel = fit_module.gm_moments
    spent = [0.0]

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        t = time.process_time()
        out = kernel(*args, **kwargs)
        spent[0] += time.process_time() - t
        return out

    sets = [EpochSet(o.epochs) for o in objects]
    fit_module.gm_moments = timed
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        good = 0
        for es in sets:
            good += fit_model(es, "exp", initial_theta("exp", 0.5)).flags == 0
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        fit_module.gm_moments = kernel
    return wall, cpu, spent[0], good


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


def plot_errors(path: Path, n: int = 120) -> None:
    """The per-object errors of the multi-epoch and the coadd fits versus S/N (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objects = make_objects_for_plot(n)
    rows = []
    for o in objects:
        me = fit_model(o.epochs, "exp", initial_theta("exp", 0.5))
        co = fit_model([o.coadd], "exp", initial_theta("exp", 0.5))
        rows.append((me.flux["r"] / me.flux_err["r"], me.flux["r"] / o.flux - 1,
                     co.flux["r"] / o.flux - 1, np.hypot(*np.subtract(me.g, o.g)),
                     np.hypot(*np.subtract(co.g, o.g)), me.flux_err["r"] / co.flux_err["r"]))
    a = np.array(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (i, j), label in ((axes[0], (1, 2), "|flux / true flux - 1|"),
                              (axes[1], (3, 4), "|e - e_true|")):
        ax.loglog(a[:, 0], np.abs(a[:, i]), "o", ms=4, label="multi-epoch (8 epochs)")
        ax.loglog(a[:, 0], np.abs(a[:, j]), "x", ms=4, label="coadd")
        ax.set_xlabel("S/N of the multi-epoch flux")
        ax.set_ylabel(label)
        ax.legend()
    hi = a[:, 0] > 50
    axes[0].set_title(f"median bias (S/N > 50): multi {100 * np.median(a[hi, 1]):+.2f}%, "
                      f"coadd {100 * np.median(a[hi, 2]):+.2f}%", fontsize=9)
    axes[1].set_title(f"median |e - e_true| (S/N > 50): multi {np.median(a[hi, 3]):.4f}, "
                      f"coadd {np.median(a[hi, 4]):.4f}", fontsize=9)
    fig.suptitle("Exponential galaxies, seeing 0.6-1.2 arcsec: multi-epoch fit vs coadd fit "
                 f"(flux errors multi / coadd: median {np.median(a[:, 5]):.3f})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def make_objects_for_plot(n: int) -> list:
    from multifit_sim import make_objects

    return make_objects(n, seed=11, n_epochs=8, snr_range=(20.0, 2000.0))


def worker(args: argparse.Namespace) -> None:
    """One rank of the parallel-efficiency run (under mpirun)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    objects = make(args.objects, args.worker_epochs, args.half, seed=7)
    mine = objects[comm.rank::comm.size]
    comm.Barrier()
    t = time.perf_counter()
    _, cpu, _, _ = time_fits(mine)
    elapsed = comm.reduce(time.perf_counter() - t, op=MPI.MAX)
    cpu_total = comm.reduce(cpu, op=MPI.SUM)
    if comm.rank == 0:
        print(json.dumps({"seconds": elapsed, "cpu": cpu_total}))


def mpi_seconds(ranks: int, args: argparse.Namespace, epochs: int
                ) -> tuple[float, float] | None:
    """Wall seconds of the slowest rank and CPU seconds of all ranks, on ``ranks`` ranks."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        return None
    cmd = [mpirun, "--oversubscribe", "--allow-run-as-root", "-n", str(ranks), sys.executable,
           __file__, "--worker", "--worker-epochs", str(epochs), "--objects",
           str(args.objects), "--half", str(args.half)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), float(result["cpu"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--epochs", default="10,30")
    parser.add_argument("--half", type=int, default=12, help="stamp half-size, pixels")
    parser.add_argument("--galsim-objects", type=int, default=4)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--plot", type=Path, help="write the multi-epoch vs coadd error plot "
                        "(PNG) and stop")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-epochs", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.plot:
        plot_errors(args.plot)
        return
    print(f"kernel gmrender: {kernel_status()['gmrender']}; stamps {2 * args.half + 1}^2 "
          f"pixels; {args.objects} exponential galaxies")
    for epochs in [int(e) for e in args.epochs.split(",")]:
        objects = make(args.objects, epochs, args.half)
        time_fits(objects[:5])  # warm up
        wall, total, kernel, good = time_fits(objects)
        rate = len(objects) / total
        print(f"{epochs:3d} epochs: {rate:7.1f} objects/s/core of CPU time ({1e3 / rate:.2f} ms "
              f"each; {len(objects) / wall:.1f}/s of wall time on this shared machine; {good}/"
              f"{len(objects)} converged unflagged); pixel work (render + derivatives + sums) "
              f"{100 * kernel / total:.0f}%, solve {100 * (1 - kernel / total):.0f}%"
              + (f"; goal >= {GOAL:.0f} objects/s/core at 10 epochs: "
                 f"{'met' if rate >= GOAL else 'NOT met'}" if epochs == 10 else ""))
        sets = [EpochSet(o.epochs) for o in objects]
        c0 = time.process_time()
        for es in sets:
            cm = fit_cmodel(es, initial_theta("exp", 0.5))
            fit_model(es, "point", cm.exp.theta[:2].copy())
        every = (time.process_time() - c0) / len(objects)
        print(f"     every model (exp, dev, CModel, point source): {every * 1e3:.2f} ms/object "
              f"of CPU, {every * rate:.2f} times the exponential alone")
        if args.galsim_objects:
            sub = objects[:args.galsim_objects]
            t = time.process_time()
            fluxes = [galsim_fit(o) for o in sub]
            gs = (time.process_time() - t) / len(sub)
            ours = total / len(objects)
            err = np.median(np.abs(np.array(fluxes) / [o.flux for o in sub] - 1))
            print(f"     GalSim-rendered fit: {gs * 1e3:.0f} ms/object of CPU (flux within "
                  f"{100 * err:.1f}% of the truth); ours / GalSim = {ours / gs:.4f} "
                  f"({gs / ours:.0f}x faster)")
        if args.ranks > 1:
            t1 = mpi_seconds(1, args, epochs)
            tn = mpi_seconds(args.ranks, args, epochs)
            if t1 is None or tn is None:
                print("     parallel efficiency: mpirun not found")
            else:
                print(f"     {args.ranks} MPI ranks: {t1[0]:.2f} s on 1 rank, {tn[0]:.2f} s on "
                      f"{args.ranks}: efficiency {t1[0] / (args.ranks * tn[0]):.2f} (wall "
                      f"clock; the machine's {os.cpu_count()} cores are shared); CPU seconds "
                      f"{t1[1]:.2f} on 1 rank, {tn[1]:.2f} on {args.ranks}: work efficiency "
                      f"{t1[1] / tn[1]:.2f}")


if __name__ == "__main__":
    main()
