"""Tasks: Struct, the task hierarchy, logging, metadata and timing, discovery by import path and
entry point, debug switches, and the command-line argument parser."""

from __future__ import annotations

import datetime
import logging
import sys
import time

import numpy as np
import psutil
import pytest

from hpcpipe.config import (
    Config,
    ConfigurableField,
    Field,
    FieldValidationError,
    ListField,
    RangeField,
)
from hpcpipe.errors import HpcpipeError
from hpcpipe.task import (
    Struct,
    Task,
    TaskError,
    TaskNotFoundError,
    build_argument_parser,
    find_task,
    get_debug_info,
    registered_tasks,
    set_debug_info,
    timed_method,
)

# --- tasks used below ----------------------------------------------------------------------


class ScaleConfig(Config):
    factor = RangeField("multiply the values by this", float, default=2.0, min=0.0)


class ScaleTask(Task):
    ConfigClass = ScaleConfig
    _DefaultName = "scale"

    @timed_method
    def run(self, values):
        self.log.info("scaling %d values", len(values))
        return Struct(values=[v * self.config.factor for v in values])


class NegateTask(ScaleTask):
    """Same interface and config class as ScaleTask."""

    @timed_method
    def run(self, values):
        return Struct(values=[-v * self.config.factor for v in values])


class ClipConfig(Config):
    limit = Field("clip values above this", float, default=10.0)


class ClipTask(Task):
    ConfigClass = ClipConfig

    @timed_method
    def run(self, values):
        return Struct(values=[min(v, self.config.limit) for v in values])


class StatsConfig(Config):
    clip = ConfigurableField("clip before the statistics", target=ClipTask)
    stats = ListField("statistics to compute", str, default=["mean"])


class StatsTask(Task):
    ConfigClass = StatsConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.make_subtask("clip")

    @timed_method
    def run(self, values):
        clipped = self.clip.run(values).values
        return Struct(mean=float(np.mean(clipped)))


class PipelineConfig(Config):
    scale = ConfigurableField("scale the values", target=ScaleTask)
    stats = ConfigurableField("measure the values", target=StatsTask)
    label = Field("a label for the run", str, default="run")

    def validate(self):
        super().validate()
        if self.label == "forbidden":
            raise FieldValidationError("label may not be 'forbidden'", "label")


class PipelineTask(Task):
    ConfigClass = PipelineConfig
    _DefaultName = "pipeline"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.make_subtask("scale")
        self.make_subtask("stats")

    @timed_method
    def run(self, values):
        scaled = self.scale.run(values).values
        result = Struct(scaled=scaled)
        result.merge_items(self.stats.run(scaled))
        return result

    @timed_method
    def sleep(self, seconds):
        time.sleep(seconds)

    @timed_method
    def allocate(self, megabytes):
        block = np.ones(megabytes * 2**20, dtype=np.uint8)
        return int(block.sum())

    @timed_method
    def fail(self):
        raise RuntimeError("failed on purpose")


class NotATask:
    ConfigClass = ScaleConfig


# --- Struct --------------------------------------------------------------------------------


def test_struct():
    s = Struct(a=1, b="two")
    assert s.a == 1 and s.b == "two" and "a" in s and len(s) == 2 and list(s) == ["a", "b"]
    assert s.get_dict() == {"a": 1, "b": "two"}
    s.c = 3.0
    t = Struct(d=4, e=5)
    s.merge_items(t, "d")
    assert s.get_dict() == {"a": 1, "b": "two", "c": 3.0, "d": 4}
    with pytest.raises(AttributeError, match="already present"):
        s.merge_items(t)
    assert s.copy() == s and s.copy() is not s
    assert repr(Struct(x=1)) == "Struct(x=1)"
    for bad in ["_private", "get_dict", "copy"]:
        with pytest.raises(AttributeError):
            Struct(**{bad: 1})


# --- hierarchy, logging -----------------------------------------------------------------------


