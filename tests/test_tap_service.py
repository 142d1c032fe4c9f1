"""hpcpipe serve: the TAP service queried with pyvo, and its page in headless Chromium.

The server runs in a thread of the test on 127.0.0.1 with a free port and is stopped at the
end; the results are checked against the HDF5 release.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from release_db_data import make_release

from hpcpipe.catalog.query import ReleaseDatabase
from hpcpipe.catalog.tap import make_app
from hpcpipe.io.release import read_release_table

pyvo = pytest.importorskip("pyvo")
uvicorn = pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    try:
        yield make_release(tmp_path_factory.mktemp("tap"), monkeypatch)
    finally:
        monkeypatch.undo()


@pytest.fixture(scope="module")
def server(release):
    database = ReleaseDatabase(release["release"] / "hats", max_rows=150, timeout=20)
    port = _free_port()
    config = uvicorn.Config(make_app(database), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the TAP server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=30)
        database.close()


@pytest.fixture(scope="module")
def hdf5_objects(release):
    return read_release_table(release["release"] / "objects" / "tract-0.h5", "objects")


def test_pyvo_cone_search_returns_the_hdf5_rows(server, hdf5_objects):
    service = pyvo.dal.TAPService(f"{server}/tap")
    result = service.search("SELECT id, ra, dec, psfMag, apFlux FROM objects WHERE "
                            "1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150.1, 2.2, "
                            "0.1)) ORDER BY id")
    table = result.to_table()
    coords = SkyCoord(np.asarray(hdf5_objects["coord_ra"]) * u.rad,
                      np.asarray(hdf5_objects["coord_dec"]) * u.rad)
    inside = coords.separation(SkyCoord(150.1 * u.deg, 2.2 * u.deg)).deg <= 0.1
    order = np.argsort(np.asarray(hdf5_objects["id"])[inside])
    assert table["id"].tolist() == np.asarray(hdf5_objects["id"])[inside][order].tolist()
    np.testing.assert_array_equal(table["psfMag"], np.asarray(hdf5_objects["psfMag"])[inside]
                                  [order])
    np.testing.assert_array_equal(table["apFlux"], np.asarray(hdf5_objects["apFlux"])[inside]
                                  [order])
    assert table["psfMag"].unit == u.mag
    assert result.fielddescs[result.fieldnames.index("ra")].ucd == "pos.eq.ra;meta.main"


def test_tap_schema_and_tables(server):
    service = pyvo.dal.TAPService(f"{server}/tap")
    columns = service.search("SELECT column_name, unit, ucd, description FROM "
                             "TAP_SCHEMA.columns WHERE table_name = 'objects'").to_table()
    by_name = {row["column_name"]: row for row in columns}
    assert by_name["psfMag"]["unit"] == "mag" and by_name["psfMag"]["ucd"] == "phot.mag"
    assert by_name["psfFlux"]["description"] == "PSF flux"
    tables = {t.name for t in service.tables}
    assert {"objects", "sources", "forced"} <= tables
    assert {c.name for c in service.tables["objects"].columns} >= {"id", "ra", "dec"}


def test_row_limit_and_maxrec(server, release):
    service = pyvo.dal.TAPService(f"{server}/tap")
    result = service.search("SELECT id FROM sources", maxrec=10)
    assert len(result) == 10 and result.query_status == "OVERFLOW"
    capped = service.search("SELECT id FROM sources")  # the service's limit: 150 rows
    assert len(capped) == 150 and capped.query_status == "OVERFLOW"
    count = service.search("SELECT COUNT(*) AS n FROM sources").to_table()
    assert count["n"][0] == release["counts"]["sources"]


@pytest.mark.parametrize("adql, message", [
    ("SELEC id FROM objects", "ADQL syntax error"),
    ("SELECT nope FROM objects", "nope"),
    ("SELECT id FROM objects; DROP TABLE objects", "one statement"),
    ("SELECT * FROM read_csv('/etc/passwd')", "ADQL syntax error"),
])
def test_bad_queries_are_reported(server, adql, message):
    service = pyvo.dal.TAPService(f"{server}/tap")
    with pytest.raises(pyvo.dal.DALQueryError, match=message):
        service.search(adql)
    assert len(service.search("SELECT TOP 1 id FROM objects")) == 1  # still serving


def test_writes_and_sql_language_are_refused(server):
    service = pyvo.dal.TAPService(f"{server}/tap")
    with pytest.raises(pyvo.dal.DALQueryError, match="only SELECT"):
        service.run_sync("COPY (SELECT 1) TO 'x.csv'", language="SQL")
    with pytest.raises(pyvo.dal.DALQueryError, match="disabled by configuration"):
        service.run_sync("SELECT * FROM read_csv('/etc/passwd')", language="SQL")
    with pytest.raises(pyvo.dal.DALQueryError, match="too long"):
        service.run_sync("SELECT " + "1 + " * 6000 + "1", language="SQL")


def test_page_in_headless_chromium(server, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium (apt-get install chromium)")
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
               "--no-first-run", "--user-data-dir=" + str(tmp_path / "profile"),
               "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
               "--virtual-time-budget=15000", "--dump-dom", f"{server}/"]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert "hpcpipe data release" in dom
    assert 'data-rows="' in dom and 'data-rows="-1"' not in dom
    rows = int(dom.split('data-rows="')[1].split('"')[0])
    assert rows > 0
    assert dom.count("<circle") == rows  # the sky plot has one point per row
    assert "<th>psfMag [mag]</th>" in dom
