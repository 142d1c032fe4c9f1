"""The butler's Gen2 interface on the simcam mapper: get/put, partial ids, rendezvous, chains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hpcpipe.butler import (
    AmbiguousDataIdError,
    Butler,
    ButlerDataRef,
    DatasetObjectTypeError,
    IncompleteDataIdError,
    NoSuchDatasetError,
    RepositoryError,
    create_repository,
    ingest,
)
from hpcpipe.config import Config, Field, ListField, StoredConfig
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure
from hpcpipe.obs.simcam import calib_header, raw_header
from hpcpipe.obs.simcam.mapper import SIMCAM_FILE
from hpcpipe.table import Catalog, Schema

# visit: (filter, start of exposure); each visit has CCDs 0 and 1
VISITS = {
    1: ("r", "2026-01-10T01:00:00"),
    2: ("g", "2026-01-20T02:00:00"),
    3: ("r", "2026-02-15T03:00:00"),
    4: ("r", "2026-02-02T04:00:00"),
}
CCDS = (0, 1)
# flats: (calibDate, validStart, validEnd) -- "" means the default (calibDate -/+ 30 days)
FLATS = [("2026-01-05", "", ""), ("2026-02-10", "2026-02-01", "2026-02-28")]


def write_exposure(path: Path, cards: dict, value: float) -> Path:
    exposure = Exposure(Box2I(0, 0, 4, 4))
    exposure.image.array[:] = value
    exposure.metadata.update(cards)
    exposure.write(path)
    return path


def raw_value(visit: int, ccd: int) -> float:
    return 100.0 * visit + ccd


def flat_value(calib_date: str, filter: str, ccd: int) -> float:
    return float(calib_date.replace("-", "")) + {"r": 0.5, "g": 0.25}[filter] + 10 * ccd


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A repository with raw files of 4 visits x 2 CCDs, flats in r and g, and a bias."""
    inputs = tmp_path_factory.mktemp("inputs")
    files = []
    for visit, (band, date_obs) in VISITS.items():
        for ccd in CCDS:
            files.append(write_exposure(inputs / f"raw-{visit}-{ccd}.fits",
                                        raw_header(visit, ccd, band, date_obs, 30.0),
                                        raw_value(visit, ccd)))
    for ccd in CCDS:
        for band in ("r", "g"):
            for calib_date, start, end in FLATS:
                files.append(write_exposure(
                    inputs / f"flat-{band}-{calib_date}-{ccd}.fits",
                    calib_header("flat", ccd, calib_date, start, end, filter=band),
                    flat_value(calib_date, band, ccd)))
        files.append(write_exposure(inputs / f"bias-{ccd}.fits",
                                    calib_header("bias", ccd, "2026-01-01", "2025-12-01",
                                                 "2026-12-31"), -ccd))
    root = tmp_path_factory.mktemp("repo")
    create_repository(root, "simcam")
    report = ingest(root, files)
    assert report.ok, report.summary()
    return root


@pytest.fixture
def butler(base, tmp_path) -> Butler:
    """A butler writing into a fresh output repository whose parent is ``base``."""
    return Butler(base, outputs=tmp_path / "rerun")


def exposure(value: float) -> Exposure:
    exp = Exposure(Box2I(0, 0, 4, 4))
    exp.image.array[:] = value
    return exp


def catalog(n: int) -> Catalog:
    schema = Schema.minimal()
    schema.add_field("flux", "D", doc="flux", units="count")
    return Catalog.from_columns(schema, {"id": np.arange(n), "coord_ra": np.zeros(n),
                                         "coord_dec": np.zeros(n), "flux": np.arange(n) * 1.5})


# --- get and put -----------------------------------------------------------------------------
def test_get_raw_with_complete_and_partial_ids(butler):
    full = butler.get("raw", visit=2, ccd=1, filter="g")
    assert full.image.array[0, 0] == raw_value(2, 1)
    partial = butler.get("raw", {"visit": 2}, ccd=1)  # filter completed from the registry
    assert partial == full


