"""The APDB's HEALPix index (pixel queries equal brute force) and the APDB on a real
PostgreSQL server (started here with ``initdb``/``pg_ctl`` on a Unix socket, stopped after)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS
from test_ap import sources_of_visit

from hpcpipe.ap import DIA_FORCED_SOURCE_DTYPE, DIA_OBJECT_DTYPE, Apdb, ApdbError
from hpcpipe.ap.apdb import pixel_ranges_circle
from hpcpipe.ap.association import associate_visit, unit_vectors, with_forced_stats


def random_objects(n, ra0, dec0, half_width, seed=5):
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, DIA_OBJECT_DTYPE)
    rows["diaObjectId"] = 1 + np.arange(n)
    vec = unit_vectors([ra0], [dec0])[0]
    # uniform on the cap within half_width of the centre
    cos_max = np.cos(np.radians(half_width))
    z = rng.uniform(cos_max, 1.0, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    local = np.column_stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi),
                             z])
    # rotate the pole onto the centre
    zaxis = vec
    xaxis = np.cross([0.0, 0.0, 1.0], zaxis)
    xaxis = xaxis / np.linalg.norm(xaxis) if np.linalg.norm(xaxis) > 1e-9 else np.array(
        [1.0, 0.0, 0.0])
    yaxis = np.cross(zaxis, xaxis)
    xyz = local @ np.vstack([xaxis, yaxis, zaxis])
    rows["ra"] = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0])) % 360.0
    rows["dec"] = np.degrees(np.arcsin(np.clip(xyz[:, 2], -1, 1)))
    rows["nDiaSources"] = 1
    return rows


def separation_deg(ra, dec, ra0, dec0):
    return np.degrees(np.arccos(np.clip(unit_vectors(ra, dec) @ unit_vectors([ra0], [dec0])[0],
                                        -1, 1)))


@pytest.mark.parametrize("ra0, dec0", [(150.0, 2.0), (0.05, -30.0), (80.0, 89.6)])
def test_pixel_queries_equal_brute_force(tmp_path, ra0, dec0):
    """Circles and a CCD's polygon, at ordinary places, across RA = 0 and at the pole."""
    objects = random_objects(5000, ra0, dec0, 1.0)
    with Apdb(tmp_path / "apdb.sqlite", bands=("r",), create=True) as apdb:
        apdb.store(1, [], objects, np.zeros(0, dtype=apdb.sources_of_visit(0).dtype))
        rng = np.random.default_rng(1)
        for radius in (0.01, 0.05, 0.2, 0.6):
            ra, dec = objects["ra"][rng.integers(len(objects))], objects["dec"][0]
            got = np.sort(apdb.objects_in_region(ra, dec, radius)["diaObjectId"])
            near = separation_deg(objects["ra"], objects["dec"], ra, dec) <= radius
            assert got.tolist() == np.sort(objects["diaObjectId"][near]).tolist()
            assert len(pixel_ranges_circle(ra, dec, radius)) < 200
        # a 2048x2048 CCD of 0.2 arcsec pixels centred on the field
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [ra0, dec0]
        wcs.wcs.crpix = [1024.5, 1024.5]
        wcs.wcs.cd = np.array([[-0.2, 0.05], [0.05, 0.2]]) / 3600
        xs, ys = [-0.5, 2047.5, 2047.5, -0.5], [-0.5, -0.5, 2047.5, 2047.5]
        ra_c, dec_c = wcs.all_pix2world(xs, ys, 0)
        got = apdb.objects_in_polygon(ra_c, dec_c)
        x, y = wcs.all_world2pix(objects["ra"], objects["dec"], 0)
        inside = (x >= -0.5) & (x < 2047.5) & (y >= -0.5) & (y < 2047.5)
        assert set(objects["diaObjectId"][inside].tolist()) <= set(got["diaObjectId"].tolist())
        # the pixels cover the CCD, not much more (a 1-degree cap holds all objects)
        assert len(got) < 3 * inside.sum() + 20
        assert inside.sum() > 10


