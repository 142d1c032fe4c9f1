"""The registry under MPI: rank 0 ingests while the other ranks read, never blocked or misled.

Every collective call below is made by every rank unconditionally, and rank-local failures
are gathered and raised on all ranks, so that a failure never leaves a rank waiting.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import pytest

from hpcpipe.butler import Butler, create_repository, ingest
from hpcpipe.butler.repository import Repository
from hpcpipe.comm.world import World
from hpcpipe.geom import Box2I
from hpcpipe.image import Exposure
from hpcpipe.obs.simcam import raw_header

VISITS = 16
CCDS = 2
#: A read that takes longer than this is considered blocked (the writer holds its lock for
#: longer than this in the second test).
BLOCKED_SECONDS = 1.0


def shared_tmp(world: World, tmp_path_factory) -> Path:
    """A directory that every rank agrees on (rank 0's temporary directory)."""
    path = str(tmp_path_factory.mktemp("butler")) if world.rank == 0 else None
    return Path(world.bcast(path))


def raise_everywhere(world: World, error: str | None) -> None:
    """Raise on every rank if any rank reported an error."""
    errors = world.allgather(error)
    failed = [f"rank {rank}: {e}" for rank, e in enumerate(errors) if e is not None]
    if failed:
        raise AssertionError("\n".join(failed))


def guarded(function, *args):
    """Run ``function``; return (result, None) or (None, the formatted failure)."""
    try:
        return function(*args), None
    except Exception as exc:  # noqa: BLE001 - reported on every rank by raise_everywhere
        return None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def make_raws(world: World, directory: Path) -> list[Path]:
    """Every rank writes its share of the raw files; all ranks get the full list."""
    files = []
    for i in range(VISITS * CCDS):
        visit, ccd = divmod(i, CCDS)
        path = directory / f"raw-{visit}-{ccd}.fits"
        files.append(path)
        if i % world.size == world.rank:
            exposure = Exposure(Box2I(0, 0, 4, 4))
            exposure.image.array[:] = visit * 10 + ccd
            exposure.metadata.update(raw_header(visit, ccd, "ugriz"[visit % 5],
                                                f"2026-01-{1 + visit % 28:02d}T00:00:00", 10.0))
            exposure.write(path)
    return files


def read_until_done(repo: Path, done: Path) -> dict:
    """Read the registry in a loop while rank 0 ingests; check what every read returns."""
    butler = Butler(repo)
    counts, slowest, reads = [], 0.0, 0
    while True:
        finished = done.exists()  # checked before the read: the last read sees everything
        start = time.monotonic()
        rows = butler.queryMetadata("raw", ["visit", "ccd", "filter"])
        slowest = max(slowest, time.monotonic() - start)
        reads += 1
        assert rows == sorted(set(rows)), "rows duplicated or out of order"
        for visit, _ccd, band in rows:
            assert band == "ugriz"[visit % 5]
        if rows:  # the newest registered file is already in place, complete
            visit, ccd, _ = rows[-1]
            assert butler.get("raw", visit=visit, ccd=ccd).image.array[0, 0] == visit * 10 + ccd
        assert not counts or len(rows) >= counts[-1], "the registry went backwards"
        counts.append(len(rows))
        time.sleep(0.002)  # leave the (possibly shared) cores to the writer
        if finished:
            return {"reads": reads, "slowest": slowest, "final": counts[-1],
                    "distinct": len(set(counts))}


@pytest.mark.mpi(min_size=2)
def test_readers_on_other_ranks_while_rank_0_ingests(tmp_path_factory):
    world = World()
    directory = shared_tmp(world, tmp_path_factory)
    repo, done = directory / "repo", directory / "ingest-done"
    if world.rank == 0:
        (directory / "in").mkdir()
    world.barrier()
    files, error = guarded(make_raws, world, directory / "in")
    if world.rank == 0 and error is None:
        _, error = guarded(create_repository, repo, "simcam")
    raise_everywhere(world, error)

    world.barrier()
    if world.rank == 0:
        def ingest_all() -> None:
            for path in files:  # one call per file: many separate write transactions
                report = ingest(repo, [path])
                assert report.ok, report.summary()
        result, error = guarded(ingest_all)
        done.touch()
    else:
        result, error = guarded(read_until_done, repo, done)
    results = world.allgather(result)
    raise_everywhere(world, error)

    total = VISITS * CCDS
    assert len(Butler(repo).subset("raw")) == total
    for rank, stats in enumerate(results[1:], start=1):
        assert stats["final"] == total, (rank, stats)
        assert stats["reads"] > 3 and stats["distinct"] > 2, (rank, stats)  # read mid-ingest
        assert stats["slowest"] < BLOCKED_SECONDS, (rank, stats)


@pytest.mark.mpi(min_size=2)
def test_an_open_write_transaction_does_not_block_readers(tmp_path_factory):
    world = World()
    directory = shared_tmp(world, tmp_path_factory)
    repo = directory / "repo"
    if world.rank == 0:
        _, error = guarded(create_repository, repo, "simcam")
    else:
        error = None
    raise_everywhere(world, error)
    registry = Repository.open(repo).registry(Butler(repo).mapper)

    def row(visit: int) -> dict:
        return {"visit": visit, "ccd": 0, "filter": "r", "date": "2026-01-01",
                "dateObs": "2026-01-01T00:00:00.000", "expTime": 1.0}

    transaction = registry.transaction() if world.rank == 0 else None
    error = None
    if world.rank == 0:
        def write() -> None:
            with registry.transaction() as writer:  # committed
                writer.add_exposure(row(1), "test")
            writer = transaction.__enter__()  # held open, uncommitted
            writer.add_exposure(row(2), "test")
        _, error = guarded(write)
    raise_everywhere(world, error)  # rank 0 now holds the write lock

    def read_while_locked() -> float:
        start = time.monotonic()
        assert Butler(repo).queryMetadata("raw", "visit") == [1]  # not the uncommitted 2
        return time.monotonic() - start

    elapsed, error = guarded(read_while_locked) if world.rank != 0 else (0.0, None)
    raise_everywhere(world, error)
    if world.rank == 0:
        time.sleep(BLOCKED_SECONDS)  # hold the lock longer than a blocked read would last
        _, error = guarded(transaction.__exit__, None, None, None)
    raise_everywhere(world, error)  # committed

    visits, error = guarded(Butler(repo).queryMetadata, "raw", "visit")
    raise_everywhere(world, error)
    assert visits == [1, 2]
    assert max(world.allgather(elapsed)) < BLOCKED_SECONDS


@pytest.mark.mpi(min_size=2)
def test_ranks_ingesting_at_once_take_turns(tmp_path_factory):
    world = World()
    directory = shared_tmp(world, tmp_path_factory)
    repo = directory / "repo"
    if world.rank == 0:
        (directory / "in").mkdir()
    world.barrier()
    files, error = guarded(make_raws, world, directory / "in")
    if world.rank == 0 and error is None:
        _, error = guarded(create_repository, repo, "simcam")
    raise_everywhere(world, error)

    mine = [f for i, f in enumerate(files) if i % world.size == world.rank]
    # every rank also ingests rank 0's first file: duplicates across ranks are harmless
    report, error = guarded(ingest, repo, [*mine, files[0]])
    if error is None and not report.ok:
        error = report.summary()
    raise_everywhere(world, error)
    world.barrier()
    ingested = world.allgather(len(report.ingested))
    assert sum(ingested) == len(files)
    assert Butler(repo).queryMetadata("raw", ["visit", "ccd"]) == [
        divmod(i, CCDS) for i in range(len(files))]
