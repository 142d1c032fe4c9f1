"""Typed config fields: scalars, ranges, choices, lists and dicts.

A field is a descriptor declared in the body of a :class:`~hpcpipe.config.Config` subclass. It
carries a type, a default, a doc string and its checks; values are type-checked when they are
set (an ``int`` is accepted for a ``float``, never the other way round, and NumPy scalars become
Python ones) and the rest (optional, lengths, custom checks) when the config is validated.
``None`` may be set on any field; :meth:`~hpcpipe.config.Config.validate` refuses it unless the
field is optional.
"""

from __future__ import annotations

import ast
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, MutableSequence
from typing import TYPE_CHECKING, Any, ClassVar

from hpcpipe.config import history
from hpcpipe.config.compare import ConfigDifference
from hpcpipe.config.errors import FieldValidationError

if TYPE_CHECKING:  # type-only: config.py imports this module
    from hpcpipe.config.config import Config

__all__ = ["Field", "RangeField", "ChoiceField", "ListField", "DictField", "ConfigList",
           "ConfigDict", "py_literal"]

SCALAR_TYPES: tuple[type, ...] = (bool, int, float, str, complex)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _type_name(dtype: type) -> str:
    return dtype.__name__


def convert_scalar(dtype: type, value: Any) -> Any:
    """Return ``value`` as a ``dtype``, or raise ``TypeError`` if it is not one.

    An ``int`` is accepted for a ``float`` or ``complex``; ``bool`` is never taken for a number
    or a number for a ``bool``; NumPy scalars become the Python type.
    """
    if value is None:
        return None
    if dtype is bool:
        if isinstance(value, bool) or (getattr(value, "dtype", None) is not None
                                       and value.dtype.kind == "b" and value.ndim == 0):
            return bool(value)
    elif dtype is str:
        if isinstance(value, str):
            return str(value)
    elif not _is_bool(value):
        if dtype is int and isinstance(value, numbers.Integral):
            return int(value)
        if dtype is float and isinstance(value, numbers.Real):
            return float(value)
        if dtype is complex and isinstance(value, numbers.Complex):
            return complex(value)
    raise TypeError(f"expected {_type_name(dtype)}, got {type(value).__name__} {value!r}")


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def parse_scalar(dtype: type, text: str) -> Any:
    """Parse command-line text as a ``dtype`` (``"None"`` is ``None``).

    Raises
    ------
    ValueError
        If the text is not a ``dtype``; the message says what was expected.
    """
    text = text.strip()
    if text == "None":
        return None
    if dtype is str:
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            try:
                return str(ast.literal_eval(text))
            except (ValueError, SyntaxError):
                pass
        return text
    if dtype is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"expected a bool (True or False), got {text!r}")
    try:
        return dtype(text)
    except ValueError:
        article = "an" if _type_name(dtype)[0] in "aeiou" else "a"
        raise ValueError(f"expected {article} {_type_name(dtype)}, got {text!r}") from None


def py_literal(value: Any) -> str:
    """Return Python source that evaluates to ``value`` (``float('nan')`` for NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, (list, tuple, ConfigList)):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    if isinstance(value, (dict, ConfigDict)):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def values_equal(a: Any, b: Any) -> bool:
    """Compare two field values, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple, ConfigList)) and isinstance(b, (list, tuple, ConfigList)):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b if a is not None and b is not None else a is b


