"""The ``--id`` grammar: data id strings expanded into a list of data ids.

One string holds ``key=value`` pairs separated by spaces. A value is one of:

* a literal, ``r`` or ``HSC-R``; integer-looking literals (``12``, ``-3``) become ints;
* an inclusive integer range, ``1..5`` (1, 2, 3, 4, 5);
* a range with a stride, ``1..9:2`` (1, 3, 5, 7, 9);
* alternatives of the above separated by ``^``: ``g^r^i``, ``1..3^7``.

Different keys combine as a cross product, in the order they are written; several strings
give the union of their expansions, in order and without duplicates. An empty string is one
data id with no keys: all the data in the repository. Errors are :class:`DataIdError` naming
the bad token. For example ``visit=1..3:2 filter=g^r`` is four data ids: visit 1 and 3,
each with filter g and r.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Collection, Iterable
from typing import Union

from hpcpipe.errors import HpcpipeError

__all__ = ["DataIdError", "DataIdValue", "expand_data_ids", "parse_data_id",
           "check_data_id_keys", "MAX_DATA_IDS"]

DataIdValue = Union[int, str]

#: More data ids than this from one call is taken for a typing mistake (``visit=1..1000000000``).
MAX_DATA_IDS = 10_000_000

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_RANGE_RE = re.compile(r"^([+-]?\d+)\.\.([+-]?\d+)(?::([+-]?\d+))?$")


class DataIdError(HpcpipeError, ValueError):
    """A malformed data id string; the message names the bad token.

    Parameters
    ----------
    message : str
        What is wrong.
    token : str, optional
        The ``key=value`` token (or value) at fault.
    id_string : str, optional
        The whole data id string.
    """

    def __init__(self, message: str, token: str | None = None,
                 id_string: str | None = None) -> None:
        self.token = token
        self.id_string = id_string
        self.reason = message
        where = ""
        if token is not None:
            where = f"{token!r}"
            if id_string is not None and id_string.strip() != token:
                where += f" (in {id_string.strip()!r})"
            where += ": "
        super().__init__(where + message)


def _literal(text: str) -> DataIdValue:
    return int(text) if _INT_RE.match(text) else text


def _alternatives(value: str, token: str, id_string: str) -> list[range | DataIdValue]:
    """Parse one value into its alternatives: ranges and literals."""
    out: list[range | DataIdValue] = []
    for alt in value.split("^"):
        if not alt:
            raise DataIdError(f"empty alternative in {value!r} (use ^ between values)",
                              token, id_string)
        if ".." not in alt:
            out.append(_literal(alt))
            continue
        match = _RANGE_RE.match(alt)
        if match is None:
            raise DataIdError(f"{alt!r} is not an integer range (START..END or "
                              "START..END:STRIDE, with integers)", token, id_string)
        start, end = int(match.group(1)), int(match.group(2))
        stride = int(match.group(3)) if match.group(3) is not None else 1
        if stride <= 0:
            raise DataIdError(f"the stride of {alt!r} must be a positive integer",
                              token, id_string)
        if start > end:
            raise DataIdError(f"the range {alt!r} is empty (its start is after its end)",
                              token, id_string)
        out.append(range(start, end + 1, stride))
    return out


def parse_data_id(id_string: str) -> dict[str, list[DataIdValue]]:
    """Parse one data id string into each key's values, ranges expanded, duplicates dropped.

    Parameters
    ----------
    id_string : str
        ``key=value`` tokens separated by spaces (empty: no keys).

    Returns
    -------
    values : dict
        For each key, in the order written, its values in order.

    Raises
    ------
    DataIdError
        For a token that is not ``key=value``, a bad key, a key given twice, an empty or
        malformed range, an empty alternative, or more than :data:`MAX_DATA_IDS` values.
    """
    parsed: dict[str, list[range | DataIdValue]] = {}
    for token in id_string.split():
        key, sep, value = token.partition("=")
        if not sep:
            raise DataIdError("expected key=value", token, id_string)
        if not _KEY_RE.match(key):
            raise DataIdError(f"{key!r} is not a data id key (letters, digits and _)",
                              token, id_string)
        if not value:
            raise DataIdError(f"no value for {key!r}", token, id_string)
        if "=" in value:
            raise DataIdError("more than one '=' (separate key=value pairs with spaces)",
                              token, id_string)
        if key in parsed:
            raise DataIdError(f"key {key!r} is given twice in one data id; use ^ for "
                              "alternatives or give --id again", token, id_string)
        parsed[key] = _alternatives(value, token, id_string)
    values: dict[str, list[DataIdValue]] = {}
    for key, alternatives in parsed.items():
        count = sum(len(a) if isinstance(a, range) else 1 for a in alternatives)
        if count > MAX_DATA_IDS:
            raise DataIdError(f"{count} values, more than {MAX_DATA_IDS}", f"{key}=...",
                              id_string)
        flat: dict[DataIdValue, None] = {}
        for a in alternatives:
            for v in (a if isinstance(a, range) else (a,)):
                flat[v] = None
        values[key] = list(flat)
    return values


def check_data_id_keys(keys: Iterable[str], known_keys: Collection[str],
                       id_string: str | None = None) -> None:
    """Raise :class:`DataIdError` for a key not in ``known_keys`` (with the close matches)."""
    for key in keys:
        if key not in known_keys:
            close = difflib.get_close_matches(key, list(known_keys), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            known = ", ".join(sorted(known_keys)) or "none"
            raise DataIdError(f"unknown data id key {key!r} (known keys: {known}){hint}",
                              key, id_string)


def expand_data_ids(id_strings: Iterable[str] | str, *,
                    known_keys: Collection[str] | None = None,
                    max_ids: int = MAX_DATA_IDS) -> list[dict[str, DataIdValue]]:
    """Expand data id strings (the values of ``--id``) into a list of data ids.

    Parameters
    ----------
    id_strings : iterable of str, or str
        Data id strings, e.g. ``["visit=1..5 ccd=0^3", "visit=9 ccd=2"]``.
    known_keys : collection of str, optional
        The keys the repository's mapper knows; any other key is an error.
    max_ids : int, optional
        The largest number of data ids accepted (a guard against typing mistakes).

    Returns
    -------
    data_ids : list of dict
        The cross product over the keys of each string, the strings' results joined in order
        without duplicates; integer-looking values are ints. An empty string gives ``{}``.

    Raises
    ------
    DataIdError
        For a malformed string, naming the bad token.

    Examples
    --------
    >>> expand_data_ids(["visit=1..2", "visit=2^7 filter=r"])
    [{'visit': 1}, {'visit': 2}, {'visit': 2, 'filter': 'r'}, {'visit': 7, 'filter': 'r'}]
    """
    if isinstance(id_strings, str):
        id_strings = [id_strings]
    out: list[dict[str, DataIdValue]] = []
    seen: set[frozenset[tuple[str, DataIdValue]]] = set()
    for id_string in id_strings:
        values = parse_data_id(id_string)
        if known_keys is not None:
            check_data_id_keys(values, known_keys, id_string)
        count = math.prod(len(v) for v in values.values())
        if len(out) + count > max_ids:
            raise DataIdError(f"expands to {count} data ids, more than {max_ids}",
                              id_string.strip(), None)
        keys = list(values)
        for combo in itertools.product(*values.values()):
            data_id = dict(zip(keys, combo))
            marker = frozenset(data_id.items())
            if marker not in seen:
                seen.add(marker)
                out.append(data_id)
    return out
