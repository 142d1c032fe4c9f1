"""The science tasks of the data release production (LSST's pipe_tasks).

Single-frame processing: :class:`~hpcpipe.pipe.isr.IsrTask`,
:class:`~hpcpipe.pipe.characterize.CharacterizeImageTask`,
:class:`~hpcpipe.pipe.calibrate.CalibrateTask` and
:class:`~hpcpipe.pipe.process_ccd.ProcessCcdTask` which runs the three on one CCD. Their
building blocks (background, detection, measurement, PSF, repair, astrometry, photometric
calibration) are subtasks that can be retargeted in a config.
"""