def test_partial_id_through_other_registry_keys(butler):
    exp = butler.get("raw", date="2026-02-15", ccd=0)  # the date picks visit 3
    assert exp.image.array[0, 0] == raw_value(3, 0)


def test_ambiguous_partial_id_lists_the_candidates(butler):
    with pytest.raises(AmbiguousDataIdError) as info:
        butler.get("raw", visit=1)
    message = str(info.value)
    assert "{visit=1}" in message and "2 datasets" in message
    assert "ccd=0" in message and "ccd=1" in message
    assert info.value.candidates == [{"visit": 1, "filter": "r", "ccd": 0},
                                     {"visit": 1, "filter": "r", "ccd": 1}]
    with pytest.raises(AmbiguousDataIdError, match="4 datasets"):
        butler.get("raw", ccd=0)
    with pytest.raises(AmbiguousDataIdError, match="3 datasets"):  # visits 1, 3 and 4
        butler.get("raw", filter="r", ccd=0)


def test_put_then_get_every_kind_of_dataset(butler):
    butler.put(exposure(5.0), "calexp", visit=1, ccd=0)
    assert butler.get("calexp", visit=1, ccd=0).image.array[0, 0] == 5.0
    butler.put(exposure(6.0), "calexpBackground", visit=1, ccd=0)  # HDF5 exposure
    assert butler.get("calexpBackground", visit=1, ccd=0).image.array[0, 0] == 6.0
    cat = catalog(5)
    butler.put(cat, "src", visit=1, ccd=0)
    assert butler.get("src", visit=1, ccd=0).equals(cat)
    butler.put(cat, "srcMatch", visit=1, ccd=0)  # HDF5 catalog
    assert butler.get("srcMatch", visit=1, ccd=0).equals(cat)
    butler.put(cat.schema, "src_schema")
    schema_cat = butler.get("src_schema")
    assert len(schema_cat) == 0 and schema_cat.schema == cat.schema
    butler.put(cat.schema.to_dict(), "icSrc_schema")
    assert butler.get("icSrc_schema").schema == cat.schema
    butler.put({"threshold": 5.0, "planes": ["BAD", "SAT"]}, "processCcd_config")
    assert butler.get("processCcd_config") == {"threshold": 5.0, "planes": ["BAD", "SAT"]}
    butler.put({"nsources": np.int64(12), "time": np.float32(1.5)}, "processCcd_metadata",
               visit=1, ccd=0)
    assert butler.get("processCcd_metadata", visit=1, ccd=0) == {"nsources": 12, "time": 1.5}


class StoredTestConfig(Config):
    """A config stored by the butler."""

    threshold = Field("threshold", float, default=5.0)
    planes = ListField("planes", str, default=["BAD"])
    limit = Field("a limit", float, default=float("nan"))


def test_task_configs_are_stored_as_data(butler):
    config = StoredTestConfig()
    config.threshold = 3.5
    butler.put(config, "myTask_config")
    assert butler.getUri("myTask_config").endswith("/config/myTask.yaml")
    back = butler.get("myTask_config")
    assert isinstance(back, StoredConfig)
    assert back.threshold == 3.5 and back.planes == ["BAD"]
    assert back.config_class.endswith("StoredTestConfig")
    assert back.differences(config) == []  # NaN equals NaN
    config.planes.append("SAT")
    (difference,) = back.differences(config)
    assert difference.name == "planes" and difference.other == ["BAD"]
    butler.put("config.x = 1\n", "otherTask_config")  # a str is data as well
    assert butler.get("otherTask_config") == "config.x = 1\n"
    with pytest.raises(DatasetObjectTypeError, match="Config, a mapping or a str"):
        butler.put(object(), "thirdTask_config")