class Field:
    """A config field holding one scalar (``bool``, ``int``, ``float``, ``str``, ``complex``).

    Parameters
    ----------
    doc : str
        What the field controls; it is written above the field in saved configs.
    dtype : type
        The type of the value.
    default : object, optional
        The value of a new config.
    optional : bool, optional
        Whether ``None`` passes validation.
    check : callable, optional
        ``check(value) -> bool``, run by validation on values that are not ``None``.
    """

    #: Whether the field holds a group of fields (a config) rather than a value.
    is_group = False

    def __init__(self, doc: str, dtype: type, default: Any = None, optional: bool = False,
                 check: Callable[[Any], bool] | None = None) -> None:
        if dtype not in SCALAR_TYPES:
            raise TypeError(f"unsupported field type {dtype!r}; choose from "
                            f"{', '.join(t.__name__ for t in SCALAR_TYPES)}")
        self._init_common(doc, optional, check)
        self.dtype = dtype
        self.default = self._convert(default, self.name)

    def _init_common(self, doc: str, optional: bool,
                     check: Callable[[Any], bool] | None) -> None:
        """Set what every kind of field has (the group fields do not call ``__init__``)."""
        self.doc = doc
        self.optional = optional
        self.check = check
        self.name = "<unbound>"
        self.source = history.caller_location()

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.describe_type()})"

    def describe_type(self) -> str:
        """Return a short description of the values the field takes (``int``, ``list of str``)."""
        return _type_name(self.dtype)

    # descriptor protocol -----------------------------------------------------------------

    def __get__(self, instance: Config | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance._storage[self.name]

    def __set__(self, instance: Config, value: Any) -> None:
        instance._check_not_frozen(self.name)
        kind, location = history.current_label()
        self._assign(instance, value)
        instance._record(self.name, self._history_value(instance), kind, location)

    # hooks, overridden by the other field kinds ----------------------------------------------

    def _init_value(self, instance: Config) -> None:
        """Store the default in a new config and record it in the history."""
        instance._storage[self.name] = self._copy_default()
        instance._record(self.name, self._history_value(instance), "default", self.source)

    def _copy_default(self) -> Any:
        return self.default

    def _assign(self, instance: Config, value: Any) -> None:
        instance._storage[self.name] = self._convert(value, instance._full_name(self.name))

    def _fail(self, full_name: str, reason: str) -> FieldValidationError:
        return FieldValidationError(f"field {full_name!r} ({self.describe_type()}): {reason}",
                                    full_name)

    def _convert(self, value: Any, full_name: str) -> Any:
        """Type-check ``value`` and return what is stored, raising FieldValidationError."""
        try:
            value = convert_scalar(self.dtype, value)
        except TypeError as exc:
            raise self._fail(full_name, str(exc)) from None
        if value is not None:
            self._check_value(value, full_name)
        return value

    def _check_value(self, value: Any, full_name: str) -> None:
        """Checks made when a value is set (ranges, choices)."""

    def _history_value(self, instance: Config) -> Any:
        return instance._storage[self.name]

    def validate(self, instance: Config) -> None:
        """Check the field's value in ``instance``.

        Raises
        ------
        FieldValidationError
            If the value is ``None`` and the field is not optional, or fails ``check``.
        """
        value = self.__get__(instance)
        full_name = instance._full_name(self.name)
        if value is None:
            if not self.optional:
                raise self._fail(full_name, "is required but is None")
            return
        if self.check is not None and not self.check(value):
            raise self._fail(full_name, f"value {value!r} fails its check")

    def _freeze(self, instance: Config) -> None:
        """Freeze what the field holds (nested configs)."""

    def _parse_text(self, text: str, full_name: str) -> Any:
        """Parse a ``-c name=value`` value."""
        try:
            return parse_scalar(self.dtype, text)
        except ValueError as exc:
            raise self._fail(full_name, str(exc)) from None

    def _save_lines(self, instance: Config, prefix: str) -> list[str]:
        lines = [f"# {line}" for line in self.doc.strip().splitlines()]
        lines.append(f"{prefix}.{self.name} = {py_literal(self.__get__(instance))}")
        return lines

    def _override(self, instance: Config, attr: str, text: str) -> None:
        """Set the field from the text of a ``-c name=value`` override.

        ``attr`` is the last part of the dotted name (the field's own name, or what a group
        field resolved it to, such as ``names`` for a registry choice).
        """
        setattr(instance, self.name, self._parse_text(text, instance._full_name(self.name)))

    def _resolve_child(self, instance: Config, key: str | None) -> Any:
        """The node a dotted name reaches through this field (``name`` or ``name[key]``).

        Raises
        ------
        KeyError
            If the field takes no ``[key]`` (only a registry choice does).
        """
        if key is not None:
            raise KeyError(key)
        return self.__get__(instance)

    def _compare(self, a: Config, b: Config, prefix: str) -> list[ConfigDifference]:
        va, vb = self.__get__(a), self.__get__(b)
        if values_equal(va, vb):
            return []
        return [ConfigDifference(prefix + self.name, _plain(va), _plain(vb))]

    def _to_plain(self, instance: Config) -> Any:
        return _plain(self.__get__(instance))

    def _flat_items(self, instance: Config, prefix: str) -> Iterator[tuple[str, Any]]:
        """``(dotted name, plain value)`` of every leaf under this field (stored configs)."""
        yield prefix + self.name, self._to_plain(instance)

    def _subconfigs(self, instance: Config) -> Iterator[tuple[str, Config]]:
        """The nested configs the field holds, with their name relative to ``instance``."""
        return iter(())

    def _leaf_names(self, instance: Config) -> list[str]:
        """The dotted names of the leaf fields under this one, relative to ``instance``."""
        return [self.name]


def _plain(value: Any) -> Any:
    if isinstance(value, ConfigList):
        return list(value)
    if isinstance(value, ConfigDict):
        return dict(value)
    return value


class RangeField(Field):
    """A number between bounds.

    Parameters
    ----------
    doc, dtype, default, optional, check
        As for :class:`Field`; ``dtype`` is ``int`` or ``float``.
    min, max : number, optional
        The bounds (``None``: unbounded).
    inclusive_min : bool, optional
        Whether ``min`` itself is allowed (default yes).
    inclusive_max : bool, optional
        Whether ``max`` itself is allowed (default no).
    """

    def __init__(self, doc: str, dtype: type, default: Any = None, optional: bool = False,
                 min: float | None = None, max: float | None = None,
                 inclusive_min: bool = True, inclusive_max: bool = False,
                 check: Callable[[Any], bool] | None = None) -> None:
        if dtype not in (int, float):
            raise TypeError(f"RangeField takes int or float, not {dtype!r}")
        if min is not None and max is not None and (min > max or (
                min == max and not (inclusive_min and inclusive_max))):
            raise ValueError(f"RangeField: empty range {min}..{max}")
        self.min, self.max = min, max
        self.inclusive_min, self.inclusive_max = inclusive_min, inclusive_max
        super().__init__(doc, dtype, default, optional, check)

    def describe_type(self) -> str:
        lo = "(-inf" if self.min is None else ("[" if self.inclusive_min else "(") + str(self.min)
        hi = "inf)" if self.max is None else str(self.max) + ("]" if self.inclusive_max else ")")
        return f"{_type_name(self.dtype)} in {lo}, {hi}"

    def _check_value(self, value: Any, full_name: str) -> None:
        too_low = self.min is not None and (
            value < self.min or (value == self.min and not self.inclusive_min))
        too_high = self.max is not None and (
            value > self.max or (value == self.max and not self.inclusive_max))
        if too_low or too_high or (isinstance(value, float) and math.isnan(value)):
            raise self._fail(full_name, f"{value!r} is out of range")


class ChoiceField(Field):
    """A value among a fixed set, each with its own doc string.

    Parameters
    ----------
    doc, dtype, default, optional, check
        As for :class:`Field`.
    allowed : mapping
        The allowed values, each mapped to what it means.
    """

    def __init__(self, doc: str, dtype: type, allowed: Mapping[Any, str], default: Any = None,
                 optional: bool = False, check: Callable[[Any], bool] | None = None) -> None:
        if not allowed:
            raise ValueError("ChoiceField needs at least one allowed value")
        self.allowed = dict(allowed)
        super().__init__(doc, dtype, default, optional, check)

    def describe_type(self) -> str:
        return f"{_type_name(self.dtype)}, one of {', '.join(map(repr, self.allowed))}"

    def _check_value(self, value: Any, full_name: str) -> None:
        if value not in self.allowed:
            raise self._fail(full_name, f"{value!r} is not an allowed value")

    def _save_lines(self, instance: Config, prefix: str) -> list[str]:
        lines = super()._save_lines(instance, prefix)
        choices = [f"#   {v!r}: {d}" for v, d in self.allowed.items()]
        return lines[:-1] + ["# Allowed values:"] + choices + lines[-1:]


class _Container:
    """Shared parts of the list and dict values: the owner, freezing and history."""

    __slots__ = ("_owner", "_name", "_data")

    def _field(self) -> Any:
        return type(self._owner)._fields[self._name]

    def _before_change(self) -> None:
        self._owner._check_not_frozen(self._name)

    def _after_change(self) -> None:
        kind, location = history.current_label()
        self._owner._record(self._name, _plain(self), kind, location)

    def __repr__(self) -> str:
        return repr(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Container):
            other = other._data
        return self._data == other

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> tuple[Any, str, Any]:
        return self._owner, self._name, self._data

    def __setstate__(self, state: tuple[Any, str, Any]) -> None:
        self._owner, self._name, self._data = state


class ConfigList(_Container, MutableSequence):
    """The value of a :class:`ListField`: a list that type-checks its items and records changes."""

    __slots__ = ()

    def __init__(self, owner: Config, name: str, items: list[Any]) -> None:
        self._owner, self._name, self._data = owner, name, list(items)

    def __getitem__(self, index: Any) -> Any:
        return self._data[index]

    def __len__(self) -> int:
        return len(self._data)

    def _convert(self, item: Any) -> Any:
        return self._field()._convert_item(item, self._owner._full_name(self._name))

    def __setitem__(self, index: Any, value: Any) -> None:
        self._before_change()
        if isinstance(index, slice):
            self._data[index] = [self._convert(v) for v in value]
        else:
            self._data[index] = self._convert(value)
        self._after_change()

    def __delitem__(self, index: Any) -> None:
        self._before_change()
        del self._data[index]
        self._after_change()

    def insert(self, index: int, value: Any) -> None:
        """Insert an item before ``index``."""
        self._before_change()
        self._data.insert(index, self._convert(value))
        self._after_change()


class ConfigDict(_Container, MutableMapping):
    """The value of a :class:`DictField`: a dict that type-checks its items and records changes."""

    __slots__ = ()

    def __init__(self, owner: Config, name: str, items: dict[Any, Any]) -> None:
        self._owner, self._name, self._data = owner, name, dict(items)

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._before_change()
        key, value = self._field()._convert_item(key, value, self._owner._full_name(self._name))
        self._data[key] = value
        self._after_change()

    def __delitem__(self, key: Any) -> None:
        self._before_change()
        del self._data[key]
        self._after_change()


class _ContainerField(Field):
    """What :class:`ListField` and :class:`DictField` share: a copied default, the value kept
    wrapped in its container (:class:`ConfigList`, :class:`ConfigDict`) so that changes to
    items are type-checked and recorded, and a history of plain copies.

    Subclasses set :attr:`container` and define ``_convert_items``.
    """

    #: The class the stored value is wrapped in.
    container: ClassVar[type[ConfigList] | type[ConfigDict]]

    def __init__(self, doc: str, dtype: type, default: Any, optional: bool) -> None:
        super().__init__(doc, dtype, None, optional, None)
        self.default = None if default is None else self._convert_items(default, self.name)

    def _convert_items(self, value: Any, full_name: str) -> Any:
        raise NotImplementedError

    def _copy_default(self) -> Any:
        return None if self.default is None else self.default.copy()

    def _init_value(self, instance: Config) -> None:
        super()._init_value(instance)
        self._wrap(instance)

    def _wrap(self, instance: Config) -> None:
        items = instance._storage[self.name]
        if items is not None:
            instance._storage[self.name] = self.container(instance, self.name, items)

    def _assign(self, instance: Config, value: Any) -> None:
        full_name = instance._full_name(self.name)
        instance._storage[self.name] = (None if value is None
                                        else self._convert_items(value, full_name))
        self._wrap(instance)

    def _history_value(self, instance: Config) -> Any:
        return _plain(instance._storage[self.name])


class ListField(_ContainerField):
    """A list of scalars.

    Parameters
    ----------
    doc, dtype, optional
        As for :class:`Field`; ``dtype`` is the type of the items.
    default : sequence, optional
        The items of a new config (copied).
    length, min_length, max_length : int, optional
        Constraints on the number of items, checked by validation.
    item_check : callable, optional
        ``item_check(item) -> bool``, checked when an item is set.
    list_check : callable, optional
        ``list_check(list) -> bool``, checked by validation.
    """

    container = ConfigList

    def __init__(self, doc: str, dtype: type, default: Iterable[Any] | None = None,
                 optional: bool = False, length: int | None = None,
                 min_length: int | None = None, max_length: int | None = None,
                 item_check: Callable[[Any], bool] | None = None,
                 list_check: Callable[[Any], bool] | None = None) -> None:
        self.length, self.min_length, self.max_length = length, min_length, max_length
        self.item_check = item_check
        self.list_check = list_check
        super().__init__(doc, dtype, default, optional)

    def describe_type(self) -> str:
        return f"list of {_type_name(self.dtype)}"

    def _convert_items(self, value: Any, full_name: str) -> list[Any]:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise self._fail(full_name, f"expected a list, got {type(value).__name__} {value!r}")
        return [self._convert_item(v, full_name) for v in value]

    def _convert_item(self, item: Any, full_name: str) -> Any:
        try:
            item = convert_scalar(self.dtype, item)
        except TypeError as exc:
            raise self._fail(full_name, f"item: {exc}") from None
        if item is None:
            raise self._fail(full_name, "items may not be None")
        if self.item_check is not None and not self.item_check(item):
            raise self._fail(full_name, f"item {item!r} fails its check")
        return item

    def validate(self, instance: Config) -> None:
        super().validate(instance)
        value = self.__get__(instance)
        if value is None:
            return
        full_name = instance._full_name(self.name)
        n = len(value)
        if self.length is not None and n != self.length:
            raise self._fail(full_name, f"has {n} items, needs {self.length}")
        if self.min_length is not None and n < self.min_length:
            raise self._fail(full_name, f"has {n} items, needs at least {self.min_length}")
        if self.max_length is not None and n > self.max_length:
            raise self._fail(full_name, f"has {n} items, needs at most {self.max_length}")
        if self.list_check is not None and not self.list_check(list(value)):
            raise self._fail(full_name, f"value {list(value)!r} fails its check")

    def _parse_text(self, text: str, full_name: str) -> Any:
        text = text.strip()
        if text == "None":
            return None
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, (list, tuple)):
            return list(value)
        if not text:
            return []
        items = []
        for part in text.split(","):
            try:
                items.append(parse_scalar(self.dtype, part))
            except ValueError as exc:
                raise self._fail(full_name, f"item: {exc}") from None
        return items


