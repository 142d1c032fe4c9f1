"""Sharded reference catalogs: ingest from FITS, CSV and Parquet, load a region, proper motions.

Every check compares with an independent calculation: the unit conversions written out,
astropy's ``SkyCoord.apply_space_motion`` for the proper motions, a brute-force selection
through a TAN WCS or astropy separations for the regions.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import hpgeom
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS
from mpi_helpers import on_root, shared_dir

from hpcpipe.butler import Butler, create_repository
from hpcpipe.cli import main
from hpcpipe.comm.world import World
from hpcpipe.config import FieldValidationError
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure
from hpcpipe.image.visit_info import VisitInfo
from hpcpipe.refcat import (
    IngestSpec,
    LoadReferenceObjectsConfig,
    RefcatInputError,
    RefcatNotFoundError,
    ReferenceObjectLoader,
    ingest_reference_catalog,
    load_reference_catalog,
    read_manifest,
)
from hpcpipe.refcat.layout import MANIFEST, REFCAT_ROOT
from hpcpipe.table import Catalog, Schema

MAS = math.pi / 180 / 3.6e6
GAIA_EPOCH_MJD = 57388.5  # J2016.0


def make_table(n: int = 3000, seed: int = 1, ra0: float = 150.0, dec0: float = -30.0,
               half: float = 1.5) -> Table:
    """Stars uniform over a patch, with Gaia-like columns (degrees, mas, mas/yr, AB mags)."""
    rng = np.random.default_rng(seed)
    dec = rng.uniform(dec0 - half, dec0 + half, n)
    ra = (ra0 + rng.uniform(-half, half, n) / np.cos(np.radians(dec))) % 360.0
    return Table({
        "source_id": rng.permutation(n).astype(np.int64) * 7 + 11,
        "ra": ra, "dec": dec,
        "ra_error": rng.uniform(0.02, 0.5, n), "dec_error": rng.uniform(0.02, 0.5, n),
        "phot_g_mean_mag": rng.uniform(12, 21, n), "g_err": rng.uniform(0.001, 0.05, n),
        "r_mag": rng.uniform(12, 21, n),
        "pmra": rng.normal(0, 30, n), "pmdec": rng.normal(0, 30, n),
        "parallax": rng.uniform(0, 5, n),
    })


def write(table: Table, path: Path) -> Path:
    """``table`` as FITS, CSV or Parquet (chosen by the suffix)."""
    if path.suffix == ".parquet":
        pq.write_table(pa.table({c: np.asarray(table[c]) for c in table.colnames}), path,
                       row_group_size=max(1, len(table) // 5))
    elif path.suffix == ".csv":
        table.write(path, format="ascii.csv")
    else:
        table.write(path)
    return path


GAIA_ARGS = ["--ra", "ra", "--dec", "dec", "--ra-err", "ra_error", "--dec-err", "dec_error",
             "--mag", "g=phot_g_mean_mag", "--mag-err", "g=g_err", "--mag", "r=r_mag",
             "--pm-ra", "pmra", "--pm-dec", "pmdec", "--epoch", "2016.0",
             "--parallax", "parallax"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    create_repository(path, "simcam")
    return path


def gaia_spec(**kw) -> IngestSpec:
    values = dict(ra="ra", dec="dec", ra_err="ra_error", dec_err="dec_error",
                  mags={"g": "phot_g_mean_mag", "r": "r_mag"}, mag_errs={"g": "g_err"},
                  pm_ra="pmra", pm_dec="pmdec", epoch=GAIA_EPOCH_MJD, parallax="parallax")
    values.update(kw)
    return IngestSpec(**values)


def read_all(repo: Path, name: str) -> dict[str, np.ndarray]:
    """Every row of every shard, sorted by id (straight from the Parquet files)."""
    files = sorted((repo / REFCAT_ROOT / name).glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    data = {c: table.column(c).to_numpy() for c in table.column_names}
    order = np.argsort(data["id"])
    return {c: v[order] for c, v in data.items()}


# --- ingest -----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".fits", ".csv", ".parquet"])
def test_round_trip(repo, tmp_path, suffix, capsys):
    table = make_table()
    path = write(table, tmp_path / f"cat{suffix}")
    assert main(["refcat", "ingest", str(repo), "gaia", str(path), *GAIA_ARGS]) == 0
    assert "3000 stars" in capsys.readouterr().out
    m = read_manifest(repo / REFCAT_ROOT / "gaia")
    assert (m.name, m.row_count, m.bands, m.has_proper_motion) == ("gaia", 3000, ["g", "r"],
                                                                   True)
    assert m.format_version == 1 and 2 <= m.order <= 8
    got = read_all(repo, "gaia")
    assert got["id"].tolist() == list(range(1, 3001))  # no --id: the row number
    np.testing.assert_allclose(got["coord_ra"], np.radians(table["ra"]), rtol=0, atol=1e-15)
    np.testing.assert_allclose(got["coord_dec"], np.radians(table["dec"]), rtol=0, atol=1e-15)
    np.testing.assert_allclose(got["coord_raErr"], table["ra_error"] * MAS, rtol=1e-12)
    flux = 10 ** (-0.4 * (np.asarray(table["phot_g_mean_mag"]) - 31.4))
    np.testing.assert_allclose(got["g_flux"], flux, rtol=1e-12)
    np.testing.assert_allclose(got["g_fluxErr"], flux * table["g_err"] * np.log(10) / 2.5,
                               rtol=1e-12)
    assert np.isnan(got["r_fluxErr"]).all()  # no --mag-err r=: unknown
    np.testing.assert_allclose(got["pm_ra"], table["pmra"] * MAS, rtol=1e-12)
    np.testing.assert_allclose(got["pm_dec"], table["pmdec"] * MAS, rtol=1e-12)
    np.testing.assert_allclose(got["parallax"], table["parallax"] * MAS, rtol=1e-12)
    assert (got["epoch"] == GAIA_EPOCH_MJD).all()
    # each star is in the shard of its HEALPix pixel
    for f in (repo / REFCAT_ROOT / "gaia").glob("*.parquet"):
        t = pq.read_table(f, columns=["coord_ra", "coord_dec"])
        pix = hpgeom.angle_to_pixel(2 ** m.order, t.column(0).to_numpy(),
                                    t.column(1).to_numpy(), degrees=False)
        assert (pix == int(f.stem)).all()


def test_ids_flux_units_and_pm_without_cos_dec(repo, tmp_path):
    table = make_table(500)
    table["g_flux_mjy"] = 10 ** (-0.4 * (table["phot_g_mean_mag"] - 16.4))  # AB in mJy
    table["pmra_nocos"] = table["pmra"] / np.cos(np.radians(table["dec"]))
    path = write(table, tmp_path / "cat.parquet")
    spec = IngestSpec(ra="ra", dec="dec", fluxes={"g": "g_flux_mjy"}, flux_unit="mJy",
                      pm_ra="pmra_nocos", pm_dec="pmdec", pm_ra_cos_dec=False,
                      epoch=GAIA_EPOCH_MJD, id="source_id")
    ingest_reference_catalog(repo, "mjy", path, spec)
    got = read_all(repo, "mjy")
    order = np.argsort(table["source_id"])
    assert got["id"].tolist() == np.asarray(table["source_id"])[order].tolist()
    np.testing.assert_allclose(got["g_flux"],
                               10 ** (-0.4 * (table["phot_g_mean_mag"][order] - 31.4)),
                               rtol=1e-10)
    np.testing.assert_allclose(got["pm_ra"], table["pmra"][order] * MAS, rtol=1e-10)


def test_rows_through_part_files_give_the_same_shards(repo, tmp_path):
    """Rows spilled to part files between the passes (a tiny memory budget) or kept in
    memory: the same shards."""
    path = write(make_table(4000, seed=6, half=5.0), tmp_path / "cat.parquet")
    ingest_reference_catalog(repo, "mem", path, gaia_spec(), order=5)
    ingest_reference_catalog(repo, "disk", path, gaia_spec(), order=5, spill_bytes=1)
    _same_shards(repo / REFCAT_ROOT / "mem", repo / REFCAT_ROOT / "disk")
    ingest_reference_catalog(repo, "fine", path, gaia_spec(), order=12, spill_bytes=1)
    got = read_all(repo, "fine")
    assert len(got["id"]) == 4000
    assert read_manifest(repo / REFCAT_ROOT / "fine").shard_count > 3900  # ~1 star each


def test_several_catalogs_and_list(repo, tmp_path, capsys):
    path = write(make_table(300), tmp_path / "cat.fits")
    assert main(["refcat", "ingest", str(repo), "one", str(path), *GAIA_ARGS]) == 0
    assert main(["refcat", "ingest", str(repo), "two", str(path), "--ra", "ra", "--dec", "dec",
                 "--mag", "i=r_mag"]) == 0
    capsys.readouterr()
    assert main(["refcat", "list", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "one: 300 stars, bands g,r, proper motions" in out
    assert "two: 300 stars, bands i, no proper motions" in out
    assert main(["refcat", "describe", str(repo), "two"]) == 0
    out = capsys.readouterr().out
    assert "i_flux" in out and "pm_ra" not in out
    assert read_manifest(repo / REFCAT_ROOT / "two").epoch_min == 51544.5  # J2000 default


# --- bad input: one message, exit 2, nothing written -----------------------------------------

def nothing_written(repo: Path, name: str) -> bool:
    base = repo / REFCAT_ROOT
    return not (base / name).exists() and not [p for p in base.glob(".tmp-*")] \
        if base.exists() else True


@pytest.mark.parametrize("suffix", [".fits", ".csv", ".parquet"])
def test_missing_column(repo, tmp_path, suffix, capsys):
    path = write(make_table(50), tmp_path / f"cat{suffix}")
    args = [a if a != "pmdec" else "pm_dec" for a in GAIA_ARGS]
    assert main(["refcat", "ingest", str(repo), "gaia", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and "'pm_dec'" in err and "--pm-dec" in err
    assert "its columns: source_id, ra, dec" in err
    assert nothing_written(repo, "gaia")


def test_missing_band_column_names_the_option(repo, tmp_path, capsys):
    path = write(make_table(50), tmp_path / "cat.parquet")
    assert main(["refcat", "ingest", str(repo), "x", str(path), "--ra", "ra", "--dec", "dec",
                 "--mag", "z=z_mag"]) == 2
    err = capsys.readouterr().err
    assert "no column 'z_mag' (given by --mag z=z_mag)" in err
    assert nothing_written(repo, "x")


def test_existing_name_needs_clobber(repo, tmp_path, capsys):
    path = write(make_table(100), tmp_path / "cat.parquet")
    assert main(["refcat", "ingest", str(repo), "gaia", str(path), *GAIA_ARGS]) == 0
    other = write(make_table(40, seed=2), tmp_path / "other.parquet")
    capsys.readouterr()
    assert main(["refcat", "ingest", str(repo), "gaia", str(other), *GAIA_ARGS]) == 2
    assert "--clobber" in capsys.readouterr().err
    assert read_manifest(repo / REFCAT_ROOT / "gaia").row_count == 100
    assert main(["refcat", "ingest", str(repo), "gaia", str(other), *GAIA_ARGS,
                 "--clobber"]) == 0
    assert read_manifest(repo / REFCAT_ROOT / "gaia").row_count == 40
    assert len(read_all(repo, "gaia")["id"]) == 40
    assert not list((repo / REFCAT_ROOT).glob(".tmp-*"))


@pytest.mark.parametrize("argv, words", [
    (["--mag", "g=r_mag", "--pm-ra", "pmra", "--pm-dec", "pmdec"], "need the epoch"),
    (["--mag", "g=r_mag", "--pm-ra", "pmra"], "both --pm-ra and --pm-dec"),
    ([], "no band"),
    (["--mag", "g"], "BAND=COLUMN"),
    (["--mag", "g=r_mag", "--flux", "g=r_mag"], "both as --mag and as --flux"),
    (["--flux", "g=r_mag", "--flux-unit", "m"], "--flux-unit"),
    (["--mag", "g=r_mag", "--order", "20"], "--order 20"),
])
def test_usage_errors(repo, tmp_path, argv, words, capsys):
    path = write(make_table(20), tmp_path / "cat.parquet")
    try:
        status = main(["refcat", "ingest", str(repo), "x", str(path), "--ra", "ra",
                       "--dec", "dec", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    assert status == 2
    assert words in capsys.readouterr().err
    assert nothing_written(repo, "x")


def test_bad_values_and_bad_files(repo, tmp_path, capsys):
    table = make_table(100)
    table["dec"][37] = np.nan
    path = write(table, tmp_path / "cat.parquet")
    assert main(["refcat", "ingest", str(repo), "x", str(path), "--ra", "ra", "--dec", "dec",
                 "--mag", "g=r_mag"]) == 2
    assert "1 rows without a valid position" in capsys.readouterr().err
    assert nothing_written(repo, "x")
    text = tmp_path / "cat.txt"
    text.write_text("ra dec\n")
    assert main(["refcat", "ingest", str(repo), "x", str(text), "--ra", "ra", "--dec", "dec",
                 "--mag", "g=r_mag"]) == 2
    assert "unknown catalog format" in capsys.readouterr().err
    assert main(["refcat", "ingest", str(tmp_path / "norepo"), "x", str(path), "--ra", "ra",
                 "--dec", "dec", "--mag", "g=r_mag"]) == 2
    assert "norepo" in capsys.readouterr().err
    assert nothing_written(repo, "x")


# --- loading ----------------------------------------------------------------------------------

def tan_wcs(ra: float, dec: float, rotation: float, scale_arcsec: float = 0.2,
            size: int = 4096) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [size / 2 + 0.5, size / 2 + 0.5]  # 1-based: the middle of the CCD
    c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    scale = scale_arcsec / 3600.0
    w.wcs.cd = [[-scale * c, scale * s], [scale * s, scale * c]]
    return w


def in_box(wcs: WCS, ra: np.ndarray, dec: np.ndarray, box: Box2I, margin: float) -> np.ndarray:
    """Brute force: which stars fall on ``box`` grown by ``margin`` pixels."""
    x, y = wcs.all_world2pix(ra, dec, 0)
    return ((x >= box.x0 - 0.5 - margin) & (x <= box.x1 + 0.5 + margin)
            & (y >= box.y0 - 0.5 - margin) & (y <= box.y1 + 0.5 + margin))


@pytest.fixture
def dense(repo, tmp_path):
    """60000 stars over 4 x 4 degrees around (45, 20), no proper motions, order 6 shards."""
    table = make_table(60000, seed=5, ra0=45.0, dec0=20.0, half=2.0)
    path = write(table, tmp_path / "dense.parquet")
    spec = IngestSpec(ra="ra", dec="dec", mags={"g": "phot_g_mean_mag"}, id="source_id")
    ingest_reference_catalog(repo, "dense", path, spec, order=6)
    return repo, table


def test_loader_returns_exactly_the_region(dense):
    repo, table = dense
    rng = np.random.default_rng(9)
    for _ in range(5):
        ra0, dec0 = 45 + rng.uniform(-1.0, 1.0), 20 + rng.uniform(-1.0, 1.0)
        wcs = tan_wcs(ra0, dec0, rng.uniform(0, 360))
        box = Box2I(0, 0, 4096, 4096)
        loader = ReferenceObjectLoader(repo, LoadReferenceObjectsConfig(
            ref_dataset_name="dense", pixelMargin=100))
        got = loader.load_pixel_box(box, wcs)
        expect = np.asarray(table["source_id"])[in_box(wcs, table["ra"], table["dec"], box,
                                                       100)]
        assert len(expect) > 150
        assert sorted(got["id"].tolist()) == sorted(expect.tolist())
        radius = rng.uniform(0.1, 0.9)
        chained = Butler(repo, outputs=repo.parent / "rerun")  # found in the parent
        circle = load_reference_catalog(chained, "dense", center=(ra0, dec0), radius=radius)
        sep = SkyCoord(table["ra"], table["dec"], unit="deg").separation(
            SkyCoord(ra0, dec0, unit="deg")).deg
        assert sorted(circle["id"].tolist()) == sorted(
            np.asarray(table["source_id"])[sep <= radius].tolist())


def test_shard_boundaries(repo, tmp_path):
    """A CCD centred on a corner where shards meet finds the stars near its edges, in every
    shard it overlaps."""
    order = 7
    nside = 2 ** order
    pixel = hpgeom.angle_to_pixel(nside, 80.0, -10.0)
    ra_c, dec_c = hpgeom.boundaries(nside, pixel, step=1)
    ra0, dec0 = float(ra_c[0]), float(dec_c[0])  # a corner shared by 3-4 pixels
    wcs = tan_wcs(ra0, dec0, 17.0)
    box = Box2I(0, 0, 4096, 4096)
    rng = np.random.default_rng(3)
    # stars just inside and just outside every edge of the CCD, and a few within
    t = rng.uniform(-0.5, 4095.5, 4000)
    eps = rng.uniform(1e-3, 0.05, 4000)
    x = np.concatenate([np.full(1000, -0.5), np.full(1000, 4095.5), t[:1000], t[1000:2000]])
    y = np.concatenate([t[2000:3000], t[3000:], np.full(1000, -0.5), np.full(1000, 4095.5)])
    side = rng.choice([-1.0, 1.0], 4000)
    x = x + np.where(np.isin(x, [-0.5, 4095.5]), side * eps * np.sign(x - 2047.5), 0)
    y = y + np.where(np.isin(y, [-0.5, 4095.5]), side * eps * np.sign(y - 2047.5), 0)
    x = np.concatenate([x, rng.uniform(0, 4095, 500)])
    y = np.concatenate([y, rng.uniform(0, 4095, 500)])
    ra, dec = wcs.all_pix2world(x, y, 0)
    table = Table({"id": np.arange(1, len(x) + 1), "ra": ra, "dec": dec,
                   "mag": np.full(len(x), 18.0)})
    path = write(table, tmp_path / "edges.parquet")
    ingest_reference_catalog(repo, "edges", path, IngestSpec(ra="ra", dec="dec",
                                                             mags={"g": "mag"}, id="id"),
                             order=order)
    loader = ReferenceObjectLoader(repo, LoadReferenceObjectsConfig(ref_dataset_name="edges",
                                                                    pixelMargin=0))
    got = loader.load_pixel_box(box, wcs)
    expect = table["id"][in_box(wcs, ra, dec, box, 0)]
    assert 2000 < len(expect) < 4500
    assert sorted(got["id"].tolist()) == sorted(expect.tolist())
    shards = set(hpgeom.angle_to_pixel(nside, got["coord_ra"], got["coord_dec"],
                                       degrees=False).tolist())
    assert len(shards) >= 3


def test_proper_motion_matches_astropy(repo, tmp_path):
    """Positions moved to the exposure's date (its visit info) as astropy moves them."""
    rng = np.random.default_rng(4)
    n = 400
    ra0, dec0 = 200.0, 60.0
    table = make_table(n, seed=4, ra0=ra0, dec0=dec0, half=0.08)
    table["pmra"] = rng.uniform(-800, 800, n)  # mas/yr, fast stars
    table["pmdec"] = rng.uniform(-800, 800, n)
    table["pmra_error"] = np.full(n, 0.1)
    table["epoch"] = rng.uniform(2014.0, 2017.0, n)  # per-star epochs, Julian years
    path = write(table, tmp_path / "pm.csv")
    assert main(["refcat", "ingest", str(repo), "pm", str(path), "--ra", "ra", "--dec", "dec",
                 "--ra-err", "ra_error", "--mag", "g=phot_g_mean_mag", "--pm-ra", "pmra",
                 "--pm-dec", "pmdec", "--pm-ra-err", "pmra_error", "--epoch-col",
                 "epoch"]) == 0
    date = Time("2031-07-04T05:00:00", scale="tai")
    wcs = tan_wcs(ra0, dec0, 30.0, size=2048)
    exposure = Exposure(Box2I(0, 0, 2048, 2048), wcs=wcs,
                        visit_info=VisitInfo(exposure_id=1, date=date))
    config = LoadReferenceObjectsConfig(ref_dataset_name="pm", pixelMargin=50)
    got = ReferenceObjectLoader(Butler(repo), config).load_exposure(exposure)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ERFA: distance overridden (no parallax given)
        start = SkyCoord(ra=table["ra"] * u.deg, dec=table["dec"] * u.deg,
                         pm_ra_cosdec=table["pmra"] * u.mas / u.yr,
                         pm_dec=table["pmdec"] * u.mas / u.yr,
                         obstime=Time(table["epoch"], format="jyear", scale="tai"))
        moved = start.apply_space_motion(new_obstime=date)
    ids = np.arange(1, n + 1)
    inside = in_box(wcs, moved.ra.deg, moved.dec.deg, exposure.bbox, 50)
    assert sorted(got["id"].tolist()) == ids[inside].tolist()
    index = got["id"] - 1
    truth = moved[index]
    sep = SkyCoord(got["coord_ra"] * u.rad, got["coord_dec"] * u.rad).separation(truth)
    assert sep.to(u.mas).value.max() < 0.05  # 10 to 17 years at up to 1.1"/yr
    shift = SkyCoord(table["ra"][index], table["dec"][index], unit="deg").separation(truth)
    assert shift.to(u.arcsec).value.max() > 10  # the motion itself is large
    years = (date.tai.mjd - (51544.5 + (table["epoch"][index] - 2000) * 365.25)) / 365.25
    np.testing.assert_allclose(got["coord_raErr"],
                               np.hypot(table["ra_error"][index], 0.1 * years) * MAS,
                               rtol=1e-9)


