"""Turning detections into measured source catalogs: parents, deblended children, ids."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcpipe.kernels.detect import Detections
from hpcpipe.table import Catalog, Schema

__all__ = ["measure_detections", "source_id_base", "ID_BITS"]

#: Bits of a source id left for the running number within one exposure or patch.
ID_BITS = 24


def source_id_base(*parts: int) -> int:
    """The first id of an exposure's or patch's sources: ``(parts packed) << ID_BITS``.

    ``source_id_base(visit, ccd)`` packs the CCD in 10 bits; ``source_id_base(tract, patch_x,
    patch_y)`` packs the patch indices in 8 bits each. Ids stay unique across a whole
    release as long as visits stay below 2**29.
    """
    if len(parts) == 2:
        if not (0 <= parts[0] < 2**29 and 0 <= parts[1] < 1024):
            raise ValueError(f"source ids pack the visit in 29 bits and the ccd in 10: visit="
                             f"{parts[0]}, ccd={parts[1]} do not fit (a camera file's exposure "
                             "id expression must give ids below 536870912)")
        packed = parts[0] * 1024 + parts[1]
    elif len(parts) == 3:
        packed = (parts[0] * 256 + parts[1]) * 256 + parts[2]
    else:
        raise ValueError(f"source_id_base takes (visit, ccd) or (tract, px, py); got {parts}")
    return int(packed) << ID_BITS


def measure_detections(measurement: Any, exposure: Any, detections: Detections, id_base: int,
                       schema: Schema) -> Catalog:
    """Measure every positive footprint: isolated sources, blended parents and their children.

    An isolated footprint (one peak) gives one source with ``parent == 0`` and
    ``deblend_nChild == 0``. A blended footprint gives a parent (``deblend_nChild`` = number
    of peaks, measured on the whole footprint) and one child per peak (``parent`` = the
    parent's id, measured with the other children's pixels left out). ``detect_isPrimary``
    is true for isolated sources and children: the set to count objects in.
    """
    fps = detections.footprints
    peaks = detections.peaks
    x0, y0 = exposure.xy0
    fps = fps[fps["sign"] > 0]
    blended = fps[fps["n_peaks"] > 1]
    n_parents = len(blended)
    parent_ids = id_base + 1 + np.arange(n_parents)
    parent_of_fp = dict(zip(blended["id"].tolist(), parent_ids.tolist(), strict=True))
    # the parents, measured at their brightest peak over the whole footprint
    first = peaks[blended["first_peak"]] if n_parents else peaks[:0]
    peaks = peaks[peaks["sign"] > 0]
    n_children = len(peaks)
    child_ids = id_base + 1 + n_parents + np.arange(n_children)
    parent_col = np.array([parent_of_fp.get(int(f), 0) for f in peaks["footprint"]],
                          dtype=np.int64)
    fp_npix = dict(zip(fps["id"].tolist(), fps["npix"].tolist(), strict=True))
    parts = []
    if n_parents:
        extra = {
            "id": parent_ids, "parent": np.zeros(n_parents, np.int64),
            "deblend_nChild": blended["n_peaks"].astype(np.int32),
            "footprint_npix": blended["npix"].astype(np.int32),
            "detect_peakSignificance": first["significance"],
            "detect_isPrimary": np.zeros(n_parents, bool),
        }
        parts.append(measurement.run(exposure, first["x"] + x0, first["y"] + y0,
                                     extra=_only(extra, schema), schema=schema).catalog)
    if n_children:
        extra = {
            "id": child_ids, "parent": parent_col,
            "deblend_nChild": np.zeros(n_children, np.int32),
            "footprint_npix": np.array([fp_npix.get(int(f), 0) for f in peaks["footprint"]],
                                       dtype=np.int32),
            "detect_peakSignificance": peaks["significance"],
            "detect_isPrimary": np.ones(n_children, bool),
        }
        parts.append(measurement.run(exposure, peaks["x"] + x0, peaks["y"] + y0,
                                     ids=peaks["id"], segments=detections.segments,
                                     extra=_only(extra, schema), schema=schema).catalog)
    if not parts:
        return Catalog(schema)
    return Catalog.concatenate(parts) if len(parts) > 1 else parts[0]


def _only(columns: dict[str, np.ndarray], schema: Schema) -> dict[str, np.ndarray]:
    return {k: v for k, v in columns.items() if k in schema}
