"""Forced photometry of diaObjects on a difference image (Rubin's ``DiaForcedSource``).

After a visit's association, every diaObject of the APDB whose position falls on a CCD is
measured there, forced at that position (no centroiding): the PSF flux on the difference
image (``psfFlux``: the change since the template) and on the calexp (``scienceFlux``: the
total flux), as Rubin's ``DiaForcedSourceTask``. This gives each object a light curve on
every visit that covered it, not only on the visits where it was detected; alerts carry the
year before (``prvDiaForcedSources``).

Errors of the difference-image fluxes are multiplied by the difference's noise scale
(``NOISESCL`` in its metadata, written by ``imageDifference``: the per-pixel variance misses
the covariance of the convolved image's noise), as for the diaSources.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.ap.apdb import DIA_FORCED_SOURCE_DTYPE, new_rows
from hpcpipe.image import Exposure
from hpcpipe.pipe.measurement import MeasurementTask
from hpcpipe.pipe.sources import ID_BITS, source_id_base

__all__ = ["forced_photometry", "forced_source_id_base"]


def forced_source_id_base(visit: int, detector: int) -> int:
    """The first diaForcedSource id of (visit, detector) minus one: the upper half of the
    detector's id block (its diaSources use the lower half)."""
    return source_id_base(visit, detector) + (1 << (ID_BITS - 1))


def _on_image(exposure: Exposure, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x0, y0 = exposure.xy0
    return ((x >= x0 - 0.5) & (x < x0 + exposure.width - 0.5)
            & (y >= y0 - 0.5) & (y < y0 + exposure.height - 0.5))


def forced_photometry(objects: np.ndarray, difference: Exposure, science: Exposure, *,
                      visit: int, detector: int, band: str, midpoint_mjd_tai: float,
                      time_processed: float, measurement: MeasurementTask | None = None
                      ) -> np.ndarray:
    """Forced PSF photometry of ``objects`` (DiaObject rows) that fall on ``difference``.

    Parameters
    ----------
    objects : numpy.ndarray
        diaObjects (at least ``diaObjectId``, ``ra``, ``dec``); those off the image are
        skipped.
    difference, science : Exposure
        The difference image and its calexp (same pixel grid, PSF, WCS and PhotoCalib).
    visit, detector, band, midpoint_mjd_tai, time_processed
        Copied into the rows.
    measurement : MeasurementTask, optional
        The measurement (default: a new one); it is run in forced mode.

    Returns
    -------
    numpy.ndarray
        :data:`~hpcpipe.ap.apdb.DIA_FORCED_SOURCE_DTYPE` rows, one per object on the image,
        fluxes in nJy (NaN where the measurement failed).
    """
    out = np.zeros(0, DIA_FORCED_SOURCE_DTYPE)
    if len(objects) == 0 or difference.wcs is None:
        return out
    x, y = difference.wcs.all_world2pix(np.asarray(objects["ra"], float),
                                        np.asarray(objects["dec"], float), 0)
    on = _on_image(difference, x, y)
    if not on.any():
        return out
    objects, x, y = objects[on], x[on], y[on]
    task = measurement or MeasurementTask()
    rows = new_rows(DIA_FORCED_SOURCE_DTYPE, len(objects))  # timeWithdrawnMjdTai: NULL
    rows["diaForcedSourceId"] = forced_source_id_base(visit, detector) + 1 + np.arange(
        len(objects))
    rows["diaObjectId"] = objects["diaObjectId"]
    rows["ra"], rows["dec"] = objects["ra"], objects["dec"]
    rows["visit"], rows["detector"], rows["band"] = visit, detector, band
    rows["midpointMjdTai"] = midpoint_mjd_tai
    rows["timeProcessedMjdTai"] = time_processed
    noise_scale = float(difference.metadata.get("NOISESCL", 1.0)) if hasattr(
        difference.metadata, "get") else 1.0
    for exposure, flux, scale in ((difference, "psfFlux", noise_scale),
                                  (science, "scienceFlux", 1.0)):
        cat = task.run(exposure, x, y, recentroid=False).catalog
        inst = np.asarray(cat["base_PsfFlux_instFlux"], float)
        err = np.asarray(cat["base_PsfFlux_instFluxErr"], float) * scale
        bad = np.asarray(cat["base_PsfFlux_flag"], bool)
        calib: Any = science.photo_calib
        if calib is None:
            raise ValueError(f"forced photometry of visit {visit} detector {detector}: the "
                             "calexp has no PhotoCalib (fluxes must be in nJy)")
        njy, njy_err = calib.instflux_to_nanojansky(inst, err)
        rows[flux] = np.where(bad, np.nan, njy)
        rows[flux + "Err"] = np.where(bad, np.nan, njy_err)
    return rows
