"""A kernel module that is not compiled is never used silently (issue: no silent slow path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import logging, sys
import numpy as np
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
import hpcpipe
from hpcpipe.kernels.convolve import correlate_separable, gaussian_kernel_1d
from hpcpipe.kernels._loader import kernels_used
k = gaussian_kernel_1d(1.5)
img = np.ones((32, 32), np.float32)
correlate_separable(img, k, k)
correlate_separable(img, k, k)
print("FROM", hpcpipe.__file__)
print("USED", kernels_used())
"""


@pytest.fixture(scope="module")
def bare_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the hpcpipe package without any compiled kernel (a tree never built)."""
    top = tmp_path_factory.mktemp("clone")
    shutil.copytree(ROOT / "hpcpipe", top / "hpcpipe",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.cpp"))
    return top


def _run(tree: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("HPCPIPE_REQUIRE_NATIVE", "HPCPIPE_KERNELS")}
    environ.update(env)
    environ["PYTHONPATH"] = str(tree)
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=environ, cwd=tree, timeout=120)


def test_missing_kernel_warns_once(bare_tree: Path) -> None:
    result = _run(bare_tree)
    assert result.returncode == 0, result.stderr
    assert f"FROM {bare_tree}" in result.stdout  # the bare copy, not the built tree
    warnings = [line for line in result.stderr.splitlines() if "hpcpipe.kernels._convolve" in line]
    assert len(warnings) == 1, result.stderr
    line = warnings[0]
    assert str(bare_tree / "hpcpipe" / "kernels") in line
    assert "setup.py build_ext --inplace" in line and "10x slower" in line
    assert "'convolve': 'numpy'" in result.stdout


def test_missing_kernel_is_an_error_when_required(bare_tree: Path) -> None:
    result = _run(bare_tree, HPCPIPE_REQUIRE_NATIVE="1")
    assert result.returncode != 0
    assert "NativeKernelMissingError" in result.stderr
    assert "hpcpipe.kernels._convolve" in result.stderr


def test_forced_numpy_is_not_warned(bare_tree: Path) -> None:
    result = _run(bare_tree, HPCPIPE_KERNELS="numpy", HPCPIPE_REQUIRE_NATIVE="1")
    assert result.returncode == 0, result.stderr
    assert "hpcpipe.kernels._convolve" not in result.stderr
    assert "HPCPIPE_KERNELS=numpy" in result.stdout
