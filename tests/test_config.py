"""Configs: typed fields, validation, nesting, retargeting, freezing, overrides, history,
saving and loading as Python, and comparison."""

from __future__ import annotations

import ast
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from hpcpipe.config import (
    ChoiceField,
    Config,
    ConfigError,
    ConfigField,
    ConfigFileError,
    ConfigurableField,
    DictField,
    Field,
    FieldValidationError,
    FrozenConfigError,
    ListField,
    RangeField,
    Registry,
    RegistryField,
    UnknownFieldError,
    apply_override,
    apply_override_file,
)
from hpcpipe.errors import HpcpipeError

# --- configs and targets used below (module level, so that saved configs can import them) ---


class BackgroundConfig(Config):
    bin_size = Field("size of the background mesh, in pixels", int, default=128)
    clip = RangeField("sigma-clipping threshold", float, default=3.0, min=0.0,
                      inclusive_min=False)


class BackgroundTask:
    ConfigClass = BackgroundConfig

    def __init__(self, config=None, **kwargs):
        self.config = config
        self.kwargs = kwargs


class FancyBackgroundConfig(Config):
    order = Field("polynomial order", int, default=2)


class FancyBackgroundTask:
    ConfigClass = FancyBackgroundConfig

    def __init__(self, config=None, **kwargs):
        self.config = config


class OtherBackgroundTask(BackgroundTask):
    """Same config class as BackgroundTask."""


class PsfConfig(Config):
    fwhm = Field("guess of the PSF FWHM, in pixels", float, default=3.0)
    kernels = ListField("kernel sizes", int, default=[5, 7])


class DetectConfig(Config):
    threshold = RangeField("detection threshold, in sigma", float, default=5.0, min=0.0)
    polarity = ChoiceField("sign of the sources to detect", str,
                           {"positive": "bright sources", "negative": "holes",
                            "both": "both"}, default="positive")
    grow = Field("grow footprints by this many pixels", int, default=2, optional=True)
    name = Field("a label", str, default="det")
    do_smooth = Field("smooth before thresholding", bool, default=True)
    planes = ListField("mask planes to ignore", str, default=["BAD", "SAT"])
    weights = DictField("weight per band", str, float, default={"g": 1.0, "r": 0.5})
    psf = ConfigField("PSF model", PsfConfig)
    background = ConfigurableField("background subtraction", target=BackgroundTask)

    def validate(self):
        super().validate()
        if self.grow is not None and self.grow > 10 * self.threshold:
            raise FieldValidationError("grow is too large for the threshold", "grow")


class StrictConfig(DetectConfig):
    def set_defaults(self):
        super().set_defaults()
        self.threshold = 7.5  # set_defaults line


measurements = Registry()


class CentroidConfig(Config):
    box = Field("box size", int, default=5)


@measurements.register("centroid")
class CentroidPlugin:
    ConfigClass = CentroidConfig

    def __init__(self, config, schema=None):
        self.config, self.schema = config, schema


class ShapeConfig(Config):
    moments = Field("use adaptive moments", bool, default=True)


@measurements.register("shape")
class ShapePlugin:
    ConfigClass = ShapeConfig

    def __init__(self, config, schema=None):
        self.config, self.schema = config, schema


class MeasureConfig(Config):
    plugins = RegistryField("measurement plugins", measurements, default=["centroid"],
                            multi=True)
    primary = RegistryField("the primary algorithm", measurements, default="centroid")


def _line_of(text: str) -> int:
    """The line of this file that contains ``text``."""
    with open(__file__) as f:
        for number, line in enumerate(f, 1):
            if text in line:
                return number
    raise AssertionError(text)


# --- fields --------------------------------------------------------------------------------


def test_defaults_and_types():
    config = DetectConfig()
    assert config.threshold == 5.0 and config.polarity == "positive" and config.grow == 2
    assert config.planes == ["BAD", "SAT"] and config.weights == {"g": 1.0, "r": 0.5}
    assert config.psf.fwhm == 3.0 and config.background.bin_size == 128
    config.threshold = 4                     # an int is a float
    assert config.threshold == 4.0 and isinstance(config.threshold, float)
    config.grow = np.int64(3)                # NumPy scalars become Python ones
    assert type(config.grow) is int
    config.do_smooth = np.bool_(False)
    assert config.do_smooth is False
    config.threshold = np.float32(2.5)
    assert type(config.threshold) is float


