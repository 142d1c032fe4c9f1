"""A small finished production with scattered positions, its HDF5 release and its HATS catalogs.

Shared by the release-database tests (HATS writing, DuckDB queries, the TAP service). The
production is made directly through the butler, as in ``test_release_production.py``: source
catalogs for three visits of three CCDs, reference and forced catalogs for three patches,
here with positions spread over half a degree around (150, 2.2) so that cone searches and
HEALPix partitions mean something.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hpcpipe.butler import Butler, create_repository
from hpcpipe.comm.world import World
from hpcpipe.drivers.release import write_release
from hpcpipe.drivers.release_hats import write_release_hats
from hpcpipe.skymap import DiscreteSkyMap, SkyMapConfig
from hpcpipe.table import Catalog, Schema

VISITS = {1000: "g", 1001: "g", 1100: "r"}
CCDS = (0, 1, 2)
CENTER = (150.0, 2.2)
#: Small partitions, so that the demo-sized catalogs span several HEALPix pixels.
PIXEL_THRESHOLD = 40


def schema() -> Schema:
    s = Schema.minimal()
    s.add_field("psfFlux", "D", doc="PSF flux", units="nJy")
    s.add_field("psfFluxErr", "D", doc="PSF flux uncertainty", units="nJy")
    s.add_field("psfMag", "D", doc="PSF AB magnitude", units="mag")
    s.add_field("apFlux", "F", doc="aperture fluxes in 3 radii", units="nJy", shape=(3,))
    s.add_flag("flag_edge", doc="too close to the edge")
    return s


def catalog(n: int, first_id: int, seed: int) -> Catalog:
    rng = np.random.default_rng(seed)
    ra = CENTER[0] + rng.uniform(-0.25, 0.25, n)
    dec = CENTER[1] + rng.uniform(-0.25, 0.25, n)
    flux = rng.uniform(100.0, 1e5, n)
    return Catalog.from_columns(schema(), {
        "id": first_id + np.arange(n), "coord_ra": np.radians(ra), "coord_dec": np.radians(dec),
        "psfFlux": flux, "psfFluxErr": np.sqrt(flux),
        "psfMag": -2.5 * np.log10(flux * 1e-9) + 8.9,
        "apFlux": np.stack([flux * 0.5, flux * 0.8, flux], axis=1).astype(np.float32),
        "flag_edge": rng.uniform(size=n) < 0.1})


def make_production(root: Path) -> tuple[Butler, dict[str, int]]:
    """A finished production under ``root/repo``: returns its butler and row counts."""
    repo = root / "repo"
    create_repository(repo, "simcam")
    butler = Butler(repo)
    sky_map = DiscreteSkyMap([CENTER[0]], [CENTER[1]], [0.3],
                             config=SkyMapConfig(patch_inner_dimensions=(2000, 2000),
                                                 patch_border=10))
    butler.put(sky_map, "skyMap")
    butler.put(Catalog(schema()), "src_schema")
    counts = {"sources": 0, "objects": 0, "forced": 0}
    for visit, band in VISITS.items():
        for ccd in CCDS:
            n = 30 + 7 * ccd + visit % 11
            butler.put(catalog(n, visit * 1000 + ccd * 100, visit + ccd), "src", visit=visit,
                       ccd=ccd, filter=band)
            counts["sources"] += n
    tract = next(iter(butler.get("skyMap")))
    for k, patch_info in enumerate(list(tract)[:3]):
        patch = "{},{}".format(*patch_info.index)
        n = 60 + 13 * k
        butler.put(catalog(n, 10_000 * (k + 1), 7 * k), "deepCoadd_ref", tract=0, patch=patch)
        counts["objects"] += n
        for band in ("g", "r"):
            butler.put(catalog(n, 10_000 * (k + 1), 7 * k + ord(band)), "deepCoadd_forced_src",
                       tract=0, patch=patch, filter=band)
            counts["forced"] += n
    return butler, counts


def register_raws(monkeypatch: Any, butler: Butler) -> None:
    """The release lists visits and CCDs from the registry: answer as if raws were ingested."""
    rows = [(v, c) for v in VISITS for c in CCDS]

    def query(dataset_type, keys, data_id=None, **kw):  # noqa: ANN001
        if keys == ["visit", "ccd"]:
            return rows
        if keys == "filter":
            return sorted(set(VISITS.values()))
        raise AssertionError(f"unexpected query {keys}")

    monkeypatch.setattr(butler, "queryMetadata", query)


def make_release(root: Path, monkeypatch: Any, world: World | None = None) -> dict[str, Any]:
    """The production, its HDF5 release and its HATS catalogs (written from the butler)."""
    world = world or World()
    butler, counts = make_production(root)
    register_raws(monkeypatch, butler)
    release = root / "repo" / "release"
    write_release(butler, release, world)
    results = write_release_hats(butler, release / "hats", world,
                                 pixel_threshold=PIXEL_THRESHOLD, highest_order=9,
                                 margin_arcsec=30.0)
    return {"butler": butler, "counts": counts, "release": release, "results": results}
