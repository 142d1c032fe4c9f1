"""The format registry (hpcpipe.formats): the data model finds its readers and writers there."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from hpcpipe import formats
from hpcpipe.errors import FileFormatError
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure, GaussianPsf
from hpcpipe.table import Catalog, Schema


def small_exposure() -> Exposure:
    exp = Exposure(Box2I(3, 4, 20, 10))
    exp.image.array[:] = np.arange(200, dtype=np.float32).reshape(10, 20)
    exp.variance.array[:] = 2.0
    exp.psf = GaussianPsf(1.5)
    exp.metadata["EXPTIME"] = 30.0
    return exp


def small_catalog() -> Catalog:
    schema = Schema()
    schema.add_field("id", "L", doc="identifier")
    schema.add_field("flux", "D", doc="flux", units="nJy")
    return Catalog.from_columns(schema, {"id": np.arange(5), "flux": np.linspace(1, 2, 5)},
                                metadata={"BAND": "r"})


class NpzCatalog(Catalog):
    """A subclass with a format of its own (registered by the tests below)."""


def write_npz(catalog: Catalog, path, compress: bool = False) -> None:
    save = np.savez_compressed if compress else np.savez
    save(path, **catalog.columns)


def read_npz(path) -> NpzCatalog:
    with np.load(path) as data:
        return NpzCatalog.from_columns(None, {k: data[k] for k in data.files})


@pytest.fixture
def npz_format():
    formats.register_reader("npz", NpzCatalog, read_npz)
    formats.register_writer("npz", NpzCatalog, write_npz)
    formats.register_identifier("npz", NpzCatalog, formats.suffix_identifier(".npz"))
    yield
    formats.unregister_reader("npz", NpzCatalog)
    formats.unregister_writer("npz", NpzCatalog)
    formats.unregister_identifier("npz", NpzCatalog)


def test_exposure_formats_are_registered_by_the_io_modules():
    rows = formats.get_formats(Exposure)
    assert ("fits", "Exposure", True, True) in rows
    assert ("hdf5", "Exposure", True, True) in rows
    assert formats.get_reader("fits", Exposure).__module__ == "hpcpipe.io.fits_exposure"
    assert formats.get_writer("hdf5", Exposure).__module__ == "hpcpipe.io.hdf5_exposure"
    assert formats.get_reader("fits", Catalog).__module__ == "hpcpipe.io.fits_table"
    assert formats.get_writer("hdf5", Catalog).__module__ == "hpcpipe.io.hdf5_table"


def test_identification_by_file_name():
    assert formats.identify_format("read", Exposure, "a/calexp.fits") == ["fits"]
    assert formats.identify_format("write", Exposure, "CALEXP.FITS.FZ") == ["fits"]
    assert formats.identify_format("read", Exposure, "calexp.hdf5") == ["hdf5"]
    assert formats.identify_format("read", Exposure, "calexp.png") == []
    assert formats.identify_format("read", Catalog, "src.h5") == ["hdf5"]


def test_hdf5_group_is_identified_as_hdf5(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as handle:
        assert formats.identify_format("write", Catalog, handle) == ["hdf5"]
        small_catalog().write(handle, name="src")
        back = Catalog.read(handle, name="src")
    assert back.equals(small_catalog())


@pytest.mark.parametrize("fmt", ["fits", "hdf5"])
def test_explicit_format_overrides_the_file_name(tmp_path, fmt):
    path = tmp_path / "calexp.dat"
    exp = small_exposure()
    exp.write(path, format=fmt)
    back = Exposure.read(path, format=fmt)
    assert back == exp
    box = Box2I(5, 6, 4, 3)
    assert Exposure.read(path, box, format=fmt) == exp[box]
    with pytest.raises(FileFormatError, match="unknown file type for Exposure"):
        Exposure.read(path)


@pytest.mark.parametrize("name", ["src.fits", "src.h5"])
def test_catalog_read_write_by_file_name(tmp_path, name):
    cat = small_catalog()
    cat.write(tmp_path / name)
    back = Catalog.read(tmp_path / name)
    assert back.equals(cat)
    if name.endswith(".fits"):
        assert Catalog.read_fits(tmp_path / name).equals(cat)
    else:
        assert Catalog.read_hdf5(tmp_path / name).equals(cat)


def test_unknown_file_type_names_the_file_and_the_known_endings(tmp_path):
    path = tmp_path / "calexp.png"
    with pytest.raises(FileFormatError) as info:
        small_exposure().write(path)
    message = str(info.value)
    assert str(path) in message and ".fits" in message and ".h5" in message
    assert not path.exists()


def test_unknown_format_lists_the_known_ones(tmp_path):
    with pytest.raises(FileFormatError, match=r"no writer of format 'asdf' for Exposure "
                                              r"\(known formats: fits, hdf5\)"):
        small_exposure().write(tmp_path / "x.fits", format="asdf")


def test_a_new_format_for_a_subclass(tmp_path, npz_format):
    cat = NpzCatalog.from_columns(None, small_catalog().columns)
    cat.write(tmp_path / "cat.npz", compress=True)  # extra keywords reach the writer
    back = NpzCatalog.read(tmp_path / "cat.npz")
    assert isinstance(back, NpzCatalog) and back.equals(cat, check_metadata=False)
    # the subclass inherits Catalog's writers; Catalog does not get the subclass's format
    cat.write(tmp_path / "cat.fits")
    assert Catalog.read(tmp_path / "cat.fits").equals(cat, check_metadata=False)
    with pytest.raises(FileFormatError, match="unknown file type for Catalog"):
        Catalog.read(tmp_path / "cat.npz")


def test_a_reader_returning_the_wrong_class_is_refused(tmp_path, npz_format):
    formats.register_reader("npz", NpzCatalog, lambda path: small_catalog(), force=True)
    write_npz(small_catalog(), tmp_path / "cat.npz")
    with pytest.raises(TypeError, match="returned a Catalog"):
        NpzCatalog.read(tmp_path / "cat.npz")


def test_ambiguous_identification_is_refused(tmp_path, npz_format):
    formats.register_identifier("npz-too", NpzCatalog, formats.suffix_identifier(".npz"))
    try:
        with pytest.raises(FileFormatError, match="ambiguous .*npz, npz-too"):
            NpzCatalog.read(tmp_path / "cat.npz")
    finally:
        formats.unregister_identifier("npz-too", NpzCatalog)


def test_registering_twice_needs_force(npz_format):
    with pytest.raises(ValueError, match="already registered"):
        formats.register_reader("npz", NpzCatalog, lambda path: None)
    formats.register_reader("npz", NpzCatalog, read_npz)  # the same function again is fine
    with pytest.raises(KeyError):
        formats.unregister_writer("npz", Catalog)


def test_the_data_model_reads_without_importing_io_first(tmp_path):
    """A fresh interpreter: image/table do not import io; the shipped formats load on first
    use."""
    code = textwrap.dedent(f"""
        import sys
        from hpcpipe.image import Exposure
        from hpcpipe.table import Catalog, Schema
        assert not [m for m in sys.modules if m.startswith("hpcpipe.io")], sorted(sys.modules)
        exp = Exposure((4, 5))
        exp.image.array[:] = 7
        exp.write({str(tmp_path / "e.fits")!r})
        assert Exposure.read({str(tmp_path / "e.fits")!r}) == exp
        assert "hpcpipe.io.fits_exposure" in sys.modules
        schema = Schema()
        schema.add_field("flux", "D")
        cat = Catalog.from_columns(schema, {{"flux": [1.0, 2.0]}})
        cat.write_hdf5({str(tmp_path / "c.h5")!r})
        assert Catalog.read_hdf5({str(tmp_path / "c.h5")!r}).equals(cat)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
