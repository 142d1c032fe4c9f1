"""hpcpipe query: DuckDB over the HATS catalogs, cone search against brute force, bad queries."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from release_db_data import make_release

from hpcpipe.catalog.adql import adql_to_duckdb
from hpcpipe.catalog.query import QueryError, ReleaseDatabase
from hpcpipe.cli import main
from hpcpipe.io.release import read_release_table


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    try:
        yield make_release(tmp_path_factory.mktemp("query"), monkeypatch)
    finally:
        monkeypatch.undo()


@pytest.fixture(scope="module")
def database(release):
    with ReleaseDatabase(release["release"] / "hats", max_rows=10_000, timeout=30) as db:
        yield db


@pytest.fixture(scope="module")
def hdf5_objects(release):
    return read_release_table(release["release"] / "objects" / "tract-0.h5", "objects")


def _brute_cone(objects, ra0, dec0, radius):
    coords = SkyCoord(np.asarray(objects["coord_ra"]) * u.rad,
                      np.asarray(objects["coord_dec"]) * u.rad)
    sep = coords.separation(SkyCoord(ra0 * u.deg, dec0 * u.deg)).deg
    return set(np.asarray(objects["id"])[sep <= radius].tolist())


@pytest.mark.parametrize("ra0, dec0, radius", [(150.1, 2.2, 2 / 60), (150.0, 2.2, 0.1),
                                               (149.8, 2.0, 0.05), (150.3, 2.5, 0.2),
                                               (10.0, -30.0, 0.5)])
def test_cone_matches_brute_force(database, hdf5_objects, ra0, dec0, radius):
    expected = _brute_cone(hdf5_objects, ra0, dec0, radius)
    got = database.query(f"SELECT id FROM objects WHERE cone(ra, dec, {ra0}, {dec0}, {radius})")
    assert set(got["id"].tolist()) == expected
    # with an alias, and through the macro without pruning (a non-constant radius)
    got = database.query(f"SELECT o.id FROM objects AS o WHERE cone(o.ra, o.dec, {ra0}, "
                         f"{dec0}, {radius}) AND o.psfFlux > 0")
    assert set(got["id"].tolist()) == expected
    got = database.query(f"SELECT id FROM objects WHERE cone(ra, dec, {ra0}, {dec0}, "
                         f"{radius} + 0 * psfFlux)")
    assert set(got["id"].tolist()) == expected


def test_cone_prunes_files(database):
    sql, cones = database.rewrite("SELECT id FROM objects WHERE cone(ra, dec, 150.1, 2.2, 1/60)")
    assert len(cones) == 1 and "_healpix_29 >=" in sql
    files = database.catalogs["objects"].files
    read = [f for f in files if str(f) in sql]
    assert 0 < len(read) < len(files)


def test_aggregates_and_joins_match_hdf5(database, release, hdf5_objects):
    table = database.query("SELECT patch, count(*) AS n, avg(psfMag) AS mean FROM objects "
                           "GROUP BY patch ORDER BY patch")
    patches = np.char.decode(np.asarray(hdf5_objects["patch"]))
    for row in table:
        mine = np.asarray(hdf5_objects["psfMag"])[patches == row["patch"]]
        assert row["n"] == len(mine) and row["mean"] == pytest.approx(mine.mean())
    joined = database.query("SELECT o.id, f.filter, f.psfFlux FROM objects o JOIN forced f "
                            "ON o.id = f.id AND o.tract = f.tract WHERE f.filter = 'r'")
    forced = read_release_table(release["release"] / "forced" / "tract-0-r.h5", "forced")
    assert len(joined) == len(forced)
    by_id = dict(zip(np.asarray(forced["id"]).tolist(), np.asarray(forced["psfFlux"])))
    assert all(by_id[r["id"]] == r["psfFlux"] for r in joined)
    assert database.query("SELECT count(*) AS n FROM sources")["n"][0] == \
        release["counts"]["sources"]


def test_result_carries_units_and_descriptions(database):
    table = database.query("SELECT id, ra, psfMag, apFlux, patch FROM objects ORDER BY id LIMIT 5")
    assert table["psfMag"].unit == u.mag and table["ra"].unit == u.deg
    assert table["psfMag"].description == "PSF AB magnitude"
    assert table["psfMag"].meta["ucd"] == "phot.mag"
    assert table["apFlux"].shape == (5, 3)


def test_adql_translation_gives_the_same_rows(database, hdf5_objects):
    adql = ("SELECT TOP 5 id, DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 150.1, 2.2)) AS d "
            "FROM objects WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
            "CIRCLE('ICRS', 150.1, 2.2, 0.1)) ORDER BY d")
    table = database.query(adql_to_duckdb(adql))
    coords = SkyCoord(np.asarray(hdf5_objects["coord_ra"]) * u.rad,
                      np.asarray(hdf5_objects["coord_dec"]) * u.rad)
    sep = coords.separation(SkyCoord(150.1 * u.deg, 2.2 * u.deg)).deg
    nearest = np.argsort(sep)[:5]
    assert table["id"].tolist() == np.asarray(hdf5_objects["id"])[nearest].tolist()
    np.testing.assert_allclose(table["d"], sep[nearest], rtol=1e-9)
    outside = database.query(adql_to_duckdb(
        "SELECT COUNT(*) AS n FROM objects WHERE CONTAINS(POINT('ICRS', ra, dec), "
        "CIRCLE('ICRS', 150.1, 2.2, 0.1)) = 0"))
    assert outside["n"][0] == len(hdf5_objects) - np.count_nonzero(sep <= 0.1)


@pytest.mark.parametrize("sql, message", [
    ("SELEC id FROM objects", "syntax error"),
    ("SELECT nope FROM objects", 'column "nope" not found'),
    ("SELECT id FROM nothing", "nothing"),
    ("DROP VIEW objects", "only SELECT"),
    ("CREATE TABLE t AS SELECT 1", "only SELECT"),
    ("COPY (SELECT 1) TO 'leak.csv'", "only SELECT"),
    ("INSTALL httpfs", "only SELECT"),
    ("SET enable_external_access = true", "only SELECT"),
    ("SELECT 1; DROP VIEW objects", "one statement"),
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
    ("SELECT * FROM objects", "more than 100 rows"),
    ("SELECT id FROM objects WHERE cone(ra, dec, 150, 95, 1)", "out of range"),
    ("SELECT " + "1 + " * 10_000 + "1", "too long"),
    ("", "empty"),
])
def test_bad_queries_get_a_clear_error(database, sql, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(QueryError, match=message):
        database.query(sql, max_rows=100)
    assert not list(tmp_path.iterdir())  # nothing left behind
    assert database.query("SELECT count(*) AS n FROM objects")["n"][0] > 0  # still usable


def test_bad_adql(database):
    with pytest.raises(QueryError, match="ADQL syntax error"):
        adql_to_duckdb("SELECT TOP id FROM objects")
    with pytest.raises(QueryError, match="POLYGON"):
        adql_to_duckdb("SELECT id FROM objects WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
                       "POLYGON('ICRS', 1, 2, 3, 4, 5, 6))")


def test_timeout_interrupts(release):
    with ReleaseDatabase(release["release"] / "hats", timeout=0.2) as db:
        with pytest.raises(QueryError, match="timed out"):
            db.query("SELECT count(*) FROM range(1000000000000) a", max_rows=None)


@pytest.mark.parametrize("suffix", [".fits", ".parquet", ".vot"])
def test_query_command_writes_files(release, tmp_path, capsys, suffix):
    out = tmp_path / f"cone{suffix}"
    repo = release["release"].parent
    assert main(["query", str(repo), "SELECT id, ra, dec, psfMag FROM objects WHERE "
                 "cone(ra, dec, 150.1, 2.2, 0.1) ORDER BY id", "--output", str(out)]) == 0
    table = Table.read(out)
    assert len(table) > 0 and table["psfMag"].unit == u.mag
    assert table["id"].tolist() == sorted(table["id"].tolist())


def test_query_command_errors(release, tmp_path, capsys):
    assert main(["query", str(tmp_path), "SELECT 1"]) == 2
    assert "no HATS catalogs" in capsys.readouterr().err
    repo = str(release["release"].parent)
    assert main(["query", repo, "SELECT nope FROM objects"]) == 2
    assert "argument SQL" in capsys.readouterr().err
    assert main(["query", repo, "--adql", "SELECT TOP 2 id FROM objects ORDER BY id"]) == 0
    assert "10000" in capsys.readouterr().out