@pytest.mark.parametrize("name, value", [
    ("threshold", "5"), ("grow", 2.5), ("grow", True), ("do_smooth", 1), ("name", 3),
    ("planes", "BAD"), ("planes", [1, 2]), ("weights", [1.0]), ("weights", {"g": "x"}),
])
def test_wrong_types_are_refused(name, value):
    config = DetectConfig()
    before = getattr(config, name)
    with pytest.raises(FieldValidationError, match=name) as info:
        setattr(config, name, value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, HpcpipeError)
    assert getattr(config, name) == before


def test_range_and_choice_fields():
    config = DetectConfig()
    config.threshold = 0.0                   # inclusive minimum
    with pytest.raises(FieldValidationError, match="out of range"):
        config.threshold = -0.1
    bg = BackgroundConfig()
    with pytest.raises(FieldValidationError, match="out of range"):
        bg.clip = 0.0                        # exclusive minimum
    with pytest.raises(FieldValidationError, match="not an allowed value"):
        config.polarity = "sideways"
    config.polarity = "both"
    with pytest.raises(ValueError):
        RangeField("empty", int, min=3, max=1)


def test_list_field_checks_items_and_length():
    class C(Config):
        sizes = ListField("sizes", int, default=[1, 2, 3], length=3,
                          item_check=lambda v: v > 0)
        names = ListField("names", str, min_length=1, max_length=2, optional=True)

    config = C()
    config.sizes[0] = 7
    config.sizes.append(4)
    assert config.sizes == [7, 2, 3, 4]
    with pytest.raises(FieldValidationError, match="has 4 items, needs 3"):
        config.validate()
    del config.sizes[3]
    with pytest.raises(FieldValidationError, match="fails its check"):
        config.sizes.append(-1)
    with pytest.raises(FieldValidationError, match="expected int"):
        config.sizes[1] = "x"
    config.names = ["a", "b", "c"]
    with pytest.raises(FieldValidationError, match="at most 2"):
        config.validate()
    config.names = None
    config.validate()
    assert C().sizes == [1, 2, 3], "defaults are copied, not shared"


def test_dict_field():
    config = DetectConfig()
    config.weights["i"] = 2
    assert config.weights["i"] == 2.0 and isinstance(config.weights["i"], float)
    with pytest.raises(FieldValidationError, match="weights"):
        config.weights[3] = 1.0
    del config.weights["g"]
    assert dict(config.weights) == {"r": 0.5, "i": 2.0}
    assert DetectConfig().weights == {"g": 1.0, "r": 0.5}


def test_none_and_optional():
    config = DetectConfig()
    config.grow = None                       # optional
    config.validate()
    config.threshold = None
    with pytest.raises(FieldValidationError, match="threshold.*required"):
        config.validate()


def test_custom_check_and_cross_field_validation():
    class C(Config):
        odd = Field("an odd number", int, default=3, check=lambda v: v % 2 == 1)

    config = C()
    config.odd = 4
    with pytest.raises(FieldValidationError, match="odd.*fails its check"):
        config.validate()
    detect = DetectConfig(threshold=0.1, grow=5)
    with pytest.raises(FieldValidationError, match="grow is too large"):
        detect.validate()


def test_unknown_field_names_close_matches():
    config = DetectConfig()
    with pytest.raises(UnknownFieldError, match="did you mean 'threshold'") as info:
        config.threshhold = 3.0
    assert isinstance(info.value, AttributeError) and info.value.matches == ["threshold"]
    with pytest.raises(UnknownFieldError, match="'fwhm'"):
        config.psf.fwmh  # noqa: B018
    assert not hasattr(config, "nothing_like_it")
    with pytest.raises(UnknownFieldError, match="PsfConfig \\(at 'psf'\\)"):
        config.psf.fwmh = 1.0


def test_field_names_may_not_shadow_methods():
    with pytest.raises(TypeError, match="'save'"):
        class Bad(Config):
            save = Field("a field named like a method", int, default=1)


