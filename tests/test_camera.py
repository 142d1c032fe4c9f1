"""Cameras as data (issue 14): camera files, the generic mapper, raws of every layout.

The raws of the shipped ``generic`` and ``mosaic4`` cameras are rendered by GalSim
(tests/galsim_raws.py); they are ingested and read back through the command line and the
butler, and every bad input is refused with one clear message and nothing written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from hpcpipe.butler import (
    Butler,
    IngestError,
    UnknownMapperError,
    create_repository,
    ingest,
    load_mapper,
)
from hpcpipe.cli import main
from hpcpipe.geom import Box2I
from hpcpipe.obs.camera import CameraError, load_camera, parse_camera, parse_section
from hpcpipe.obs.expression import Expression, ExpressionError
from hpcpipe.obs.raw import read_raw, scan_raw
from hpcpipe.obs.registry import find_camera
from hpcpipe.obs.simcam import SimCamMapper

galsim_raws = pytest.importorskip("galsim_raws")

CAMERAS = Path(__file__).resolve().parent.parent / "hpcpipe" / "obs" / "cameras"


@pytest.fixture(scope="module")
def raws(tmp_path_factory):
    """GalSim raws of both cameras (rendered once for the module), with their catalogs."""
    directory = tmp_path_factory.mktemp("galsim-raws")
    generic = galsim_raws.write_generic_raw(directory / "generic.fits", seed=11)
    generic_int = galsim_raws.write_generic_raw(
        directory / "generic-int.fits", seed=12, shape=(300, 400), integer=True,
        date_obs="2026-01-15T03:20:00.000", n_stars=20, n_galaxies=5)
    mosaic = galsim_raws.write_mosaic_raw(directory / "mosaic.fits", find_camera("mosaic4"))
    catalogs = galsim_raws.write_catalogs(directory, [generic, mosaic])
    return {"generic": generic, "generic_int": generic_int, "mosaic": mosaic,
            "catalogs": catalogs, "dir": directory}


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- camera files -----------------------------------------------------------------------------
def test_the_shipped_cameras_load_and_describe_their_instrument():
    generic, mosaic, simcam = (find_camera(n) for n in ("generic", "mosaic4", "simcam"))
    assert generic.layout == "detector-per-file" and len(generic.detectors) == 1
    assert generic.detectors[0].amplifiers[0].overscan_section is None
    assert mosaic.layout == "detectors-per-file" and [d.id for d in mosaic.detectors] == [1, 2,
                                                                                           3, 4]
    gains = {(d.name, a.name): a.gain for d in mosaic.detectors for a in d.amplifiers}
    assert len(set(gains.values())) > 4  # per amplifier
    assert mosaic.filter("r DECam SDSS c0002 6415.0 1480.0").name == "r"
    assert simcam.layout == "hpcpipe-exposure" and simcam.detectors == ()
    # the camera's config defaults, by task
    assert load_mapper("generic").config_overrides("processCcd")["isr.doOverscan"] is False
    assert load_mapper("mosaic4").config_overrides("isr") == {
        "doOverscan": True, "doBias": False, "doDark": False, "doFlat": False}
    assert load_mapper("mosaic4").config_overrides("makeWarp") == {}
    assert SimCamMapper().config_overrides("processCcd") == {}


def test_sections_follow_the_fits_convention():
    assert parse_section("[33:544,1:1024]") == Box2I(32, 0, 512, 1024)
    assert parse_section(" [ 1:1 , 2:3 ] ") == Box2I(0, 1, 1, 2)
    for bad in ("[0:10,1:5]", "[10:1,1:5]", "33:544,1:1024", "[1:2]"):
        with pytest.raises(ValueError):
            parse_section(bad)


GOOD = """\
name: tiny
layout: detector-per-file
detectors:
  - id: 0
    name: D0
    size: [20, 10]
    amplifiers:
      - {name: A, data_section: "[3:12,1:10]", overscan_section: "[1:2,1:10]",
         gain: 2.0, read_noise: 3.0}
      - {name: B, data_section: "[13:22,1:10]", overscan_section: "[23:24,1:10]",
         gain: 2.5, read_noise: 4.0, linearity: [1.0e-6]}
