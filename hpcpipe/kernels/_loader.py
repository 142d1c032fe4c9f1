"""Finding the compiled kernel modules."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["load_native", "use_native", "kernel_status", "KERNEL_MODULES"]

#: The compiled kernel modules hpcpipe knows (``hpcpipe/kernels/pythran/<name>.py``).
KERNEL_MODULES = ("background", "coadd", "convolve", "cosmic", "detect", "isr", "measure",
                  "photometry", "stats", "warp")

_cache: dict[str, ModuleType | None] = {}


def use_native() -> bool:
    """Whether compiled kernels may be used (``HPCPIPE_KERNELS`` is not ``numpy``)."""
    return os.environ.get("HPCPIPE_KERNELS", "native").lower() != "numpy"


def load_native(name: str) -> ModuleType | None:
    """The compiled module ``hpcpipe.kernels._<name>``, or None if it was not built.

    Returns None as well when ``HPCPIPE_KERNELS=numpy``.
    """
    if not use_native():
        return None
    if name not in _cache:
        try:
            _cache[name] = importlib.import_module(f"hpcpipe.kernels._{name}")
        except ImportError:
            _cache[name] = None
    return _cache[name]


def kernel_status() -> dict[str, str]:
    """``{module: "pythran" or "numpy"}``: which implementation each kernel module uses."""
    return {name: "pythran" if load_native(name) is not None else "numpy"
            for name in KERNEL_MODULES}
