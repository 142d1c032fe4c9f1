"""hpcpipe: survey image processing, from raw pixels to a sky catalog, at supercomputer scale.

The package is organised as the LSST stack is, one subpackage per layer (the lower ones
first):

* the data model: :mod:`hpcpipe.geom` (points and boxes), :mod:`hpcpipe.image` (images, masks,
  exposures), :mod:`hpcpipe.table` (schemas and catalogs), :mod:`hpcpipe.skymap` (tracts and
  patches), with :mod:`hpcpipe.errors` (the exception family) and :mod:`hpcpipe.argtypes`
  (argument types of the command line);
* input and output: :mod:`hpcpipe.io` (atomic writes, FITS, HDF5, the release files);
* :mod:`hpcpipe.config` (typed, documented configs) and :mod:`hpcpipe.task` (tasks, their
  command line and discovery);
* :mod:`hpcpipe.kernels` (compiled pixel kernels with NumPy references);
* :mod:`hpcpipe.comm` (MPI: the world, the master-worker pool, journals, logs);
* :mod:`hpcpipe.butler` (datasets by type and data id in chained repositories) and
  :mod:`hpcpipe.obs` (cameras described by files; the simulated camera);
* :mod:`hpcpipe.refcat` (sharded reference catalogs) and :mod:`hpcpipe.sim` (simulated data);
* the science: :mod:`hpcpipe.meas` (measurement), :mod:`hpcpipe.pipe` (single-frame and
  coadd tasks), :mod:`hpcpipe.diffim` (image differencing), :mod:`hpcpipe.ap` (alert
  production and the APDB), :mod:`hpcpipe.solarsystem` (orbits and linking),
  :mod:`hpcpipe.catalog` (the release as a database: HATS, SQL, TAP, crossmatch);
* :mod:`hpcpipe.drivers`: whole productions run over many units under MPI;
* :mod:`hpcpipe.commands` and :mod:`hpcpipe.cli`: the ``hpcpipe`` command line (``demo``,
  ``info``, ``report``, ``submit``, ``butler``, ``ingest``, ``camera``, ``simulate``,
  ``drp``, ``release``, ``status``, ``release-convert``, ``query``, ``serve``,
  ``crossmatch``, ``alerts``, ``solarsystem``, ``refcat``, ``run``).

Importing ``hpcpipe`` imports none of its subpackages.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
