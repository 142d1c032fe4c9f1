"""A camera described by a YAML file: detectors, amplifiers, filters, raw layout, headers.

A camera file is data, never code: it is read with :func:`yaml.compose` (no Python tags) and
checked key by key by :func:`parse_camera`. Every error names the file, the key and the line
(:class:`CameraError`). ``docs/own_data.md`` explains every key; the shipped cameras
(``hpcpipe/obs/cameras/*.yaml``) are examples.

Sections follow the FITS ``DATASEC``/``BIASSEC`` convention: ``"[x1:x2,y1:y2]"``, 1-based and
inclusive, in the pixel coordinates of the raw HDU (or, for an amplifier-per-HDU layout, of
the amplifier's own HDU). In memory they are :class:`hpcpipe.geom.Box2I` (0-based).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from hpcpipe.butler.errors import ButlerError
from hpcpipe.geom import Box2I
from hpcpipe.obs.expression import Expression, ExpressionError, MissingKeywordError

__all__ = [
    "AmplifierSpec",
    "CAMERA_DIR",
    "Camera",
    "CameraError",
    "DetectorSpec",
    "FilterSpec",
    "LAYOUTS",
    "Section",
    "TRANSLATION_TARGETS",
    "Translation",
    "load_camera",
    "parse_camera",
    "parse_section",
]

#: Where hpcpipe's own camera files are (``simcam``, ``generic``, ``mosaic4``).
CAMERA_DIR = Path(__file__).resolve().parent / "cameras"
#: The raw layouts a camera file may declare.
LAYOUTS = {
    "hpcpipe-exposure": "hpcpipe exposures (IMAGE, MASK, VARIANCE, HPCINFO HDUs; the "
                        "detector is in HPCINFO), one detector per file: simulations",
    "detector-per-file": "one detector per file: its pixels in the primary HDU (or the "
                         "first HDU with data)",
    "detectors-per-file": "one exposure per multi-extension file, one image HDU per "
                          "detector",
    "amplifiers-per-file": "one image HDU per amplifier (of one or several detectors); "
                           "the amplifiers are placed side by side in the raw frame",
}
#: What a header translation may give, and whether a camera must say how.
TRANSLATION_TARGETS = {
    "visit": (True, "the exposure id (a whole number >= 0)"),
    "ccd": (False, "the detector: its id or name (default: the camera's only detector)"),
    "amplifier": (False, "the amplifier's name (amplifiers-per-file layout only)"),
    "filter": (True, "the filter, by name or alias"),
    "dateObs": (True, "the start of the exposure, ISO 8601"),
    "expTime": (True, "the exposure time in seconds"),
    "timeScale": (False, "the time scale of dateObs (UTC, TAI, TT...; default UTC)"),
    "obsType": (False, "science (or object) for raw exposures; bias, dark or flat for "
                       "calibration products (default science)"),
    "calibId": (False, "calibration products: 'calibDate=YYYY-MM-DD [validStart=...] "
                       "[validEnd=...]'"),
}
TIME_SCALES = ("UTC", "TAI", "TT", "TDB", "TCG", "TCB", "UT1")

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_SECTION = re.compile(r"\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]")
_NO_DEFAULT = object()


class CameraError(ButlerError, ValueError):
    """A camera file with an error: the message names the file, the key and the line.

    Attributes
    ----------
    source : str
        The file (or ``<text>``).
    key : str
        The key at fault, as a path (``detectors[0].amplifiers[1].gain``); empty for the
        whole file.
    line : int
        1-based line of the key (0 when unknown).
    reason : str
        What is wrong.
    """

    def __init__(self, source: str, key: str, line: int, reason: str) -> None:
        self.source = str(source)
        self.key = key
        self.line = int(line)
        self.reason = reason
        where = f"{self.source}:{self.line}" if self.line else self.source
        super().__init__(f"{where}: {key + ': ' if key else ''}{reason}")


def parse_section(text: str) -> Box2I:
    """``"[x1:x2,y1:y2]"`` (1-based, inclusive) as a 0-based :class:`Box2I`.

    Raises
    ------
    ValueError
        If ``text`` is not of that form, or a range is reversed or starts at 0.
    """
    match = _SECTION.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not a section [x1:x2,y1:y2]")
    x1, x2, y1, y2 = (int(g) for g in match.groups())
    if min(x1, y1) < 1:
        raise ValueError(f"section {text!r}: FITS sections start at 1")
    if x2 < x1 or y2 < y1:
        raise ValueError(f"section {text!r}: reversed ranges (flipped read-outs) are not "
                         "supported")
    return Box2I.from_corners(x1 - 1, y1 - 1, x2 - 1, y2 - 1)


def format_section(box: Box2I) -> str:
    """A box as a FITS section ``"[x1:x2,y1:y2]"``."""
    return f"[{box.x0 + 1}:{box.x1 + 1},{box.y0 + 1}:{box.y0 + box.height}]"


@dataclass(frozen=True)
class Section:
    """A data or overscan section: a fixed box, read from a header keyword, or (``whole``)
    the whole HDU."""

    box: Box2I | None = None
    keyword: str = ""
    whole: bool = False

    def resolve(self, header: Mapping[str, Any]) -> Box2I:
        """The box (0-based); from ``header`` for a keyword section.

        Raises
        ------
        MissingKeywordError
            If the keyword is absent.
        ValueError
            If its value is not a section.
        """
        if self.box is not None:
            return self.box
        if self.whole:
            return Box2I(0, 0, int(header.get("NAXIS1", 0)), int(header.get("NAXIS2", 0)))
        value = header.get(self.keyword)
        if value is None or value == "":
            raise MissingKeywordError(self.keyword)
        try:
            return parse_section(str(value))
        except ValueError as exc:
            raise ValueError(f"header {self.keyword}={value!r}: {exc}") from None

    def describe(self) -> str:
        if self.whole:
            return "the whole HDU"
        return format_section(self.box) if self.box is not None else f"header {self.keyword}"


@dataclass(frozen=True)
class AmplifierSpec:
    """One amplifier of a camera file (gain in electrons per ADU, read noise in electrons,
    levels in ADU)."""

    name: str
    data_section: Section
    overscan_section: Section | None
    gain: float
    read_noise: float
    saturation: float = math.inf
    suspect_level: float = math.inf
    linearity: tuple[float, ...] = ()


@dataclass(frozen=True)
class DetectorSpec:
    """One detector: ``width`` by ``height`` is its assembled, trimmed image (0 by 0: the
    size of each file's image, for ``size: any``)."""

    id: int
    name: str
    width: int
    height: int
    amplifiers: tuple[AmplifierSpec, ...]
    serial: str = ""
    hdu: int | str | None = None


@dataclass(frozen=True)
class FilterSpec:
    """A filter: its name (the ``filter`` data id value), header aliases, wavelength (nm)."""

    name: str
    aliases: tuple[str, ...] = ()
    wavelength: float = math.nan


@dataclass(frozen=True)
class Translation:
    """How one data id value is read from a header.

    The value is the first of ``keywords`` present; else ``expression``'s value; else
    ``default``. With ``agree``, every keyword present must give the same value. With
    ``allowed``, the value must be one of those (compared without case).
    """

    target: str
    keywords: tuple[str, ...] = ()
    expression: Expression | None = None
    default: Any = _NO_DEFAULT
    agree: bool = False
    allowed: tuple[str, ...] = ()

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT

    def describe(self) -> str:
        """How the value is found, in words (for messages and ``camera check``)."""
        parts = []
        if self.keywords:
            parts.append(" or ".join(self.keywords))
        if self.expression is not None:
            parts.append(f"expression {self.expression.text}")
        if self.has_default:
            parts.append(f"default {self.default!r}")
        return ", else ".join(parts)

    def find(self, header: Mapping[str, Any]) -> tuple[str, Any]:
        """``(where, value)``: the keyword (or ``"expression"``/``"default"``) and its value.

        Raises
        ------
        MissingKeywordError
            Naming the keyword(s) when nothing gives a value.
        ExpressionError
            When the keywords disagree (``agree``) or the expression fails.
        """
        found = [(k, header[k]) for k in self.keywords
                 if header.get(k) is not None and header.get(k) != ""]
        if self.agree and len({repr(v) for _, v in found}) > 1:
            listing = ", ".join(f"{k}={v!r}" for k, v in found)
            raise ExpressionError(f"inconsistent headers: {listing} (they must agree)")
        if found:
            return found[0]
        if self.expression is not None:
            try:
                return f"expression {self.expression.text}", self.expression.evaluate(header)
            except MissingKeywordError as exc:
                if not self.has_default:
                    if self.keywords:
                        raise MissingKeywordError(" or ".join(self.keywords) + " (or "
                                                  + exc.keyword + " for "
                                                  + self.expression.text + ")") from None
                    raise
        if self.has_default:
            return "default", self.default
        raise MissingKeywordError(" or ".join(self.keywords) or "?")


@dataclass(frozen=True)
class Camera:
    """An instrument as a camera file describes it (see :func:`parse_camera`).

    Attributes
    ----------
    name : str
        The mapper name of repositories using it.
    layout : str
        One of :data:`LAYOUTS`.
    detectors : tuple of DetectorSpec
        May be empty for the ``hpcpipe-exposure`` layout (the detector is in each file).
    filters : tuple of FilterSpec
    translations : dict of str to Translation
        By target (:data:`TRANSLATION_TARGETS`).
    config : dict of str to dict
        Per task (``processCcd``): dotted config field names and their values.
    source : str
        Where the description was read from.
    text : str
        The YAML text (stored in repositories as ``_camera.yaml``).
    """

    name: str
    layout: str
    detectors: tuple[DetectorSpec, ...]
    filters: tuple[FilterSpec, ...]
    translations: dict[str, Translation]
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    source: str = "<text>"
    text: str = ""

    def detector(self, value: Any) -> DetectorSpec | None:
        """The detector whose id (or name) is ``value``, or None."""
        for det in self.detectors:
            if (not isinstance(value, (str, bool)) and isinstance(value, (int, float))
                    and float(value) == det.id) or str(value).strip() == det.name:
                return det
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return self.detector(int(value))
        return None

    def header_cards(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Header cards giving ``values`` (by translation target: ``visit``, ``dateObs``...)
        under each target's first keyword: how a simulator writes raws this camera reads.

        Raises
        ------
        KeyError
            If a target has no keyword in the camera file.
        """
        cards: dict[str, Any] = {}
        for target, value in values.items():
            translation = self.translations.get(target)
            if translation is None or not translation.keywords:
                raise KeyError(f"camera {self.name} reads {target} from no header keyword")
            cards[translation.keywords[0]] = value
        return cards

    def filter(self, value: Any) -> FilterSpec | None:
        """The filter whose name or alias is ``value`` (compared without surrounding
        blanks), or None."""
        text = str(value).strip()
        for spec in self.filters:
            if text == spec.name or text in spec.aliases:
                return spec
        return None


# --- reading and checking a camera file -------------------------------------------------------
class _Node:
    """A YAML node with its key path, for messages naming the file, key and line."""

    _constructor = SafeConstructor()

    def __init__(self, node: yaml.Node, path: str, source: str, key_line: int = 0) -> None:
        self.node = node
        self.path = path
        self.source = source
        self.key_line = key_line  # the line of the key this node is the value of

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def fail(self, reason: str) -> CameraError:
        return CameraError(self.source, self.path, self.line, reason)

    def child(self, node: yaml.Node, name: str | int, key_line: int = 0) -> _Node:
        path = f"{self.path}[{name}]" if isinstance(name, int) else (
            f"{self.path}.{name}" if self.path else str(name))
        return _Node(node, path, self.source, key_line)

    def mapping(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()
                ) -> dict[str, _Node]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.fail(f"must be a mapping (keys: {', '.join(allowed)})")
        out: dict[str, _Node] = {}
        for key_node, value_node in self.node.value:
            key = self._constructor.construct_object(key_node, deep=True)
            where = _Node(key_node, f"{self.path}.{key}" if self.path else str(key),
                          self.source)
            if not isinstance(key, str):
                raise where.fail("keys must be strings")
            if allowed and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise where.fail(f"unknown key{hint}; known keys: {', '.join(allowed)}")
            if key in out:
                raise where.fail("given twice")
            out[key] = self.child(value_node, key, key_node.start_mark.line + 1)
        for key in required:
            if key not in out:
                raise CameraError(self.source, self.path, self.key_line or self.line,
                                  f"missing required key {key!r}")
        return out

    def free_mapping(self) -> dict[str, _Node]:
        return self.mapping(())

    def sequence(self) -> list[_Node]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.fail("must be a list")
        return [self.child(n, i) for i, n in enumerate(self.node.value)]

    def value(self) -> Any:
        try:
            return self._constructor.construct_object(self.node, deep=True)
        except ConstructorError as exc:
            raise self.fail(f"cannot read the value ({exc.problem})") from None

    def string(self, pattern: str | None = None) -> str:
        value = self.value()
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"must be a non-empty string, not {value!r}")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise self.fail(f"{value!r} is not a valid name (letters, digits, _ . -)")
        return value

    def integer(self, minimum: int | None = None) -> int:
        value = self.value()
        if isinstance(value, bool) or not isinstance(value, int) or (
                minimum is not None and value < minimum):
            bound = f" >= {minimum}" if minimum is not None else ""
            raise self.fail(f"must be a whole number{bound}, not {value!r}")
        return value

    def number(self, positive: bool = False, non_negative: bool = False) -> float:
        value = self.value()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
                or (positive and not value > 0) or (non_negative and value < 0):
            need = " > 0" if positive else (" >= 0" if non_negative else "")
            raise self.fail(f"must be a number{need}, not {value!r}")
        return float(value)

    def boolean(self) -> bool:
        value = self.value()
        if not isinstance(value, bool):
            raise self.fail(f"must be true or false, not {value!r}")
        return value


def _section(node: _Node) -> Section:
    if isinstance(node.node, yaml.MappingNode):
        keyword = node.mapping(("keyword",), ("keyword",))["keyword"].string()
        return Section(keyword=keyword.strip().upper())
    text = node.string()
    if text.strip() == "all":
        return Section(whole=True)
    try:
        return Section(box=parse_section(text))
    except ValueError as exc:
        raise node.fail(str(exc)) from None


_AMP_KEYS = ("name", "data_section", "overscan_section", "gain", "read_noise", "saturation",
             "suspect_level", "linearity")


def _amplifier(node: _Node) -> AmplifierSpec:
    keys = node.mapping(_AMP_KEYS, ("name", "data_section", "gain", "read_noise"))
    linearity: tuple[float, ...] = ()
    if "linearity" in keys:
        linearity = tuple(n.number() for n in keys["linearity"].sequence())
    return AmplifierSpec(
        name=keys["name"].string(_NAME),
        data_section=_section(keys["data_section"]),
        overscan_section=_section(keys["overscan_section"]) if "overscan_section" in keys
        else None,
        gain=keys["gain"].number(positive=True),
        read_noise=keys["read_noise"].number(non_negative=True),
        saturation=keys["saturation"].number(positive=True) if "saturation" in keys
        else math.inf,
        suspect_level=keys["suspect_level"].number(positive=True) if "suspect_level" in keys
        else math.inf,
        linearity=linearity,
    )


def _detector(node: _Node, layout: str) -> DetectorSpec:
    keys = node.mapping(("id", "name", "size", "serial", "hdu", "amplifiers"),
                        ("id", "name", "size", "amplifiers"))
    if keys["size"].value() == "any":  # taken from each file (a one-amplifier detector)
        width = height = 0
    else:
        size = keys["size"].sequence()
        if len(size) != 2:
            raise keys["size"].fail("must be [width, height] of the trimmed detector image, "
                                    "or any")
        width, height = (n.integer(1) for n in size)
    amp_nodes = keys["amplifiers"].sequence()
    if not amp_nodes:
        raise keys["amplifiers"].fail("a detector needs at least one amplifier")
    amps = tuple(_amplifier(n) for n in amp_nodes)
    if width == 0 and (len(amps) != 1 or not amps[0].data_section.whole):
        raise keys["size"].fail("size: any needs one amplifier whose data_section is all")
    for amp, amp_node in zip(amps, amp_nodes):
        if amp.data_section.whole and width != 0:
            raise amp_node.fail("data_section: all needs the detector's size: any")
    names = [a.name for a in amps]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise amp_nodes[i].fail(f"amplifier name {name!r} given twice")
    hdu: int | str | None = None
    if "hdu" in keys:
        value = keys["hdu"].value()
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (
                isinstance(value, int) and value < 0):
            raise keys["hdu"].fail(f"must be an HDU index >= 0 or an EXTNAME, not {value!r}")
        hdu = value
    spec = DetectorSpec(id=keys["id"].integer(0), name=keys["name"].string(_NAME),
                        width=width, height=height, amplifiers=amps,
                        serial=str(keys["serial"].value()) if "serial" in keys else "", hdu=hdu)
    _check_geometry(spec, amp_nodes, keys["size"], layout)
    return spec


def _check_geometry(spec: DetectorSpec, amp_nodes: list[_Node], size: _Node,
                    layout: str) -> None:
    """Fixed sections: inside their HDU, no overlaps, tiling the trimmed image's size."""
    boxes = [a.data_section.box for a in spec.amplifiers]
    if any(b is None for b in boxes) or spec.width == 0:
        return  # read from headers: checked on each file
    for amp, node in zip(spec.amplifiers, amp_nodes):
        over = amp.overscan_section.box if amp.overscan_section is not None else None
        data = amp.data_section.box
        assert data is not None
        if over is not None and _overlap(data, over):
            raise node.fail(f"amplifier {amp.name}: its overscan section "
                            f"{format_section(over)} overlaps its data section "
                            f"{format_section(data)}")
    if layout == "amplifiers-per-file":
        total_w = sum(b.width for b in boxes if b is not None)
        heights = {b.height for b in boxes if b is not None}
        if len(heights) != 1 or total_w != spec.width or heights.pop() != spec.height:
            raise size.fail(f"the amplifiers' data sections (side by side) are not "
                            f"{spec.width}x{spec.height}")
        return
    for i, a in enumerate(boxes):
        for j in range(i):
            b = boxes[j]
            if a is not None and b is not None and _overlap(a, b):
                raise amp_nodes[i].fail(f"data section {format_section(a)} overlaps that of "
                                        f"amplifier {spec.amplifiers[j].name}")
    width, height = assembled_size([b for b in boxes if b is not None])
    if (width, height) != (spec.width, spec.height):
        raise size.fail(f"[{spec.width}, {spec.height}] but the amplifiers' data sections "
                        f"assemble into {width}x{height}")


def _overlap(a: Box2I, b: Box2I) -> bool:
    return not (a.x1 < b.x0 or b.x1 < a.x0 or a.y0 + a.height <= b.y0
                or b.y0 + b.height <= a.y0)


def assembled_size(boxes: list[Box2I]) -> tuple[int, int]:
    """The size of the trimmed image the data sections assemble into (columns of amplifiers
    by their first raw column, rows by their first raw row)."""
    widths = {b.x0: b.width for b in boxes}
    heights = {b.y0: b.height for b in boxes}
    return sum(widths.values()), sum(heights.values())


def trimmed_origins(boxes: list[Box2I]) -> list[tuple[int, int]]:
    """Where each data section goes in the trimmed image: amplifiers are packed in the order
    of their raw columns and rows, overscans and gaps between them removed."""
    xs = sorted({b.x0: b.width for b in boxes}.items())
    ys = sorted({b.y0: b.height for b in boxes}.items())
    x_at, y_at = {}, {}
    offset = 0
    for x0, width in xs:
        x_at[x0] = offset
        offset += width
    offset = 0
    for y0, height in ys:
        y_at[y0] = offset
        offset += height
    return [(x_at[b.x0], y_at[b.y0]) for b in boxes]


def _translation(node: _Node, target: str) -> Translation:
    if isinstance(node.node, yaml.ScalarNode):
        return Translation(target, (node.string().strip().upper(),))
    if isinstance(node.node, yaml.SequenceNode):
        return Translation(target, tuple(n.string().strip().upper() for n in node.sequence()))
    keys = node.mapping(("keyword", "fallbacks", "expression", "default", "agree", "allowed"))
    if not any(k in keys for k in ("keyword", "expression", "default")):
        raise node.fail("give a keyword, an expression or a default")
    keywords: list[str] = []
    if "keyword" in keys:
        keywords.append(keys["keyword"].string().strip().upper())
    if "fallbacks" in keys:
        keywords += [n.string().strip().upper() for n in keys["fallbacks"].sequence()]
    expression = None
    if "expression" in keys:
        try:
            expression = Expression(keys["expression"].string())
        except ExpressionError as exc:
            raise keys["expression"].fail(str(exc)) from None
    default: Any = _NO_DEFAULT
    if "default" in keys:
        default = keys["default"].value()
        if not isinstance(default, (int, float, str)) or isinstance(default, bool):
            raise keys["default"].fail(f"must be a number or a string, not {default!r}")
    allowed: tuple[str, ...] = ()
    if "allowed" in keys:
        allowed = tuple(str(n.value()) for n in keys["allowed"].sequence())
    return Translation(target, tuple(keywords), expression, default,
                       keys["agree"].boolean() if "agree" in keys else False, allowed)


_TOP_KEYS = ("name", "description", "layout", "detectors", "filters", "header", "config")


def parse_camera(text: str, source: str = "<text>") -> Camera:
    """Read and check a camera description.

    Parameters
    ----------
    text : str
        The YAML text.
    source : str
        Its file name, for messages.

    Raises
    ------
    CameraError
        Naming the file, the key and the line of the first error.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise CameraError(source, "", mark.line + 1 if mark else 0,
                          f"not valid YAML ({exc.problem})") from None
    except yaml.YAMLError as exc:
        raise CameraError(source, "", 0, f"not valid YAML ({exc})") from None
    if root is None:
        raise CameraError(source, "", 0, "empty camera file")
    top = _Node(root, "", source).mapping(_TOP_KEYS, ("name", "layout", "filters", "header"))
    name = top["name"].string(_NAME)
    layout = top["layout"].string()
    if layout not in LAYOUTS:
        raise top["layout"].fail(f"{layout!r} is not one of {', '.join(LAYOUTS)}")
    detectors: list[DetectorSpec] = []
    if "detectors" in top:
        det_nodes = top["detectors"].sequence()
        for det_node in det_nodes:
            spec = _detector(det_node, layout)
            for other in detectors:
                if other.id == spec.id or other.name == spec.name:
                    raise det_node.fail(f"detector id {spec.id} or name {spec.name!r} given "
                                        "twice")
            detectors.append(spec)
    if not detectors and layout != "hpcpipe-exposure":
        raise (top["detectors"] if "detectors" in top else top["layout"]).fail(
            f"the {layout} layout needs a list of detectors")
    filters: list[FilterSpec] = []
    seen: dict[str, str] = {}
    for f_node in top["filters"].sequence():
        keys = f_node.mapping(("name", "aliases", "wavelength"), ("name",))
        spec_f = FilterSpec(
            name=keys["name"].string(_NAME),
            aliases=tuple(str(n.value()).strip() for n in keys["aliases"].sequence())
            if "aliases" in keys else (),
            wavelength=keys["wavelength"].number(positive=True) if "wavelength" in keys
            else math.nan)
        for label in (spec_f.name, *spec_f.aliases):
            if label in seen:
                raise f_node.fail(f"filter name or alias {label!r} already names filter "
                                  f"{seen[label]!r}")
            seen[label] = spec_f.name
        filters.append(spec_f)
    if not filters:
        raise top["filters"].fail("a camera needs at least one filter")
    header = top["header"].mapping(tuple(TRANSLATION_TARGETS))
    translations = {target: _translation(n, target) for target, n in header.items()}
    for target, (required, doc) in TRANSLATION_TARGETS.items():
        if required and target not in translations:
            raise CameraError(source, "header", top["header"].key_line,
                              f"missing required key {target!r} ({doc})")
    if "ccd" not in translations and len(detectors) != 1:
        raise top["header"].fail("missing key 'ccd' (how a raw names its detector): "
                                 "required unless the camera has exactly one detector")
    if layout == "amplifiers-per-file" and "amplifier" not in translations:
        raise top["header"].fail("missing key 'amplifier': the amplifiers-per-file layout "
                                 "needs the keyword naming each HDU's amplifier")
    ts = translations.get("timeScale")
    if ts is not None and ts.has_default and str(ts.default).upper() not in TIME_SCALES:
        raise header["timeScale"].fail(f"default {ts.default!r} is not one of "
                                       f"{', '.join(TIME_SCALES)}")
    config: dict[str, dict[str, Any]] = {}
    if "config" in top:
        for task, task_node in top["config"].free_mapping().items():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", task):
                raise task_node.fail("must be a task name (processCcd, isr...)")
            fields: dict[str, Any] = {}
            for dotted, value_node in task_node.free_mapping().items():
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*",
                                    dotted):
                    raise value_node.fail("must be a dotted config field name "
                                          "(isr.doOverscan)")
                value = value_node.value()
                if not _plain(value):
                    raise value_node.fail(f"must be a number, string, true/false or a list "
                                          f"of them, not {value!r}")
                fields[dotted] = value
            config[task] = fields
    return Camera(name=name, layout=layout, detectors=tuple(detectors),
                  filters=tuple(filters), translations=translations, config=config,
                  description=str(top["description"].value()) if "description" in top
                  else "", source=source, text=text)


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return False


def load_camera(path: str | os.PathLike[str]) -> Camera:
    """Read and check the camera file at ``path``.

    Raises
    ------
    CameraError
        If the file is missing or unreadable, or has an error (file, key and line named).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CameraError(str(path), "", 0, f"cannot read the camera file ({exc})") from None
    return parse_camera(text, str(path))