def test_hierarchy_names_configs_and_loggers():
    task = PipelineTask()
    assert task.name == "pipeline" and task.full_name == "pipeline" and task.parent is None
    assert isinstance(task.config, PipelineConfig)
    assert isinstance(task.scale, ScaleTask) and task.scale.full_name == "pipeline.scale"
    assert task.stats.clip.full_name == "pipeline.stats.clip"
    assert task.stats.clip.parent is task.stats
    assert task.scale.config is task.config.scale.value
    assert task.stats.clip.config is task.config.stats.clip.value
    assert sorted(task.get_task_dict()) == [
        "pipeline", "pipeline.scale", "pipeline.stats", "pipeline.stats.clip"]
    assert sorted(task.stats.get_task_dict()) == ["pipeline.stats", "pipeline.stats.clip"]
    assert task.log.name == "hpcpipe.task.pipeline"
    assert task.stats.clip.log.name == "hpcpipe.task.pipeline.stats.clip"
    assert isinstance(task.log, logging.Logger)


def test_run_returns_a_struct_and_logs(caplog):
    config = PipelineConfig()
    config.scale.factor = 3.0
    config.stats.clip.limit = 7.0
    task = PipelineTask(config=config)
    with caplog.at_level(logging.INFO, logger="hpcpipe.task"):
        result = task.run([1.0, 2.0, 3.0])
    assert result.scaled == [3.0, 6.0, 9.0] and result.mean == pytest.approx((3 + 6 + 7) / 3)
    record = next(r for r in caplog.records if "scaling" in r.getMessage())
    assert record.name == "hpcpipe.task.pipeline.scale"
    assert record.getMessage() == "scaling 3 values"


def test_retargeted_subtask_is_built():
    config = PipelineConfig()
    config.scale.retarget(NegateTask)
    config.scale.factor = 1.5
    task = PipelineTask(config=config)
    assert type(task.scale) is NegateTask
    assert task.run([2.0]).scaled == [-3.0]


def test_names_and_loggers_given_explicitly():
    task = ScaleTask(name="first", log=logging.getLogger("mine"))
    assert task.full_name == "first" and task.log.name == "mine.first"
    sub = ClipTask(name="clip", parent_task=task, config=ClipConfig(limit=1.0))
    assert sub.full_name == "first.clip" and sub.log.name == "mine.first.clip"
    assert sub.run([5.0]).values == [1.0]


@pytest.mark.parametrize("make, words", [
    (lambda: ClipTask(), "needs a name"),
    (lambda: ScaleTask(name="a.b"), "may not contain '.'"),
    (lambda: ClipTask(name="x", parent_task=ScaleTask()), "x"),
    (lambda: ScaleTask(config={"factor": 2}), "must be a Config"),
])
def test_task_errors(make, words):
    with pytest.raises((TaskError, AttributeError)) as info:
        make()
    assert words in str(info.value)


def test_duplicate_names_and_bad_subtask_fields():
    task = PipelineTask()
    with pytest.raises(TaskError, match="already has a task 'pipeline.scale'"):
        ScaleTask(name="scale", parent_task=task)
    with pytest.raises(TaskError, match="'label' is not a ConfigurableField"):
        task.make_subtask("label")
    assert isinstance(TaskError("x"), HpcpipeError)


def test_run_is_abstract():
    with pytest.raises(NotImplementedError):
        Task(name="bare").run()


# --- metadata and timing ------------------------------------------------------------------