def test_loader_names_and_legacy_dataset(repo, tmp_path):
    butler = Butler(repo)
    with pytest.raises(RefcatNotFoundError, match="no reference catalog 'gaia'.*none"):
        ReferenceObjectLoader(butler, LoadReferenceObjectsConfig(ref_dataset_name="gaia"))
    # an old repository: only the single-file ref_cat dataset, read for the default name
    table = make_table(200, ra0=10.0, dec0=0.0, half=0.3)
    schema = Schema.minimal()
    schema.add_field("g_flux", "D", units="nJy")
    schema.add_field("g_fluxErr", "D", units="nJy")
    butler.put(Catalog.from_columns(schema, {
        "id": np.arange(200), "coord_ra": np.radians(table["ra"]),
        "coord_dec": np.radians(table["dec"]), "g_flux": np.ones(200),
        "g_fluxErr": np.ones(200)}), "ref_cat")
    wcs = tan_wcs(10.0, 0.0, 0.0, size=2048)
    loader = ReferenceObjectLoader(butler, LoadReferenceObjectsConfig())
    got = loader.load_pixel_box(Box2I(0, 0, 2048, 2048), wcs)
    expect = np.arange(200)[in_box(wcs, table["ra"], table["dec"], Box2I(0, 0, 2048, 2048),
                                   250)]
    assert 0 < len(expect) < 200 and sorted(got["id"].tolist()) == expect.tolist()
    # a sharded catalog of that name wins; the band map translates the exposure's band
    path = write(table, tmp_path / "cat.parquet")
    ingest_reference_catalog(repo, "sim_ref", path, IngestSpec(ra="ra", dec="dec",
                                                               mags={"G": "r_mag"}))
    config = LoadReferenceObjectsConfig(filterMap={"g": "G"})
    loader = ReferenceObjectLoader(butler, config)
    assert "G_flux" in loader.load_pixel_box(Box2I(0, 0, 2048, 2048), wcs).schema
    assert loader.reference_band("g") == "G" and loader.reference_band("r") == "r"
    with pytest.raises(FieldValidationError):
        LoadReferenceObjectsConfig(pixelMargin=-1)


