"""A team's own data, through the command line only (issue: your own camera's data).

GalSim renders raws of the two shipped example cameras (``generic``: one HDU, no overscan, no
exposure id; ``mosaic4``: multi-extension files, four detectors of two amplifiers with
overscan) and a reference catalog at epoch 2016.0 whose stars move by about 30 mas/yr. The
commands a user types then run on them: ``butler create --camera``, ``refcat ingest``,
``ingest``, ``drp`` (processCcd and the whole production). The calibrated catalogs are
scored against the GalSim truth: astrometry of bright stars better than 20 mas and
calibrated magnitudes within 0.01 mag. Bad inputs exit 2 with one message and write nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("galsim")

import astropy.units as u  # noqa: E402
from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.table import Table  # noqa: E402
from galsim_raws import write_catalogs, write_generic_raw, write_mosaic_raw  # noqa: E402

from hpcpipe.butler import Butler  # noqa: E402
from hpcpipe.cli import main  # noqa: E402
from hpcpipe.obs.registry import find_camera  # noqa: E402

REFCAT = ["--ra", "ra", "--dec", "dec", "--ra-err", "ra_error", "--dec-err", "dec_error",
          "--pm-ra", "pmra", "--pm-dec", "pmdec", "--epoch", "2016.0",
          "--mag", "g=g_mag", "--mag", "r=r_mag", "--mag", "i=i_mag",
          "--mag-err", "g=g_magErr", "--mag-err", "r=r_magErr", "--mag-err", "i=i_magErr"]
CONFIG = ["-c", "processCcd.calibrate.astromRefObjLoader.ref_dataset_name=gaia",
          "processCcd.calibrate.photoRefObjLoader.ref_dataset_name=gaia"]
#: AB magnitude of 1 nJy
NJY_ZERO_POINT = 31.4


def _production(tmp: Path, camera: str, raws: list, catalogs: dict[str, Path],
                refcat: str) -> tuple[Path, Path]:
    repo = tmp / "repo"
    assert main(["butler", "create", str(repo), "--camera", camera]) == 0
    assert main(["refcat", "ingest", str(repo), "gaia", str(catalogs[refcat]), *REFCAT]) == 0
    assert main(["ingest", str(repo), *(str(r.path) for r in raws)]) == 0
    out = repo / "rerun" / "dr"
    assert main(["drp", str(repo), "--output", str(out), "--id", *CONFIG]) == 0
    return repo, out


@pytest.fixture(scope="module")
def generic(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("generic")
    raws = [write_generic_raw(tmp / f"raw{i}.fits", seed=i + 1, ra=150.0 + 0.01 * i,
                              date_obs=f"2026-01-15T03:1{i}:45.000", n_stars=150,
                              n_galaxies=80, integer=bool(i))
            for i in range(2)]
    catalogs = write_catalogs(tmp, raws)
    repo, out = _production(tmp, "generic", raws, catalogs, "ref_parquet")
    return {"repo": repo, "out": out, "truth": Table.read(catalogs["truth"]), "tmp": tmp,
            "raws": raws, "catalogs": catalogs}


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("mosaic")
    camera = find_camera("mosaic4")
    raws = [write_mosaic_raw(tmp / f"mraw{i}.fits", camera, expnum=1001 + i, seed=2 + i,
                             date_obs=f"2026-03-02T04:0{i}:06.000") for i in range(2)]
    catalogs = write_catalogs(tmp, raws)
    repo, out = _production(tmp, "mosaic4", raws, catalogs, "ref_csv")
    return {"repo": repo, "out": out, "truth": Table.read(catalogs["truth"]), "tmp": tmp,
            "camera": camera}


def _scores(repo: Path, out: Path, truth: Table) -> list[tuple[float, float, int]]:
    """Per CCD: median astrometric error (mas) and median calibrated magnitude minus the
    truth of bright isolated stars, and their number."""
    butler = Butler(repo, outputs=out)
    stars = truth[truth["is_star"]]
    true = SkyCoord(stars["ra"] * u.deg, stars["dec"] * u.deg)
    scores = []
    for visit, ccd in butler.queryMetadata("raw", ["visit", "ccd"]):
        src = butler.get("src", visit=visit, ccd=ccd)
        calib = butler.get("calexp", visit=visit, ccd=ccd).photo_calib
        src = src.where(src["detect_isPrimary"] & ~src["base_PsfFlux_flag"])
        found = SkyCoord(np.degrees(src["coord_ra"]) * u.deg,
                         np.degrees(src["coord_dec"]) * u.deg)
        index, sep, _ = found.match_to_catalog_sky(true)
        mag = NJY_ZERO_POINT - 2.5 * np.log10(
            calib.instflux_to_nanojansky(np.asarray(src["base_PsfFlux_instFlux"])))
        true_mag = np.asarray(stars["mag"])[index]
        bright = (sep < 0.5 * u.arcsec) & (true_mag < 20.5) & np.isfinite(mag)
        assert bright.sum() >= 10, (visit, ccd, bright.sum())
        scores.append((float(np.median(sep[bright].to_value(u.mas))),
                       float(np.median(mag[bright] - true_mag[bright])), int(bright.sum())))
    return scores


@pytest.mark.parametrize("name", ["generic", "mosaic"])
def test_the_production_calibrates_against_the_truth(name, request):
    data = request.getfixturevalue(name)
    butler = Butler(data["repo"], outputs=data["out"])
    assert butler.datasetExists("deepCoadd_ref", tract=0, patch=butler.queryMetadata(
        "deepCoadd_ref", "patch", tract=0)[0])
    scores = _scores(data["repo"], data["out"], data["truth"])
    astrometry = np.array([s[0] for s in scores])
    photometry = np.array([s[1] for s in scores])
    # the reference epoch is 10 years before the images: without proper motions the stars
    # would be off by about 300 mas
    assert np.all(astrometry < 20.0), astrometry
    assert abs(np.median(photometry)) < 0.01, photometry
    assert np.all(np.abs(photometry) < 0.02), photometry


def test_mosaic_raws_are_one_raw_per_detector_with_overscan_removed(mosaic):
    butler = Butler(mosaic["repo"], outputs=mosaic["out"])
    assert sorted(butler.queryMetadata("raw", "ccd")) == [1, 2, 3, 4]
    raw = butler.get("raw", visit=1001, ccd=2)
    assert len(raw.detector.amplifiers) == 2
    assert all(a.raw_serial_overscan_bbox.width > 0 for a in raw.detector.amplifiers)
    calexp = butler.get("calexp", visit=1001, ccd=2)
    assert calexp.image.array.shape == tuple(raw.detector.bbox.shape)
    # the overscan (about 1000-1200 ADU per amplifier) is gone: the background is near 0
    assert abs(float(np.nanmedian(calexp.image.array))) < 20.0


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_bad_inputs_exit_2_and_write_nothing(generic, mosaic, tmp_path, capsys):
    repo = generic["repo"]
    before = _listing(repo)
    # a raw missing a header keyword the camera needs
    header = fits.getheader(generic["raws"][0].path)
    data = fits.getdata(generic["raws"][0].path)
    del header["DATE-OBS"]
    no_date = tmp_path / "no_date.fits"
    fits.PrimaryHDU(data, header).writeto(no_date)
    assert main(["ingest", str(repo), str(no_date)]) == 2
    err = capsys.readouterr()
    assert "no_date.fits" in err.out + err.err and "DATE-OBS" in err.out + err.err
    # a reference catalog without a named column
    assert main(["refcat", "ingest", str(repo), "other", str(generic["catalogs"]["ref_fits"]),
                 *[("pm_ra_nope" if a == "pmra" else a) for a in REFCAT]]) == 2
    err = capsys.readouterr().err
    assert "pm_ra_nope" in err and "refcat.fits" in err
    assert _listing(repo) == before
    # a raw whose detector matches none of the camera's
    mrepo = mosaic["repo"]
    before = _listing(mrepo)
    stray = write_mosaic_raw(tmp_path / "stray.fits", mosaic["camera"], expnum=2001,
                             detectors=(1,), ccdnum={1: 9}, n_stars=5, n_galaxies=0)
    assert main(["ingest", str(mrepo), str(stray.path)]) == 2
    out = capsys.readouterr().out
    assert "stray.fits" in out and "CCDNUM" in out and "no detector" in out.replace(
        "matches no detector", "no detector")
    assert _listing(mrepo) == before
    # a camera file with an error: the file, the line and the key
    bad = tmp_path / "bad.yaml"
    text = (Path(find_camera("generic").source).read_text()
            .replace("gain: 1.0", "gain: -1.0"))
    bad.write_text(text)
    assert main(["butler", "create", str(tmp_path / "r"), "--camera", str(bad)]) == 2
    err = capsys.readouterr().err
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "gain: -1.0" in t)
    assert f"bad.yaml:{line}" in err and "gain" in err
    assert not (tmp_path / "r").exists()