def test_unsupported_dtype_and_bad_default():
    with pytest.raises(TypeError):
        Field("a list is not a scalar", list)
    with pytest.raises(FieldValidationError):
        Field("wrong default", int, default="three")


# --- nesting, retargeting, freezing -------------------------------------------------------


def test_nested_config_field():
    config = DetectConfig()
    config.psf.kernels.append(9)
    with pytest.raises(FieldValidationError, match="'psf.fwhm'"):
        config.psf.fwhm = "wide"
    replacement = PsfConfig(fwhm=4.5)
    config.psf = replacement
    replacement.fwhm = 9.0                   # assignment copies
    assert config.psf.fwhm == 4.5
    with pytest.raises(FieldValidationError, match="expected a PsfConfig"):
        config.psf = BackgroundConfig()


def test_configurable_field_apply_and_retarget():
    config = DetectConfig()
    config.background.bin_size = 64
    assert config.background.value.bin_size == 64
    built = config.background.apply(name="background", extra=1)
    assert isinstance(built, BackgroundTask) and built.config is config.background.value
    assert built.kwargs == {"name": "background", "extra": 1}

    config.background.retarget(OtherBackgroundTask)       # same config class: values kept
    assert config.background.target is OtherBackgroundTask
    assert config.background.bin_size == 64

    config.background.retarget(FancyBackgroundTask)       # another class: a fresh config
    assert config.background.ConfigClass is FancyBackgroundConfig
    assert config.background.order == 2
    with pytest.raises(UnknownFieldError):
        config.background.bin_size = 3
    assert isinstance(config.background.apply(), FancyBackgroundTask)
    with pytest.raises(FieldValidationError, match="no ConfigClass"):
        config.background.retarget(object)


def test_freeze_is_deep():
    config = MeasureConfig()
    detect = DetectConfig()
    detect.freeze()
    config.freeze()
    assert detect.frozen
    for action in [lambda: setattr(detect, "threshold", 1.0),
                   lambda: setattr(detect.psf, "fwhm", 1.0),
                   lambda: detect.planes.append("CR"),
                   lambda: detect.weights.update(i=1.0),
                   lambda: setattr(detect.background, "bin_size", 1),
                   lambda: detect.background.retarget(FancyBackgroundTask),
                   lambda: setattr(config.plugins, "names", ["shape"]),
                   lambda: setattr(config.plugins["centroid"], "box", 3)]:
        with pytest.raises(FrozenConfigError, match="frozen"):
            action()
    assert detect.threshold == 5.0 and detect.planes == ["BAD", "SAT"]
    thawed = detect.copy()
    thawed.threshold = 1.0
    thawed.psf.fwhm = 2.0
    assert detect.threshold == 5.0 and detect.psf.fwhm == 3.0


def test_registry_field():
    config = MeasureConfig()
    assert config.plugins.names == ["centroid"] and config.primary.name == "centroid"
    config.plugins["centroid"].box = 9
    config.plugins.names = ["centroid", "shape"]
    built = config.plugins.apply(schema="s")
    assert set(built) == {"centroid", "shape"} and built["centroid"].config.box == 9
    assert built["shape"].schema == "s"
    assert isinstance(config.primary.apply(), CentroidPlugin)
    with pytest.raises(FieldValidationError, match="'shap' is not registered.*'shape'"):
        config.plugins.names = ["shap"]
    config.primary.name = "shape"
    assert isinstance(config.primary.active, ShapeConfig)
    assert "plugins['centroid'].box" in config.field_names()
    config.validate()


def test_registry_from_entry_points(tmp_path, monkeypatch):
    (tmp_path / "userplugins.py").write_text(
        "from hpcpipe.config import Config, Field\n"
        "class FluxConfig(Config):\n"
        "    radius = Field('aperture radius', float, default=3.0)\n"
        "class FluxPlugin:\n"
        "    ConfigClass = FluxConfig\n"
        "    def __init__(self, config):\n"
        "        self.config = config\n")
    dist = tmp_path / "userplugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: userplugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[hpcpipe.test_measurement]\naperture = userplugins:FluxPlugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "userplugins", raising=False)
    registry = Registry(entry_point_group="hpcpipe.test_measurement")

    class C(Config):
        algorithm = RegistryField("flux", registry, default="aperture")

    config = C()
    assert list(registry) == ["aperture"]
    config.algorithm["aperture"].radius = 5.0
    assert config.algorithm.apply().config.radius == 5.0
    sys.modules.pop("userplugins", None)