def test_calibrate_config_names():
    from hpcpipe.pipe.calibrate import CalibrateConfig
    from hpcpipe.pipe.process_ccd import ProcessCcdConfig

    config = ProcessCcdConfig()
    assert config.calibrate.astromRefObjLoader.ref_dataset_name == "sim_ref"
    assert config.calibrate.photoRefObjLoader.ref_dataset_name == "sim_ref"
    config.calibrate.photoRefObjLoader.filterMap = {"g": "phot_g"}
    assert dict(config.calibrate.photoRefObjLoader.filterMap) == {"g": "phot_g"}
    assert isinstance(CalibrateConfig().astromRefObjLoader, LoadReferenceObjectsConfig)


def test_simulated_repository_has_a_sharded_refcat(tmp_path):
    repo = tmp_path / "sim"
    assert main(["simulate", str(repo), "--visits", "1", "--ccds", "1", "--filters", "g",
                 "--size", "256", "--star-density", "40000"]) == 0
    butler = Butler(repo)
    legacy = butler.get("ref_cat")
    m = read_manifest(repo / REFCAT_ROOT / "sim_ref")
    assert m.row_count == len(legacy) and m.bands == ["g", "r", "i"]
    got = read_all(repo, "sim_ref")
    order = np.argsort(legacy["id"])
    np.testing.assert_array_equal(got["id"], legacy["id"][order])
    np.testing.assert_allclose(got["coord_ra"], legacy["coord_ra"][order], rtol=0, atol=1e-15)
    np.testing.assert_allclose(got["r_flux"], legacy["r_flux"][order], rtol=1e-15)
    assert (repo / REFCAT_ROOT / "sim_ref" / MANIFEST).exists()


