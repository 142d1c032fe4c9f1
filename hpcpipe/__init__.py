"""hpcpipe: survey image processing, from raw pixels to a sky catalog, at supercomputer scale.

The package is organised as the LSST stack is: a data model (:mod:`hpcpipe.image`,
:mod:`hpcpipe.table`, :mod:`hpcpipe.skymap`), input and output (:mod:`hpcpipe.io`), MPI
communication (:mod:`hpcpipe.comm`), compiled pixel kernels with NumPy references
(:mod:`hpcpipe.kernels`) and batch drivers (:mod:`hpcpipe.drivers`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "expand_data_ids"]


def __getattr__(name: str) -> Any:
    # Lazy exports: ``hpcpipe.expand_data_ids`` without importing the task framework up front.
    if name == "expand_data_ids":
        from hpcpipe.task.dataid import expand_data_ids

        return expand_data_ids
    raise AttributeError(f"module 'hpcpipe' has no attribute {name!r}")
