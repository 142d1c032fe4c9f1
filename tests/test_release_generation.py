"""A release is published whole: every file of one run switched in by one rename.

Serial tests of :mod:`hpcpipe.io.generation` (the generations, the link, what is carried over),
a writer killed just before its switch (real process, SIGKILL), and the same under MPI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpi_helpers import on_root, shared_dir

from hpcpipe.comm.world import World
from hpcpipe.io.generation import (
    GENERATIONS_SUFFIX,
    ReleaseGeneration,
    published_generation,
    release_generation,
)
from hpcpipe.io.release import read_release_table, write_release_table
from hpcpipe.table import Catalog, Schema


def _catalog(n: int, first: int = 0) -> Catalog:
    schema = Schema.minimal()
    schema.add_field("flux", "D", doc="a flux", units="count")
    return Catalog.from_columns(schema, {
        "id": first + np.arange(n), "coord_ra": np.full(n, 1.0),
        "coord_dec": np.full(n, 0.5), "flux": np.arange(n, dtype=float)})


def _write(world: World, release: Path, rows: dict[str, int], *, mode: str = "shared",
           **kwargs) -> ReleaseGeneration:
    """One release run: a table per name in ``rows`` (this rank's share of the rows)."""
    with release_generation(release, world, **kwargs) as generation:
        for name, n in rows.items():
            share = n // world.size + (1 if world.rank < n % world.size else 0)
            first = sum(n // world.size + (1 if r < n % world.size else 0)
                        for r in range(world.rank))
            write_release_table(generation.directory / "tables" / f"{name}.h5", "rows",
                                _catalog(share, first), world, mode=mode)
    return generation


def _rows(release: Path, name: str) -> int:
    return len(read_release_table(release / "tables" / f"{name}.h5", "rows"))


def test_the_release_is_a_link_to_one_generation(tmp_path):
    world = World()
    release = tmp_path / "out" / "release"
    first = _write(world, release, {"a": 5, "b": 3})
    assert release.is_symlink() and published_generation(release) == first.directory
    assert first.directory.parent.name == "release" + GENERATIONS_SUFFIX
    assert not os.path.isabs(os.readlink(release))  # the repository can be moved
    assert (_rows(release, "a"), _rows(release, "b")) == (5, 3)
    second = _write(world, release, {"a": 7, "b": 4})
    assert published_generation(release) == second.directory != first.directory
    assert (_rows(release, "a"), _rows(release, "b")) == (7, 4)
    # the previous generation is gone, and nothing else is left beside the new one
    assert list(second.directory.parent.iterdir()) == [second.directory]
    assert sorted(p.name for p in release.parent.iterdir()) == [
        "release", "release" + GENERATIONS_SUFFIX]


def test_what_a_run_does_not_rewrite_is_carried_over_by_hard_links(tmp_path):
    world = World()
    release = tmp_path / "release"
    first = _write(world, release, {"a": 5})
    (first.directory / "hats").mkdir()
    (first.directory / "hats" / "properties").write_text("kept\n")
    before = os.stat(first.directory / "tables" / "a.h5").st_ino
    # rewrite the tables, keep "hats"
    second = _write(world, release, {"a": 6}, carry=["hats"])
    assert (release / "hats" / "properties").read_text() == "kept\n"
    assert _rows(release, "a") == 6
    rewritten = os.stat(second.directory / "tables" / "a.h5").st_ino
    assert rewritten != before
    # rewrite "hats" only, keep everything else: the same inode, not a copy
    with release_generation(release, world, keep_all_but=["hats"]) as third:
        assert not (third.directory / "hats").exists()  # this run writes it
        (third.directory / "hats").mkdir()
        (third.directory / "hats" / "properties").write_text("new\n")
    assert os.stat(release / "tables" / "a.h5").st_ino == rewritten
    assert (release / "hats" / "properties").read_text() == "new\n"
    assert _rows(release, "a") == 6


def test_a_failed_run_publishes_nothing_and_the_next_removes_it(tmp_path):
    world = World()
    release = tmp_path / "release"
    good = _write(world, release, {"a": 5, "b": 2})
    with pytest.raises(RuntimeError, match="disk full"):
        with release_generation(release, world) as failed:
            write_release_table(failed.directory / "tables" / "a.h5", "rows", _catalog(9),
                                world)
            raise RuntimeError("disk full")  # before "b" is written
    assert published_generation(release) == good.directory
    assert (_rows(release, "a"), _rows(release, "b")) == (5, 2)  # not 9 rows beside 2
    assert failed.directory.exists()  # left for the next run to remove
    third = _write(world, release, {"a": 1, "b": 1})
    assert list(third.directory.parent.iterdir()) == [third.directory]


def test_a_plain_release_directory_becomes_a_generation(tmp_path):
    """A release written before generations (a plain directory) is replaced whole, and what
    the run keeps is carried from it."""
    world = World()
    release = tmp_path / "release"
    write_release_table(release / "tables" / "a.h5", "rows", _catalog(4), world)
    (release / "hats").mkdir()
    (release / "hats" / "properties").write_text("old\n")
    generation = _write(world, release, {"a": 8}, carry=["hats"])
    assert release.is_symlink() and published_generation(release) == generation.directory
    assert _rows(release, "a") == 8
    assert (release / "hats" / "properties").read_text() == "old\n"
    assert list(generation.directory.parent.iterdir()) == [generation.directory]


def test_a_file_in_the_way_is_a_clear_error(tmp_path):
    release = tmp_path / "release"
    release.write_text("not a release")
    with pytest.raises(FileExistsError, match="release"):
        ReleaseGeneration(release, World())


KILLED_BEFORE_SWITCH = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from test_release_generation import _write
from hpcpipe.comm.world import World

release = os.path.abspath(sys.argv[1])
real_replace = os.replace

def replace(src, dst, *args, **kwargs):
    if os.path.abspath(dst) == release:  # everything written and fsynced, nothing switched
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)