# --- MPI --------------------------------------------------------------------------------------

def _same_shards(a: Path, b: Path) -> None:
    names_a = sorted(p.name for p in a.glob("*.parquet"))
    names_b = sorted(p.name for p in b.glob("*.parquet"))
    assert names_a == names_b and names_a
    for name in names_a:
        ta, tb = pq.read_table(a / name), pq.read_table(b / name)
        assert ta.schema == tb.schema, name
        for column in ta.column_names:  # NaN-aware (the r-band errors are NaN)
            np.testing.assert_array_equal(ta.column(column).to_numpy(),
                                          tb.column(column).to_numpy(), err_msg=name)
    ma, mb = read_manifest(a), read_manifest(b)
    assert (ma.order, ma.row_count, ma.shard_count, ma.columns) == (
        mb.order, mb.row_count, mb.shard_count, mb.columns)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".fits"])
def test_mpi_ingest_equals_serial(tmp_path_factory, suffix):
    world = World()
    base = Path(shared_dir(world, tmp_path_factory, "refcat-mpi"))
    if world.rank == 0:
        create_repository(base / "repo", "simcam")
        write(make_table(20000, seed=8, half=4.0), base / f"cat{suffix}")
    world.barrier()
    manifest = ingest_reference_catalog(base / "repo", "par", base / f"cat{suffix}",
                                        gaia_spec(), order=5, world=world)
    assert manifest.row_count == 20000 and manifest.options["input_ranks"] == world.size

    def check() -> None:
        ingest_reference_catalog(base / "repo", "ser", base / f"cat{suffix}", gaia_spec(),
                                 order=5)
        _same_shards(base / "repo" / REFCAT_ROOT / "par", base / "repo" / REFCAT_ROOT / "ser")
        assert not list((base / "repo" / REFCAT_ROOT).glob(".tmp-*"))

    on_root(world, check)