# --- history --------------------------------------------------------------------------------


def test_history_records_default_code_file_and_command_line(tmp_path):
    config = DetectConfig()
    config.threshold = 4.0  # marker: python assignment
    override = tmp_path / "override.py"
    override.write_text("# an override file\nconfig.threshold = 3.5\nroot.psf.fwhm = 2.0\n")
    config.load(override)
    apply_override(config, "threshold=3")
    entries = config.history("threshold")
    assert [e.value for e in entries] == [5.0, 4.0, 3.5, 3.0]
    assert [e.kind for e in entries] == ["default", "python", "file", "command line"]
    assert entries[0].location == f"{__file__}:{_line_of('threshold = RangeField(')}"
    assert entries[1].location == f"{__file__}:{_line_of('# marker: python assignment')}"
    assert entries[2].location == f"{override}:2"
    assert entries[3].location == "-c threshold=3"
    assert config.history("psf.fwhm")[-1].location == f"{override}:3"
    text = config.format_history("threshold")
    assert text.splitlines()[0] == "threshold" and "override.py:2" in text
    assert "-c threshold=3" in text.splitlines()[-1]


def test_history_of_set_defaults_list_changes_and_retarget():
    config = StrictConfig()
    assert config.threshold == 7.5
    assert config.history("threshold")[-1].location.endswith(
        f":{_line_of('# set_defaults line')}")
    config.planes.append("CR")  # marker: append
    last = config.history("planes")[-1]
    assert last.value == ["BAD", "SAT", "CR"]
    assert last.location == f"{__file__}:{_line_of('# marker: append')}"
    config.background.retarget(FancyBackgroundTask)
    assert "retarget(test_config.FancyBackgroundTask)" in repr(config.history("background")[-1])
    with pytest.raises(UnknownFieldError, match="'psf.fwhm'"):
        config.history("psf.fwhmm")


# --- overrides --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, name, value", [
    ("threshold=3", "threshold", 3.0),
    ("threshold=1e-1", "threshold", 0.1),
    ("grow=None", "grow", None),
    ("do_smooth=false", "do_smooth", False),
    ("do_smooth=True", "do_smooth", True),
    ("name=hello world", "name", "hello world"),
    ("name='quoted'", "name", "quoted"),
    ("planes=CR,EDGE", "planes", ["CR", "EDGE"]),
    ("planes=['CR']", "planes", ["CR"]),
    ("planes=", "planes", []),
    ("weights={'z': 2}", "weights", {"z": 2.0}),
    ("psf.kernels=3,5,7", "psf.kernels", [3, 5, 7]),
    ("background.bin_size=32", "background.bin_size", 32),
])
def test_command_line_overrides(text, name, value):
    config = DetectConfig()
    apply_override(config, text)
    obj = config
    for part in name.split("."):
        obj = getattr(obj, part)
    assert obj == value


@pytest.mark.parametrize("text, error, words", [
    ("threshhold=3", UnknownFieldError, ["'threshhold'", "did you mean 'threshold'"]),
    ("psf.fwmh=3", UnknownFieldError, ["'psf.fwhm'"]),
    ("fwhm=3", UnknownFieldError, ["'psf.fwhm'"]),
    ("threshold=abc", FieldValidationError, ["'threshold'", "expected a float", "'abc'"]),
    ("grow=2.5", FieldValidationError, ["'grow'", "expected an int"]),
    ("do_smooth=maybe", FieldValidationError, ["do_smooth", "bool"]),
    ("psf.kernels=3,x", FieldValidationError, ["psf.kernels", "'x'"]),
    ("polarity=up", FieldValidationError, ["polarity", "not an allowed value"]),
    ("psf=3", FieldValidationError, ["'psf'", "group of fields"]),
    ("threshold", ConfigError, ["not name=value"]),
])
def test_bad_command_line_overrides(text, error, words):
    config = DetectConfig()
    with pytest.raises(error) as info:
        apply_override(config, text)
    for word in words:
        assert word in str(info.value)
    assert config.threshold == 5.0


