"""The injected objects' truth on a difference image (shared by the diffim and alert tests)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.kernels.measure import measure_sources


def injected_on(butler: Any, visit: int, ccd: int, template_visits: list[int]
                ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, Any]:
    """The injected objects on the difference image of (visit, ccd), with their expected
    difference-image flux (nJy) and signal to noise."""
    lc = butler.get("transient_lightcurves")
    diff = butler.get("deepDiff_differenceExp", visit=visit, ccd=ccd)
    rows = lc.where(lc["visit"] == visit)
    x, y = diff.wcs.all_world2pix(rows["ra"], rows["dec"], 0, quiet=True)
    h, w = diff.image.array.shape
    inside = (x > 15) & (x < w - 16) & (y > 15) & (y < h - 16)
    ix, iy = np.round(np.where(inside, x, 0)).astype(int), np.round(np.where(inside, y, 0)
                                                                     ).astype(int)
    bad = diff.mask.get_plane_bitmask(["NO_DATA", "EDGE"])
    inside &= (diff.mask.array[iy, ix] & bad) == 0
    rows, x, y = rows.where(inside), x[inside], y[inside]
    # the template's flux: the mean over the template visits (the coadd's inputs)
    template_flux = np.array([np.mean(lc["flux"][(lc["id"] == i)
                                                 & np.isin(lc["visit"], template_visits)])
                              for i in rows["id"]])
    scale = diff.photo_calib.calibration_mean
    m = measure_sources(diff.image.array, diff.variance.array, diff.mask.array, x, y,
                        psf_sigma=diff.psf.sigma_at(), recentroid=False)
    expected = rows["flux"] - template_flux
    snr = expected / scale / (m["psf_flux_err"] * float(diff.metadata["NOISESCL"]))
    return rows, expected, template_flux, snr, diff
