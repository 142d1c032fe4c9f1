"""The release as HATS catalogs: the same rows as the HDF5 release, read back by hats and LSDB."""

from __future__ import annotations

import os
from pathlib import Path

import cdshealpix
import hats
import lsdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import Latitude, Longitude
from astropy.table import Table
from mpi_helpers import on_root, shared_dir
from release_db_data import PIXEL_THRESHOLD, make_release

from hpcpipe.catalog.columns import field_metadata
from hpcpipe.catalog.hats_write import HatsWriteError, write_hats_catalog
from hpcpipe.cli import main
from hpcpipe.comm.world import World
from hpcpipe.drivers.release_hats import convert_release
from hpcpipe.io.release import read_release_table


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    try:
        yield make_release(tmp_path_factory.mktemp("hats"), monkeypatch)
    finally:
        monkeypatch.undo()


def _hdf5_rows(release_dir: Path, name: str) -> dict[int, dict]:
    rows = {}
    for path in sorted((release_dir / name).glob("*.h5")):
        cat = read_release_table(path, name)
        band = path.stem.split("-")[2] if name == "forced" else None
        for k in range(len(cat)):
            key = (int(cat["id"][k]), band)
            assert key not in rows
            rows[key] = {"ra": np.degrees(cat["coord_ra"][k]), "psfFlux": cat["psfFlux"][k],
                         "apFlux": cat["apFlux"][k], "flag_edge": bool(cat["flag_edge"][k])}
    return rows


@pytest.mark.parametrize("name", ["objects", "sources", "forced"])
def test_hats_has_the_hdf5_rows(release, name):
    expected = _hdf5_rows(release["release"], name)
    assert len(expected) == release["counts"][name]
    collection = release["release"] / "hats" / name
    catalog = hats.read_hats(collection)  # the hats library opens the collection
    assert catalog.main_catalog.catalog_info.total_rows == len(expected)
    frame = lsdb.read_hats(collection).compute()  # and LSDB reads its rows
    assert len(frame) == len(expected)
    assert frame.index.name == "_healpix_29"
    got = set()
    for row in frame.itertuples():
        key = (int(row.id), getattr(row, "filter", None))
        want = expected[key]
        assert row.ra == pytest.approx(want["ra"] % 360, abs=1e-9)
        assert row.psfFlux == want["psfFlux"] and row.flag_edge == want["flag_edge"]
        np.testing.assert_array_equal(np.asarray(row.apFlux), want["apFlux"])
        got.add(key)
    assert got == set(expected)
    # the index is the NESTED order-29 HEALPix pixel of the position
    ipix = cdshealpix.nested.lonlat_to_healpix(Longitude(frame["ra"].to_numpy(), u.deg),
                                              Latitude(frame["dec"].to_numpy(), u.deg), 29)
    np.testing.assert_array_equal(frame.index.to_numpy(), ipix)
    # adaptive partitions: several pixels, none above the threshold
    info = catalog.main_catalog.partition_info
    assert len(info) > 1
    assert catalog.main_catalog.catalog_info.hats_max_rows <= PIXEL_THRESHOLD


def test_margins_hold_the_neighbours(release):
    collection = release["release"] / "hats" / "objects"
    catalog = lsdb.read_hats(collection)
    assert catalog.margin is not None and catalog.margin.hc_structure.catalog_info.\
        margin_threshold == 30.0
    frame = catalog.compute()
    margin = catalog.margin.compute()
    ra, dec = frame["ra"].to_numpy(), frame["dec"].to_numpy()
    for pixel in catalog.get_healpix_pixels():
        inside = (frame.index.to_numpy() >> 2 * (29 - pixel.order)) == pixel.pixel
        in_margin = set(catalog.margin.get_partition(pixel.order, pixel.pixel)
                        .compute()["id"]) if pixel in catalog.margin.get_healpix_pixels() \
            else set()
        near = set()
        for k in np.flatnonzero(~inside):  # rows of other pixels within 10 arcsec of this one
            cells = cdshealpix.nested.cone_search(Longitude(ra[k], u.deg), Latitude(dec[k], u.deg),
                                                  10 * u.arcsec, pixel.order, flat=True)[0]
            if pixel.pixel in cells:
                near.add(int(frame["id"].iloc[k]))
        assert near <= in_margin
        assert not in_margin & set(frame["id"][inside])
    assert len(margin) > 0


