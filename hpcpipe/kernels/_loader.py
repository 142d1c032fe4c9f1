"""Finding the compiled kernel modules, and saying so when one is missing.

A kernel module that is not compiled falls back to its NumPy reference, which gives the same
results about ten times slower. That must never happen silently: the first use of a missing
module logs one warning naming the module, where it was looked for and the command that
builds it, and ``HPCPIPE_REQUIRE_NATIVE=1`` turns the fallback into an error
(:class:`NativeKernelMissingError`). ``HPCPIPE_KERNELS=numpy`` asks for the references on
purpose (no warning). :func:`kernels_used` tells which implementation each module that was
used ran with (the run report records it).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path
from types import ModuleType

from hpcpipe.errors import HpcpipeError

__all__ = ["load_native", "use_native", "kernel_status", "kernels_used", "KERNEL_MODULES",
           "NativeKernelMissingError", "BUILD_COMMAND"]

log = logging.getLogger(__name__)

#: The compiled kernel modules hpcpipe knows (``hpcpipe/kernels/pythran/<name>.py``).
KERNEL_MODULES = ("background", "coadd", "convolve", "cosmic", "detect", "gmrender", "isr",
                  "measure", "photometry", "stats", "warp")
#: How to compile the kernels of a source tree (run in the tree's top directory).
BUILD_COMMAND = "python setup.py build_ext --inplace  (or: bash scripts/bootstrap.sh)"

_cache: dict[str, ModuleType | None] = {}
_used: dict[str, str] = {}


class NativeKernelMissingError(HpcpipeError, ImportError):
    """A compiled kernel module is missing while ``HPCPIPE_REQUIRE_NATIVE=1``."""


def use_native() -> bool:
    """Whether compiled kernels may be used (``HPCPIPE_KERNELS`` is not ``numpy``)."""
    return os.environ.get("HPCPIPE_KERNELS", "native").lower() != "numpy"


def _kernel_dir() -> Path:
    return Path(__file__).resolve().parent


def _missing_message(name: str, error: ImportError) -> str:
    where = _kernel_dir()
    source = where / "pythran" / f"{name}.py"
    tree = where.parent.parent
    return (f"compiled kernel module hpcpipe.kernels._{name} not found in {where} ({error}); "
            f"using its NumPy reference, about 10x slower. Build it from {source} with: "
            f"cd {tree} && {BUILD_COMMAND}")


def load_native(name: str) -> ModuleType | None:
    """The compiled module ``hpcpipe.kernels._<name>``, or None if it was not built.

    Returns None as well when ``HPCPIPE_KERNELS=numpy``. The first time a module is found
    missing, one warning is logged (see the module's docstring).

    Raises
    ------
    NativeKernelMissingError
        If the module is missing and ``HPCPIPE_REQUIRE_NATIVE=1``.
    """
    if not use_native():
        _used[name] = "numpy (HPCPIPE_KERNELS=numpy)"
        return None
    if name not in _cache:
        try:
            _cache[name] = importlib.import_module(f"hpcpipe.kernels._{name}")
        except ImportError as exc:
            _cache[name] = None
            message = _missing_message(name, exc)
            if os.environ.get("HPCPIPE_REQUIRE_NATIVE") == "1":
                raise NativeKernelMissingError(message + " [HPCPIPE_REQUIRE_NATIVE=1]") from exc
            log.warning("%s", message)
    module = _cache[name]
    if module is None and os.environ.get("HPCPIPE_REQUIRE_NATIVE") == "1":
        raise NativeKernelMissingError(
            _missing_message(name, ImportError("not importable")) + " [HPCPIPE_REQUIRE_NATIVE=1]")
    _used[name] = "pythran" if module is not None else "numpy"
    return module


def kernel_status() -> dict[str, str]:
    """``{module: "pythran" or "numpy"}``: which implementation each kernel module would use.

    Looks the modules up without importing them (so without the warning of
    :func:`load_native`).
    """
    if not use_native():
        return dict.fromkeys(KERNEL_MODULES, "numpy")
    out = {}
    for name in KERNEL_MODULES:
        if name in _cache:
            out[name] = "pythran" if _cache[name] is not None else "numpy"
        else:
            found = importlib.util.find_spec(f"hpcpipe.kernels._{name}") is not None
            out[name] = "pythran" if found else "numpy"
    return out


def kernels_used() -> dict[str, str]:
    """``{module: implementation}`` for every kernel module this process has used."""
    return dict(sorted(_used.items()))