# --- PostgreSQL ---------------------------------------------------------------------------
def _pg_bin() -> Path | None:
    candidates = [Path(p).parent for p in (shutil.which("pg_ctl"),) if p]
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for d in candidates:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d.resolve()
    return None


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of this test's own: a temporary data directory, a Unix socket in
    it, no TCP port; run as the ``postgres`` user when the tests run as root."""
    pytest.importorskip("psycopg")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="hpcpipe-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, sock = root / "data", root
    env = {**os.environ, "LC_ALL": "C"}

    def run(*argv: str) -> None:
        subprocess.run([*prefix, *argv], check=True, env=env, capture_output=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "apdb", "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
            "-o", f"-k {sock} -c listen_addresses='' -c fsync=off", "start")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {exc.stderr.decode()[-300:]}")
    try:
        yield f"postgresql+psycopg://apdb@/postgres?host={sock}"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                        "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_apdb(postgres_url):
    """The season of test_ap (association, light curves, forced photometry, atomic refusals)
    on PostgreSQL, and the pixel queries."""
    apdb = Apdb(postgres_url, bands=("g", "r"), create=True)
    assert "postgresql" in apdb.engine.dialect.name
    rng = np.random.default_rng(7)
    arcsec = 1 / 3600
    ra = 150.0 + np.array([0, 20, 40]) * arcsec
    dec = np.full(3, 2.0)
    for visit in range(1, 5):
        rows = sources_of_visit(visit, ra + rng.normal(0, 0.1 * arcsec, 3), dec,
                                [100.0 * visit, 50.0, 10.0], np.full(3, 5.0))
        result = associate_visit(apdb, visit, rows, radius_arcsec=1.0)
        assert result.n_new == (3 if visit == 1 else 0)
        forced = np.zeros(3, DIA_FORCED_SOURCE_DTYPE)
        forced["diaForcedSourceId"] = 100 * visit + np.arange(3)
        forced["diaObjectId"] = [1, 2, 3]
        forced["ra"], forced["dec"] = ra, dec
        forced["visit"], forced["detector"], forced["band"] = visit, 0, "r"
        forced["midpointMjdTai"] = 60000.0 + visit
        forced["timeProcessedMjdTai"] = 60000.5 + visit
        forced["psfFlux"], forced["psfFluxErr"] = 20.0 * visit, 2.0
        forced["scienceFlux"], forced["scienceFluxErr"] = np.nan, np.nan
        every = np.concatenate([apdb.forced_sources_of([1, 2, 3]), forced])
        apdb.store_forced(visit, 0, forced, with_forced_stats(apdb.objects([1, 2, 3]), every))
    objects = apdb.objects()
    assert objects["nDiaSources"].tolist() == [4, 4, 4]
    assert objects["r_psfFluxMean"][0] == pytest.approx(250.0)
    assert objects["r_fpFluxMean"][0] == pytest.approx(50.0)
    assert objects["r_psfFluxMaxSlope"][0] == pytest.approx(100.0, rel=1e-5)
    assert apdb.sources_of([1])["visit"].tolist() == [1, 2, 3, 4]
    assert apdb.forced_sources_of([2])["psfFlux"].tolist() == [20.0, 40.0, 60.0, 80.0]
    assert np.isnan(apdb.forced_sources_of([2])["scienceFlux"]).all()  # NULL back as NaN
    assert apdb.objects_in_region(150.0, 2.0, 5 * arcsec)["diaObjectId"].tolist() == [1]
    with pytest.raises(ApdbError, match="already stored"):
        associate_visit(apdb, 4, sources_of_visit(4, ra, dec, [1.0] * 3, [1.0] * 3,
                                                  first_id=9000))
    with pytest.raises(ApdbError, match="already stored"):
        apdb.store_forced(4, 0, forced)
    assert len(apdb.sources_of_visit(4)) == 3
    apdb.close()
    # reopened by URL: the same database, its bands checked
    with Apdb(postgres_url) as again:
        assert again.bands == ("g", "r") and again.visits() == [1, 2, 3, 4]
    with pytest.raises(ApdbError, match="records bands"):
        Apdb(postgres_url, bands=("r",))


def test_an_unreachable_database_is_named(tmp_path):
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://apdb@/postgres?host={tmp_path / 'no-server'}"
    with pytest.raises(ApdbError, match="no-server.*not reachable"):
        Apdb(url)
