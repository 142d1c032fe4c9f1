"""Storage: local paths and file URLs, atomic writes (also under SIGKILL), other backends."""

from __future__ import annotations

import fnmatch
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hpcpipe.butler import (
    Butler,
    PosixStorage,
    Storage,
    StorageError,
    create_repository,
    register_storage,
    storage_for,
)
from hpcpipe.butler import mapper as mapper_module
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure
from hpcpipe.io.atomic import TEMP_PREFIX


def test_paths_and_file_urls_are_the_same_storage(tmp_path):
    by_path = storage_for(tmp_path)
    by_url = storage_for(tmp_path.as_uri())
    assert isinstance(by_path, PosixStorage) and by_path == by_url
    assert by_url.url("a/b.fits") == (tmp_path / "a/b.fits").as_uri()
    assert storage_for("file://localhost" + str(tmp_path)) == by_path


def test_unknown_schemes_and_hosts_are_errors():
    with pytest.raises(StorageError, match="scheme 'nosuch' is not one of .*file"):
        storage_for("nosuch://bucket/repo")
    with pytest.raises(StorageError, match="another host"):
        storage_for("file://elsewhere/data")


def test_paths_must_stay_inside_the_repository(tmp_path):
    storage = PosixStorage(tmp_path)
    for bad in ("../outside", "/etc/passwd", "a/../../b"):
        with pytest.raises(StorageError, match="not a path inside"):
            storage.exists(bad)


def test_a_failed_write_leaves_nothing(tmp_path):
    storage = PosixStorage(tmp_path)

    def broken(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        storage.write("dir/data.bin", broken)
    assert list((tmp_path / "dir").iterdir()) == []


def test_writers_see_the_final_suffix_and_glob_skips_temporary_files(tmp_path):
    storage = PosixStorage(tmp_path)
    seen: list[str] = []

    def writer(path: Path) -> None:
        seen.append(path.name)
        path.write_text("x")

    storage.write("a/one.fits", writer)
    storage.write("a/two.fits.gz", writer)
    assert seen[0].startswith(TEMP_PREFIX) and seen[0].endswith(".fits")
    assert seen[1].endswith(".fits.gz")
    (tmp_path / "a" / f"{TEMP_PREFIX}three.fits.xyz").write_text("partial")
    assert storage.glob("a/*.fits*") == ["a/one.fits", "a/two.fits.gz"]
    assert storage.glob("*/one.fits") == ["a/one.fits"]


SLOW_MAPPER = '''
import sys
import time

from hpcpipe.butler.datasets import DatasetType, PathTemplate
from hpcpipe.butler.formatters import Formatter
from hpcpipe.obs.simcam import SimCamMapper


class SlowFormatter(Formatter):
    """Writes bytes one by one, announcing when it is half-way."""

    name = "slow"
    python_type = "bytes"
    description = "bytes, written slowly"

    def check(self, obj, dataset_type):
        pass

    def write(self, obj, path):
        with open(path, "wb") as handle:
            for i in range(len(obj)):
                handle.write(obj[i:i + 1])
                handle.flush()
                if i == len(obj) // 2:
                    print("half-way", flush=True)
                    time.sleep(60)  # killed here

    def read(self, path):
        return path.read_bytes()


class SlowMapper(SimCamMapper):
    name = "slowcam"

    def define_dataset_types(self):
        return [*super().define_dataset_types(),
                DatasetType("slow", SlowFormatter(), PathTemplate("slow/v{visit:07d}.bin"),
                            "bytes written slowly")]
'''

WRITER = '''
import sys
from hpcpipe.butler import Butler, register_mapper
import slowmapper
register_mapper("slowcam", slowmapper.SlowMapper)  # a mapper class is registered in code
Butler(sys.argv[1]).put(b"0123456789" * 100, "slow", visit=1)
print("finished", flush=True)
'''


def test_a_writer_killed_mid_write_leaves_no_file_under_the_real_name(tmp_path, monkeypatch):
    (tmp_path / "slowmapper.py").write_text(SLOW_MAPPER)
    repo = tmp_path / "repo"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path),
                                                         os.environ.get("PYTHONPATH", "")]),
           "HPCPIPE_NO_MPI": "1"}
    sys.path.insert(0, str(tmp_path))
    try:
        import slowmapper

        # a mapper class is registered in code (the repository only names it)
        monkeypatch.setitem(mapper_module._MAPPERS, "slowcam", slowmapper.SlowMapper)
        create_repository(repo, "slowcam")
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(repo)], env=env,
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "half-way"
            real = repo / "slow" / "v0000001.bin"
            partial = [p for p in (repo / "slow").iterdir()]
            assert len(partial) == 1 and partial[0].name.startswith(TEMP_PREFIX)
            assert partial[0].stat().st_size > 0  # the writer was really writing
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert not real.exists()
        butler = Butler(repo)
        assert not butler.datasetExists("slow", visit=1)
        assert butler.subset("slow") == []  # the leftover temporary file is not a dataset
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slowmapper", None)


