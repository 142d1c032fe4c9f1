"""Simulated data with known truth, for the demo and the tests.

The simulator sits above the camera layer and uses only its data: SimCam's camera file
(:data:`hpcpipe.obs.cameras.SIMCAM`) with the simulated detectors added
(:meth:`hpcpipe.sim.camera.SimCamera.description`), through which the raw and calibration
headers are written (:mod:`hpcpipe.obs.camera`). Nothing in :mod:`hpcpipe.obs` imports it.
"""
