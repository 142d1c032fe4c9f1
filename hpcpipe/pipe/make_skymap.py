"""Sky map creation (LSST's ``MakeSkyMapTask`` and ``MakeDiscreteSkyMapTask``).

With ``skyMapType = "discrete"`` and no explicit centre, one tract is made that covers every
selected exposure (the centre and radius come from the corners of their WCSs, as LSST's
makeDiscreteSkyMap does); ``"rings"`` makes the all-sky rings map.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from hpcpipe.config import ChoiceField, Config, Field, ListField, RangeField
from hpcpipe.skymap import BaseSkyMap, DiscreteSkyMap, RingsSkyMap, SkyMapConfig
from hpcpipe.task import Struct, timed_method
from hpcpipe.task.cmdline import CmdLineTask

if TYPE_CHECKING:
    from hpcpipe.butler import ButlerDataRef

__all__ = ["MakeSkyMapConfig", "MakeSkyMapTask", "covering_circle"]


class MakeSkyMapConfig(Config):
    """Which sky map, and its pixel and patch geometry."""

    skyMapType = ChoiceField("the kind of sky map", str,
                             {"discrete": "one tract around the selected exposures (or at "
                                          "raList/decList)",
                              "rings": "declination rings covering the whole sky"},
                             default="discrete")
    pixelScale = RangeField("coadd pixel size, arcsec", float, default=0.2, min=0.0,
                            inclusive_min=False)
    patchInnerDimensions = ListField("patch inner width and height, pixels", int,
                                     default=[4000, 4000], length=2)
    patchBorder = RangeField("patch border, pixels", int, default=100, min=0)
    tractOverlap = RangeField("tract overlap, degrees", float, default=1.0 / 60.0, min=0.0)
    raList = ListField("discrete tract centres, RA degrees (empty: from the exposures)", float,
                       default=[])
    decList = ListField("discrete tract centres, Dec degrees", float, default=[])
    radiusList = ListField("discrete tract radii, degrees", float, default=[])
    borderSize = RangeField("margin added around the exposures, degrees", float,
                            default=0.01, min=0.0)
    numRings = RangeField("number of declination rings (rings map)", int, default=120, min=3)
    doWrite = Field("write the skyMap dataset", bool, default=True)


def covering_circle(corners: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float,
                                                                                float]:
    """Centre (RA, Dec) and radius (degrees) of a circle around every (ra, dec) corner."""
    ra = np.concatenate([np.atleast_1d(r) for r, _ in corners])
    dec = np.concatenate([np.atleast_1d(d) for _, d in corners])
    vec = np.column_stack([np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
                           np.cos(np.radians(dec)) * np.sin(np.radians(ra)),
                           np.sin(np.radians(dec))])
    centre = vec.mean(axis=0)
    centre /= np.linalg.norm(centre)
    radius = np.degrees(np.arccos(np.clip(vec @ centre, -1.0, 1.0))).max()
    c_ra = float(np.degrees(np.arctan2(centre[1], centre[0])) % 360.0)
    c_dec = float(np.degrees(np.arcsin(centre[2])))
    return c_ra, c_dec, float(radius)


class MakeSkyMapTask(CmdLineTask):
    """Make the sky map of an output repository."""

    ConfigClass = MakeSkyMapConfig
    _DefaultName = "makeSkyMap"

    def _geometry(self) -> SkyMapConfig:
        c = self.config
        return SkyMapConfig(pixel_scale=c.pixelScale,
                            patch_inner_dimensions=tuple(c.patchInnerDimensions),
                            patch_border=c.patchBorder, tract_overlap=c.tractOverlap)

    @timed_method
    def run(self, exposure_corners: list[tuple[np.ndarray, np.ndarray]] | None = None) -> Struct:
        """Make the sky map.

        Parameters
        ----------
        exposure_corners : list of (ra, dec) arrays, optional
            Sky corners of the exposures a discrete map must cover (used when ``raList`` is
            empty).
        """
        c = self.config
        sky_map: BaseSkyMap
        if c.skyMapType == "rings":
            sky_map = RingsSkyMap(c.numRings, config=self._geometry())
        elif c.raList:
            sky_map = DiscreteSkyMap(c.raList, c.decList, c.radiusList, config=self._geometry())
        else:
            if not exposure_corners:
                raise ValueError("a discrete sky map needs raList/decList/radiusList or "
                                 "exposures to cover")
            ra, dec, radius = covering_circle(exposure_corners)
            sky_map = DiscreteSkyMap([ra], [dec], [radius + c.borderSize],
                                     config=self._geometry())
        self.log.info("sky map %r with %d tract(s)", sky_map, len(sky_map))
        return Struct(skyMap=sky_map)

    def run_data_ref(self, data_ref: ButlerDataRef) -> Struct:
        """Make the sky map covering every raw exposure of the repository and write it."""
        butler = data_ref.butler
        corners = []
        if not self.config.raList and self.config.skyMapType == "discrete":
            for ref in butler.subset("raw"):
                raw_md = ref.get("raw")
                h, w = raw_md.detector.bbox.shape if raw_md.detector else raw_md.image.array.shape
                xs = np.array([0, w, w, 0], float)
                ys = np.array([0, 0, h, h], float)
                corners.append(raw_md.wcs.all_pix2world(xs, ys, 0))
        result = self.run(corners)
        if self.config.doWrite:
            butler.put(result.skyMap, "skyMap")
        return result
