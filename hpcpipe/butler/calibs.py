"""Calibration products and their validity ranges; choosing one for an exposure.

Each calibration product (a bias, dark or flat of one detector, and of one filter for flats)
is valid from ``valid_start`` to ``valid_end``, two dates ``YYYY-MM-DD`` included. The
butler finds the calibration of a science exposure by *rendezvous*: among the products of
the dataset type that share the exposure's calibration keys (detector, filter) and whose
validity contains the exposure's date, it takes the one whose ``calibDate`` is nearest to that
date (the later one on a tie).

Calibration files carry their validity in a ``CALIB_ID`` header card::

    CALIB_ID = 'calibDate=2026-01-10 validStart=2026-01-01 validEnd=2026-01-31'

``validStart`` and ``validEnd`` may be omitted; they then default to ``calibDate`` minus and
plus the mapper's default validity.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CalibEntry", "select_calibration", "parse_calib_id", "check_date", "shift_date"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def check_date(text: Any, what: str) -> str:
    """``text`` if it is a valid ``YYYY-MM-DD`` date, else ValueError naming ``what``."""
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        raise ValueError(f"{what} must be a date YYYY-MM-DD, not {text!r}")
    try:
        dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{what}: {text!r} is not a date ({exc})") from None
    return text


def shift_date(date: str, days: float) -> str:
    """The date ``days`` after ``date`` (both ``YYYY-MM-DD``)."""
    return (dt.date.fromisoformat(date) + dt.timedelta(days=int(days))).isoformat()


def parse_calib_id(text: str, default_validity_days: float) -> tuple[str, str, str]:
    """Parse a ``CALIB_ID`` card into ``(calibDate, validStart, validEnd)``.

    Raises
    ------
    ValueError
        If the card is malformed, a date is invalid or the range is empty.
    """
    items: dict[str, str] = {}
    for word in str(text).split():
        name, sep, value = word.partition("=")
        if not sep or name not in ("calibDate", "validStart", "validEnd") or name in items:
            raise ValueError(
                f"CALIB_ID {text!r}: expected 'calibDate=YYYY-MM-DD [validStart=YYYY-MM-DD] "
                f"[validEnd=YYYY-MM-DD]', found {word!r}"
            )
        items[name] = check_date(value, f"CALIB_ID {name}")
    if "calibDate" not in items:
        raise ValueError(f"CALIB_ID {text!r} has no calibDate")
    calib_date = items["calibDate"]
    start = items.get("validStart", shift_date(calib_date, -default_validity_days))
    end = items.get("validEnd", shift_date(calib_date, default_validity_days))
    if start > end:
        raise ValueError(f"CALIB_ID {text!r}: validStart {start} is after validEnd {end}")
    return calib_date, start, end


@dataclass(frozen=True)
class CalibEntry:
    """One calibration product in the registry.

    Attributes
    ----------
    dataset_type : str
        ``bias``, ``dark``, ``flat``...
    data_id : dict
        Its complete data id (``calibDate``, ``ccd`` and, for flats, ``filter``).
    valid_start, valid_end : str
        The first and last dates of validity (``YYYY-MM-DD``, inclusive).
    """

    dataset_type: str
    data_id: dict[str, Any]
    valid_start: str
    valid_end: str

    @staticmethod
    def encode(data_id: Mapping[str, Any]) -> str:
        """The canonical text of a data id (the registry's key)."""
        return json.dumps(dict(data_id), sort_keys=True)

    def valid_on(self, date: str) -> bool:
        """Whether the product is valid on ``date``."""
        return self.valid_start <= date <= self.valid_end

    def matches(self, keys: Mapping[str, Any]) -> bool:
        """Whether every item of ``keys`` that the entry's data id has is equal there."""
        return all(self.data_id[k] == v for k, v in keys.items() if k in self.data_id)

    def describe(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.data_id.items())
        return f"{{{items}}} valid {self.valid_start}..{self.valid_end}"


def select_calibration(entries: Sequence[CalibEntry], date: str, keys: Mapping[str, Any],
                       date_key: str = "calibDate") -> tuple[CalibEntry | None, list[CalibEntry]]:
    """Choose the calibration for an exposure taken on ``date``.

    Parameters
    ----------
    entries : sequence of CalibEntry
        The products of one dataset type.
    date : str
        The exposure's date, ``YYYY-MM-DD``.
    keys : mapping
        The calibration keys the product must share with the exposure (ccd, filter).
    date_key : str, optional
        The data id key of a product's own date.

    Returns
    -------
    chosen : CalibEntry or None
        The valid product whose date is nearest (the later one on a tie), or None.
    candidates : list of CalibEntry
        The products with matching keys, valid or not (for the error message).
    """
    candidates = [e for e in entries if e.matches(keys)]
    valid = [e for e in candidates if e.valid_on(date)]
    if not valid:
        return None, candidates
    day = dt.date.fromisoformat(date)

    def distance(entry: CalibEntry) -> tuple[int, int]:
        delta = (dt.date.fromisoformat(entry.data_id[date_key]) - day).days
        return abs(delta), -delta  # nearest first; on a tie the later product

    return min(valid, key=distance), candidates