@pytest.mark.mpi(min_size=2)
def test_mpi_missing_column_writes_nothing(tmp_path_factory):
    world = World()
    base = Path(shared_dir(world, tmp_path_factory, "refcat-mpi-bad"))
    if world.rank == 0:
        create_repository(base / "repo", "simcam")
        table = make_table(5000, seed=8)
        table["dec"][4000] = 95.0  # a bad value in the last rank's share
        write(table, base / "cat.parquet")
    world.barrier()
    with pytest.raises(RefcatInputError, match="valid position"):
        ingest_reference_catalog(base / "repo", "bad", base / "cat.parquet",
                                 gaia_spec(), world=world)
    world.barrier()
    on_root(world, lambda: (_ for _ in ()).throw(AssertionError("written"))
            if list((base / "repo" / REFCAT_ROOT).iterdir()) else None)


def test_process_ccd_reads_the_configured_catalogs(tmp_path, caplog):
    """processCcd's calibration reads the catalogs its config names: the simulated survey's
    sharded ``sim_ref`` by default; another catalog for the photometry with a band map; a
    missing name fails naming it."""
    repo = tmp_path / "sim"
    assert main(["simulate", str(repo), "--visits", "1", "--ccds", "1", "--filters", "g",
                 "--size", "768", "--star-density", "200000", "--seed", "3"]) == 0
    butler = Butler(repo)
    legacy = butler.get("ref_cat")
    # the same stars, their g flux under another band name, as a second catalog
    pq.write_table(pa.table({"ra": np.degrees(legacy["coord_ra"]),
                             "dec": np.degrees(legacy["coord_dec"]),
                             "G": legacy["g_flux"], "G_err": legacy["g_fluxErr"]}),
                   tmp_path / "photo.parquet")
    assert main(["refcat", "ingest", str(repo), "photo", str(tmp_path / "photo.parquet"),
                 "--ra", "ra", "--dec", "dec", "--flux", "G=G", "--flux-err", "G=G_err"]) == 0
    visit = butler.queryMetadata("raw", "visit")[0]
    data_id = ["--id", f"visit={visit}", "ccd=0"]
    assert main(["run", "processCcd", str(repo), "--output", str(tmp_path / "a"),
                 *data_id]) == 0
    assert main(["run", "processCcd", str(repo), "--output", str(tmp_path / "b"), *data_id,
                 "-c", "calibrate.photoRefObjLoader.ref_dataset_name=photo",
                 "calibrate.photoRefObjLoader.filterMap={'g': 'G'}"]) == 0
    a = Butler(tmp_path / "a").get("calexp", visit=visit, ccd=0)
    b = Butler(tmp_path / "b").get("calexp", visit=visit, ccd=0)
    assert abs(a.photo_calib.zero_point - b.photo_calib.zero_point) < 0.01
    meta = Butler(tmp_path / "a").get("processCcd_metadata", visit=visit, ccd=0)
    assert meta["processCcd.calibrate"]["nRefAstrom"] > 10
    matches = Butler(tmp_path / "b").get("srcMatch", visit=visit, ccd=0)
    assert len(matches) > 10 and np.isfinite(matches["ref_flux"]).mean() > 0.9
    status = main(["run", "processCcd", str(repo), "--output", str(tmp_path / "c"), *data_id,
                   "-c", "calibrate.astromRefObjLoader.ref_dataset_name=nothere"])
    assert status != 0
    assert "no reference catalog 'nothere'" in caplog.text