EXPOSURE_WRITER = '''
import sys
import numpy as np
from hpcpipe.butler import Butler
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure

butler = Butler(sys.argv[1])
exposure = Exposure(Box2I(0, 0, 1024, 1024))
for i in range(1000):
    exposure.image.array[:] = i
    butler.put(exposure, "calexp", visit=1, ccd=0, filter="r")
    print(i, flush=True)
'''


def test_a_killed_exposure_writer_leaves_the_last_complete_file(tmp_path):
    """Killed at an arbitrary point of a series of puts, the file under the real name is
    always a complete exposure (the last one written before the kill)."""
    repo = tmp_path / "repo"
    create_repository(repo, "simcam")
    proc = subprocess.Popen([sys.executable, "-c", EXPOSURE_WRITER, str(repo)],
                            env={**os.environ, "HPCPIPE_NO_MPI": "1"}, stdout=subprocess.PIPE,
                            text=True)
    directory = repo / "calexp" / "v0000001" / "r"
    try:
        last = int(proc.stdout.readline())  # one complete put
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until a temporary file is being written
            if directory.is_dir() and any(p.name.startswith(TEMP_PREFIX)
                                          for p in directory.iterdir()):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        lines = proc.stdout.read().split()
        last = int(lines[-1]) if lines else last
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    exposure = Butler(repo).get("calexp", visit=1, ccd=0, filter="r")  # checksums verified
    assert exposure.image.array[0, 0] in (last, last + 1)
    assert isinstance(exposure, Exposure) and exposure.bbox == Box2I(0, 0, 1024, 1024)


class MemoryStorage(Storage):
    """A toy object store: files are bytes in a dict, keyed by URL."""

    objects: dict[str, bytes] = {}

    def __init__(self, location: str) -> None:
        self.uri = location.rstrip("/")

    def _key(self, relpath: str) -> str:
        return self.url(relpath)

    def exists(self, relpath: str = "") -> bool:
        return True if not relpath else self._key(relpath) in self.objects

    def read(self, relpath: str, reader: Callable[[Path], object]) -> object:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / relpath.rsplit("/", 1)[-1]
            path.write_bytes(self.objects[self._key(relpath)])
            return reader(path)

    def write(self, relpath: str, writer: Callable[[Path], None]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / relpath.rsplit("/", 1)[-1]
            writer(path)
            self.objects[self._key(relpath)] = path.read_bytes()  # one atomic "upload"

    def glob(self, pattern: str) -> list[str]:
        prefix = self.uri + "/"
        names = [k[len(prefix):] for k in self.objects if k.startswith(prefix)]
        depth = pattern.count("/")
        return sorted(n for n in names
                      if n.count("/") == depth and fnmatch.fnmatchcase(n, pattern))

    def place(self, source: Path, relpath: str, mode: str) -> None:
        self.objects[self._key(relpath)] = Path(source).read_bytes()

    def local_path(self, relpath: str) -> Path:
        raise StorageError(f"{self.uri} has no local files")

    def sibling(self, reference: str) -> Storage:
        return storage_for(reference)

    def reference_to(self, other: Storage) -> str:
        return other.uri


def test_another_storage_backend_plugs_in_by_url_scheme(tmp_path):
    register_storage("mem", MemoryStorage)
    local = create_repository(tmp_path / "local", "simcam")
    create_repository("mem://bucket/out", "simcam", parents=[local])
    butler = Butler("mem://bucket/out")
    exposure = Exposure(Box2I(0, 0, 3, 3))
    exposure.image.array[:] = 7
    butler.put(exposure, "calexp", visit=1, ccd=2, filter="g")
    assert "mem://bucket/out/calexp/v0000001/g/calexp_v0000001_c002.fits" in \
        MemoryStorage.objects
    assert butler.get("calexp", visit=1, ccd=2).image.array[0, 0] == 7  # filter from the file
    assert butler.queryMetadata("calexp", "ccd", visit=1, filter="g") == [2]
    Butler(local).put(exposure, "calexp", visit=5, ccd=0, filter="r")
    assert butler.datasetExists("calexp", visit=5, ccd=0, filter="r")  # read through parent
