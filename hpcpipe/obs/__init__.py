"""Instrument packages: one subpackage per camera, each with its butler mapper.

An instrument package declares, in its mapper (a :class:`hpcpipe.butler.Mapper` subclass),
the data id keys of the camera, its dataset types and how its raw files are ingested.
:mod:`hpcpipe.obs.simcam` is the simulated camera of the test suite and the demo.
"""
