"""Ingest and the registry: headers, bad files, re-ingest, modes, one writer at a time."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from astropy.io import fits
from astropy.time import Time

from hpcpipe.butler import Butler, create_repository, ingest
from hpcpipe.butler.registry import REGISTRY_FILE
from hpcpipe.butler.repository import Repository
from hpcpipe.geom import Box2I
from hpcpipe.image import Detector, Exposure, FilterLabel, VisitInfo
from hpcpipe.obs.simcam import calib_header, raw_header


def write_exposure(path: Path, cards: dict, value: float = 0.0, **info) -> Path:
    exposure = Exposure(Box2I(0, 0, 4, 4), **info)
    exposure.image.array[:] = value
    exposure.metadata.update(cards)
    exposure.write(path)
    return path


def write_plain_fits(path: Path, cards: dict) -> Path:
    hdu = fits.PrimaryHDU()
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    create_repository(root, "simcam")
    return root


def raws(directory: Path, visits=(1, 2), ccds=(0, 1)) -> list[Path]:
    directory.mkdir(exist_ok=True)
    return [write_exposure(directory / f"raw-{v}-{c}.fits",
                           raw_header(v, c, "r", f"2026-01-1{v}T00:00:00", 15.0), 10 * v + c)
            for v in visits for c in ccds]


def test_ingest_registers_and_places_files(repo, tmp_path):
    files = raws(tmp_path / "in")
    report = ingest(repo, files)
    assert report.ok and len(report.ingested) == 4
    assert (repo / "raw/v0000002/r/raw_v0000002_c001.fits").is_file()
    assert (repo / REGISTRY_FILE).is_file()
    butler = Butler(repo)
    assert butler.queryMetadata("raw", ["visit", "ccd", "date", "expTime"]) == [
        (1, 0, "2026-01-11", 15.0), (1, 1, "2026-01-11", 15.0),
        (2, 0, "2026-01-12", 15.0), (2, 1, "2026-01-12", 15.0)]
    assert butler.get("raw", visit=2, ccd=1).image.array[0, 0] == 21
    assert all(f.exists() for f in files)  # copy is the default mode


def test_ingesting_twice_is_harmless(repo, tmp_path):
    files = raws(tmp_path / "in")
    assert ingest(repo, files).ok
    before = sorted(p.relative_to(repo) for p in repo.rglob("*.fits"))
    again = ingest(repo, [*files, files[0]])
    assert again.ok and again.ingested == []
    assert [path for path, _ in again.already] == [str(f) for f in (*files, files[0])]
    assert sorted(p.relative_to(repo) for p in repo.rglob("*.fits")) == before
    assert len(Butler(repo).subset("raw")) == 4


def test_bad_files_are_reported_by_name_and_skipped(repo, tmp_path):
    good = raws(tmp_path / "in", visits=(1,), ccds=(0, 1))
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    header = raw_header(7, 0, "r", "2026-01-11T00:00:00", 15.0)
    cases = {
        "no-visit.fits": ({k: v for k, v in header.items() if k != "VISIT"}, "VISIT"),
        "no-date.fits": ({k: v for k, v in header.items() if k != "DATE-OBS"}, "DATE-OBS"),
        "bad-filter.fits": ({**header, "FILTER": "q"}, "FILTER='q'"),
        "bad-date.fits": ({**header, "DATE-OBS": "yesterday"}, "DATE-OBS='yesterday'"),
        "bad-exptime.fits": ({**header, "EXPTIME": -1.0}, "EXPTIME=-1.0"),
        "bad-visit.fits": ({**header, "VISIT": "seven"}, "VISIT='seven'"),
        "bad-obstype.fits": ({**header, "OBSTYPE": "focus"}, "OBSTYPE='focus'"),
        "utc.fits": ({**header, "TIMESYS": "UTC"}, "TIMESYS"),
        "bad-calib.fits": (calib_header("flat", 0, "2026-13-01", filter="r"), "CALIB_ID"),
        "no-calib-id.fits": ({"OBSTYPE": "bias", "CCDNUM": 0}, "CALIB_ID"),
    }
    bad = [write_plain_fits(bad_dir / name, cards) for name, (cards, _) in cases.items()]
    # VISIT and EXPID (written from the visit info) disagree
    bad.append(write_exposure(bad_dir / "inconsistent.fits", {**header, "VISIT": 8},
                              visit_info=VisitInfo(exposure_id=9)))
    (bad_dir / "not-fits.fits").write_text("this is not FITS")
    bad.append(bad_dir / "not-fits.fits")
    bad.append(bad_dir / "missing.fits")

    report = ingest(repo, [good[0], *bad, good[1]])
    assert [path for path, _, _ in report.ingested] == [str(good[0]), str(good[1])]
    failed = dict(report.failed)
    assert sorted(failed) == sorted(str(p) for p in bad)
    for name, (_, word) in cases.items():
        assert word in failed[str(bad_dir / name)], (name, failed[str(bad_dir / name)])
    assert "inconsistent" in failed[str(bad_dir / "inconsistent.fits")]
    assert "VISIT=8" in failed[str(bad_dir / "inconsistent.fits")]
    assert "no such file" in failed[str(bad_dir / "missing.fits")]
    summary = report.summary()
    for path in bad:
        assert f"skipped {path}:" in summary
    assert Butler(repo).queryMetadata("raw", "visit") == [1]


def test_a_conflicting_file_is_skipped_and_the_first_kept(repo, tmp_path):
    first = write_exposure(tmp_path / "first.fits",
                           raw_header(5, 0, "r", "2026-01-11T00:00:00", 15.0), 1.0)
    second = write_exposure(tmp_path / "second.fits",
                            raw_header(5, 0, "g", "2026-01-11T00:00:00", 15.0), 2.0)
    assert ingest(repo, [first]).ok
    report = ingest(repo, [second])
    assert not report.ok
    (path, reason), = report.failed
    assert path == str(second) and "conflicts" in reason and str(first) in reason
    assert "'filter': ('r', 'g')" in reason
    assert Butler(repo).get("raw", visit=5, ccd=0).image.array[0, 0] == 1.0


def test_hpcpipe_exposure_fields_stand_in_for_missing_keywords(repo, tmp_path):
    """EXPID, DETID and DATE-AVG (written by Exposure.write from the visit info and detector)
    are the fallbacks of VISIT, CCDNUM and DATE-OBS."""
    path = write_exposure(
        tmp_path / "sim.fits", {}, 3.0, filter=FilterLabel("i"),
        detector=Detector(4, "S04", Box2I(0, 0, 4, 4)),
        visit_info=VisitInfo(exposure_id=42, date=Time("2026-03-01T12:00:00", scale="tai"),
                             exposure_time=60.0))
    report = ingest(repo, [path])
    assert report.ok, report.summary()
    assert report.ingested[0][2] == {"visit": 42, "ccd": 4, "filter": "i", "date": "2026-03-01",
                                     "dateObs": "2026-03-01T12:00:00.000", "expTime": 60.0}


@pytest.mark.parametrize("mode", ["copy", "link", "move"])
def test_ingest_modes(repo, tmp_path, mode):
    source = raws(tmp_path / "in", visits=(1,), ccds=(0,))[0]
    assert ingest(repo, [source], mode=mode).ok
    placed = repo / "raw/v0000001/r/raw_v0000001_c000.fits"
    assert placed.is_file()
    assert placed.is_symlink() == (mode == "link")
    assert source.exists() == (mode != "move")
    assert Butler(repo).get("raw", visit=1, ccd=0).image.array[0, 0] == 10


def test_calibrations_and_their_validity(repo, tmp_path):
    flat = write_exposure(tmp_path / "flat.fits",
                          calib_header("flat", 0, "2026-01-10", filter="r"))
    bias = write_exposure(tmp_path / "bias.fits",
                          calib_header("bias", 0, "2026-01-10", "2026-01-01", "2026-01-31"))
    assert ingest(repo, [flat, bias]).ok
    registry = Repository.open(repo).registry(Butler(repo).mapper)
    entries = {e.dataset_type: e for e in registry.calibrations()}
    assert (entries["flat"].valid_start, entries["flat"].valid_end) == ("2025-12-11",
                                                                       "2026-02-09")
    assert entries["flat"].data_id == {"calibDate": "2026-01-10", "ccd": 0, "filter": "r"}
    assert (entries["bias"].valid_start, entries["bias"].valid_end) == ("2026-01-01",
                                                                       "2026-01-31")
    assert ingest(repo, [flat]).already  # again: harmless
    other = write_exposure(tmp_path / "bias2.fits",
                           calib_header("bias", 0, "2026-01-10", "2026-01-05", "2026-01-31"))
    report = ingest(repo, [other])
    assert "conflicts" in report.failed[0][1] and "2026-01-01..2026-01-31" in report.failed[0][1]


def test_a_file_the_raw_formatter_cannot_read_is_refused(repo, tmp_path):
    """Ingest reads what it accepts: right headers on a file that is not a SimCam raw (an
    hpcpipe exposure) are not enough (issue 14)."""
    header = raw_header(3, 2, "z", "2026-01-11T05:06:07.5", 1.0)
    plain = write_plain_fits(tmp_path / "plain.fits", header)
    report = ingest(repo, [plain])
    assert not report.ok and report.ingested == []
    assert "not an hpcpipe exposure" in report.failed[0][1] and "IMAGE" in report.failed[0][1]
    assert not list(repo.rglob("raw_*.fits"))
    report = ingest(repo, [write_exposure(tmp_path / "good.fits", header)])
    assert report.ok
    assert report.ingested[0][2]["dateObs"] == "2026-01-11T05:06:07.500"


def test_an_open_write_transaction_blocks_neither_readers_nor_corrupts_them(repo, tmp_path):
    files = raws(tmp_path / "in", visits=(1,), ccds=(0,))
    assert ingest(repo, files).ok
    butler = Butler(repo)
    registry = Repository.open(repo).registry(butler.mapper)
    row = {"visit": 9, "ccd": 0, "filter": "r", "date": "2026-01-01",
           "dateObs": "2026-01-01T00:00:00.000", "expTime": 1.0}
    with registry.transaction() as tx:
        tx.add_exposure(row, "test")
        start = time.monotonic()
        assert butler.queryMetadata("raw", "visit") == [1]  # the uncommitted row is unseen
        assert time.monotonic() - start < 1.0
    assert butler.queryMetadata("raw", "visit") == [1, 9]
    with sqlite3.connect(repo / REGISTRY_FILE) as conn:  # what makes readers safe
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_writers_take_turns(repo):
    mapper = Butler(repo).mapper
    registry = Repository.open(repo).registry(mapper)
    registry.busy_timeout = 10.0
    order: list[str] = []
    holding = threading.Event()

    def second_writer() -> None:
        holding.wait()
        with registry.transaction():
            order.append("second")

    thread = threading.Thread(target=second_writer)
    thread.start()
    with registry.transaction():
        holding.set()
        time.sleep(0.3)  # the second writer waits for the lock meanwhile
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]
