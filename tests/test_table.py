"""Tests of hpcpipe.table (schemas, catalogs, joins) and its FITS/HDF5/astropy round trips."""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import Counter

import h5py
import numpy as np
import pytest
from astropy import table as aptable
from astropy import units as u
from astropy.io import fits

from hpcpipe.errors import FileFormatError, HpcpipeError, SchemaError
from hpcpipe.io import hdf5_table
from hpcpipe.io.atomic import TEMP_PREFIX
from hpcpipe.io.fits_table import read_fits, write_fits
from hpcpipe.io.hdf5_table import append_hdf5, read_hdf5, write_hdf5
from hpcpipe.table import Catalog, Field, Record, Schema, TableError, fill_value, join

# ------------------------------------------------------------------------------------------
# helpers and fixtures


def assert_identical(a: Catalog, b: Catalog) -> None:
    """Compare every field attribute, column (values and dtype) and metadata item."""
    assert a.schema.names == b.schema.names
    for fa, fb in zip(a.schema, b.schema):
        for attr in ("name", "dtype", "doc", "units", "shape"):
            assert getattr(fa, attr) == getattr(fb, attr), (fa.name, attr)
    assert len(a) == len(b)
    for name in a.schema.names:
        ca, cb = a[name], b[name]
        assert ca.dtype == cb.dtype, name
        assert ca.shape == cb.shape, name
        assert np.array_equal(ca, cb, equal_nan=ca.dtype.kind in "fc"), name
    assert set(a.metadata) == set(b.metadata)
    for key, value in a.metadata.items():
        assert b.metadata[key] == value, key
        assert type(b.metadata[key]) is type(value), key
    assert a.equals(b)


INT_TYPES = ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8"]


def rich_schema() -> Schema:
    schema = Schema.minimal()
    schema.add_field("base_PsfFlux_instFlux", "D", doc="PSF flux", units="nJy")
    schema.add_field("base_PsfFlux_instFluxErr", "F", doc="PSF flux error", units="nJy")
    schema.add_flag("base_PsfFlux_flag", doc="general failure flag for the PSF flux measurement")
    schema.add_field(
        "ap_flux", "f8", doc="aperture fluxes in 3 radii " + "x" * 100, units="ct", shape=(3,)
    )
    schema.add_field("moments", "f4", doc="second moments", units="pix2", shape=(2, 3))
    schema.add_field("ap_flags", "?", doc="aperture flags", shape=(3,))
    schema.add_field("ext.size", "F", doc="dotted name", units="arcsec")
    for t in INT_TYPES:
        schema.add_field(f"int_{t}", t, doc=f"an {t} field", units="")
    schema.add_field("cplx64", "c8", doc="complex64")
    schema.add_field("cplx128", "c16", doc="complex128")
    schema.add_field("band", "S4", doc="bytes band name")
    schema.add_field("label", "U6", doc="unicode label")
    schema.add_field("tags", "S3", doc="string array", shape=(2,))
    schema.add_field("speed", "D", units="km / s", doc="velocity")
    return schema


def rich_catalog(n: int = 37, seed: int = 0) -> Catalog:
    rng = np.random.default_rng(seed)
    schema = rich_schema()
    cols: dict[str, np.ndarray] = {}
    for f in schema:
        shape = (n, *f.shape)
        if f.dtype.kind == "f":
            v = rng.normal(size=shape).astype(f.dtype)
            v.reshape(-1)[::7] = np.nan
        elif f.dtype.kind == "c":
            v = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(f.dtype)
        elif f.dtype.kind == "b":
            v = rng.random(shape) < 0.5
        elif f.dtype.kind in "iu":
            info = np.iinfo(f.dtype)
            v = rng.integers(info.min, info.max, size=shape, dtype=f.dtype, endpoint=True)
            v.reshape(-1)[:2] = [info.min, info.max]
        elif f.dtype.kind == "S":
            width = f.dtype.itemsize
            v = np.array(
                [b"abcdefgh"[: rng.integers(0, width + 1)] for _ in range(int(np.prod(shape)))],
                dtype=f.dtype,
            ).reshape(shape)
        else:
            words = ["", "g", "été", "日本語", "r_band", "µJy"]
            v = np.array([words[i % len(words)] for i in range(n)], dtype=f.dtype)
        cols[f.name] = v
    cols["id"] = np.arange(n, dtype=np.int64) * 1000 + 7
    metadata = {
        "RUN": 1234,
        "VISIT": 9_876_543_210,
        "ZP": 27.25,
        "EXPTIME": 30.0,
        "DONE": True,
        "FAILED": False,
        "FILTER": "HSC-R",
        "lowercase": "keeps its case",
        "a.long.key.name_with_details": -3,
        "LONGSTR": "s" * 200,
        "EMPTY": "",
    }
    return Catalog.from_columns(schema, cols, metadata=metadata)


