"""Cameras: each described by a YAML camera file, served by one generic mapper.

* :mod:`~hpcpipe.obs.camera`: the camera file (detectors, amplifiers, sections, filters, raw
  layout, header translation, per-task config defaults) and its strict loader;
* :mod:`~hpcpipe.obs.expression`: the small, safe expression language of header translations;
* :mod:`~hpcpipe.obs.raw`: raws of every layout, checked (ingest) and read into Exposures;
* :mod:`~hpcpipe.obs.mapper`: :class:`~hpcpipe.obs.mapper.CameraMapper`, the mapper built
  from a camera, with the dataset types of :mod:`~hpcpipe.obs.datasets` and the data id keys
  of :mod:`~hpcpipe.obs.keys`;
* :mod:`~hpcpipe.obs.registry`: cameras by name (``hpcpipe/obs/cameras/*.yaml``: ``simcam``,
  ``generic``, ``mosaic4``; other packages: the ``hpcpipe.cameras`` entry point group);
* :mod:`hpcpipe.obs.simcam`: the simulated camera (its mapper, raw header cards, production).

``docs/own_data.md`` explains the camera file key by key.
"""