def test_timed_methods_record_time_cpu_and_memory():
    task = PipelineTask()
    task.sleep(0.2)
    md = task.metadata
    for key in ["StartUtc", "EndUtc", "WallTime", "CpuTime", "MaxRss", "EndRss", "Calls"]:
        assert f"sleep{key}" in md
    assert 0.2 <= md["sleepWallTime"] < 2.0
    assert md["sleepCpuTime"] < 0.1, "sleeping uses no CPU"
    start = datetime.datetime.fromisoformat(md["sleepStartUtc"])
    end = datetime.datetime.fromisoformat(md["sleepEndUtc"])
    assert start.tzinfo is not None and 0.2 <= (end - start).total_seconds() < 2.0
    assert md["sleepCalls"] == 1

    rss_before = psutil.Process().memory_info().rss
    assert task.allocate(128) == 128 * 2**20
    assert md["allocateMaxRss"] >= rss_before + 120 * 2**20, "the peak includes the block"
    assert 0 < md["allocateEndRss"] <= md["allocateMaxRss"]

    task.sleep(0.05)
    assert md["sleepCalls"] == 2 and md["sleepWallTime"] >= 0.25
    assert md["sleepStartUtc"] == start.isoformat()


def test_busy_method_uses_cpu():
    class Busy(Task):
        _DefaultName = "busy"

        @timed_method
        def run(self):
            t0 = time.process_time()
            while time.process_time() - t0 < 0.1:
                pass
            return Struct()

    task = Busy()
    task.run()
    assert task.metadata["runCpuTime"] >= 0.1


def test_timing_is_recorded_when_a_method_raises():
    task = PipelineTask()
    with pytest.raises(RuntimeError):
        task.fail()
    assert task.metadata["failCalls"] == 1 and "failWallTime" in task.metadata


def test_full_metadata_gathers_the_hierarchy_and_resets():
    task = PipelineTask()
    task.run([1.0, 2.0])
    full = task.get_full_metadata()
    assert sorted(full) == ["pipeline", "pipeline.scale", "pipeline.stats",
                            "pipeline.stats.clip"]
    assert full["pipeline.stats.clip"]["runCalls"] == 1
    assert full["pipeline"]["runWallTime"] >= full["pipeline.scale"]["runWallTime"]
    with task.timer("extra"):
        time.sleep(0.01)
    assert task.metadata["extraWallTime"] >= 0.01
    task.reset_metadata()
    assert all(md == {} for md in task.get_full_metadata().values())


# --- debug switches ----------------------------------------------------------------------------


def test_debug_info_defaults_off_and_can_be_switched():
    task = ScaleTask()
    assert task.debug.display is False and get_debug_info("anything").dump is False

    def factory(name):
        info = get_debug_info.__globals__["DebugInfo"](name)
        if name == __name__:
            info.display = True
        return info

    set_debug_info(factory)
    try:
        assert task.debug.display is True and get_debug_info("other").display is False
    finally:
        set_debug_info(None)
    assert task.debug.display is False


# --- discovery ---------------------------------------------------------------------------------


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """A user's package registering tasks in the hpcpipe.tasks entry point group."""
    pkg = tmp_path / "usertasks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "detect.py").write_text(
        "from hpcpipe.config import Config, Field\n"
        "from hpcpipe.task import Struct, Task\n"
        "class UserDetectConfig(Config):\n"
        "    threshold = Field('threshold', float, default=4.0)\n"
        "class UserDetectTask(Task):\n"
        "    ConfigClass = UserDetectConfig\n"
        "    _DefaultName = 'userDetect'\n"
        "    def run(self, values):\n"
        "        return Struct(n=sum(v > self.config.threshold for v in values))\n")
    dist = tmp_path / "usertasks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: usertasks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[hpcpipe.tasks]\n"
        "userDetect = usertasks.detect:UserDetectTask\n"
        "brokenTask = usertasks.missing:Nothing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m == "usertasks" or m.startswith("usertasks.")]:
        del sys.modules[name]


def test_find_task_by_import_path():
    assert find_task("test_task:ScaleTask") is ScaleTask
    assert find_task("test_task.ScaleTask") is ScaleTask
    assert find_task("hpcpipe.task.task:Task") is Task


def test_find_task_by_entry_point(user_package):
    assert "userDetect" in registered_tasks()
    cls = find_task("userDetect")
    assert cls.__name__ == "UserDetectTask" and issubclass(cls, Task)
    assert cls().run([1.0, 5.0, 9.0]).n == 2
    assert find_task("usertasks.detect:UserDetectTask") is cls