@pytest.fixture
def catalog() -> Catalog:
    return rich_catalog()


def simple_catalog(n: int = 10) -> Catalog:
    schema = Schema.minimal()
    schema.add_field("flux", "D", doc="flux", units="nJy")
    schema.add_field("ap", "F", shape=(3,))
    schema.add_flag("bad", doc="bad")
    cat = Catalog(schema)
    for i in range(n):
        rec = cat.add_record()
        rec["id"] = i
        rec["flux"] = float(i) * 1.5
        rec["ap"] = [i, i + 1, i + 2]
        rec["bad"] = i % 3 == 0
    return cat


def leftover_temps(directory) -> list[str]:
    return [p for p in os.listdir(directory) if p.startswith(TEMP_PREFIX)]


# ------------------------------------------------------------------------------------------
# schema


def test_schema_aliases_and_minimal():
    schema = Schema()
    expected = {
        "I": np.int32,
        "L": np.int64,
        "F": np.float32,
        "D": np.float64,
        "Flag": np.bool_,
        "Angle": np.float64,
    }
    for alias, dtype in expected.items():
        f = schema.add_field(f"f_{alias}", alias)
        assert f.dtype == np.dtype(dtype), alias
    assert schema["f_Angle"].units == "rad"
    assert schema["f_D"].units == ""
    flag = schema.add_flag("bad_flag", "something failed")
    assert flag.dtype == np.dtype(bool) and flag.doc == "something failed" and flag.is_flag
    assert schema.add_field("be", ">i4").dtype == np.dtype("=i4")

    minimal = Schema.minimal()
    assert minimal.names == ("id", "coord_ra", "coord_dec")
    assert minimal["id"].dtype == np.int64
    assert minimal["coord_ra"].units == minimal["coord_dec"].units == "rad"
    assert minimal["coord_ra"].dtype == np.float64


def test_schema_access_iteration_dtype():
    schema = Schema.minimal()
    schema.add_field("ap", "F", doc="apertures", units="nJy", shape=(4,))
    assert "ap" in schema and "nope" not in schema
    assert len(schema) == 4
    assert [f.name for f in schema] == list(schema.names)
    assert isinstance(schema["ap"], Field) and schema["ap"].shape == (4,)
    assert schema.dtype == np.dtype(
        [("id", "i8"), ("coord_ra", "f8"), ("coord_dec", "f8"), ("ap", "f4", (4,))]
    )
    assert schema.add_field("n", "i2", shape=2).shape == (2,)


def test_schema_duplicate_name_raises():
    schema = Schema.minimal()
    with pytest.raises(SchemaError, match="coord_ra"):
        schema.add_field("coord_ra", "D")
    with pytest.raises(KeyError):  # SchemaError is a KeyError too
        schema.add_flag("id")
    assert len(schema) == 3


def test_schema_unknown_name_suggests_close_matches():
    schema = Schema.minimal()
    schema.add_field("base_PsfFlux_instFlux", "D")
    schema.add_field("base_PsfFlux_instFluxErr", "D")
    with pytest.raises(SchemaError) as info:
        schema["base_PsfFlux_instflux"]
    message = str(info.value)
    assert "base_PsfFlux_instflux" in message and "did you mean" in message
    assert "'base_PsfFlux_instFlux'" in message
    with pytest.raises(SchemaError, match="no field 'zzz'"):
        schema["zzz"]
    cat = Catalog(schema)
    with pytest.raises(SchemaError, match="did you mean 'coord_ra'"):
        cat["coord_rA"]


@pytest.mark.parametrize("name", ["", "1abc", "a b", "a-b", ".x", "flux[0]", "é"])
def test_schema_invalid_names(name):
    with pytest.raises(TableError, match="invalid field name"):
        Schema().add_field(name, "D")


@pytest.mark.parametrize("dtype", [object, "f2", "O", [("a", "i4")], "U0", "nonsense"])
def test_schema_invalid_dtypes(dtype):
    with pytest.raises(TableError):
        Schema().add_field("x", dtype)


def test_schema_invalid_units_and_shape():
    with pytest.raises(TableError, match="units"):
        Schema().add_field("x", "D", units="not_a_unit_at_all")
    with pytest.raises(TableError, match="shape"):
        Schema().add_field("x", "D", shape=(0,))
    with pytest.raises(TableError, match="shape"):
        Schema().add_field("x", "D", shape=(-2, 3))
    assert Schema().add_field("x", "D", units="erg/s").units == u.Unit("erg/s").to_string()


