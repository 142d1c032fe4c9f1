"""Measurement algorithms above the pixel kernels: PSF modelling, astrometric and photometric
calibration (pure NumPy/SciPy/astropy; the pixel loops live in :mod:`hpcpipe.kernels`)."""
