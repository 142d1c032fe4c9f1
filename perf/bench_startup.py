"""Start-up time of the ``hpcpipe`` command line beside ``python -c pass`` and ``import numpy``.

Usage: python perf/bench_startup.py [--repeat 15] [--root DIR] [--commands drp,run,...]

Each line runs one command in a fresh interpreter (``python -m hpcpipe ...`` with ``--root``
first on ``PYTHONPATH``: this checkout by default, or another one, e.g. ``/work/main``, to
compare before and after) alternately with ``python -c pass`` (``--repeat`` interleaved pairs,
:mod:`timing`), and prints the median time of each, the median of the per-pair ratios command /
``python -c pass`` with their interquartile range, and the median time above the bare
interpreter. The lines: ``python -c 'import numpy'`` (a floor for anything that touches
arrays), ``hpcpipe --help``, usage errors of the top-level parser (``hpcpipe --bogus``,
``hpcpipe drp --bogus``: exit status 2), a usage error of ``drp``'s own parser (``hpcpipe
drp`` without REPO: that parser is built from the production's task configs, so it imports
the tasks), and ``hpcpipe <cmd> --help`` for a few commands. The goal of issue 21:
``--help`` and usage errors of the top-level parser in well under 0.3 s. The load average is
printed before and after: compare ratios, not absolute times, on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from timing import format_paired, interleaved, load_line

ROOT = Path(__file__).resolve().parents[1]

#: ``hpcpipe <cmd> --help`` lines, by default (their parsers need no repository).
DEFAULT_COMMANDS = ("submit", "simulate", "query", "refcat", "butler")


def _runner(argv: list[str], env: dict[str, str], expect: int) -> object:
    def run() -> None:
        code = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False).returncode
        if code != expect:
            raise SystemExit(f"{' '.join(argv)}: exit status {code}, expected {expect}")

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15,
                        help="interleaved pairs per line (15)")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout whose hpcpipe is run (default: this one)")
    parser.add_argument("--commands", default=",".join(DEFAULT_COMMANDS),
                        help="commands timed with --help (default "
                        f"{','.join(DEFAULT_COMMANDS)})")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat: {args.repeat} is not a positive number of pairs")
    if not (args.root / "hpcpipe" / "cli.py").is_file():
        parser.error(f"--root: {args.root} has no hpcpipe/cli.py")
    env = dict(os.environ, PYTHONPATH=str(args.root.resolve()))
    python = [sys.executable]
    hpcpipe = [*python, "-m", "hpcpipe"]
    lines: list[tuple[str, list[str], int]] = [
        ("python -c 'import numpy'", [*python, "-c", "import numpy"], 0),
        ("hpcpipe --help", [*hpcpipe, "--help"], 0),
        ("hpcpipe --bogus (usage error)", [*hpcpipe, "--bogus"], 2),
        ("hpcpipe drp --bogus (usage error)", [*hpcpipe, "drp", "--bogus"], 2),
        ("hpcpipe drp (no REPO: drp's own parser)", [*hpcpipe, "drp"], 2),
    ]
    for name in (c.strip() for c in args.commands.split(",") if c.strip()):
        lines.append((f"hpcpipe {name} --help", [*hpcpipe, name, "--help"], 0))
    bare = _runner([*python, "-c", "pass"], env, 0)

    print(load_line("before"))
    print(f"hpcpipe from {args.root}; {sys.executable}; {args.repeat} pairs per line")
    rows = [(label, interleaved(_runner(argv, env, code), bare, args.repeat))
            for label, argv, code in lines]
    width = max(len(label) for label, _ in rows)
    print(f"{'command':<{width}}  {'median s':>8}  {'pass s':>7}  {'above pass s':>12}  "
          f"{'ratio to pass [IQR]':>20}")
    for label, paired in rows:
        print(f"{label:<{width}}  {paired.ours:8.3f}  {paired.peer:7.3f}  "
              f"{paired.ours - paired.peer:12.3f}  {format_paired(paired):>20}")
    print(load_line("after"))


if __name__ == "__main__":
    main()