def test_schema_equality_copy_extend_and_dict_round_trip():
    a = rich_schema()
    b = rich_schema()
    assert a == b
    c = a.copy()
    c.add_flag("extra")
    assert "extra" not in a and a != c
    d = Schema.from_dict(json.loads(json.dumps(a.to_dict())))
    assert d == a
    assert [f.shape for f in d] == [f.shape for f in a]

    e = Schema.minimal()
    other = Schema()
    other.add_field("flux", "D")
    other.add_flag("bad")
    e.extend(other)
    assert e.names == ("id", "coord_ra", "coord_dec", "flux", "bad")
    with pytest.raises(SchemaError, match="flux"):
        e.extend(other)
    assert len(e) == 5  # nothing added by the failed extend
    doc_changed = Schema.minimal()
    doc_changed.add_field("flux", "D", doc="changed")
    assert doc_changed != Schema.minimal()


def test_catalog_schema_is_read_only_copy():
    schema = Schema.minimal()
    cat = Catalog(schema)
    schema.add_field("later", "D")
    assert "later" not in cat.schema
    with pytest.raises(TableError, match="read-only"):
        cat.schema.add_field("x", "D")
    derived = cat.schema.copy()
    derived.add_field("x", "D")
    assert "x" in derived


# ------------------------------------------------------------------------------------------
# catalog: building, records, selection, sorting


def test_append_add_record_and_geometric_growth():
    cat = Catalog(Schema.minimal())
    assert len(cat) == 0
    capacities = set()
    for i in range(1000):
        cat.append({"id": i, "coord_ra": 0.5 * i})
        capacities.add(cat.capacity)
    assert len(cat) == 1000
    assert len(capacities) <= 12  # geometric growth: O(log n) reallocations
    assert cat.capacity < 2100
    np.testing.assert_array_equal(cat["id"], np.arange(1000))
    np.testing.assert_array_equal(cat["coord_dec"], np.zeros(1000))  # missing fields are zero
    assert Catalog(Schema.minimal(), capacity=50).capacity == 50


def test_append_unknown_key_raises_and_leaves_catalog_unchanged():
    cat = simple_catalog(3)
    with pytest.raises(SchemaError, match="did you mean 'flux'"):
        cat.append({"id": 9, "flx": 1.0})
    assert len(cat) == 3
    with pytest.raises(TypeError):
        cat.append([1, 2, 3])


def test_records_are_views():
    cat = simple_catalog(5)
    rec = cat[2]
    assert isinstance(rec, Record) and rec.index == 2 and rec.catalog is cat
    rec["flux"] = 99.0
    assert cat["flux"][2] == 99.0
    cat["flux"][2] = -1.0
    assert rec["flux"] == -1.0
    rec["ap"][1] = 42.0  # array fields come back as views
    assert cat["ap"][2, 1] == 42.0
    assert cat[-1].index == 4
    row = dict(cat[1])
    assert list(row) == list(cat.schema.names)
    assert row["id"] == 1 and row["bad"] == np.False_
    new = cat.add_record()
    assert len(cat) == 6 and new["flux"] == 0.0 and not new["bad"]
    new["flux"] = 3.5
    assert cat["flux"][5] == 3.5
    assert [r["id"] for r in cat] == [0, 1, 2, 3, 4, 0]
    with pytest.raises(SchemaError):
        rec["nope"]
    with pytest.raises(IndexError):
        cat[6]


def test_string_fields_zeroed_as_empty():
    schema = Schema()
    schema.add_field("name", "U4")
    schema.add_field("code", "S3")
    cat = Catalog(schema)
    rec = cat.add_record()
    assert rec["name"] == "" and rec["code"] == b""


def test_columns_are_writable_views_and_setitem():
    cat = simple_catalog(4)
    cols = cat.columns
    assert list(cols) == list(cat.schema.names)
    cols["flux"][:] = 7.0
    assert np.all(cat["flux"] == 7.0)
    cat["flux"] = np.arange(4.0)
    np.testing.assert_array_equal(cat["flux"], [0, 1, 2, 3])
    cat["coord_ra"] = 1.25  # broadcast
    assert np.all(cat["coord_ra"] == 1.25)
    with pytest.raises(TableError, match="flux"):
        cat["flux"] = np.zeros(7)
    cat[0] = {"flux": 5.0}
    assert cat["flux"][0] == 5.0


def test_extend_with_catalog_and_mappings():
    a = simple_catalog(3)
    b = simple_catalog(4)
    a.extend(b)
    assert len(a) == 7
    np.testing.assert_array_equal(a["id"], [0, 1, 2, 0, 1, 2, 3])
    a.extend([{"id": 100, "flux": 1.0}, {"id": 101}])
    assert len(a) == 9 and a["id"][-1] == 101 and a["flux"][-2] == 1.0


def test_extend_schema_mismatch_names_fields():
    a = simple_catalog(2)
    schema = a.schema.copy()
    schema.add_field("extra_col", "D")
    with pytest.raises(TableError, match="extra_col"):
        a.extend(Catalog(schema))
    other = Schema.minimal()
    other.add_field("flux", "F", units="nJy")
    other.add_field("ap", "F", shape=(3,))
    other.add_flag("bad")
    with pytest.raises(TableError) as info:
        a.extend(Catalog(other))
    assert "'flux' has dtype float64 vs float32" in str(info.value)
    assert len(a) == 2


