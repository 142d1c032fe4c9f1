"""The command line's parsers are built without the science: what ``--help`` imports.

Correctness, not timing (perf/bench_startup.py times it): in a fresh interpreter, building
the ``hpcpipe`` parser and answering ``--help`` or a usage error must not import NumPy,
astropy, SciPy, h5py or mpi4py, nor any hpcpipe module beyond the command line's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcpipe.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("numpy", "astropy", "scipy", "h5py", "mpi4py")

#: The hpcpipe modules the parsers may import (all standard library below them).
LIGHT = {"hpcpipe", "hpcpipe.__main__", "hpcpipe.cli", "hpcpipe.argtypes", "hpcpipe.catalog"}

PROBE = """
import json, runpy, sys
sys.argv = ["hpcpipe", *json.loads(sys.argv[1])]
code = None
try:
    runpy.run_module("hpcpipe", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.__stderr__)
"""


def _probe(argv: list[str]) -> tuple[int, list[str]]:
    """Run ``python -m hpcpipe ARGV`` in a fresh interpreter; its exit status and modules."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    result = json.loads(done.stderr.strip().splitlines()[-1])
    return result["code"], result["modules"]


def _unexpected(modules: list[str]) -> list[str]:
    heavy = [m for m in modules if m.split(".")[0] in HEAVY]
    ours = [m for m in modules if m.split(".")[0] == "hpcpipe" and m not in LIGHT
            and not m.startswith("hpcpipe.commands")]
    return heavy + ours


@pytest.mark.parametrize("argv, status", [
    (["--help"], 0),
    (["--bogus"], 2),
    (["drp", "--bogus"], 2),
    (["demo", "--visits", "0"], 2),
    (["submit", "--help"], 0),
    (["alerts", "--help"], 0),
])
def test_help_and_usage_errors_import_no_science(argv, status):
    code, modules = _probe(argv)
    assert code == status
    assert "hpcpipe.cli" in modules and "argparse" in modules
    assert _unexpected(modules) == []


def test_every_command_has_its_module_and_handler():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = list(sub.choices)
    assert len(COMMANDS) == len(names) == 19
    for name in names:
        module = f"hpcpipe.commands.{name.replace('-', '_')}"
        assert module in sys.modules, name
        assert hasattr(sys.modules[module], f"add_{name.replace('-', '_')}_command"), name
    args = parser.parse_args(["status", "somewhere"])
    assert args.handler.__module__ == "hpcpipe.commands.status"


def test_ingest_modes_are_the_butlers():
    from hpcpipe.butler.storage import INGEST_MODES
    from hpcpipe.commands import ingest

    assert ingest.INGEST_MODES == INGEST_MODES
