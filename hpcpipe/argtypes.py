"""argparse types of the command line: whole and real numbers with a lower bound.

Shared by every command's parser (:mod:`hpcpipe.commands`) and the task argument parser
(:mod:`hpcpipe.task.argparser`). The standard library only: the parsers of ``hpcpipe``
are built without importing the science (see :mod:`hpcpipe.cli`).
"""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "non_negative_int", "positive_float"]


def _whole_number(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of 1 or more."""
    return _whole_number(text, 1, "a positive number")


def non_negative_int(text: str) -> int:
    """argparse type: a whole number of 0 or more."""
    return _whole_number(text, 0, "0 or more")


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value