def test_units_ucds_descriptions_in_parquet(release):
    dataset = release["release"] / "hats" / "objects" / "objects" / "dataset"
    schema = pq.read_schema(dataset / "_common_metadata")
    field = schema.field("psfFlux")
    assert field.metadata[b"unit"] == b"nJy" and field.metadata[b"ucd"] == b"phot.flux"
    assert field.metadata[b"description"] == b"PSF flux"
    assert b"IVOA.VOTable-Parquet.content" in schema.metadata
    first = sorted(dataset.glob("Norder=*/Dir=*/Npix=*.parquet"))[0]
    table = Table.read(first, format="parquet.votable")  # astropy sees units and descriptions
    assert table["psfMag"].unit == u.mag and table["ra"].unit == u.deg
    assert table["psfFluxErr"].description == "PSF flux uncertainty"


def test_convert_gives_the_same_catalogs(release, tmp_path):
    results = convert_release(release["release"], tmp_path / "hats",
                              pixel_threshold=PIXEL_THRESHOLD, highest_order=9,
                              margin_arcsec=30.0)
    for name in ("objects", "sources", "forced"):
        assert results[name]["rows"] == release["counts"][name]
        assert results[name]["pixels"] == release["results"][name]["pixels"]
        a = pq.read_table(release["release"] / "hats" / name / name / "dataset")
        b = pq.read_table(tmp_path / "hats" / name / name / "dataset")
        keys = [("_healpix_29", "ascending"), ("id", "ascending")]
        assert a.schema.remove_metadata() == b.schema.remove_metadata()
        assert a.sort_by(keys).equals(b.sort_by(keys))


def test_release_convert_command(release, tmp_path, capsys):
    out = tmp_path / "h"
    assert main(["release-convert", str(release["release"]), "--output", str(out),
                 "--pixel-threshold", "1000"]) == 0
    assert f"objects: {release['counts']['objects']} rows" in capsys.readouterr().out
    assert (out / "objects" / "collection.properties").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]
    assert main(["release-convert", str(tmp_path / "nowhere")]) == 2
    assert "no release catalog files" in capsys.readouterr().err
    assert main(["release-convert", str(release["release"]), "--pixel-threshold", "0"]) == 2
    assert main(["release-convert", str(release["release"]), "--output", str(tmp_path / "b"),
                 "--pixel-threshold", "10"]) == 2
    assert "more than the pixel threshold 10" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_bad_positions_are_refused(tmp_path):
    table = pa.table({"ra": [1.0, np.nan], "dec": [0.0, 0.0]})
    with pytest.raises(HatsWriteError, match="non-finite"):
        write_hats_catalog(table, tmp_path / "x", "x")
    with pytest.raises(HatsWriteError, match="no column 'ra'"):
        write_hats_catalog(pa.table({"a": [1.0]}), tmp_path / "x", "x")
    assert not list(tmp_path.iterdir())


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("exchange_bytes", [1 << 28, 1000])  # 1000: many exchange rounds
def test_mpi_ranks_write_their_pixels(tmp_path_factory, monkeypatch, exchange_bytes):
    from hpcpipe.catalog import hats_write

    monkeypatch.setattr(hats_write, "EXCHANGE_BYTES", exchange_bytes)
    world = World()
    root = Path(shared_dir(world, tmp_path_factory, "hatsmpi"))
    rng = np.random.default_rng(world.rank)
    n = 500 * (world.rank + 1) if world.rank != 1 else 0  # rank 1 has no rows
    meta = field_metadata("deg", "pos.eq.ra", "ra")
    table = pa.table({"id": world.rank * 100_000 + np.arange(n),
                      "ra": rng.uniform(10, 12, n), "dec": rng.uniform(-1, 1, n)})
    table = table.cast(pa.schema([table.schema.field(0), table.schema.field(1)
                                  .with_metadata(meta), table.schema.field(2)]))
    result = write_hats_catalog(table, root / "cat", "cat", world, pixel_threshold=200,
                                margin_arcsec=20.0)
    everything = world.allgather(table.to_pandas())

    def check() -> None:
        frame = lsdb.read_hats(root / "cat").compute()
        ids = np.sort(np.concatenate([f["id"].to_numpy() for f in everything]))
        np.testing.assert_array_equal(np.sort(frame["id"].to_numpy()), ids)
        assert result["rows"] == len(ids) and len(result["pixels"]) > 3

    on_root(world, check)