def test_yaml_and_json_formatters(tmp_path):
    from hpcpipe.butler.formatters import MetadataFormatter, YamlConfigFormatter
    from hpcpipe.skymap import SkyMapConfig

    yaml_config = YamlConfigFormatter()
    for obj in ({"a": 1, "b": [1.5, "x"]}, SkyMapConfig()):
        path = tmp_path / f"{type(obj).__name__}.yaml"
        yaml_config.check(obj, "test_config")
        yaml_config.write(obj, path)
        assert yaml_config.read(path) == obj
    json_metadata = MetadataFormatter("json")
    json_metadata.write({"n": np.int32(3), "t": (1, 2)}, tmp_path / "m.json")
    assert json_metadata.read(tmp_path / "m.json") == {"n": 3, "t": [1, 2]}
    with pytest.raises(DatasetObjectTypeError, match="x_metadata stores dict"):
        json_metadata.check([1, 2], "x_metadata")


def test_sky_map_and_coadds(butler):
    from hpcpipe.skymap import DiscreteSkyMap

    skymap = DiscreteSkyMap([150.0], [2.0], [0.5])
    butler.put(skymap, "skyMap")
    assert butler.get("skyMap") == skymap
    assert butler.get("deepCoadd_skyMap") == skymap  # the Gen2 name is an alias
    butler.put(exposure(1.0), "deepCoadd", tract=0, patch=(1, 2), filter="r")
    assert butler.get("deepCoadd", tract=0, patch="1,2", filter="r").image.array[0, 0] == 1.0
    butler.put(exposure(2.0), "coaddTempExp", tract=0, patch="1,2", visit=1)  # filter looked up
    warp = butler.get("deepCoadd_directWarp", tract=0, patch="1,2", visit=1, filter="r")
    assert warp.image.array[0, 0] == 2.0
    # coadd keys are completed from the files that exist
    assert butler.get("deepCoadd", tract=0, filter="r").image.array[0, 0] == 1.0
    butler.put(exposure(3.0), "deepCoadd", tract=0, patch="0,0", filter="r")
    with pytest.raises(AmbiguousDataIdError, match="patch='0,0'.*patch='1,2'"):
        butler.get("deepCoadd", tract=0, filter="r")
    assert butler.queryMetadata("deepCoadd", "patch", tract=0) == ["0,0", "1,2"]
    # warps list the visits that were warped, not every registered visit
    assert butler.queryMetadata("coaddTempExp", "visit", tract=0, patch="1,2") == [1]
    assert [r.dataId for r in butler.subset("deepCoadd_directWarp", tract=0)] == [
        {"tract": 0, "filter": "r", "patch": "1,2", "visit": 1}]


def test_put_checks_the_object_type_before_writing(butler):
    with pytest.raises(DatasetObjectTypeError, match="calexp stores hpcpipe.image.Exposure"):
        butler.put(catalog(2), "calexp", visit=1, ccd=0)
    assert not butler.datasetExists("calexp", visit=1, ccd=0)


def test_put_with_an_id_nothing_completes(butler):
    with pytest.raises(IncompleteDataIdError, match="lacks.*ccd"):
        butler.put(exposure(1.0), "calexp", visit=99)


def test_dataset_exists(butler):
    assert butler.datasetExists("raw", visit=1, ccd=0)
    assert not butler.datasetExists("calexp", visit=1, ccd=0)
    assert not butler.datasetExists("raw", visit=99, ccd=0)  # no registry entry
    with pytest.raises(AmbiguousDataIdError):
        butler.datasetExists("raw", visit=1)


# --- calibrations ------------------------------------------------------------------------------
@pytest.mark.parametrize("visit, calib_date", [
    (1, "2026-01-05"),   # 2026-01-10: only the January flat is valid
    (3, "2026-02-10"),   # 2026-02-15: January's validity (to 02-04) is over
    (4, "2026-02-10"),   # 2026-02-02: both valid, February's is nearer
])
def test_flat_rendezvous_by_date(butler, visit, calib_date):
    band = VISITS[visit][0]
    for ccd in CCDS:
        flat = butler.get("flat", visit=visit, ccd=ccd)
        assert flat.image.array[0, 0] == flat_value(calib_date, band, ccd)


def test_flat_rendezvous_follows_the_filter(butler):
    flat = butler.get("flat", visit=2, ccd=1)  # visit 2 is in g
    assert flat.image.array[0, 0] == flat_value("2026-01-05", "g", 1)


