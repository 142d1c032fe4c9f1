"""The --id grammar: ranges, strides, alternatives, cross products, unions and errors."""

from __future__ import annotations

import pytest

import hpcpipe.task
from hpcpipe.errors import HpcpipeError
from hpcpipe.task.dataid import DataIdError, expand_data_ids, parse_data_id


@pytest.mark.parametrize("strings, expected", [
    (["visit=1"], [{"visit": 1}]),
    (["visit=1..3"], [{"visit": 1}, {"visit": 2}, {"visit": 3}]),
    (["visit=1..9:4"], [{"visit": 1}, {"visit": 5}, {"visit": 9}]),
    (["visit=1..8:4"], [{"visit": 1}, {"visit": 5}]),
    (["visit=3..3"], [{"visit": 3}]),
    (["ccd=-1..1"], [{"ccd": -1}, {"ccd": 0}, {"ccd": 1}]),
    (["filter=g^r"], [{"filter": "g"}, {"filter": "r"}]),
    (["visit=1..2^7^1"], [{"visit": 1}, {"visit": 2}, {"visit": 7}]),
    (["visit=1^2 ccd=0^5"], [{"visit": 1, "ccd": 0}, {"visit": 1, "ccd": 5},
                             {"visit": 2, "ccd": 0}, {"visit": 2, "ccd": 5}]),
    (["ccd=0^5 visit=1^2"], [{"ccd": 0, "visit": 1}, {"ccd": 0, "visit": 2},
                             {"ccd": 5, "visit": 1}, {"ccd": 5, "visit": 2}]),
    (["filter=HSC-R patch=1,2 tract=007"], [{"filter": "HSC-R", "patch": "1,2", "tract": 7}]),
    (["date=2020-01-01 field=1.5"], [{"date": "2020-01-01", "field": "1.5"}]),
    (["  visit=1   ccd=2  "], [{"visit": 1, "ccd": 2}]),
    ([""], [{}]),
    ([], []),
    (["visit=1..2", "visit=2^3", "visit=1 ccd=1"],
     [{"visit": 1}, {"visit": 2}, {"visit": 3}, {"visit": 1, "ccd": 1}]),
    (["visit=1 ccd=2", "ccd=2 visit=1"], [{"visit": 1, "ccd": 2}]),
])
def test_expansion(strings, expected):
    result = expand_data_ids(strings)
    assert result == expected
    assert [list(d) for d in result] == [list(d) for d in expected], "key order as written"
    for data_id in result:
        for value in data_id.values():
            assert type(value) in (int, str)


def test_public_function_and_single_string():
    # public in hpcpipe.task (the root package imports none of its subpackages)
    assert hpcpipe.task.expand_data_ids(["visit=1..3:2 filter=g^r"]) == [
        {"visit": 1, "filter": "g"}, {"visit": 1, "filter": "r"},
        {"visit": 3, "filter": "g"}, {"visit": 3, "filter": "r"}]
    assert hpcpipe.task.expand_data_ids("visit=4") == [{"visit": 4}]
    assert "expand_data_ids" in hpcpipe.task.__all__
    with pytest.raises(AttributeError):
        hpcpipe.no_such_thing  # noqa: B018


def test_parse_data_id():
    assert parse_data_id("visit=1..3^2 filter=r") == {"visit": [1, 2, 3], "filter": ["r"]}


@pytest.mark.parametrize("string, token, words", [
    ("visit=5..1", "visit=5..1", ["'5..1'", "empty"]),
    ("visit=a..b", "visit=a..b", ["'a..b'", "not an integer range"]),
    ("visit=1..", "visit=1..", ["not an integer range"]),
    ("visit=1...3", "visit=1...3", ["not an integer range"]),
    ("visit=1..9:0", "visit=1..9:0", ["stride", "positive"]),
    ("visit=1..9:-2", "visit=1..9:-2", ["stride"]),
    ("visit=1..9:x", "visit=1..9:x", ["not an integer range"]),
    ("visit=1 visit=2", "visit=2", ["'visit' is given twice"]),
    ("visit=1 filter=r visit=1", "visit=1", ["given twice"]),
    ("visit", "visit", ["key=value"]),
    ("=3", "=3", ["not a data id key"]),
    ("vi-sit=3", "vi-sit=3", ["not a data id key"]),
    ("visit=", "visit=", ["no value"]),
    ("filter=g^", "filter=g^", ["empty alternative"]),
    ("filter=^r", "filter=^r", ["empty alternative"]),
    ("filter=g^^r", "filter=g^^r", ["empty alternative"]),
    ("visit=1=2", "visit=1=2", ["more than one '='"]),
])
def test_malformed_ids_name_the_bad_token(string, token, words):
    with pytest.raises(DataIdError) as info:
        expand_data_ids(["visit=9", f"ccd=1 {string}"])
    error = info.value
    assert isinstance(error, ValueError) and isinstance(error, HpcpipeError)
    assert error.token == token
    assert str(error).startswith(repr(token))
    for word in words:
        assert word in str(error)


def test_unknown_keys_against_the_mapper():
    known = {"visit", "ccd", "filter"}
    assert expand_data_ids(["visit=1 ccd=2"], known_keys=known) == [{"visit": 1, "ccd": 2}]
    with pytest.raises(DataIdError, match="unknown data id key 'vist'.*did you mean 'visit'"):
        expand_data_ids(["vist=1"], known_keys=known)
    with pytest.raises(DataIdError, match="known keys: ccd, filter, visit"):
        expand_data_ids(["tract=1"], known_keys=known)


def test_huge_expansions_are_refused_before_they_are_built():
    with pytest.raises(DataIdError, match="more than"):
        expand_data_ids(["visit=1..1000000000000"])
    with pytest.raises(DataIdError, match="expands to 1000000 data ids, more than 1000"):
        expand_data_ids(["visit=1..1000 ccd=1..1000"], max_ids=1000)
    assert len(expand_data_ids(["visit=1..100 ccd=0..103"])) == 10400
