"""Raw files of the shipped ``generic`` and ``mosaic4`` cameras, rendered by GalSim.

Built on :mod:`galsim_sky` (stars and Sersic galaxies through an atmospheric plus optical
PSF, sky, Poisson noise): the scenes in electrons become the raws a real camera writes.

* :func:`write_generic_raw`: one image HDU (float32 or 32-bit integer ADU, gain 1) with a
  TAN WCS and the standard keywords DATE-OBS, EXPTIME, FILTER (no exposure id: the camera
  derives it from DATE-OBS);
* :func:`write_mosaic_raw`: a multi-extension file, one HDU per detector of ``mosaic4``, each
  detector its own scene pointing at neighbouring sky on one tangent plane; two amplifiers
  side by side with their own bias level, overscan, gain and read noise (in ADU), and the
  DATASECA/B, BIASSECA/B cards; the HDU's WCS refers to raw pixels (shifted by the overscan);
* :func:`write_catalogs`: the truth (every object, at the images' epoch) and a reference
  catalog of the stars with proper motions, positions moved back to ``REF_EPOCH`` (as Gaia
  DR3's 2016.0), written as FITS, CSV and Parquet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.time import Time
from astropy.wcs import WCS
from galsim_sky import Scene, make_scene, make_wcs, render_scene

__all__ = ["RawTruth", "write_generic_raw", "write_mosaic_raw", "write_catalogs",
           "MOSAIC_FILTERS", "REF_EPOCH", "mosaic_layout"]

#: The reference epoch of the reference catalog (Julian years).
REF_EPOCH = 2016.0
#: The mosaic4 filter names as its raws write them (DECam style).
MOSAIC_FILTERS = {"g": "g DECam SDSS c0001 4720.0 1520.0",
                  "r": "r DECam SDSS c0002 6415.0 1480.0",
                  "i": "i DECam SDSS c0003 7835.0 1470.0"}
PIXEL_SCALE = 0.26


@dataclass
class RawTruth:
    """What a raw file holds, per detector: the scene (truth table, trimmed-image WCS), the
    electrons rendered, and for the mosaic the amplifiers' gains and bias levels."""

    path: Path
    date_obs: str
    exp_time: float
    band: str
    scenes: dict[int, Scene] = field(default_factory=dict)
    electrons: dict[int, np.ndarray] = field(default_factory=dict)
    bias: dict[tuple[int, str], float] = field(default_factory=dict)


def _scene(seed: int, shape: tuple[int, int], wcs: WCS, n_stars: int, n_galaxies: int,
           zero_point: float) -> Scene:
    return make_scene(seed=seed, shape=shape, n_stars=n_stars, n_galaxies=n_galaxies,
                      pixel_scale=PIXEL_SCALE, psf_fwhm=0.8, sky=800.0, read_noise=0.0,
                      zero_point=zero_point, star_mags=(16.5, 23.0),
                      galaxy_mags=(18.5, 24.0), wcs=wcs)


def write_generic_raw(path: Path, seed: int = 1, shape: tuple[int, int] = (1024, 1024),
                      ra: float = 150.0, dec: float = 2.0,
                      date_obs: str = "2026-01-15T03:12:45.000", exp_time: float = 60.0,
                      band: str = "r", integer: bool = False, read_noise: float = 4.0,
                      n_stars: int = 120, n_galaxies: int = 60) -> RawTruth:
    """One ``generic`` raw: a single HDU of ADU (gain 1) with its TAN WCS."""
    wcs = make_wcs(shape, ra, dec, PIXEL_SCALE)
    scene = _scene(seed, shape, wcs, n_stars, n_galaxies, 31.0)
    electrons = render_scene(scene, seed=seed).astype(np.float64)
    electrons += np.random.default_rng([seed, 1]).normal(0.0, read_noise, electrons.shape)
    data = np.round(electrons).astype(np.int32) if integer else electrons.astype(np.float32)
    header = wcs.to_header()
    header["DATE-OBS"] = date_obs
    header["TIMESYS"] = "UTC"
    header["EXPTIME"] = exp_time
    header["FILTER"] = f"SDSS {band}"
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)
    return RawTruth(Path(path), date_obs, exp_time, band, {0: scene}, {0: electrons})


def mosaic_layout(overscan: int = 32, half: int = 512, height: int = 1024) -> dict[str, str]:
    """The mosaic4 sections: | overscan A | data A | data B | overscan B |."""
    return {"BIASSECA": f"[1:{overscan},1:{height}]",
            "DATASECA": f"[{overscan + 1}:{overscan + half},1:{height}]",
            "DATASECB": f"[{overscan + half + 1}:{overscan + 2 * half},1:{height}]",
            "BIASSECB": f"[{overscan + 2 * half + 1}:{2 * overscan + 2 * half},1:{height}]"}


