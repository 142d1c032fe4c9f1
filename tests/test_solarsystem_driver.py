"""``hpcpipe solarsystem`` end to end on APDB rows made from synthetic detections (no images).

A night of ``hpcpipe alerts`` leaves each moving object's detection as a new diaObject with
one diaSource; the APDB here is filled the same way (one diaObject per detection) from
:mod:`hpcpipe.solarsystem.synthetic` detections of main-belt objects, with single-detection
static transients and a variable star (a diaObject with several diaSources) beside them.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest
from mpi_helpers import on_root, shared_dir

from hpcpipe.ap.apdb import DIA_OBJECT_DTYPE, DIA_SOURCE_DTYPE, Apdb, new_rows
from hpcpipe.ap.ssdb import SolarSystemDb
from hpcpipe.cli import main
from hpcpipe.comm.pool import Pool
from hpcpipe.comm.world import World
from hpcpipe.drivers.solarsystem import SolarSystemConfig, night_window, run_solarsystem
from hpcpipe.solarsystem import population, synthetic, tracklets

T0 = 61000.2
FIELD = (180.0, 0.0)


def day_obs(mjd: float) -> str:
    """Rubin's dayObs (the date at UTC-12h) of an MJD."""
    return (datetime.date(1858, 11, 17) + datetime.timedelta(days=int(np.floor(mjd - 0.5)))
            ).isoformat()