def test_selection_slice_mask_indices():
    cat = simple_catalog(10)
    cat.metadata["X"] = 1
    sub = cat[2:5]
    assert isinstance(sub, Catalog) and len(sub) == 3
    np.testing.assert_array_equal(sub["id"], [2, 3, 4])
    assert sub.metadata == {"X": 1}
    sub["flux"][:] = -5  # selections are copies
    assert not np.any(cat["flux"] == -5)

    mask = cat["id"] % 2 == 0
    np.testing.assert_array_equal(cat[mask]["id"], [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(cat.where(mask)["ap"], cat["ap"][mask])
    np.testing.assert_array_equal(cat[np.array([9, 0, -1])]["id"], [9, 0, 9])
    np.testing.assert_array_equal(cat[[3, 3]]["id"], [3, 3])
    assert len(cat[np.zeros(0, dtype=int)]) == 0
    assert len(cat[np.zeros(10, dtype=bool)]) == 0

    with pytest.raises(TableError, match="10 rows"):
        cat[np.ones(9, dtype=bool)]
    with pytest.raises(TableError, match="boolean"):
        cat.where(np.arange(10))
    with pytest.raises(IndexError):
        cat[np.array([0, 10])]
    with pytest.raises(TableError):
        cat[np.array([0.5, 1.5])]


def test_sort_stable_multi_key_and_reverse():
    rng = np.random.default_rng(3)
    n = 500
    schema = Schema()
    schema.add_field("a", "i4")
    schema.add_field("b", "D")
    schema.add_field("name", "U3")
    schema.add_field("pos", "L")
    cols = {
        "a": rng.integers(0, 5, n).astype("i4"),
        "b": rng.integers(0, 4, n).astype(float),
        "name": rng.choice(["x", "yy", "z"], n),
        "pos": np.arange(n),
    }
    cat = Catalog.from_columns(schema, cols)
    rows = list(zip(*(cols[k].tolist() for k in schema.names)))

    for keys, reverse in itertools.product([["a"], ["b", "a"], ["name", "b"]], [False, True]):
        idx = [schema.names.index(k) for k in keys]
        expect = sorted(rows, key=lambda r, idx=idx: [r[i] for i in idx], reverse=reverse)
        got = cat.sorted(keys, reverse=reverse)
        assert got["pos"].tolist() == [r[3] for r in expect], (keys, reverse)
    assert cat["pos"].tolist() == list(range(n))  # sorted() leaves the original alone

    cat.sort("b")
    expect = sorted(rows, key=lambda r: r[1])
    assert cat["pos"].tolist() == [r[3] for r in expect]
    assert np.all(np.diff(cat["b"]) >= 0)


def test_sort_rejects_array_fields():
    with pytest.raises(TableError, match="array field"):
        simple_catalog(3).sort("ap")
    with pytest.raises(SchemaError):
        simple_catalog(3).sort("nope")


def test_copy_equals_concatenate():
    a = simple_catalog(4)
    a.metadata["RUN"] = 5
    b = a.copy()
    assert a.equals(b) and b is not a
    b["flux"][0] = 123.0
    assert not a.equals(b)
    b = a.copy()
    b.metadata["RUN"] = 6
    assert not a.equals(b) and a.equals(b, check_metadata=False)
    nan = a.copy()
    nan["flux"][:] = np.nan
    assert nan.equals(nan.copy())

    c = Catalog.concatenate([a, simple_catalog(2), simple_catalog(1)])
    assert len(c) == 7 and c.metadata == {"RUN": 5}
    np.testing.assert_array_equal(c["id"], [0, 1, 2, 3, 0, 1, 0])
    with pytest.raises(TableError):
        Catalog.concatenate([])
    with pytest.raises(TableError, match="coord_ra"):
        Catalog.concatenate([a, Catalog.from_columns(None, {"id": np.arange(2)})])


def test_from_columns_and_records():
    schema = Schema.minimal()
    cols = {"id": [1, 2], "coord_ra": [0.1, 0.2], "coord_dec": [0.3, 0.4]}
    cat = Catalog.from_columns(schema, cols)
    assert len(cat) == 2 and cat["id"].dtype == np.int64
    with pytest.raises(SchemaError, match="coord_dec"):
        Catalog.from_columns(schema, {"id": [1], "coord_ra": [1.0]})
    with pytest.raises(TableError, match="equal length"):
        Catalog.from_columns(schema, {"id": [1], "coord_ra": [1.0, 2.0], "coord_dec": [1.0]})
    recs = Catalog.from_records(schema, [dict(r) for r in cat])
    assert recs.equals(cat)
    inferred = Catalog.from_columns(None, {"v": np.zeros((3, 2), "f4"), "s": ["a", "bc", "d"]})
    assert inferred.schema["v"].shape == (2,) and inferred.schema["s"].dtype == np.dtype("U2")


# ------------------------------------------------------------------------------------------
# joins


def join_data(n: int, m: int, seed: int, nkeys: int = 6):
    rng = np.random.default_rng(seed)
    ls = Schema()
    ls.add_field("k1", "i4")
    ls.add_field("k2", "U2")
    ls.add_field("lid", "L")
    ls.add_field("val", "D", units="nJy")
    ls.add_field("lflag", "Flag")
    rs = Schema()
    rs.add_field("k1", "i8")
    rs.add_field("k2", "U2")
    rs.add_field("rid", "L")
    rs.add_field("val", "F")
    rs.add_field("rcount", "I")
    left = Catalog.from_columns(
        ls,
        {
            "k1": rng.integers(0, nkeys, n),
            "k2": rng.choice(["a", "b"], n),
            "lid": np.arange(1, n + 1),
            "val": rng.normal(size=n),
            "lflag": rng.random(n) < 0.5,
        },
    )
    right = Catalog.from_columns(
        rs,
        {
            "k1": rng.integers(0, nkeys, m) + 2,
            "k2": rng.choice(["a", "b"], m),
            "rid": np.arange(1, m + 1),
            "val": rng.normal(size=m).astype("f4"),
            "rcount": rng.integers(1, 100, m),
        },
    )
    return left, right


def brute_force_pairs(left: Catalog, right: Catalog, keys: list[str], how: str) -> Counter:
    """(lid, rid) pairs of a nested-loop join, 0 standing for 'no row on this side'."""
    pairs = []
    lmatched = set()
    rmatched = set()
    for i in range(len(left)):
        for j in range(len(right)):
            if all(left[k][i] == right[k][j] for k in keys):
                pairs.append((int(left["lid"][i]), int(right["rid"][j])))
                lmatched.add(i)
                rmatched.add(j)
    if how in ("left", "outer"):
        pairs += [(int(left["lid"][i]), 0) for i in range(len(left)) if i not in lmatched]
    if how in ("right", "outer"):
        pairs += [(0, int(right["rid"][j])) for j in range(len(right)) if j not in rmatched]
    return Counter(pairs)


@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
@pytest.mark.parametrize("keys", [["k1"], ["k1", "k2"]])
@pytest.mark.parametrize("seed", [0, 1])
def test_join_matches_brute_force(how, keys, seed):
    left, right = join_data(40, 30, seed)
    out = left.join(right, keys, how=how)
    got = Counter(zip(out["lid"].tolist(), out["rid"].tolist()))
    assert got == brute_force_pairs(left, right, keys, how)
    assert sum(got.values()) == len(out)
    # Every output row carries the values of the rows it came from, or fill values.
    lrow = {int(i): k for k, i in enumerate(left["lid"])}
    rrow = {int(i): k for k, i in enumerate(right["rid"])}
    for rec in out:
        if rec["lid"]:
            src = left[lrow[int(rec["lid"])]]
            assert rec["val_1"] == src["val"] and rec["lflag"] == src["lflag"]
            for k in keys:
                assert rec[k] == src[k]
        else:
            assert math.isnan(rec["val_1"]) and rec["lflag"] == np.False_
        if rec["rid"]:
            src = right[rrow[int(rec["rid"])]]
            assert rec["val_2"] == src["val"] and rec["rcount"] == src["rcount"]
            for k in keys:
                assert rec[k] == src[k]
        else:
            assert math.isnan(rec["val_2"]) and rec["rcount"] == 0


def test_join_schema_suffixes_and_fill_values():
    left, right = join_data(10, 10, 5)
    out = left.join(right, "k1", how="outer", suffixes=("_left", "_right"))
    assert out.schema.names == (
        "k1",
        "k2_left",
        "lid",
        "val_left",
        "lflag",
        "k2_right",
        "rid",
        "val_right",
        "rcount",
    )
    assert out.schema["k1"].dtype == np.int64  # common key type of int32 and int64
    assert out.schema["val_left"].units == "nJy"
    assert out.schema["val_right"].dtype == np.float32
    unmatched_right = out["lid"] == 0
    assert np.all(out["k2_left"][unmatched_right] == "")
    assert fill_value(np.dtype("f4")) != fill_value(np.dtype("f4"))  # NaN
    assert fill_value(np.dtype("u2")) == 0 and fill_value(np.dtype("?")) is False
    with pytest.raises(SchemaError):
        left.join(right, "k1", suffixes=("", ""))


def test_join_duplicates_many_to_many_and_order():
    ls = Schema()
    ls.add_field("k", "L")
    ls.add_field("a", "L")
    rs = Schema()
    rs.add_field("k", "L")
    rs.add_field("b", "L")
    left = Catalog.from_columns(ls, {"k": [1, 2, 1, 3], "a": [10, 20, 11, 30]})
    right = Catalog.from_columns(rs, {"k": [1, 1, 1, 2, 4], "b": [100, 101, 102, 200, 400]})
    inner = left.join(right, "k")
    assert list(zip(inner["a"].tolist(), inner["b"].tolist())) == [
        (10, 100),
        (10, 101),
        (10, 102),
        (20, 200),
        (11, 100),
        (11, 101),
        (11, 102),
    ]
    outer = join(left, right, "k", how="outer")
    assert outer["k"].tolist() == [1, 1, 1, 2, 1, 1, 1, 3, 4]
    assert outer["b"].tolist()[-2:] == [0, 400]
    assert outer["a"].tolist()[-2:] == [30, 0]


def test_join_errors():
    left, right = join_data(5, 5, 0)
    with pytest.raises(TableError, match="how"):
        left.join(right, "k1", how="cross")
    with pytest.raises(SchemaError, match="lid"):
        left.join(right, "lid")
    with pytest.raises(TableError):
        left.join(right, [])
    with pytest.raises(TableError, match="k2"):
        strings = Catalog.from_columns(None, {"k2": np.arange(3)})
        left.join(strings, "k2")
    a = Catalog.from_columns(None, {"k": np.arange(3, dtype="i8")})
    b = Catalog.from_columns(None, {"k": np.arange(3, dtype="u8")})
    with pytest.raises(TableError, match="common integer"):
        a.join(b, "k")


def astropy_rows(t: aptable.Table, names: list[str]) -> Counter:
    rows = []
    for row in t:
        values = []
        for name in names:
            v = row[name]
            if np.ma.is_masked(v):
                v = fill_value(t[name].dtype)
            v = v.item() if hasattr(v, "item") else v
            values.append(-999.0 if isinstance(v, float) and math.isnan(v) else v)
        rows.append(tuple(values))
    return Counter(rows)


@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
@pytest.mark.parametrize("keys", [["k1"], ["k1", "k2"]])
def test_join_matches_astropy(how, keys):
    left, right = join_data(200, 150, 11, nkeys=15)
    ours = left.join(right, keys, how=how)
    theirs = aptable.join(left.to_astropy(), right.to_astropy(), keys=keys, join_type=how)
    assert sorted(theirs.colnames) == sorted(ours.schema.names)
    names = list(ours.schema.names)
    assert astropy_rows(ours.to_astropy(), names) == astropy_rows(theirs, names)


def test_join_large_is_vectorised():
    n = 200_000
    rng = np.random.default_rng(8)
    a = Catalog.from_columns(None, {"k": rng.integers(0, n, n), "x": rng.random(n)})
    b = Catalog.from_columns(None, {"k": rng.integers(0, n, n), "y": rng.random(n)})
    out = a.join(b, "k")
    counts_a = np.bincount(a["k"], minlength=n)
    counts_b = np.bincount(b["k"], minlength=n)
    assert len(out) == int(np.sum(counts_a * counts_b))
    assert np.all(np.bincount(out["k"], minlength=n) == counts_a * counts_b)
    outer = a.join(b, "k", how="outer")
    assert len(outer) == len(out) + np.sum(counts_a * (counts_b == 0)) + np.sum(
        counts_b * (counts_a == 0)
    )


# ------------------------------------------------------------------------------------------
# astropy, FITS and HDF5 round trips


def test_astropy_round_trip(catalog):
    t = catalog.to_astropy()
    assert isinstance(t, aptable.Table)
    assert t.colnames == list(catalog.schema.names)
    for f in catalog.schema:
        col = t[f.name]
        assert (col.unit or "") == (u.Unit(f.units) if f.units else ""), f.name
        assert (col.description or "") == f.doc, f.name
        assert col.shape[1:] == f.shape
    assert t["base_PsfFlux_instFlux"].unit == u.nJy
    assert dict(t.meta) == catalog.metadata
    back = Catalog.from_astropy(t)
    assert_identical(catalog, back)
    t["id"][0] = -1  # a copy, not a view
    assert catalog["id"][0] != -1


def test_from_astropy_masked_and_quantity_columns():
    t = aptable.QTable()
    t["flux"] = [1.0, 2.0] * u.mJy
    t["n"] = aptable.MaskedColumn([1, 2], mask=[False, True], description="count")
    cat = Catalog.from_astropy(t)
    assert cat.schema["flux"].units == "mJy"
    assert cat.schema["n"].doc == "count"
    assert cat["n"].tolist() == [1, 0]


def test_fits_round_trip(catalog, tmp_path):
    path = tmp_path / "cat.fits"
    write_fits(catalog, path)
    assert_identical(catalog, read_fits(path))
    assert_identical(catalog, Catalog.read_fits(str(path)))
    with fits.open(path) as hdul:
        header = hdul[1].header
        n = catalog.schema.names.index("base_PsfFlux_instFlux") + 1
        assert header[f"TUNIT{n}"] == "nJy"
        assert header[f"TDOC{n}"] == "PSF flux"
        flag = catalog.schema.names.index("base_PsfFlux_flag") + 1
        assert header[f"TFORM{flag}"] == "L"
        ap = catalog.schema.names.index("ap_flux") + 1
        assert header[f"TFORM{ap}"] == "3D"
        assert header["RUN"] == 1234 and header["FILTER"] == "HSC-R"
    assert leftover_temps(tmp_path) == []


def test_fits_method_and_empty_catalog(tmp_path):
    cat = Catalog(rich_schema(), metadata={"N": 0})
    cat.write_fits(tmp_path / "empty.fits")
    assert_identical(cat, Catalog.read_fits(tmp_path / "empty.fits"))


def test_fits_reads_foreign_table(tmp_path):
    t = aptable.Table()
    t["ra"] = aptable.Column([1.0, 2.0], unit="deg", description="right ascension")
    t["n"] = np.array([3, 4], dtype="i2")
    t["name"] = ["ab", "c"]
    t.meta["ORIGIN"] = "elsewhere"
    path = tmp_path / "foreign.fits"
    t.write(path)
    cat = read_fits(path)
    assert cat.schema["ra"].units == "deg"
    assert cat["n"].dtype == np.int16 and cat["n"].tolist() == [3, 4]
    assert cat["name"].tolist() == [b"ab", b"c"]  # FITS "A" columns are bytes
    assert cat.metadata["ORIGIN"] == "elsewhere"


def test_fits_unwritable_metadata_or_doc_raises_before_writing(tmp_path):
    path = tmp_path / "bad.fits"
    for metadata in (
        {"X": [1, 2]},
        {"X": float("nan")},
        {"NAXIS": 3},
        {"X": "é"},
        {"a": 1, "A": 2},
    ):
        cat = simple_catalog(2)
        cat.metadata.update(metadata)
        with pytest.raises(TableError):
            write_fits(cat, path)
    schema = Schema()
    schema.add_field("x", "D", doc="naïve")
    with pytest.raises(TableError, match="ASCII"):
        write_fits(Catalog(schema), path)
    assert not path.exists() and leftover_temps(tmp_path) == []


@pytest.mark.parametrize("use_method", [False, True])
def test_hdf5_round_trip_path(catalog, tmp_path, use_method):
    path = tmp_path / "cat.h5"
    if use_method:
        catalog.write_hdf5(path, name="src")
        back = Catalog.read_hdf5(path, name="src")
    else:
        write_hdf5(catalog, path, name="src")
        back = read_hdf5(path, name="src")
    assert_identical(catalog, back)
    assert list(back.metadata) == list(catalog.metadata)  # attribute order kept
    with h5py.File(path, "r") as f:
        ds = f["src"]
        assert ds.dtype.names == catalog.schema.names
        assert ds.chunks is not None and ds.maxshape == (None,)
        stored = json.loads(ds.attrs["hpcpipe.schema"])
        assert Schema.from_dict(stored) == catalog.schema
        assert ds.attrs["RUN"] == 1234
    assert leftover_temps(tmp_path) == []


def test_hdf5_group_write_append_and_overwrite(catalog, tmp_path):
    path = tmp_path / "multi.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("visit/42")
        write_hdf5(catalog, group, name="src")
        write_hdf5(simple_catalog(3), group, name="other")
        with pytest.raises(TableError, match="exists"):
            write_hdf5(catalog, group, name="src")
        append_hdf5(catalog[:5], group, name="src")
        with pytest.raises(TableError, match="schemas differ"):
            append_hdf5(simple_catalog(3), group, name="src")
    with h5py.File(path, "r") as f:
        back = read_hdf5(f["visit/42"], name="src")
        assert_identical(Catalog.concatenate([catalog, catalog[:5]]), back)
        assert read_hdf5(f["visit/42"], "other").equals(simple_catalog(3))
    with h5py.File(path, "a") as f:
        write_hdf5(simple_catalog(2), f["visit/42"], name="src", overwrite=True)
    assert read_hdf5(path, "visit/42/src").equals(simple_catalog(2))


def test_hdf5_empty_catalog_and_foreign_dataset(tmp_path):
    cat = Catalog(rich_schema())
    write_hdf5(cat, tmp_path / "e.h5")
    assert_identical(cat, read_hdf5(tmp_path / "e.h5"))
    arr = np.zeros(3, dtype=[("a", "i4"), ("v", "f8", (2,))])
    arr["a"] = [1, 2, 3]
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["catalog"] = arr
        f["catalog"].attrs["ORIGIN"] = "elsewhere"
    back = read_hdf5(tmp_path / "foreign.h5")
    assert back.schema["v"].shape == (2,) and back["a"].tolist() == [1, 2, 3]
    assert back.metadata == {"ORIGIN": "elsewhere"}


def test_hdf5_unwritable_metadata_raises_before_writing(tmp_path):
    cat = simple_catalog(2)
    cat.metadata["hpcpipe.schema"] = "x"
    with pytest.raises(TableError):
        write_hdf5(cat, tmp_path / "bad.h5")
    cat = simple_catalog(2)
    cat.metadata["X"] = {"nested": 1}
    with pytest.raises(TableError):
        write_hdf5(cat, tmp_path / "bad.h5")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------
# atomic writes


def test_fits_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "cat.fits"
    write_fits(simple_catalog(3), path)
    before = path.read_bytes()

    def broken_writeto(self, name, *args, **kwargs):
        with open(name, "wb") as handle:
            handle.write(b"SIMPLE  =                    T" + b" " * 50)
        raise RuntimeError("disk full halfway")

    monkeypatch.setattr(fits.HDUList, "writeto", broken_writeto)
    with pytest.raises(RuntimeError, match="halfway"):
        write_fits(simple_catalog(5), path)
    assert path.read_bytes() == before
    with pytest.raises(RuntimeError):
        write_fits(simple_catalog(5), tmp_path / "new.fits")
    assert not (tmp_path / "new.fits").exists()
    assert leftover_temps(tmp_path) == []


def test_hdf5_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "cat.h5"

    def broken(*args, **kwargs):
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(hdf5_table, "_records", broken)
    with pytest.raises(RuntimeError, match="killed"):
        write_hdf5(simple_catalog(3), path)
    assert not path.exists()
    assert leftover_temps(tmp_path) == []


# ------------------------------------------------------------------------------------------
# bad input


FORMATS = {
    "fits": (write_fits, read_fits, ".fits"),
    "hdf5": (write_hdf5, read_hdf5, ".h5"),
}


def check_error(info: pytest.ExceptionInfo, path, *words: str) -> None:
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message.lower(), message
    assert isinstance(info.value, HpcpipeError)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_file(fmt, tmp_path):
    _, reader, ext = FORMATS[fmt]
    path = tmp_path / ("missing" + ext)
    with pytest.raises(FileFormatError) as info:
        reader(path)
    check_error(info, path, "no such file")
    with pytest.raises(FileFormatError) as info:
        reader(tmp_path)
    check_error(info, tmp_path, "directory")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("content", [b"", b"this is not a table\n" * 200, bytes(range(256)) * 40])
def test_not_a_table_file(fmt, content, tmp_path):
    _, reader, ext = FORMATS[fmt]
    path = tmp_path / ("garbage" + ext)
    path.write_bytes(content)
    with pytest.raises(FileFormatError) as info:
        reader(path)
    check_error(info, path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.02])
def test_truncated_file(fmt, fraction, tmp_path):
    writer, reader, ext = FORMATS[fmt]
    path = tmp_path / ("cat" + ext)
    writer(rich_catalog(3000), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(FileFormatError) as info:
        reader(path)
    check_error(info, path)
    assert info.value.__cause__ is not None  # the library error is chained, not lost


def test_fits_corrupted_data_fails_checksum(tmp_path):
    path = tmp_path / "cat.fits"
    write_fits(rich_catalog(200), path)
    data = bytearray(path.read_bytes())
    data[-3000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError) as info:
        read_fits(path)
    check_error(info, path, "checksum")


def test_fits_without_table_hdu(tmp_path):
    path = tmp_path / "image.fits"
    fits.HDUList([fits.PrimaryHDU(np.zeros((4, 4))), fits.ImageHDU(np.ones(3))]).writeto(path)
    with pytest.raises(FileFormatError) as info:
        read_fits(path)
    check_error(info, path, "no binary table")
    write_fits(simple_catalog(2), tmp_path / "t.fits")
    with pytest.raises(FileFormatError) as info:
        read_fits(tmp_path / "t.fits", hdu=0)
    check_error(info, tmp_path / "t.fits", "not a binary table")
    with pytest.raises(FileFormatError) as info:
        read_fits(tmp_path / "t.fits", hdu="NOPE")
    check_error(info, tmp_path / "t.fits", "nope")
    assert read_fits(tmp_path / "t.fits", hdu="CATALOG").equals(simple_catalog(2))


def test_hdf5_without_dataset(tmp_path):
    path = tmp_path / "cat.h5"
    write_hdf5(simple_catalog(2), path, name="src")
    with pytest.raises(FileFormatError) as info:
        read_hdf5(path)
    check_error(info, path, "no dataset 'catalog'", "src")
    with h5py.File(path, "a") as f:
        f.create_group("grp")
        f["image"] = np.zeros((3, 3))
    for name in ("grp", "image"):
        with pytest.raises(FileFormatError) as info:
            read_hdf5(path, name=name)
        check_error(info, path, "compound")
    with h5py.File(path, "r") as f:
        with pytest.raises(FileFormatError) as info:
            read_hdf5(f, name="nope")
        check_error(info, path, "nope")
