"""Cameras: each described by a YAML camera file, served by one generic mapper.

* :mod:`~hpcpipe.obs.camera`: the camera file (detectors, amplifiers, sections, filters, raw
  layout, header translation, per-task config defaults) and its strict loader;
* :mod:`~hpcpipe.obs.expression`: the small, safe expression language of header translations;
* :mod:`~hpcpipe.obs.raw`: raws of every layout, checked (ingest) and read into Exposures;
* :mod:`~hpcpipe.obs.mapper`: :class:`~hpcpipe.obs.mapper.CameraMapper`, the mapper built
  from a camera, with the dataset types of :mod:`~hpcpipe.obs.datasets` and the data id keys
  of :mod:`~hpcpipe.obs.keys`;
* :mod:`~hpcpipe.obs.registry`: cameras by name, each registered in the ``hpcpipe.cameras``
  entry point group (hpcpipe's own, :mod:`hpcpipe.obs.cameras`: ``simcam``, ``generic``,
  ``mosaic4``, and other packages');
* :mod:`hpcpipe.obs.simcam`: the simulated camera (its mapper, raw header cards).

The package sits between the butler (below: the mapper base class) and the simulator and
drivers (above); the production that runs over any camera's repository is
:mod:`hpcpipe.drivers.standard_production`. ``hpcpipe camera check|list`` lives in
:mod:`hpcpipe.commands.camera`.

``docs/own_data.md`` explains the camera file key by key.
"""