def _production_with_raws(tmp_path, monkeypatch) -> dict[str, int]:
    """A finished production under ``tmp_path/repo`` whose raws the butler lists (the rows of
    ``release_db_data``); returns its row counts."""
    from release_db_data import CCDS, VISITS, make_production

    from hpcpipe.butler import Butler

    _, counts = make_production(tmp_path)
    rows = [(v, c) for v in VISITS for c in CCDS]

    def query(self, dataset_type, keys, data_id=None, **kw):  # noqa: ANN001
        return rows if keys == ["visit", "ccd"] else sorted(set(VISITS.values()))

    monkeypatch.setattr(Butler, "queryMetadata", query)
    return counts


def test_release_command_format_both(tmp_path, monkeypatch, capsys):
    counts = _production_with_raws(tmp_path, monkeypatch)
    repo = tmp_path / "repo"
    assert main(["release", str(repo), "--format", "both", "--pixel-threshold", "1000"]) == 0
    out = capsys.readouterr().out
    assert f"objects: {counts['objects']} rows" in out and "visit-1000.h5" in out
    assert (repo / "release" / "objects" / "tract-0.h5").exists()
    frame = lsdb.read_hats(repo / "release" / "hats" / "sources").compute()
    assert len(frame) == counts["sources"]
    assert main(["release", str(repo), "--format", "hats", "--margin-arcsec", "0"]) == 2
    assert "--margin-arcsec" in capsys.readouterr().err


def test_each_release_command_publishes_one_generation(tmp_path, monkeypatch, capsys):
    """``--format hdf5`` keeps the published HATS catalogs, ``--format hats`` and
    ``release-convert`` keep the published HDF5 files; each run is switched in whole and the
    printed paths are the ones readers use."""
    from hpcpipe.butler import Butler
    from hpcpipe.io.generation import published_generation

    counts = _production_with_raws(tmp_path, monkeypatch)
    repo = tmp_path / "repo"
    release = repo / "release"
    assert main(["release", str(repo), "--format", "hats", "--pixel-threshold", "1000"]) == 0
    assert f"{release}/hats" in capsys.readouterr().out
    hats_only = published_generation(release)
    assert (release / "hats" / "objects").is_dir() and not (release / "objects").exists()
    assert main(["release", str(repo)]) == 0  # hdf5: the HATS catalogs stay
    out = capsys.readouterr().out
    assert f"{release}/objects/tract-0.h5: {counts['objects']} rows" in out
    assert published_generation(release) != hats_only and not hats_only.exists()
    assert len(lsdb.read_hats(release / "hats" / "sources").compute()) == counts["sources"]
    assert len(Butler(repo).get("release_objects", tract=0)) == counts["objects"]
    kept = os.stat(release / "objects" / "tract-0.h5").st_ino
    assert main(["release-convert", str(release), "--pixel-threshold", "500"]) == 0
    assert os.stat(release / "objects" / "tract-0.h5").st_ino == kept  # linked, not rewritten
    assert len(lsdb.read_hats(release / "hats" / "objects").compute()) == counts["objects"]
    generations = list(release.with_name("release-runs").iterdir())
    assert generations == [published_generation(release)]
    # a generation directory is not a release to convert in place
    assert main(["release-convert", str(generations[0])]) == 2
    assert "generation" in capsys.readouterr().err
