"""The solar system: moving objects on heliocentric orbits, tracklets, linking, orbits.

Modules (imports go downward only: this package uses NumPy, SciPy, ERFA and astropy, and
:mod:`hpcpipe.ap` and the drivers use it):

:mod:`~hpcpipe.solarsystem.kepler`
    Two-body propagation, elements, the observer, astrometric RA/Dec, H,G magnitudes.
:mod:`~hpcpipe.solarsystem.population`
    Main-belt asteroids, near-Earth objects and trans-Neptunian objects drawn from realistic
    element distributions, optionally placed in a field.
:mod:`~hpcpipe.solarsystem.tracklets`
    Intra-night pairing of detections into tracklets.
:mod:`~hpcpipe.solarsystem.heliolinc`
    HelioLinC linking of tracklets across nights.
:mod:`~hpcpipe.solarsystem.orbit_fit`
    Initial orbits and differential correction on RA/Dec.
:mod:`~hpcpipe.solarsystem.attribution`
    Predicted positions of known orbits and attribution of detections to them.

See docs/solarsystem.md.
"""
