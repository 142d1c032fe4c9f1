"""Parallel efficiency of one production step from 1 to 2 workers, beside ``hpcpipe run -j``.

Usage: python perf/bench_scaling.py [--step NAME] [--production NAME] [--visits 4] [--ccds 4]
       [--size 1024] [--star-density 1e5] [--repeat 2] [--dir DIR]

Simulates a repository once, then runs ``hpcpipe drp REPO --steps NAME --id`` serially (one
process: the 1-worker time) and under ``mpirun -n 3`` (a master, which sleeps in a blocking
receive, and 2 workers on this 2-core machine), each into a fresh output repository, and
prints the times of the units' span (first start to last end, from the run report) and of
the whole command, and the parallel efficiency ``T1 / (2 T2)`` (goal: above 90%). The peer is
the same task under ``hpcpipe run TASK -j 2`` (a fork-based multiprocessing pool on one node,
no MPI) over the same data; the ratio ours/peer compares the whole commands' times.

The step defaults to ``processCcd`` of the production registered for the repository's camera
when there is one, else to ``benchIsr`` below (overscan, then four Gaussian smoothings of the
CCD: CPU-bound, about as heavy as a light single-frame step). Machine shared: repeat, compare
ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from hpcpipe.config import Config, Field
from hpcpipe.drivers.production import Production, ProductionError, ProductionStep
from hpcpipe.task import Struct
from hpcpipe.task.cmdline import CmdLineTask

HERE = Path(__file__).resolve().parent


class BenchIsrConfig(Config):
    smoothings = Field("Gaussian smoothings of the CCD (the CPU work)", int, default=4)
    sigma = Field("their width in pixels", float, default=3.0)


class BenchIsrTask(CmdLineTask):
    """Overscan-subtract a raw CCD, smooth it a few times, write postISRCCD."""

    ConfigClass = BenchIsrConfig
    _DefaultName = "benchIsr"

    def run_data_ref(self, data_ref):
        raw = data_ref.get("raw")
        out = raw.clone()
        image = out.image.array
        for amp in raw.detector.amplifiers:
            level = np.median(raw.image.array[amp.raw_serial_overscan_bbox.slices()])
            image[amp.raw_data_bbox.slices()] -= level
        smooth = image.astype(np.float64)
        for _ in range(self.config.smoothings):
            smooth = ndimage.gaussian_filter(smooth, self.config.sigma, truncate=6.0)
        image[:] = smooth
        data_ref.put(out, "postISRCCD")
        return Struct(exposure=out)


#: The benchmark's own production: one per-CCD step.
BENCH = Production("bench", [ProductionStep("benchIsr", BenchIsrTask, ("visit", "ccd"))])


def mpirun_command(n: int) -> list[str]:
    """``mpirun -n N`` with the flags of scripts/mpirun_flags.sh."""
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if mpirun is None:
        raise SystemExit("no mpirun on the PATH")
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    flags = []
    if "open mpi" in version.lower():
        flags.append("--oversubscribe")
        if os.getuid() == 0:
            flags.append("--allow-run-as-root")
    return [mpirun, *flags, "-n", str(n)]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMIX_", "PRTE_", "OPAL_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), str(HERE), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return env


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, env=environment(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def unit_span(report: Path) -> tuple[float, int]:
    data = json.loads((report / "report.json").read_text())
    units = [u for u in data["units"] if u["state"] == "done"]
    return max(u["end"] for u in units) - min(u["start"] for u in units), len(units)


def choose(repo: Path, production: str | None, step: str | None) -> tuple[str, str]:
    """The production (a name for --production) and the step to benchmark."""
    from hpcpipe.butler import Butler
    from hpcpipe.drivers.production import find_production, production_for_mapper

    if production is None:
        try:
            found = production_for_mapper(Butler(repo).mapper)
            production = found.name
        except ProductionError:
            found, production = BENCH, "bench_scaling:BENCH"
    else:
        found = find_production(production)
    if step is None:
        step = "processCcd" if "processCcd" in found.step_names else found.step_names[0]
    found.step(step)  # raises for an unknown step
    return production, step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step", help="the step to run (default processCcd, else benchIsr)")
    parser.add_argument("--production", help="registered name or module:attribute")
    parser.add_argument("--visits", type=int, default=4, help="visits (one filter)")
    parser.add_argument("--ccds", type=int, default=4, help="CCDs per visit")
    parser.add_argument("--size", type=int, default=1024, help="CCD size in pixels")
    parser.add_argument("--star-density", type=float, default=100000.0,
                        help="stars per square degree (enough for small CCDs' calibration)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each (best kept)")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    repo = work / "repo"
    if not (repo / "_mapper").exists():
        timed([sys.executable, "-m", "hpcpipe", "--loglevel", "WARNING", "simulate", str(repo),
               "--visits", str(args.visits), "--ccds", str(args.ccds), "--filters", "r",
               "--size", str(args.size), "--star-density", str(args.star_density)])
    production, step = choose(repo, args.production, args.step)
    print(f"step {step} of {production}: {args.visits} visits x {args.ccds} CCDs of "
          f"{args.size}x{args.size} px in {work}")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f} before the runs: other processes share the "
              f"{os.cpu_count()} cores, the efficiency measured is a lower bound")
    base = [sys.executable, "-m", "hpcpipe", "--loglevel", "WARNING", "drp", str(repo), "--id",
            "--production", production, "--steps", step]
    results: dict[str, tuple[float, float]] = {}
    counter = 0
    for _ in range(args.repeat):
        for label, prefix in (("1 worker (serial)", []), ("2 workers (mpirun -n 3)",
                                                          mpirun_command(3))):
            counter += 1
            out, report = work / f"out{counter}", work / f"report{counter}"
            total = timed([*prefix, *base, "--output", str(out), "--report", str(report)])
            span, count = unit_span(report)
            best = results.get(label, (np.inf, np.inf))
            results[label] = (min(best[0], span), min(best[1], total))
    from hpcpipe.drivers.production import find_production

    task_class = find_production(production).step(step).task_class
    peer = np.inf
    if task_class.id_dataset_type == "raw":
        for _ in range(args.repeat):
            counter += 1
            peer = min(peer, timed([
                sys.executable, "-m", "hpcpipe", "--loglevel", "WARNING", "run",
                f"{task_class.__module__}:{task_class.__qualname__}", str(repo), "--output",
                str(work / f"peer{counter}"), "--id", "-j", "2"]))
    print(f"{'':26s} {'units span':>11s} {'command':>9s}")
    for label, (span, total) in results.items():
        print(f"{label:26s} {span:10.2f}s {total:8.2f}s")
    (one_span, one_total), (two_span, two_total) = results.values()
    print(f"load average after the runs: {os.getloadavg()[0]:.1f}")
    print(f"{count} units; parallel efficiency over the units: {one_span / (2 * two_span):.1%}, "
          f"over the whole command: {one_total / (2 * two_total):.1%} (goal > 90%)")
    if np.isfinite(peer):
        print(f"peer `hpcpipe run -j 2`: {peer:.2f}s; ratio ours/peer (command): "
              f"{two_total / peer:.2f}")
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
