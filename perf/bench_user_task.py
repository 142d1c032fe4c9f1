"""Per-unit overhead of ``hpcpipe run`` on a user's trivial task, with and without provenance.

The task (tests/user_tasks.py ``ObjectStatsTask`` with ``read_raw=False``) writes two small
datasets of its own per unit (YAML and JSON) and logs one line; the runner adds the
``<task>_metadata`` completion marker and, with provenance, the unit's log (JSON lines) and
its lineage rows. Each configuration runs over N1 and N2 units (1,000 and 10,000 by
default) in a fresh output repository; the per-unit overhead is the marginal time
``(t(N2) - t(N1)) / (N2 - N1)``, which leaves out the start-up. Modes: serial (one process),
``-j 2`` (forked processes) and ``mpirun -n 3`` (master + 2 workers). The fsyncs per unit
are counted in-process (serial, ``os.fsync`` wrapped): they are the same in every mode.

    python perf/bench_user_task.py                 # 1,000 and 10,000 units
    python perf/bench_user_task.py --sizes 200 1000 --modes serial mpi

The target (issue 24): under 3 ms per unit with provenance on. Ratios are printed against
the best mode measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
TASK = "user_tasks:ObjectStatsTask"


def env(provenance: bool) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMIX_", "PRTE_", "OPAL_", "HYDRA_", "PMI_"))}
    out["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), out.get("PYTHONPATH", "")])
    out.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg", HPCPIPE_PROVENANCE="1" if provenance
               else "0")
    return out


def mpirun(n: int) -> list[str]:
    found = shutil.which("mpirun")
    if found is None:
        raise SystemExit("no mpirun")
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    flags = ["--oversubscribe"] if "open mpi" in version.lower() else []
    if flags and os.getuid() == 0:
        flags.append("--allow-run-as-root")
    return [found, *flags, "-n", str(n)]


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(mode: str, repo: Path, out: Path, units: int, provenance: bool
        ) -> tuple[float, float]:
    """Wall and CPU seconds (every process of the run) of one ``hpcpipe run``, start-up
    included."""
    argv = [sys.executable, "-m", "hpcpipe", "run", TASK, str(repo), "--output", str(out),
            "--id", f"object=0..{units - 1}", "-c", "read_raw=False", "--loglevel", "WARNING",
            "--no-versions"]
    if mode == "j2":
        argv += ["-j", "2"]
    if mode == "mpi":
        argv = [*mpirun(3), *argv]
    start, cpu = time.perf_counter(), children_cpu()
    result = subprocess.run(argv, env=env(provenance), capture_output=True, text=True,
                            timeout=3600)
    seconds, cpu = time.perf_counter() - start, children_cpu() - cpu
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return seconds, cpu


def count_fsyncs(repo: Path, out: Path, units: int) -> dict[bool, float]:
    """fsyncs per unit, serial in this process, with and without provenance."""
    sys.path[:0] = [str(ROOT), str(TESTS)]
    from hpcpipe.cli import main  # only here: the in-process count needs hpcpipe imported

    counts: dict[bool, float] = {}
    real = os.fsync
    for provenance in (True, False):
        calls = [0]

        def counting(fd: int, _calls: list[int] = calls) -> None:
            _calls[0] += 1
            real(fd)

        os.environ["HPCPIPE_PROVENANCE"] = "1" if provenance else "0"
        target = out / f"fsync-{int(provenance)}"
        argv = ["run", TASK, str(repo), "--output", str(target), "--id", "object=0..9",
                "-c", "read_raw=False", "--loglevel", "WARNING", "--no-versions"]
        assert main(argv) == 0  # start-up writes (config, repository files) first
        os.fsync = counting
        try:
            argv[6] = f"object=10..{9 + units}"
            assert main(argv) == 0
        finally:
            os.fsync = real
        counts[provenance] = calls[0] / units
    os.environ.pop("HPCPIPE_PROVENANCE", None)
    return counts


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 10000])
    parser.add_argument("--modes", nargs="+", default=["serial", "j2", "mpi"],
                        choices=["serial", "j2", "mpi"])
    args = parser.parse_args()
    small, large = args.sizes
    with tempfile.TemporaryDirectory(prefix="bench-user-task-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        subprocess.run([sys.executable, "-m", "hpcpipe", "simulate", str(repo), "--visits", "1",
                        "--ccds", "1", "--filters", "g", "--size", "32", "--seed", "1"],
                       env=env(True), check=True, capture_output=True)
        fsyncs = count_fsyncs(repo, work, 200)
        print(f"fsyncs per unit (serial, counted): provenance on {fsyncs[True]:.2f}, off "
              f"{fsyncs[False]:.2f}", flush=True)
        rows = []
        for mode in args.modes:
            for provenance in (True, False):
                runs = {n: run(mode, repo, work / f"{mode}-{int(provenance)}-{n}", n,
                               provenance) for n in (small, large)}
                marginal = (runs[large][0] - runs[small][0]) / (large - small) * 1e3
                cpu = (runs[large][1] - runs[small][1]) / (large - small) * 1e3
                rows.append((mode, provenance, runs[small][0], runs[large][0], marginal, cpu))
                print(f"  {mode:6s} provenance={'on ' if provenance else 'off'}: "
                      f"{small} units {runs[small][0]:.1f} s, {large} units "
                      f"{runs[large][0]:.1f} s -> {marginal:.2f} ms/unit wall, {cpu:.2f} "
                      "ms/unit CPU (all processes)", flush=True)
    best = min(r[4] for r in rows)
    print(f"\nper-unit overhead, marginal between {small} and {large} units "
          f"(wall ratio to the best configuration measured here; CPU summed over processes):")
    print(f"{'mode':8s} {'provenance':>10s} {'t(N1) s':>9s} {'t(N2) s':>9s} {'ms/unit':>8s} "
          f"{'ratio':>6s} {'CPU ms/unit':>12s}")
    for mode, provenance, t1, t2, marginal, cpu in rows:
        print(f"{mode:8s} {'on' if provenance else 'off':>10s} {t1:9.1f} {t2:9.1f} "
              f"{marginal:8.2f} {marginal / best:6.2f} {cpu:12.2f}")
    print(f"\nfsyncs per unit (serial, counted): provenance on {fsyncs[True]:.2f}, off "
          f"{fsyncs[False]:.2f}")
    on = [r[4] for r in rows if r[1]]
    print(f"target: < 3 ms/unit with provenance on; best measured {min(on):.2f} ms/unit "
          f"({'met' if min(on) < 3 else 'NOT met'})")


if __name__ == "__main__":
    main_bench()