def test_find_task_errors(user_package):
    with pytest.raises(TaskNotFoundError) as info:
        find_task("userDetec")
    message = str(info.value)
    assert "no task is registered as 'userDetec'" in message
    assert "did you mean 'userDetect'" in message
    listed = message.split("registered tasks: ")[1].split(";")[0].split(", ")
    assert {"brokenTask", "userDetect", "processCcd"} <= set(listed)
    assert listed == sorted(listed)
    assert isinstance(info.value, LookupError) and isinstance(info.value, HpcpipeError)
    with pytest.raises(TaskNotFoundError, match="registered as usertasks.missing:Nothing but "
                                                "cannot be loaded"):
        find_task("brokenTask")
    with pytest.raises(TaskNotFoundError, match="'test_task:NotATask' is .* not a Task"):
        find_task("test_task:NotATask")
    with pytest.raises(TaskNotFoundError, match="cannot import 'nosuchpkg.mod:Task'.*"
                                                "registered tasks: brokenTask, .*userDetect"):
        find_task("nosuchpkg.mod:Task")
    with pytest.raises(TaskNotFoundError, match="has no attribute 'Nope'"):
        find_task("test_task:Nope")


# --- the argument parser ----------------------------------------------------------------------


@pytest.fixture
def parser():
    return build_argument_parser("hpcpipe run pipeline", config_class=PipelineConfig,
                                 task_name="pipeline")


@pytest.fixture(autouse=True)
def restore_log_levels():
    names = ["hpcpipe", "hpcpipe.task.pipeline.scale", "hpcpipe.comm"]
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)


def test_every_option_is_parsed(parser, tmp_path):
    first = tmp_path / "first.py"
    first.write_text("config.label = 'from-file'\nconfig.scale.factor = 5.0\n")
    second = tmp_path / "second.py"
    second.write_text("config.stats.stats = ['mean', 'max']\n")
    ns = parser.parse_task_args([
        "/data/repo", "--id", "visit=1..2", "ccd=3", "--id", "filter=g^r",
        "--output", "/data/out", "-j", "4", "--profile", "run.prof", "--clobber-config",
        "--doraise", "--loglevel", "WARNING", "pipeline.scale=debug", "hpcpipe.comm=30",
        "-C", str(first), "-c", "scale.factor=3", "stats.clip.limit=8", "-C", str(second)])
    assert ns.repo == "/data/repo" and ns.output == "/data/out"
    assert ns.id_strings == ["visit=1..2 ccd=3", "filter=g^r"]
    assert ns.data_ids == [{"visit": 1, "ccd": 3}, {"visit": 2, "ccd": 3},
                           {"filter": "g"}, {"filter": "r"}]
    assert ns.processes == 4 and ns.profile == "run.prof"
    assert ns.clobber_config and ns.doraise and not ns.debug
    assert ns.show == [] and not ns.exit_after_show
    config = ns.config
    assert isinstance(config, PipelineConfig) and config.frozen
    assert config.label == "from-file" and config.scale.factor == 3.0
    assert config.stats.clip.limit == 8.0 and config.stats.stats == ["mean", "max"]
    kinds = [(e.kind, e.location) for e in config.history("scale.factor")]
    assert kinds[1:] == [("file", f"{first}:2"), ("command line", "-c scale.factor=3")]
    assert logging.getLogger("hpcpipe").level == logging.WARNING
    assert logging.getLogger("hpcpipe.task.pipeline.scale").level == logging.DEBUG
    assert logging.getLogger("hpcpipe.comm").level == 30


def test_id_forms_and_rerun(parser):
    ns = parser.parse_task_args(["repo", "--id"])
    assert ns.id_strings == [""] and ns.data_ids == [{}]          # bare --id: all data
    ns = parser.parse_task_args(["repo"])
    assert ns.id_strings is None and ns.data_ids == []
    ns = parser.parse_task_args(["repo", "--id", "visit=1 ccd=2", "--rerun", "in:out"])
    assert ns.data_ids == [{"visit": 1, "ccd": 2}]
    assert (ns.rerun_input, ns.rerun_output) == ("in", "out")
    ns = parser.parse_task_args(["repo", "--rerun", "out"])
    assert (ns.rerun_input, ns.rerun_output) == (None, "out")
    assert not parser.parse_task_args(["repo"], freeze=False).config.frozen