def test_registry_overrides():
    config = MeasureConfig()
    apply_override(config, "plugins.names=centroid,shape")
    apply_override(config, "plugins['shape'].moments=False")
    apply_override(config, "plugins.centroid.box=11")
    apply_override(config, "primary.name=shape")
    assert config.plugins.names == ["centroid", "shape"]
    assert config.plugins["shape"].moments is False and config.plugins["centroid"].box == 11
    assert config.primary.name == "shape"
    assert config.history("plugins.names")[-1].location == "-c plugins.names=centroid,shape"


@pytest.mark.parametrize("body, line, words", [
    ("x = 1\nconfig.threshold = 'high'\n", 2, ["FieldValidationError", "threshold"]),
    ("\n\nconfig.threshhold = 3\n", 3, ["did you mean 'threshold'"]),
    ("def f():\n    raise RuntimeError('boom')\n\nf()\n", 2, ["RuntimeError: boom"]),
    ("config.threshold = (\n", 1, ["SyntaxError"]),
])
def test_override_file_errors_name_file_and_line(tmp_path, body, line, words):
    path = tmp_path / "bad_override.py"
    path.write_text(body)
    config = DetectConfig()
    with pytest.raises(ConfigFileError) as info:
        apply_override_file(config, path)
    assert info.value.path == str(path) and info.value.line == line
    assert str(info.value).startswith(f"{path}, line {line}: ")
    for word in words:
        assert word in str(info.value)


def test_missing_override_file(tmp_path):
    with pytest.raises(ConfigFileError, match="cannot read"):
        DetectConfig().load(tmp_path / "nope.py")


# --- save, load, compare --------------------------------------------------------------------


def _modified() -> DetectConfig:
    config = DetectConfig()
    config.threshold = float("inf")
    config.grow = None
    config.name = "it's \"quoted\"\n"
    config.planes = ["CR"]
    config.weights = {"g": float("nan")}
    config.psf.kernels = []
    config.background.retarget(FancyBackgroundTask)
    config.background.order = 4
    return config


def test_save_is_readable_python_and_round_trips(tmp_path):
    config = _modified()
    path = tmp_path / "config.py"
    config.save(path)
    text = path.read_text()
    assert text.startswith("# hpcpipe config: test_config.DetectConfig\n")
    assert "# detection threshold, in sigma\nconfig.threshold = float('inf')\n" in text
    assert "config.planes = ['CR']\n" in text
    assert "import test_config\nconfig.background.retarget(test_config.FancyBackgroundTask)\n" \
        in text
    assert "config.background.order = 4\n" in text
    compile(text, str(path), "exec")

    loaded = DetectConfig()
    loaded.load(path)
    assert loaded.compare(config) == [] and loaded == config
    assert loaded.background.target is FancyBackgroundTask
    assert math.isnan(loaded.weights["g"]) and loaded.name == "it's \"quoted\"\n"
    assert loaded.history("threshold")[-1].location == \
        f"{path}:{text.splitlines().index('config.threshold = float(' + repr('inf') + ')') + 1}"
    assert DetectConfig() != config


def test_registry_round_trip(tmp_path):
    config = MeasureConfig()
    config.plugins.names = ["shape", "centroid"]
    config.plugins["centroid"].box = 3
    config.primary.name = "shape"
    path = tmp_path / "measure.py"
    config.save(path)
    loaded = MeasureConfig()
    loaded.load(path)
    assert loaded == config and loaded.plugins.names == ["shape", "centroid"]
    assert loaded.plugins["centroid"].box == 3


def test_load_refuses_a_config_of_another_class(tmp_path):
    path = tmp_path / "psf.py"
    PsfConfig().save(path)
    with pytest.raises(ConfigFileError, match="saved from a test_config.PsfConfig"):
        DetectConfig().load(path)