class DictField(_ContainerField):
    """A dict from scalars to scalars.

    Parameters
    ----------
    doc, optional
        As for :class:`Field`.
    keytype, itemtype : type
        The types of the keys and of the values.
    default : mapping, optional
        The items of a new config (copied).
    item_check : callable, optional
        ``item_check(value) -> bool``, checked when an item is set.
    dict_check : callable, optional
        ``dict_check(dict) -> bool``, checked by validation.
    """

    container = ConfigDict

    def __init__(self, doc: str, keytype: type, itemtype: type,
                 default: Mapping[Any, Any] | None = None, optional: bool = False,
                 item_check: Callable[[Any], bool] | None = None,
                 dict_check: Callable[[Any], bool] | None = None) -> None:
        if keytype not in SCALAR_TYPES or itemtype not in SCALAR_TYPES:
            raise TypeError(f"unsupported DictField types {keytype!r}, {itemtype!r}")
        self.keytype = keytype
        self.item_check = item_check
        self.dict_check = dict_check
        super().__init__(doc, itemtype, default, optional)

    def describe_type(self) -> str:
        return f"dict of {_type_name(self.keytype)} to {_type_name(self.dtype)}"

    def _convert_items(self, value: Any, full_name: str) -> dict[Any, Any]:
        if not isinstance(value, Mapping):
            raise self._fail(full_name, f"expected a dict, got {type(value).__name__} {value!r}")
        return dict(self._convert_item(k, v, full_name) for k, v in value.items())

    def _convert_item(self, key: Any, item: Any, full_name: str) -> tuple[Any, Any]:
        try:
            key = convert_scalar(self.keytype, key)
            item = convert_scalar(self.dtype, item)
        except TypeError as exc:
            raise self._fail(full_name, f"item {key!r}: {exc}") from None
        if key is None:
            raise self._fail(full_name, "keys may not be None")
        if item is not None and self.item_check is not None and not self.item_check(item):
            raise self._fail(full_name, f"item {key!r}: {item!r} fails its check")
        return key, item

    def validate(self, instance: Config) -> None:
        super().validate(instance)
        value = self.__get__(instance)
        if value is not None and self.dict_check is not None and not self.dict_check(dict(value)):
            raise self._fail(instance._full_name(self.name),
                             f"value {dict(value)!r} fails its check")

    def _parse_text(self, text: str, full_name: str) -> Any:
        if text.strip() == "None":
            return None
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = None
        if not isinstance(value, dict):
            raise self._fail(full_name, f"expected a dict such as {{'a': 1}}, got {text!r}")
        return value