filters:
  - {name: r, aliases: [R]}
header:
  visit: EXPNUM
  filter: FILTER
  dateObs: DATE-OBS
  expTime: EXPTIME
"""


@pytest.mark.parametrize("old,new,key,line,words", [
    ("gain: 2.5", "gain: -1", "detectors[0].amplifiers[1].gain", 11, "number > 0"),
    ("read_noise: 3.0", "reed_noise: 3.0", "detectors[0].amplifiers[0].reed_noise", 9,
     "did you mean 'read_noise'"),
    ('"[3:12,1:10]"', '"[3:12;1:10]"', "detectors[0].amplifiers[0].data_section", 8,
     "not a section"),
    ("size: [20, 10]", "size: [21, 10]", "detectors[0].size", 6, "assemble into 20x10"),
    ("layout: detector-per-file", "layout: one-file", "layout", 2, "is not one of"),
    ("  visit: EXPNUM\n", "", "header", 14, "missing required key 'visit'"),
    ("visit: EXPNUM", "visit: {expression: \"__import__('os').system('x')\"}",
     "header.visit.expression", 15, "only calls of header, get, int"),
    ('"[1:2,1:10]"', '"[1:4,1:10]"', "detectors[0].amplifiers[0]", 8, "overlaps"),
    ("name: tiny", "name: tiny\nname: again", "name", 2, "given twice"),
    ("  - {name: r, aliases: [R]}", "  - {name: r, aliases: [R]}\n  - {name: R}",
     "filters[1]", 14, "already names filter 'r'"),
    ("dateObs: DATE-OBS", "dateObs: [DATE-OBS", "", 18, "not valid YAML"),
])
def test_a_camera_file_error_names_the_file_key_and_line(tmp_path, old, new, key, line, words):
    assert old in GOOD
    path = tmp_path / "tiny.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(CameraError) as info:
        load_camera(path)
    error = info.value
    assert (error.source, error.key, error.line) == (str(path), key, line), str(error)
    assert words in str(error) and str(error).startswith(f"{path}:{line}: ")


def test_the_expression_language_is_checked_and_never_run():
    expr = Expression('int(substr(digits(header("DATE-OBS")), 2, 14))')
    assert expr.evaluate({"DATE-OBS": "2026-01-15T03:12:45.123"}) == 260115031245
    expr = Expression('seconds_since(header("DATE-OBS"), "2020-01-01")')
    assert expr.evaluate({"DATE-OBS": "2026-01-15T03:12:45.123"}) == 190609965
    assert Expression("EXPNUM * 100 + int(get('CCDNUM', 7))").evaluate({"EXPNUM": 3}) == 307
    for bad in ("open('x')", "EXPNUM.real", "[1, 2]", "EXPNUM[0]", "lambda: 1",
                "(x for x in y)", "a if b else c", "2 ** 3", "True"):
        with pytest.raises(ExpressionError):
            Expression(bad)


def test_camera_check_and_butler_create_refuse_a_bad_camera_file_with_status_2(
        tmp_path, raws, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("gain: 2.5", "gain: lots"))
    assert main(["camera", "check", str(bad), str(raws["generic"].path)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:11: detectors[0].amplifiers[1].gain: must be a number > 0" in err
    repo = tmp_path / "repo"
    assert main(["butler", "create", str(repo), "--camera", str(bad)]) == 2
    assert f"{bad}:11:" in capsys.readouterr().err
    assert not repo.exists()  # nothing written
    assert main(["butler", "describe", "--camera", str(bad)]) == 2
    assert f"{bad}:11:" in capsys.readouterr().err
    assert main(["butler", "create", str(repo), "--camera", "nosuchcam"]) == 2
    assert "unknown mapper 'nosuchcam'" in capsys.readouterr().err and not repo.exists()


# --- the generic camera -------------------------------------------------------------------------
def test_generic_raws_ingest_and_read_back_with_the_truth_wcs(tmp_path, raws, capsys):
    generic = raws["generic"]
    assert main(["camera", "check", "generic", str(generic.path),
                 str(raws["generic_int"].path)]) == 0
    out = capsys.readouterr().out
    assert "raw {visit=190609965, ccd=0, filter='r'" in out and "2 files would" in out
    repo = tmp_path / "repo"
    assert main(["butler", "create", str(repo), "--camera", "generic"]) == 0
    assert (repo / "_mapper").read_text().strip() == "generic"
    assert main(["ingest", str(repo), str(generic.path), str(raws["generic_int"].path)]) == 0
    butler = Butler(repo)
    assert butler.queryMetadata("raw", "visit") == [190609965, 190610400]
    raw = butler.get("raw", visit=190609965, ccd=0)
    assert raw.image.array.shape == (1024, 1024) and raw.image.array.dtype == np.float32
    np.testing.assert_array_equal(raw.image.array, fits.getdata(generic.path))
    (amp,) = raw.detector.amplifiers
    assert amp.raw_data_bbox == amp.bbox == Box2I(0, 0, 1024, 1024)
    assert amp.raw_serial_overscan_bbox.width == 0  # no overscan: an empty box
    assert (amp.gain, amp.read_noise) == (1.0, 0.0)
    assert raw.filter.band == "r" and raw.filter.physical == "SDSS r"
    assert raw.visit_info.exposure_time == 60.0
    assert raw.visit_info.date.tai.isot == "2026-01-15T03:13:52.000"  # middle, UTC -> TAI
    truth = generic.scenes[0]
    x, y = truth.truth["x"], truth.truth["y"]
    sky = raw.wcs.pixel_to_world(x, y)
    assert np.max(sky.separation(truth.wcs.pixel_to_world(x, y)).arcsec) < 1e-6
    small = butler.get("raw", visit=190610400)
    assert small.image.array.shape == (300, 400)  # size: any
    assert small.detector.bbox == Box2I(0, 0, 400, 300)


def test_a_raw_without_a_required_keyword_is_refused_by_name(tmp_path, raws, capsys):
    data = fits.getdata(raws["generic"].path)
    header = fits.getheader(raws["generic"].path)
    del header["DATE-OBS"]
    bad = tmp_path / "no-date.fits"
    fits.PrimaryHDU(data, header).writeto(bad)
    repo = tmp_path / "repo"
    create_repository(repo, "generic")
    before = _files(repo)
    assert main(["ingest", str(repo), str(bad)]) == 2
    out = capsys.readouterr().out
    assert f"skipped {bad}: HDU 0: missing header keyword DATE-OBS" in out
    assert _files(repo) == before  # nothing written, not even a registry
    assert main(["camera", "check", "generic", str(bad)]) == 1
    assert "missing header keyword DATE-OBS" in capsys.readouterr().out


# --- the mosaic camera --------------------------------------------------------------------------
def test_a_mosaic_raw_registers_one_raw_per_detector(tmp_path, raws):
    mosaic = raws["mosaic"]
    camera = find_camera("mosaic4")
    repo = tmp_path / "repo"
    create_repository(repo, description=(CAMERAS / "mosaic4.yaml").read_text())
    assert (repo / "_mapper").read_text().strip() == "_camera.yaml"
    report = ingest(repo, [mosaic.path])
    assert report.ok and [d["ccd"] for _, _, d in report.ingested] == [1, 2, 3, 4]
    paths = sorted((repo / "raw").rglob("*.fits"))
    assert len(paths) == 4 and len({p.stat().st_ino for p in paths}) == 1  # one copy
    again = ingest(repo, [mosaic.path])  # harmless: every detector already there
    assert again.ok and again.ingested == [] and len(again.already) == 4
    moved = tmp_path / "moved"  # --mode move: the file goes, its detectors stay readable
    create_repository(moved, "mosaic4")
    source = tmp_path / "to-move.fits"
    source.write_bytes(mosaic.path.read_bytes())
    assert ingest(moved, [source], mode="move").ok and not source.exists()
    assert Butler(moved).get("raw", visit=1001, ccd=3).detector.id == 3
    butler = Butler(repo)
    assert butler.mapper.name == "mosaic4"
    assert [ref.dataId["ccd"] for ref in butler.subset("raw", visit=1001)] == [1, 2, 3, 4]
    for ccd in (1, 4):
        raw = butler.get("raw", visit=1001, ccd=ccd)
        spec = camera.detector(ccd)
        assert raw.image.array.shape == (1024, 1088)
        assert raw.detector.id == ccd and raw.detector.bbox == Box2I(0, 0, 1024, 1024)
        a, b = raw.detector.amplifiers
        assert (a.raw_serial_overscan_bbox, a.raw_data_bbox) == (Box2I(0, 0, 32, 1024),
                                                                 Box2I(32, 0, 512, 1024))
        assert (b.raw_data_bbox, b.raw_serial_overscan_bbox) == (Box2I(544, 0, 512, 1024),
                                                                 Box2I(1056, 0, 32, 1024))
        assert (a.bbox, b.bbox) == (Box2I(0, 0, 512, 1024), Box2I(512, 0, 512, 1024))
        assert [(x.gain, x.read_noise) for x in (a, b)] == [
            (amp.gain, amp.read_noise) for amp in spec.amplifiers]
        for amp in (a, b):  # overscan at the bias level, data = electrons / gain + bias
            bias = mosaic.bias[(ccd, amp.name)]
            over = raw.image.array[amp.raw_serial_overscan_bbox.slices()]
            assert abs(np.median(over) - bias) < 1.0
            data = raw.image.array[amp.raw_data_bbox.slices()].astype(np.float64)
            electrons = mosaic.electrons[ccd][amp.bbox.slices()]
            residual = (data - bias) * amp.gain - electrons
            assert abs(np.median(residual)) < 1.0 and np.std(residual) < 2 * amp.read_noise
        scene = mosaic.scenes[ccd]  # the WCS of the trimmed image is the truth's
        x, y = scene.truth["x"], scene.truth["y"]
        sep = raw.wcs.pixel_to_world(x, y).separation(scene.wcs.pixel_to_world(x, y))
        assert np.max(sep.arcsec) < 1e-6
        assert raw.filter.band == "r" and raw.visit_info.instrument == "mosaic4"


def _mosaic_variant(raws, path: Path, edit) -> Path:
    with fits.open(raws["mosaic"].path) as hdul:
        copy = fits.HDUList([h.copy() for h in hdul])
    edit(copy)
    copy.writeto(path)
    return path


def test_bad_mosaic_raws_name_the_file_hdu_and_keyword_and_write_nothing(tmp_path, raws,
                                                                         capsys):
    def no_detector(hdul):
        hdul[3].header["CCDNUM"] = 9

    def no_section(hdul):
        del hdul[2].header["DATASECB"]

    def outside(hdul):
        hdul[4].header["BIASSECB"] = "[1057:1100,1:1024]"

    def no_filter(hdul):
        hdul[0].header["FILTER"] = "VR DECam c0007 6300.0 2600.0"

    cases = {
        "no-detector.fits": (no_detector, "HDU 3 (N1): header CCDNUM=9 matches no detector "
                             "of camera mosaic4"),
        "no-section.fits": (no_section, "HDU 2 (S2): missing header keyword DATASECB (the data "
                            "section of amplifier B)"),
        "outside.fits": (outside, "HDU 4 (N2): amplifier B: overscan section [1057:1100,"
                         "1:1024] (header BIASSECB) is outside the 1088x1024 image"),
        "no-filter.fits": (no_filter, "is not a filter of camera mosaic4"),
    }
    repo = tmp_path / "repo"
    create_repository(repo, "mosaic4")
    before = _files(repo)
    paths = {name: _mosaic_variant(raws, tmp_path / name, edit)
             for name, (edit, _) in cases.items()}
    assert main(["ingest", str(repo), *map(str, paths.values())]) == 2
    out = capsys.readouterr().out
    for name, (_, words) in cases.items():
        assert f"skipped {paths[name]}: " in out and words in out, (name, out)
    assert _files(repo) == before and not (repo / "raw").exists()
    assert main(["camera", "check", "mosaic4", *map(str, paths.values())]) == 1
    out = capsys.readouterr().out
    assert out.count(": refused: ") == 4 and "0 files would be ingested, 4 refused" in out


# --- other layouts and the SimCam path ----------------------------------------------------------
TINY_HEADER = {"EXPNUM": 5, "FILTER": "R", "DATE-OBS": "2026-02-01T00:00:00", "EXPTIME": 10.0}


def test_linearity_coefficients_reach_the_amplifier(tmp_path):
    camera = parse_camera(GOOD, "tiny.yaml")
    assert camera.detectors[0].amplifiers[1].linearity == (1e-6,)
    fits.PrimaryHDU(np.ones((10, 24), np.float32), fits.Header(TINY_HEADER)).writeto(
        tmp_path / "raw.fits")
    raw = read_raw(camera, tmp_path / "raw.fits")
    assert raw.detector["B"].linearity_coeffs == (1e-6,)
    assert raw.detector["A"].linearity_coeffs == ()


def test_a_wcs_with_overscan_between_the_data_sections_is_refused(tmp_path):
    no_linearity = GOOD.replace(", linearity: [1.0e-6]", "")
    camera = parse_camera(no_linearity, "tiny.yaml")  # | os A | data A | data B | os B |
    header = fits.Header({"EXPNUM": 5, "FILTER": "R", "DATE-OBS": "2026-02-01T00:00:00",
                          "EXPTIME": 10.0, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
                          "CRVAL1": 10.0, "CRVAL2": 20.0, "CRPIX1": 13.0, "CRPIX2": 5.0,
                          "CD1_1": -5e-5, "CD2_2": 5e-5})
    fits.PrimaryHDU(np.ones((10, 24), np.float32), header).writeto(tmp_path / "ok.fits")
    raw = read_raw(camera, tmp_path / "ok.fits")
    assert raw.wcs.wcs.crpix.tolist() == [11.0, 5.0]  # shifted by overscan A (2 columns)
    assert raw.detector["B"].raw_data_bbox == Box2I(12, 0, 10, 10)
    split = no_linearity.replace('"[13:22,1:10]", overscan_section: "[23:24,1:10]"',
                         '"[15:24,1:10]", overscan_section: "[13:14,1:10]"')
    camera = parse_camera(split, "split.yaml")  # | os A | data A | os B | data B |
    with pytest.raises(IngestError, match="has a WCS but the data sections are not contiguous"):
        scan_raw(camera, tmp_path / "ok.fits")
    del header["CTYPE1"], header["CTYPE2"]  # without a WCS the layout is fine
    fits.PrimaryHDU(np.ones((10, 24), np.float32), header).writeto(tmp_path / "nowcs.fits")
    raw = read_raw(camera, tmp_path / "nowcs.fits")
    assert raw.wcs is None and raw.detector["B"].bbox == Box2I(10, 0, 10, 10)


AMPS = """\
name: ampcam
layout: amplifiers-per-file
detectors:
  - id: 0
    name: D0
    size: [16, 8]
    amplifiers:
      - {name: L, data_section: "[1:8,1:8]", overscan_section: "[9:11,1:8]", gain: 2.0,
         read_noise: 3.0}
      - {name: R, data_section: "[4:11,1:8]", overscan_section: "[1:3,1:8]", gain: 3.0,
         read_noise: 3.0}
  - id: 1
    name: D1
    size: [16, 8]
    amplifiers:
      - {name: L, data_section: "[1:8,1:8]", overscan_section: "[9:11,1:8]", gain: 2.0,
         read_noise: 3.0}
      - {name: R, data_section: "[4:11,1:8]", overscan_section: "[1:3,1:8]", gain: 3.0,
         read_noise: 3.0}