def fill_apdb(path: Path, det: np.ndarray) -> None:
    """One diaObject per detection (a new transient), and a variable star seen every visit."""
    star_ra, star_dec = FIELD[0] + 0.3, FIELD[1] - 0.2
    with Apdb(path, bands=("r",), create=True) as apdb:
        star_id = 10_000_000
        for n_visit, visit in enumerate(np.unique(det["visit"])):
            rows = det[det["visit"] == visit]
            n = len(rows)
            src = new_rows(DIA_SOURCE_DTYPE, n + 1)
            src["diaSourceId"][:n] = rows["diaSourceId"] + 1
            src["diaSourceId"][n] = 20_000_000 + visit
            src["visit"], src["detector"] = visit, 0
            src["diaObjectId"][:n] = rows["diaSourceId"] + 1
            src["diaObjectId"][n] = star_id
            src["midpointMjdTai"] = rows["mjd"][0]
            src["ra"][:n], src["dec"][:n] = rows["ra"], rows["dec"]
            src["ra"][n], src["dec"][n] = star_ra, star_dec
            src["raErr"][:n], src["decErr"][:n] = rows["raErr"], rows["decErr"]
            src["raErr"][n] = src["decErr"][n] = 0.05 / 3600
            src["x"] = src["y"] = 0.0
            src["timeProcessedMjdTai"] = rows["mjd"][0] + 0.01
            src["band"] = "r"
            obj = new_rows(DIA_OBJECT_DTYPE, n + 1)
            obj["diaObjectId"] = src["diaObjectId"]
            obj["ra"], obj["dec"] = src["ra"], src["dec"]
            obj["validityStartMjdTai"] = rows["mjd"][0]
            obj["nDiaSources"] = 1
            obj["nDiaSources"][n] = n_visit + 1
            apdb.store(int(visit), [0], obj, src)


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Six nights in 15 days; ``hpcpipe solarsystem`` after each, serially."""
    rng = np.random.default_rng(21)
    orbits = population.population_in_field(40, *FIELD, 1.5, T0 + 7, rng)
    times = synthetic.lsst_cadence(T0, 6, rng, night_step=(2, 4))
    det = synthetic.synthetic_detections(orbits, times, *FIELD, 3.0, rng, sigma_arcsec=0.1,
                                         n_false_per_visit=15)
    out = tmp_path_factory.mktemp("ss") / "out"
    fill_apdb(out / "apdb.sqlite", det)
    nights = sorted({day_obs(t) for t in times})
    pool = Pool(World(None))
    summaries = [run_solarsystem(pool, out / "apdb.sqlite", night, out,
                                 SolarSystemConfig()) for night in nights]
    return {"det": det, "out": out, "nights": nights, "summaries": summaries,
            "orbits": orbits}


def _state(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with Apdb(out / "apdb.sqlite") as apdb:
        db = SolarSystemDb(apdb)
        src = db.source_attributions()
        return src, db.ss_objects(), db.ss_sources()


def test_night_window_is_day_obs() -> None:
    start, end = night_window("2026-02-24")
    assert (start, end) == (61095.5, 61096.5)
    assert day_obs(61096.2) == "2026-02-24"


def test_catalogue_after_six_nights(nightly: dict) -> None:
    det, out = nightly["det"], nightly["out"]
    src, ss_objects, ss_sources = _state(out)
    truth = dict(zip((det["diaSourceId"] + 1).tolist(), det["objectId"].tolist()))
    # objects with tracklets on >= 3 nights are in the catalogue, each SSObject pure
    trk = tracklets.make_tracklets(det["mjd"], det["ra"], det["dec"])
    obj = det["objectId"]
    linkable = set()
    for oid in np.unique(obj[obj >= 0]):
        own = trk[(obj[trk["i0"]] == oid) & (obj[trk["i1"]] == oid)]
        if len(np.unique(own["night"])) >= 3:
            linkable.add(int(oid))
    assert len(linkable) >= 20
    members: dict[int, set[int]] = {}
    for dia_id, ss_id in zip(src["diaSourceId"].tolist(), src["ssObjectId"].tolist()):
        if ss_id >= 0:
            members.setdefault(ss_id, set()).add(truth.get(dia_id, -2))
    mixed = [s for s, m in members.items() if len(m) != 1 or -1 in m or -2 in m]
    assert len(mixed) <= 0.01 * len(members)
    found = {next(iter(m)) for m in members.values() if len(m) == 1}
    assert len(found & linkable) >= 0.9 * len(linkable)
    # one SSObject per object, its SSSources and DiaSource.ssObjectId agree
    assert len(members) == len(found)
    assert set(ss_objects["ssObjectId"].tolist()) == set(members)
    assert len(ss_sources) == int((src["ssObjectId"] >= 0).sum())
    by_src = dict(zip(src["diaSourceId"].tolist(), src["ssObjectId"].tolist()))
    assert all(by_src[d] == s for d, s in zip(ss_sources["diaSourceId"].tolist(),
                                               ss_sources["ssObjectId"].tolist()))
    assert np.all(ss_sources["ephOffset"] < 1.0)
    assert np.all(ss_objects["nObs"] >= 6)
    # the variable star and the static transients are attributed to nothing
    static = [d for d, o in truth.items() if o == -1]
    assert all(by_src[d] == -1 for d in static)
    assert all(by_src[d] == -1 for d in by_src if d >= 20_000_000)


def test_later_detections_are_attributed(nightly: dict) -> None:
    det, out, nights = nightly["det"], nightly["out"], nightly["nights"]
    src, _, _ = _state(out)
    summaries = nightly["summaries"]
    first_night = {}
    for night, summary in zip(nights, summaries):
        for orbit in summary.new_orbits:
            first_night[orbit["ssObjectId"]] = night_window(night)[1]
    assert sum(s.attributed for s in summaries) > 0
    ss_of = dict(zip(src["diaSourceId"].tolist(), src["ssObjectId"].tolist()))
    later, good = 0, 0
    for ss_id, end in first_night.items():
        oids = {int(det["objectId"][i]) for i in range(len(det))
                if ss_of[int(det["diaSourceId"][i]) + 1] == ss_id}
        (oid,) = oids
        after = det[(det["objectId"] == oid) & (det["mjd"] >= end)]
        later += len(after)
        good += sum(ss_of[int(d) + 1] == ss_id for d in after["diaSourceId"])
    assert later >= 40
    assert good >= 0.95 * later


def test_report_and_rerun(nightly: dict) -> None:
    out, nights = nightly["out"], nightly["nights"]
    report = json.loads((out / "solarsystem" / f"{nights[-1]}.json").read_text())
    assert report["night"] == nights[-1]
    assert set(report["seconds"]) >= {"read", "attribution", "tracklets", "store"}
    before = _state(out)
    again = run_solarsystem(Pool(World(None)), out / "apdb.sqlite", nights[-1], out)
    # everything of the night is attributed or linked already; what is left is noise
    assert again.new_objects == 0 and again.attributed == 0
    after = _state(out)
    np.testing.assert_array_equal(before[0]["ssObjectId"], after[0]["ssObjectId"])


def _scene(seed: int = 31, n: int = 25) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    orbits = population.population_in_field(n, *FIELD, 1.5, T0 + 4, rng)
    times = synthetic.lsst_cadence(T0, 4, rng, night_step=(2, 3))
    det = synthetic.synthetic_detections(orbits, times, *FIELD, 2.5, rng, sigma_arcsec=0.1,
                                         n_false_per_visit=10)
    return det, sorted({day_obs(t) for t in times})


def test_command_line_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    det, nights = _scene()
    out = tmp_path / "out"
    fill_apdb(out / "apdb.sqlite", det)
    for night in nights:
        assert main(["solarsystem", str(tmp_path), "--output", str(out), "--night", night,
                     "-c", "windowDays=10"]) == 0
    printed = capsys.readouterr().out
    assert "new SSObjects" in printed and (out / "solarsystem" / f"{nights[-1]}.json").exists()
    with Apdb(out / "apdb.sqlite") as apdb:
        assert len(SolarSystemDb(apdb).ss_objects()) >= 15
    assert main(["solarsystem", str(tmp_path), "--output", str(out), "--night",
                 "2025-13-01"]) == 2
    assert "--night" in capsys.readouterr().err
    assert main(["solarsystem", str(tmp_path), "--output", str(tmp_path / "none"),
                 "--night", nights[0]]) == 2
    assert "no APDB" in capsys.readouterr().err
    assert main(["solarsystem", str(tmp_path / "nothing"), "--output", str(out), "--night",
                 nights[0]]) == 2
    assert main(["solarsystem", str(tmp_path), "--output", str(out), "--night", nights[0],
                 "-c", "windowDays=-1"]) == 2
    assert "--config" in capsys.readouterr().err


@pytest.mark.mpi(min_size=2)
def test_solarsystem_under_mpi_matches_serial(tmp_path_factory: pytest.TempPathFactory) -> None:
    world = World()
    root = Path(shared_dir(world, tmp_path_factory, "solarsystem-mpi"))
    det, nights = _scene()
    if world.rank == 0:
        fill_apdb(root / "mpi" / "apdb.sqlite", det)
        fill_apdb(root / "serial" / "apdb.sqlite", det)
        from mpi4py import MPI  # an MPI test: mpi4py is there

        for night in nights:  # one rank alone: a pool of its own
            run_solarsystem(Pool(World(MPI.COMM_SELF)), root / "serial" / "apdb.sqlite",
                            night, root / "serial")
    world.barrier()
    status = [main(["solarsystem", str(root), "--output", str(root / "mpi"), "--night", n])
              for n in nights]

    def check() -> None:
        assert status == [0] * len(nights)
        got = {}
        for kind in ("serial", "mpi"):
            with Apdb(root / kind / "apdb.sqlite") as apdb:
                got[kind] = SolarSystemDb(apdb).source_attributions()
        np.testing.assert_array_equal(got["mpi"], got["serial"])
        assert np.sum(got["mpi"]["ssObjectId"] >= 0) >= 60
        report = json.loads((root / "mpi" / "solarsystem" / f"{nights[-1]}.json").read_text())
        assert report["ranks"] == world.size

    on_root(world, check)
