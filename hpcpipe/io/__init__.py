"""Input and output: atomic file writing and the FITS and HDF5 formats."""