def test_known_id_keys_may_come_from_the_repository(parser):
    seen = []

    def keys(ns):
        seen.append(ns.repo)
        return {"visit", "ccd"}

    ns = parser.parse_task_args(["repo", "--id", "visit=1"], known_id_keys=keys)
    assert seen == ["repo"] and ns.data_ids == [{"visit": 1}]


def test_show_config_prints_and_exits(parser, capsys):
    with pytest.raises(SystemExit) as info:
        parser.parse_task_args(["repo", "-c", "scale.factor=4", "--show", "config"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("# hpcpipe config: test_task.PipelineConfig")
    assert "config.scale.factor = 4.0\n" in out and "config.label = 'run'\n" in out


def test_show_config_pattern_history_and_tasks(parser, capsys):
    with pytest.raises(SystemExit) as info:
        parser.parse_task_args(["repo", "-c", "scale.factor=4", "--show", "config=*FACTOR",
                                "history=scale.factor", "tasks"])
    assert info.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "config.scale.factor = 4.0"
    assert out[1] == "scale.factor"
    assert "default" in out[2] and out[2].endswith(f":{_line_of('factor = RangeField(')}")
    assert out[3].split() == ["4.0", "command", "line", "-c", "scale.factor=4"]
    assert out[4:] == ["Subtasks of pipeline:",
                       "  scale: test_task.ScaleTask",
                       "  stats: test_task.StatsTask",
                       "  stats.clip: test_task.ClipTask"]


def test_show_run_goes_on_and_show_data_is_left_to_the_caller(parser, capsys):
    ns = parser.parse_task_args(["repo", "--show", "config=label", "run"])
    assert capsys.readouterr().out == "config.label = 'run'\n"
    assert not ns.exit_after_show and isinstance(ns.config, PipelineConfig)
    ns = parser.parse_task_args(["repo", "--show", "data"])
    assert ns.show_data and ns.exit_after_show


def _line_of(text: str) -> int:
    with open(__file__) as f:
        for number, line in enumerate(f, 1):
            if text in line:
                return number
    raise AssertionError(text)


@pytest.mark.parametrize("argv, words", [
    (["--id", "visit=5..1"], ["argument --id", "'visit=5..1'", "empty"]),
    (["--id", "visit=a..b"], ["argument --id", "'visit=a..b'", "not an integer range"]),
    (["--id", "visit=1", "visit=2"], ["argument --id", "'visit' is given twice"]),
    (["--id", "visit=1..9:0"], ["argument --id", "stride"]),
    (["--id", "vist=1"], ["argument --id", "unknown data id key 'vist'",
                          "did you mean 'visit'"]),
    (["-c", "lable=x"], ["argument -c/--config", "'lable'", "did you mean 'label'"]),
    (["-c", "scale.factr=2"], ["argument -c/--config", "did you mean 'scale.factor'"]),
    (["-c", "scale.factor=abc"], ["argument -c/--config", "'scale.factor'",
                                  "expected a float, got 'abc'"]),
    (["-c", "scale.factor=-1"], ["argument -c/--config", "out of range"]),
    (["-c", "label"], ["argument -c/--config", "'label' is not name=value"]),
    (["-c", "scale=3"], ["argument -c/--config", "group of fields"]),
    (["-c", "label=forbidden"], ["invalid config", "'forbidden'"]),
    (["-C", "MISSING"], ["argument -C/--config-file", "MISSING", "cannot read"]),
    (["-j", "0"], ["argument -j/--processes", "positive"]),
    (["-j", "many"], ["argument -j/--processes", "'many'"]),
    (["--loglevel", "LOUD"], ["argument --loglevel", "unknown level 'LOUD'"]),
    (["--loglevel", "=DEBUG"], ["argument --loglevel", "empty component"]),
    (["--show", "everything"], ["argument --show", "'everything'"]),
    (["--show", "history"], ["argument --show", "history=PATTERN"]),
    (["--show", "history=nosuch"], ["argument --show", "no config field matches 'nosuch'"]),
    (["--show", "config=lable"], ["argument --show", "did you mean 'label'"]),
    (["--rerun", "a:b:c"], ["argument --rerun", "INPUT:OUTPUT"]),
    (["--rerun", "x", "--output", "y"], ["argument --rerun", "not allowed with --output"]),
    (["--nosuchoption"], ["unrecognized arguments: --nosuchoption"]),
])
def test_usage_errors_exit_2_naming_the_option(parser, capsys, argv, words):
    with pytest.raises(SystemExit) as info:
        parser.parse_task_args(["repo", *argv], known_id_keys={"visit", "ccd"})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: hpcpipe run pipeline")
    message = err.splitlines()[-1]
    assert message.startswith("hpcpipe run pipeline: error: ")
    for word in words:
        assert word in message


def test_config_file_that_raises_names_file_and_line(parser, capsys, tmp_path):
    path = tmp_path / "overrides.py"
    path.write_text("config.label = 'ok'\nconfig.scale.factor = undefined_name\n")
    with pytest.raises(SystemExit) as info:
        parser.parse_task_args(["repo", "-C", str(path)])
    assert info.value.code == 2
    message = capsys.readouterr().err.splitlines()[-1]
    assert f"argument -C/--config-file: {path}, line 2: NameError" in message
    assert "undefined_name" in message


def test_overrides_apply_in_command_line_order(parser, tmp_path):
    path = tmp_path / "o.py"
    path.write_text("config.label = 'file'\n")
    assert parser.parse_task_args(["r", "-c", "label=cli", "-C", str(path)]).config.label == \
        "file"
    assert parser.parse_task_args(["r", "-C", str(path), "-c", "label=cli"]).config.label == \
        "cli"


def test_debug_imports_debug_py(parser, tmp_path, monkeypatch, caplog):
    monkeypatch.delitem(sys.modules, "debug", raising=False)
    with caplog.at_level(logging.WARNING):
        parser.parse_task_args(["repo", "--debug"])      # none on the path: a warning
    assert "no debug.py" in caplog.text
    (tmp_path / "debug.py").write_text(
        "from hpcpipe.task.debug import DebugInfo as _Default\n"
        "def DebugInfo(name):\n"
        "    info = _Default(name)\n"
        "    if name == 'test_task':\n"
        "        info.display = True\n"
        "    return info\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        ns = parser.parse_task_args(["repo", "--debug"])
        assert ns.debug and ScaleTask().debug.display is True
        assert get_debug_info("elsewhere").display is False
    finally:
        set_debug_info(None)
        sys.modules.pop("debug", None)


def test_debug_py_that_raises_is_a_usage_error(parser, tmp_path, monkeypatch, capsys):
    (tmp_path / "debug.py").write_text("x = 1\nraise ValueError('bad debug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "debug", raising=False)
    with pytest.raises(SystemExit) as info:
        parser.parse_task_args(["repo", "--debug"])
    assert info.value.code == 2
    message = capsys.readouterr().err.splitlines()[-1]
    assert "argument --debug" in message and "debug.py, line 2: ValueError: bad debug" in message


def test_parser_without_repo_or_config_class(capsys):
    parser = build_argument_parser("tool", repo=False)
    ns = parser.parse_task_args(["--id", "visit=1"])
    assert ns.data_ids == [{"visit": 1}] and not hasattr(ns, "repo")
    with pytest.raises(SystemExit) as info:
        parser.parse_task_args(["-c", "x=1"])
    assert info.value.code == 2
    assert "has no config to override" in capsys.readouterr().err