os.replace = replace
_write(World(), Path(release), {"a": 9, "b": 9}, mode=sys.argv[3])
"""


@pytest.mark.parametrize("mode", ["shared", "per-rank"])
def test_a_writer_killed_before_the_switch_leaves_the_previous_release_whole(tmp_path, mode):
    world = World()
    release = tmp_path / "release"
    published = _write(world, release, {"a": 5, "b": 3}, mode=mode)
    env = {**os.environ, "HPCPIPE_NO_MPI": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_SWITCH, str(release), str(Path(__file__).parent),
         mode], env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr  # killed where we wanted
    assert published_generation(release) == published.directory
    assert (_rows(release, "a"), _rows(release, "b")) == (5, 3)  # every file of one run
    generations = release.with_name("release" + GENERATIONS_SUFFIX)
    assert len(list(generations.iterdir())) == 2  # the killed run's, not yet removed
    after = _write(world, release, {"a": 2, "b": 2}, mode=mode)
    assert (_rows(release, "a"), _rows(release, "b")) == (2, 2)
    assert list(generations.iterdir()) == [after.directory]
    debris = [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]
    assert not debris


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mode", ["shared", "per-rank"])
def test_generations_under_mpi(tmp_path_factory, mode):
    world = World()
    root = Path(shared_dir(world, tmp_path_factory, f"generation-{mode}"))
    release = root / "release"
    first = _write(world, release, {"a": 11, "b": 4}, mode=mode)

    def check_first() -> None:
        assert (_rows(release, "a"), _rows(release, "b")) == (11, 4)

    on_root(world, check_first)
    second = _write(world, release, {"a": 3, "b": 5}, mode=mode, carry=["extra"])
    assert second.directory != first.directory

    def check() -> None:
        assert published_generation(release) == second.directory
        assert (_rows(release, "a"), _rows(release, "b")) == (3, 5)
        assert list(second.directory.parent.iterdir()) == [second.directory]

    on_root(world, check)
