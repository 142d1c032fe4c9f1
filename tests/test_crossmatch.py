"""hpcpipe crossmatch: a user catalog (hats-import) matched with the release (LSDB on Dask)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from release_db_data import make_release

from hpcpipe.catalog.crossmatch import CrossmatchError, crossmatch_release
from hpcpipe.io.release import read_release_table

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    try:
        yield make_release(tmp_path_factory.mktemp("xmatch"), monkeypatch)
    finally:
        monkeypatch.undo()


@pytest.fixture(scope="module")
def user_file(release, tmp_path_factory):
    """40 objects of the release, moved by 0.3 arcsec, plus 10 positions far from any."""
    objects = read_release_table(release["release"] / "objects" / "tract-0.h5", "objects")
    rng = np.random.default_rng(5)
    pick = rng.choice(len(objects), 40, replace=False)
    ra = np.degrees(np.asarray(objects["coord_ra"])[pick]) + rng.normal(0, 0.2, 40) / 3600
    dec = np.degrees(np.asarray(objects["coord_dec"])[pick]) + rng.normal(0, 0.2, 40) / 3600
    ra = np.concatenate([ra, rng.uniform(200, 201, 10)])
    dec = np.concatenate([dec, rng.uniform(-10, -9, 10)])
    path = tmp_path_factory.mktemp("user") / "mine.csv"
    Table({"my_id": np.arange(50), "ra": ra, "dec": dec}).write(path)
    return path


def _expected(release, user_file, radius):
    objects = read_release_table(release["release"] / "objects" / "tract-0.h5", "objects")
    user = Table.read(user_file)
    mine = SkyCoord(user["ra"] * u.deg, user["dec"] * u.deg)
    theirs = SkyCoord(np.asarray(objects["coord_ra"]) * u.rad,
                      np.asarray(objects["coord_dec"]) * u.rad)
    index, sep, _ = mine.match_to_catalog_sky(theirs)
    ok = sep.arcsec <= radius
    return dict(zip(np.asarray(user["my_id"])[ok].tolist(),
                    np.asarray(objects["id"])[index[ok]].tolist()))


def test_crossmatch_matches_astropy(release, user_file, tmp_path):
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        count = crossmatch_release(release["release"] / "hats", user_file,
                                   tmp_path / "m.parquet", client, radius_arcsec=1.0)
    matches = Table.read(tmp_path / "m.parquet")
    expected = _expected(release, user_file, 1.0)
    assert count == len(matches) == len(expected) == 40
    assert dict(zip(matches["my_id_user"].tolist(), matches["id_release"].tolist())) == expected
    assert np.all(matches["_dist_arcsec"] <= 1.0)


def test_bad_user_catalogs(release, user_file, tmp_path):
    hats_dir = release["release"] / "hats"
    with pytest.raises(CrossmatchError, match="no column 'RA'"):
        crossmatch_release(hats_dir, user_file, tmp_path / "m.parquet", None, ra_column="RA")
    with pytest.raises(CrossmatchError, match="no such file"):
        crossmatch_release(hats_dir, tmp_path / "none.csv", tmp_path / "m.parquet", None)
    with pytest.raises(CrossmatchError, match="must be .parquet or .fits"):
        crossmatch_release(hats_dir, user_file, tmp_path / "m.txt", None)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun")
def test_crossmatch_on_dask_mpi(release, user_file, tmp_path):
    """``hpcpipe crossmatch --dask-mpi`` under mpirun -n 3: scheduler, client, one worker."""
    out = tmp_path / "m.fits"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    env.pop("HPCPIPE_NO_MPI", None)
    command = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", "3", sys.executable,
               "-m", "hpcpipe", "crossmatch", str(release["release"].parent), str(user_file),
               "--output", str(out), "--dask-mpi", "--interface", "lo", "--radius", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "40 matches within 1 arcsec" in done.stdout
    matches = Table.read(out)
    assert dict(zip(matches["my_id_user"].tolist(), matches["id_release"].tolist())) == \
        _expected(release, user_file, 1.0)