def test_flat_by_its_own_id_and_by_date(butler):
    by_id = butler.get("flat", calibDate="2026-02-10", ccd=0, filter="r")
    assert by_id.image.array[0, 0] == flat_value("2026-02-10", "r", 0)
    by_date = butler.get("flat", date="2026-02-20", ccd=0, filter="r")
    assert by_date == by_id


def test_bias_ignores_the_filter(butler):
    assert butler.get("bias", visit=2, ccd=1).image.array[0, 0] == -1


def test_no_valid_calibration_names_the_date_and_the_validity_ranges(butler):
    with pytest.raises(NoSuchDatasetError) as info:
        butler.get("flat", date="2026-06-01", ccd=0, filter="r")
    message = str(info.value)
    assert "no flat is valid on 2026-06-01" in message
    assert "valid 2026-02-01..2026-02-28" in message and "valid 2025-12-06..2026-02-04" in message


def test_data_ref_works_across_dataset_types(butler):
    refs = butler.subset("raw", visit=1)
    assert [r.dataId["ccd"] for r in refs] == [0, 1]
    assert refs[0].dataId["date"] == "2026-01-10" and refs[0].dataId["expTime"] == 30.0
    for ref in refs:
        raw = ref.get()
        flat = ref.get("flat")
        ref.put(exposure(float(raw.image.array[0, 0] / flat.image.array[0, 0])), "calexp")
        ref.put(catalog(3), "src")
        assert ref.datasetExists("calexp") and ref.datasetExists("src")
    assert butler.get("calexp", visit=1, ccd=1).image.array[0, 0] == pytest.approx(
        raw_value(1, 1) / flat_value("2026-01-05", "r", 1))


def test_subset_and_data_ref(butler):
    assert len(butler.subset("raw")) == 8
    assert [r.dataId["visit"] for r in butler.subset("calexp", filter="r", ccd=0)] == [1, 3, 4]
    flats = butler.subset("flat", filter="g")
    assert sorted((r.dataId["calibDate"], r.dataId["ccd"]) for r in flats) == [
        ("2026-01-05", 0), ("2026-01-05", 1), ("2026-02-10", 0), ("2026-02-10", 1)]
    per_exposure = butler.subset("flat", visit=3)
    assert {r.dataId["calibDate"] for r in per_exposure} == {"2026-02-10"}
    assert butler.subset("raw", visit=99) == []
    ref = butler.dataRef("raw", visit=2, ccd=0)
    assert isinstance(ref, ButlerDataRef) and ref.dataId["filter"] == "g"
    with pytest.raises(AmbiguousDataIdError):
        butler.dataRef("raw", visit=2)


def test_query_metadata(butler):
    assert butler.queryMetadata("raw", "visit") == [1, 2, 3, 4]
    assert butler.queryMetadata("raw", "visit", filter="r") == [1, 3, 4]
    assert butler.queryMetadata("calexp", ["visit", "filter"], {"ccd": 0}) == [
        (1, "r"), (2, "g"), (3, "r"), (4, "r")]
    assert butler.queryMetadata("raw", "date", visit=4) == ["2026-02-02"]
    assert butler.queryMetadata("flat", "calibDate", filter="r", ccd=0) == [
        "2026-01-05", "2026-02-10"]


def test_get_keys(butler):
    assert butler.getKeys("calexp") == {"visit": int, "filter": str, "ccd": int}
    assert butler.getKeys()["patch"] is str


