"""The small expression language of camera files' header translations.

A camera file may compute a data id value from header cards with an expression such as::

    seconds_since(header("DATE-OBS"), "2020-01-01")    # 2026-01-15T03:12:45 -> 190437165
    EXPNUM * 100 + int(get("CCDNUM", 0))

The expression is parsed by :func:`ast.parse` and checked node by node against a short list:
numbers and strings, the operators ``+ - * // %`` and unary minus, header keywords written as
names (``EXPNUM``) or as ``header("DATE-OBS")`` (for keywords that are not Python names), and
calls of the functions of :data:`FUNCTIONS`. Nothing else is accepted: no attribute access, no
subscripts, no comprehensions, no other names. It is never given to :func:`eval`: the checked
tree is walked by :func:`evaluate`, so reading a camera file never runs code.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any

from hpcpipe.errors import HpcpipeError

__all__ = ["Expression", "ExpressionError", "MissingKeywordError", "FUNCTIONS"]


class ExpressionError(HpcpipeError, ValueError):
    """An expression outside the language, or one that fails on a header's values."""


class MissingKeywordError(ExpressionError):
    """A header keyword an expression needs is absent (``keyword`` names it)."""

    def __init__(self, keyword: str) -> None:
        self.keyword = keyword
        super().__init__(f"missing header keyword {keyword}")


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value))


def _substr(value: Any, start: int, end: int | None = None) -> str:
    return str(value)[int(start):None if end is None else int(end)]


def _seconds_since(value: Any, epoch: Any) -> int:
    """Whole seconds from the date ``epoch`` to the date ``value`` (both ISO 8601)."""
    try:
        when = dt.datetime.fromisoformat(str(value).strip())
        start = dt.datetime.fromisoformat(str(epoch).strip())
    except ValueError as exc:
        raise ExpressionError(f"seconds_since({value!r}, {epoch!r}): not ISO 8601 dates "
                              f"({exc})") from None
    return int((when.replace(tzinfo=None) - start.replace(tzinfo=None)).total_seconds() // 1)


def _int(value: Any) -> int:
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, float) and not value.is_integer():
        raise ExpressionError(f"int({value!r}): not a whole number")
    return int(value)


#: The functions an expression may call (besides ``header`` and ``get``).
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "int": _int,
    "float": float,
    "str": lambda v: str(v).strip(),
    "digits": _digits,
    "substr": _substr,
    "upper": lambda v: str(v).upper(),
    "lower": lambda v: str(v).lower(),
    "strip": lambda v: str(v).strip(),
    "replace": lambda v, old, new: str(v).replace(str(old), str(new)),
    "round": lambda v, n=0: round(float(v), int(n)),
    "seconds_since": _seconds_since,
}
_OPERATORS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}


class Expression:
    """A checked expression over header cards.

    Parameters
    ----------
    text : str
        The expression.

    Raises
    ------
    ExpressionError
        If ``text`` is not an expression of the language (the message says what is not
        allowed).
    """

    def __init__(self, text: str) -> None:
        self.text = str(text)
        try:
            tree = ast.parse(self.text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"expression {self.text!r} does not parse ({exc.msg})") \
                from None
        self._tree = tree.body
        self.keywords: list[str] = []
        self._check(self._tree)

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float, str)):
                raise ExpressionError(f"expression {self.text!r}: constant {node.value!r} is "
                                      "not a number or a string")
        elif isinstance(node, ast.Name):
            self.keywords.append(node.id)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _OPERATORS:
                raise ExpressionError(f"expression {self.text!r}: operator "
                                      f"{type(node.op).__name__} is not allowed (+ - * // %)")
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            self._check(node.operand)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.keywords:
                raise ExpressionError(f"expression {self.text!r}: only calls of "
                                      f"header, get, {', '.join(FUNCTIONS)} are allowed")
            name = node.func.id
            if name in ("header", "get"):
                wanted = (1,) if name == "header" else (2,)
                if len(node.args) not in wanted or not (
                        isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[0].value, str)):
                    raise ExpressionError(f"expression {self.text!r}: {name}() takes a "
                                          "keyword as a string"
                                          + (" and a default" if name == "get" else ""))
                self.keywords.append(node.args[0].value)
                if name == "get":
                    self._check(node.args[1])
                return
            if name not in FUNCTIONS:
                raise ExpressionError(f"expression {self.text!r}: unknown function {name!r} "
                                      f"(known: header, get, {', '.join(FUNCTIONS)})")
            for arg in node.args:
                self._check(arg)
        else:
            raise ExpressionError(f"expression {self.text!r}: {type(node).__name__} is not "
                                  "allowed (numbers, strings, header keywords, + - * // %, "
                                  "and function calls only)")

    def evaluate(self, header: Mapping[str, Any]) -> Any:
        """The value of the expression for one header.

        Raises
        ------
        MissingKeywordError
            If a keyword it reads (other than through ``get``) is absent.
        ExpressionError
            If a function or operator fails on the values (the message names the expression).
        """
        try:
            return self._eval(self._tree, header)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise ExpressionError(f"expression {self.text!r} fails on this header: {exc}") \
                from None

    def _eval(self, node: ast.AST, header: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return _lookup(header, node.id)
        if isinstance(node, ast.BinOp):
            return _OPERATORS[type(node.op)](self._eval(node.left, header),
                                             self._eval(node.right, header))
        if isinstance(node, ast.UnaryOp):
            return -self._eval(node.operand, header)
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        name = node.func.id
        if name == "header":
            return _lookup(header, node.args[0].value)  # type: ignore[attr-defined]
        if name == "get":
            key = node.args[0].value  # type: ignore[attr-defined]
            value = header.get(key)
            return self._eval(node.args[1], header) if value is None or value == "" else value
        return FUNCTIONS[name](*(self._eval(a, header) for a in node.args))

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def _lookup(header: Mapping[str, Any], keyword: str) -> Any:
    value = header.get(keyword)
    if value is None or value == "":
        raise MissingKeywordError(keyword)
    return value