def write_mosaic_raw(path: Path, camera: object, expnum: int = 1001, seed: int = 2,
                     ra: float = 35.0, dec: float = -5.0,
                     date_obs: str = "2026-03-02T04:05:06.000", exp_time: float = 90.0,
                     band: str = "r", overscan: int = 32, n_stars: int = 100,
                     n_galaxies: int = 50, detectors: tuple[int, ...] | None = None,
                     ccdnum: dict[int, int] | None = None) -> RawTruth:
    """One ``mosaic4`` multi-extension raw (``camera``: the mosaic4 Camera description).

    ``ccdnum`` may give a detector's HDU another CCDNUM (to make a bad raw).
    """
    specs = [d for d in camera.detectors  # type: ignore[attr-defined]
             if detectors is None or d.id in detectors]
    width, height = specs[0].width, specs[0].height
    half = width // 2
    gap = 60
    truth = RawTruth(Path(path), date_obs, exp_time, band)
    # one tangent plane: the boresight at the centre of a 2x2 grid of detectors
    plane = make_wcs((2 * height + gap, 2 * width + gap), ra, dec, PIXEL_SCALE)
    primary = fits.Header()
    primary["OBSTYPE"] = "object"
    primary["EXPNUM"] = expnum
    primary["DATE-OBS"] = date_obs
    primary["TIMESYS"] = "UTC"
    primary["EXPTIME"] = exp_time
    primary["FILTER"] = MOSAIC_FILTERS[band]
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU(header=primary)]
    sections = mosaic_layout(overscan, half, height)
    rng = np.random.default_rng([seed, 7])
    for det in specs:
        col, row = (det.id - 1) % 2, (det.id - 1) // 2
        wcs = plane.deepcopy()
        wcs.wcs.crpix = plane.wcs.crpix - np.array([col * (width + gap), row * (height + gap)])
        scene = _scene(seed * 100 + det.id, (height, width), wcs, n_stars, n_galaxies, 31.0)
        electrons = render_scene(scene, seed=seed * 100 + det.id).astype(np.float64)
        raw = np.zeros((height, width + 2 * overscan))
        for a, amp in enumerate(det.amplifiers):
            bias = 1000.0 + 150.0 * a + 20.0 * det.id
            truth.bias[(det.id, amp.name)] = bias
            noise_adu = amp.read_noise / amp.gain
            cols = slice(overscan + a * half, overscan + (a + 1) * half)
            raw[:, cols] = (electrons[:, a * half:(a + 1) * half] / amp.gain + bias
                            + rng.normal(0.0, noise_adu, (height, half)))
            over = slice(0, overscan) if a == 0 else slice(overscan + width, 2 * overscan + width)
            raw[:, over] = bias + rng.normal(0.0, noise_adu, (height, overscan))
        header = fits.Header()
        header["EXTNAME"] = det.name
        header["CCDNUM"] = (ccdnum or {}).get(det.id, det.id)
        for key, value in sections.items():
            header[key] = value
        raw_wcs = wcs.deepcopy()  # the raw HDU's WCS: in raw pixels, after overscan A
        raw_wcs.wcs.crpix = wcs.wcs.crpix + np.array([overscan, 0.0])
        header.update(raw_wcs.to_header())
        hdus.append(fits.ImageHDU(np.clip(np.round(raw), 0, 65535).astype(np.uint16),
                                  header))
        truth.scenes[det.id] = scene
        truth.electrons[det.id] = electrons
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return truth


def write_catalogs(directory: Path, raws: list[RawTruth], seed: int = 3,
                   pm_sigma: float = 30.0) -> dict[str, Path]:
    """The truth catalog and the reference catalog (FITS, CSV, Parquet) of some raws.

    The truth has every object at the images' epoch (``ra``, ``dec``, degrees), with the
    raw's date, ``ccd``, the 0-based ``x``, ``y`` in the trimmed image and the magnitude in
    the raw's band. The reference catalog has the stars only, at ``REF_EPOCH``: proper
    motions ``pmra`` (times cos dec) and ``pmdec`` of ``pm_sigma`` mas/yr, the positions moved
    back from the images' epoch, ``<band>_mag`` and ``<band>_magErr`` for g, r, i (colours
    drawn per star), and ``ra_error``, ``dec_error`` in mas.
    """
    import pyarrow as pa  # test dependency: the Parquet writer
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    tables = []
    for raw in raws:
        epoch = Time(raw.date_obs, format="isot", scale="utc").jyear
        for ccd, scene in raw.scenes.items():
            table = scene.truth.copy()
            table["ccd"] = ccd
            table["file"] = raw.path.name
            table["epoch"] = epoch
            table["band"] = raw.band
            tables.append(table)
    truth = vstack(tables)
    truth["id"] = np.arange(1, len(truth) + 1)
    stars = truth[truth["is_star"]]
    n = len(stars)
    pmra = rng.normal(0.0, pm_sigma, n)
    pmdec = rng.normal(0.0, pm_sigma, n)
    dt = np.asarray(stars["epoch"]) - REF_EPOCH
    cos_dec = np.cos(np.radians(np.asarray(stars["dec"])))
    ref = Table({
        "source_id": np.asarray(stars["id"]),
        "ra": np.asarray(stars["ra"]) - pmra * dt / 3.6e6 / cos_dec,
        "dec": np.asarray(stars["dec"]) - pmdec * dt / 3.6e6,
        "ra_error": np.full(n, 0.1), "dec_error": np.full(n, 0.1),
        "pmra": pmra, "pmdec": pmdec, "ref_epoch": np.full(n, REF_EPOCH),
    })
    # g = r + colour, i = r - 0.4 colour; the band each star was observed in keeps its
    # true magnitude
    colour = rng.uniform(0.2, 1.2, n)
    observed = np.asarray(stars["band"]).astype(str)
    r_mag = (np.asarray(stars["mag"]) - np.where(observed == "g", colour, 0.0)
             + np.where(observed == "i", 0.4 * colour, 0.0))
    for band, mags in (("g", r_mag + colour), ("r", r_mag), ("i", r_mag - 0.4 * colour)):
        ref[f"{band}_mag"] = mags
        ref[f"{band}_magErr"] = np.full(n, 0.005)
    out = {"truth": directory / "truth.fits", "ref_fits": directory / "refcat.fits",
           "ref_csv": directory / "refcat.csv", "ref_parquet": directory / "refcat.parquet"}
    truth.write(out["truth"], overwrite=True)
    ref.write(out["ref_fits"], overwrite=True)
    ref.write(out["ref_csv"], format="ascii.csv", overwrite=True)
    pq.write_table(pa.table({name: np.asarray(ref[name]) for name in ref.colnames}),
                   out["ref_parquet"])
    return out
