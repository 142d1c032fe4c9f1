"""Each kind of bad input gives one error that names what was asked and what exists."""

from __future__ import annotations

import pytest

from hpcpipe.butler import (
    Butler,
    ButlerError,
    DataIdValueError,
    MissingMapperError,
    UnknownDataIdKeyError,
    UnknownDatasetTypeError,
    UnknownMapperError,
    create_repository,
    load_mapper,
)
from hpcpipe.errors import HpcpipeError
from hpcpipe.obs.simcam import SimCamMapper


@pytest.fixture
def butler(tmp_path) -> Butler:
    create_repository(tmp_path / "repo", "simcam")
    return Butler(tmp_path / "repo")


def test_unknown_dataset_type_suggests_close_matches(butler):
    with pytest.raises(UnknownDatasetTypeError) as info:
        butler.get("calexpp", visit=1, ccd=0, filter="r")
    message = str(info.value)
    assert message.startswith("unknown dataset type 'calexpp' for mapper simcam; did you mean "
                              "calexp")
    assert "deepCoadd_forced_src" in message and "<task>_config" in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, HpcpipeError)
    with pytest.raises(UnknownDatasetTypeError, match="did you mean deepCoadd_meas"):
        butler.datasetExists("deepCoad_meas", tract=0, patch="0,0", filter="r")


def test_unknown_key_lists_the_known_keys(butler):
    with pytest.raises(UnknownDataIdKeyError) as info:
        butler.get("calexp", visit=1, detector=0)
    message = str(info.value)
    assert "unknown data id key 'detector' for mapper simcam" in message
    assert "Known keys: visit, ccd, filter, date, dateObs, expTime, tract, patch, calibDate" \
        in message
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownDataIdKeyError, match="did you mean ccd"):
        butler.queryMetadata("raw", "cdd")


@pytest.mark.parametrize("keys, message", [
    ({"visit": "12"}, "data id key 'visit' takes int values (for example 12), not str '12'"),
    ({"visit": True}, "takes int values"),
    ({"visit": 1.0}, "not float 1.0"),
    ({"visit": -3}, "'visit': -3 is not of the form"),
    ({"filter": "q"}, "'filter': 'q' is not one of 'u', 'g', 'r', 'i', 'z', 'y'"),
    ({"patch": "1-2"}, "'patch': '1-2' is not of the form"),
    ({"date": "2026/01/01"}, "'date': '2026/01/01' is not of the form"),
])
def test_wrong_values_name_the_key_and_the_expected_type(butler, keys, message):
    with pytest.raises(DataIdValueError) as info:
        butler.get("calexp", {"ccd": 0, **keys})
    assert message in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_accepted_value_forms(butler):
    import numpy as np

    mapper = butler.mapper
    assert mapper.validate({"visit": np.int64(3), "expTime": 30, "patch": (1, 2)}) == {
        "visit": 3, "expTime": 30.0, "patch": "1,2"}


def test_missing_mapper_file(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(MissingMapperError) as info:
        Butler(tmp_path / "plain")
    assert f"{(tmp_path / 'plain').as_uri()} is not a repository: it has no _mapper file" \
        in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(MissingMapperError, match="no repository at .*does not exist"):
        Butler(tmp_path / "nowhere")


def test_unknown_mapper(tmp_path):
    with pytest.raises(UnknownMapperError, match="unknown mapper 'hsc'.*simcam"):
        load_mapper("hsc")
    # names found in a repository are never imported as dotted paths
    with pytest.raises(UnknownMapperError, match="unknown mapper 'hpcpipe.obs.simcam.SimCam"):
        load_mapper("hpcpipe.obs.simcam.SimCamMapper")
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "_mapper").write_text("hsc\n")
    with pytest.raises(UnknownMapperError):
        Butler(tmp_path / "repo")


def test_every_error_is_a_butler_error():
    import hpcpipe.butler.errors as errors

    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, ButlerError) and issubclass(obj, HpcpipeError)


def test_task_metadata_keys_follow_the_task_unit():
    class MyMapper(SimCamMapper):
        pass

    MyMapper.register_task("myTask", ("visit",))
    mapper = MyMapper()
    assert mapper.dataset_type("myTask_metadata").keys == ("visit",)
    assert mapper.dataset_type("processCcd_metadata").keys == ("visit", "ccd")
    # unknown tasks: the unit follows the data id; SimCamMapper itself is left alone
    plain = SimCamMapper()
    assert "myTask" not in plain.task_units
    assert plain.dataset_type("myTask_metadata", {"visit": 1, "ccd": 2}).keys == ("visit",
                                                                                  "ccd")
    assert plain.dataset_type("myTask_metadata", {"tract": 1, "patch": "0,0",
                                                  "filter": "r"}).keys == ("tract", "patch",
                                                                           "filter")
    assert plain.dataset_type("myTask_config").template.text == "config/myTask.yaml"
    with pytest.raises(UnknownDatasetTypeError):
        plain.dataset_type("1bad_config")