# --- chains ----------------------------------------------------------------------------------
def test_chain_three_deep_shadowing_and_writes_to_the_child_only(base, tmp_path):
    first = Butler(base, outputs=tmp_path / "one")
    first.put(exposure(1.0), "calexp", visit=1, ccd=0)
    first.put(exposure(1.0), "calexp", visit=1, ccd=1)
    second = Butler(tmp_path / "one", outputs=tmp_path / "two")
    second.put(exposure(2.0), "calexp", visit=1, ccd=1)  # shadows the first's
    third = Butler(tmp_path / "two", outputs=tmp_path / "three")
    third.put(catalog(4), "src", visit=1, ccd=0)

    assert [r.uri for r in third.chain] == [
        (tmp_path / "three").as_uri(), (tmp_path / "two").as_uri(), (tmp_path / "one").as_uri(),
        base.as_uri()]
    assert third.get("raw", visit=1, ccd=0).image.array[0, 0] == raw_value(1, 0)  # 3 levels up
    assert third.get("flat", visit=1, ccd=0) is not None  # calibration registry 3 levels up
    assert third.get("calexp", visit=1, ccd=0).image.array[0, 0] == 1.0  # from "one"
    assert third.get("calexp", visit=1, ccd=1).image.array[0, 0] == 2.0  # "two" shadows "one"
    assert first.get("calexp", visit=1, ccd=1).image.array[0, 0] == 1.0  # parents unchanged
    assert third.getUri("calexp", visit=1, ccd=1).startswith((tmp_path / "two").as_uri())
    # each write went to its own child only
    assert not list((tmp_path / "two").rglob("src_*.fits"))
    assert len(list((tmp_path / "three").rglob("src_*.fits"))) == 1
    assert not list(base.rglob("calexp_*"))
    # a butler on the deepest repository alone finds the whole chain again
    again = Butler(tmp_path / "three")
    assert again.get("calexp", visit=1, ccd=1).image.array[0, 0] == 2.0
    assert again.queryMetadata("raw", "visit") == [1, 2, 3, 4]


def test_no_such_dataset_names_type_id_and_every_repository(base, tmp_path):
    Butler(base, outputs=tmp_path / "one")
    butler = Butler(tmp_path / "one", outputs=tmp_path / "two")
    with pytest.raises(NoSuchDatasetError) as info:
        butler.get("calexp", visit=2, ccd=1)
    message = str(info.value)
    assert "no calexp dataset for data id {visit=2, filter='g', ccd=1}" in message
    for repo in (tmp_path / "two", tmp_path / "one", base):
        assert repo.as_uri() in message
    assert info.value.searched == [(tmp_path / "two").as_uri(), (tmp_path / "one").as_uri(),
                                   base.as_uri()]


def test_output_records_its_parent_relatively(base, tmp_path):
    Butler(base, outputs=tmp_path / "out")
    text = (tmp_path / "out" / "repositoryCfg.yaml").read_text()
    assert "parents" in text and "simcam" in text
    assert (tmp_path / "out" / "_mapper").read_text().strip() == "simcam"


def test_existing_output_must_read_through_the_input(base, tmp_path):
    other = create_repository(tmp_path / "other", "simcam")
    Butler(other.uri, outputs=tmp_path / "out")
    with pytest.raises(RepositoryError, match="does not read through"):
        Butler(base, outputs=tmp_path / "out")


def test_file_urls_and_several_parents(base, tmp_path):
    # a repository storing SimCam's description reads through with one naming it
    calibs = create_repository(tmp_path / "extra", description=SIMCAM_FILE.read_text())
    assert (tmp_path / "extra" / "_camera.yaml").read_text() == SIMCAM_FILE.read_text()
    Butler(calibs).put(exposure(9.0), "calexp", visit=2, ccd=0, filter="g")  # no registry
    child = create_repository(tmp_path / "child", "simcam", parents=[base.as_uri(), calibs])
    butler = Butler(child.uri)  # a file:// URL
    assert butler.get("calexp", visit=2, ccd=0).image.array[0, 0] == 9.0
    assert butler.get("raw", visit=2, ccd=0).image.array[0, 0] == raw_value(2, 0)


def test_chain_loop_is_an_error(tmp_path):
    import yaml

    create_repository(tmp_path / "a", "simcam")
    create_repository(tmp_path / "b", "simcam", parents=[tmp_path / "a"])
    (tmp_path / "a" / "repositoryCfg.yaml").write_text(
        yaml.safe_dump({"mapper": "simcam", "parents": ["../b"]}))
    with pytest.raises(RepositoryError, match="loops"):
        Butler(tmp_path / "b")