def test_compare_lists_the_differences():
    a, b = DetectConfig(), DetectConfig()
    assert a.compare(b) == []
    b.threshold = 4.0
    b.psf.kernels.append(3)
    b.weights = {"g": float("nan")}
    a.weights = {"g": float("nan")}
    diffs = a.compare(b)
    assert [d.name for d in diffs] == ["threshold", "psf.kernels"]
    assert (diffs[0].value, diffs[0].other) == (5.0, 4.0)
    assert str(diffs[0]) == "threshold: 5.0 != 4.0"
    a, b = DetectConfig(), DetectConfig()
    b.background.retarget(FancyBackgroundTask)
    names = [d.name for d in a.compare(b)]
    assert names == ["background (target)", "background (config class)"]
    assert a.compare(PsfConfig())[0].name == "(config class)"


def test_to_dict_names_copy_and_pickle():
    config = _modified()
    plain = config.to_dict()
    assert plain["planes"] == ["CR"] and type(plain["planes"]) is list
    assert plain["psf"] == {"fwhm": 3.0, "kernels": []}
    assert plain["background"] == {"order": 4}
    assert "psf.fwhm" in config.field_names() and "background.order" in config.field_names()
    config.freeze()
    again = pickle.loads(pickle.dumps(config))
    assert again == config and again.frozen
    assert again.history("threshold") == config.history("threshold")
    copied = config.copy()
    assert not copied.frozen and copied == config
    copied.planes.append("X")
    assert config.planes == ["CR"]


# --- stored configs: data, never code -------------------------------------------------------


def test_stored_config_is_flat_data_compared_as_data(tmp_path):
    import yaml

    from hpcpipe.config import StoredConfig, config_to_data

    config = _modified()
    data = config_to_data(config)
    fields = data["fields"]
    assert data["config_class"] == "test_config.DetectConfig"
    assert fields["threshold"] == float("inf") and fields["grow"] is None
    assert fields["psf.kernels"] == [] and fields["background.order"] == 4
    assert fields["background (target)"] == "test_config.FancyBackgroundTask"
    stored = StoredConfig.from_data(yaml.safe_load(StoredConfig.from_config(config).to_yaml()))
    assert stored.differences(config) == []  # inf, NaN and None survive YAML
    assert stored.psf.kernels == [] and stored.background.order == 4
    assert math.isnan(stored.weights["g"]) and stored.name == config.name
    other = DetectConfig()
    names = {d.name for d in stored.differences(other)}
    assert {"threshold", "background (target)", "background (config class)"} <= names
    assert "background.order" in names  # a field only the stored side has
    with pytest.raises(AttributeError, match="read-only"):
        stored.threshold = 1.0
    measure = MeasureConfig()
    measure.plugins.names = ["centroid", "shape"]
    measure.plugins["shape"].moments = False
    flat = config_to_data(measure)["fields"]
    assert flat["plugins.names"] == ["centroid", "shape"]
    assert flat["plugins['shape'].moments"] is False
    assert StoredConfig.from_config(measure).plugins["shape"].moments is False
    assert StoredConfig.from_config(measure).differences(MeasureConfig())
    with pytest.raises(ConfigError, match="not a stored config"):
        StoredConfig.from_data({"config_class": "x"}, "somewhere.yaml")


# --- the package's layering ----------------------------------------------------------------

#: The modules of hpcpipe.config, top layer last (config.py's docstring explains the order).
_LAYERS = ["errors", "history", "compare", "fields", "overrides", "serialize", "config",
           "configurable", "registry", "stored"]


def _runtime_imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(module, line, at module level)`` of every import outside ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.extend((f"{child.module}.{alias.name}", child.lineno, top)
                             for alias in child.names)
            inner = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, top and not inner)

    visit(tree, True)
    return found


def test_config_modules_import_one_way():
    """Each module imports only the layers above it, at module level; the rest is type-only."""
    import hpcpipe.config

    package = Path(hpcpipe.config.__file__).parent
    assert sorted(_LAYERS) == sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__")
    for rank, name in enumerate(_LAYERS):
        for target, line, top in _runtime_imports(package / f"{name}.py"):
            parts = target.split(".")
            if parts[:2] != ["hpcpipe", "config"] or len(parts) < 3:
                continue
            sibling = parts[2]
            where = f"hpcpipe/config/{name}.py:{line} imports {target}"
            assert top, f"{where} inside a function"
            assert _LAYERS.index(sibling) < rank, f"{where}, a layer below it"