filters: [{name: r}]
header: {visit: EXPNUM, ccd: CCDNUM, amplifier: AMPNAME, filter: FILTER, dateObs: DATE-OBS,
         expTime: EXPTIME}
"""


def test_one_hdu_per_amplifier_is_assembled_side_by_side(tmp_path):
    camera = parse_camera(AMPS, "ampcam.yaml")
    primary = fits.PrimaryHDU(header=fits.Header({
        "EXPNUM": 3, "FILTER": "r", "DATE-OBS": "2026-02-01T00:00:00", "EXPTIME": 5.0}))
    hdus = [primary]
    for ccd in (1, 0):
        for amp, value in (("R", 20.0), ("L", 10.0)):  # any order in the file
            hdus.append(fits.ImageHDU(np.full((8, 11), value + ccd, np.float32),
                                      fits.Header({"CCDNUM": ccd, "AMPNAME": amp})))
    fits.HDUList(hdus).writeto(tmp_path / "amps.fits")
    units = scan_raw(camera, tmp_path / "amps.fits")
    assert [(u.record.data_id["ccd"], u.record.extra["hdu"]) for u in units] == [
        (1, [2, 1]), (0, [4, 3])]
    raw = read_raw(camera, tmp_path / "amps.fits", ccd=1)
    assert raw.image.array.shape == (8, 22)
    assert raw.image.array[0, 0] == 11.0 and raw.image.array[0, 11] == 21.0
    left, right = raw.detector.amplifiers
    assert (left.raw_data_bbox, left.raw_serial_overscan_bbox) == (Box2I(0, 0, 8, 8),
                                                                   Box2I(8, 0, 3, 8))
    assert (right.raw_data_bbox, right.raw_serial_overscan_bbox) == (Box2I(14, 0, 8, 8),
                                                                     Box2I(11, 0, 3, 8))
    assert (left.bbox, right.bbox) == (Box2I(0, 0, 8, 8), Box2I(8, 0, 8, 8))
    hdus.pop()  # detector 0 loses its amplifier L
    fits.HDUList(hdus).writeto(tmp_path / "missing.fits")
    with pytest.raises(IngestError, match="detector D0: no HDU for amplifier.s. L"):
        scan_raw(camera, tmp_path / "missing.fits")


def test_simulate_stores_the_camera_file_of_its_geometry(tmp_path):
    repo = tmp_path / "sim"
    assert main(["simulate", str(repo), "--ccds", "2", "--size", "128", "--visits", "1",
                 "--filters", "r"]) == 0
    assert (repo / "_mapper").read_text().strip() == "_camera.yaml"
    camera = load_camera(repo / "_camera.yaml")
    assert camera.name == "simcam" and [d.id for d in camera.detectors] == [0, 1]
    assert camera.detectors[0].width == 128
    butler = Butler(repo)
    assert butler.mapper.name == "simcam"
    raw = butler.get("raw", visit=butler.queryMetadata("raw", "visit")[0], ccd=1)
    assert raw.detector.id == 1 and raw.image.array.shape == (128, 128 + 2 * 32)
    out = Butler(repo, outputs=tmp_path / "out")  # an output repository keeps the camera
    assert (tmp_path / "out" / "_camera.yaml").read_text() == (repo / "_camera.yaml").read_text()
    assert out.mapper.name == "simcam"


def test_repositories_never_import_what_they_name(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "_mapper").write_text("os.system\n")
    with pytest.raises(UnknownMapperError, match="unknown mapper 'os.system'"):
        Butler(repo)
    with pytest.raises(UnknownMapperError, match="never imported|unknown mapper"):
        load_mapper("hpcpipe.obs.mapper.CameraMapper")


# --- the catalogs -------------------------------------------------------------------------------
def test_the_reference_catalog_has_proper_motions_back_to_its_epoch(raws):
    catalogs = raws["catalogs"]
    truth = Table.read(catalogs["truth"])
    ref = Table.read(catalogs["ref_fits"])
    csv = Table.read(catalogs["ref_csv"], format="ascii.csv")
    import pyarrow.parquet as pq

    parquet = pq.read_table(catalogs["ref_parquet"]).to_pandas()
    assert len(ref) == len(csv) == len(parquet) == int(np.sum(truth["is_star"]))
    np.testing.assert_allclose(csv["ra"], ref["ra"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(parquet["dec"].to_numpy(), ref["dec"], rtol=0, atol=0)
    stars = truth[truth["is_star"]]
    assert np.all(stars["id"] == ref["source_id"])
    dt = stars["epoch"] - ref["ref_epoch"]
    assert np.all((dt > 10.0) & (dt < 10.3))  # images of 2026, catalog epoch 2016.0
    moved = (stars["dec"] - ref["dec"]) * 3.6e6  # mas
    np.testing.assert_allclose(moved, ref["pmdec"] * dt, atol=1e-6)
    assert 15.0 < np.std(ref["pmra"]) < 50.0  # tens of mas/yr
    assert np.all(np.isfinite(ref["g_mag"])) and np.all(ref["g_mag"] > ref["i_mag"])
