"""Exceptions raised by hpcpipe.

Every error that a user can cause (a bad file, an unknown mask plane, a wrong pixel type, a bad
data id) is an :class:`HpcpipeError`, and its message names the file, plane, data id or option
at fault. Each also derives from the closest built-in exception, so that ``except KeyError``
and ``except ValueError`` keep working as users of NumPy and astropy expect.
"""

from __future__ import annotations

__all__ = [
    "HpcpipeError",
    "FileFormatError",
    "MaskPlaneError",
    "PixelTypeError",
    "SchemaError",
    "TableError",
]


class HpcpipeError(Exception):
    """Base class of the errors that hpcpipe reports to its users."""


class FileFormatError(HpcpipeError, OSError):
    """A file is missing, corrupt, truncated or not laid out as hpcpipe expects.

    Parameters
    ----------
    path : str
        The file at fault.
    reason : str
        What is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class MaskPlaneError(HpcpipeError, KeyError):
    """A mask plane name that the mask does not define, or no free bit for a new plane."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0]) if self.args else ""


class PixelTypeError(HpcpipeError, TypeError):
    """An array or file whose pixel type is not one an image of that kind accepts."""


class SchemaError(HpcpipeError, KeyError):
    """A field name the schema does not define, or a field defined twice."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TableError(HpcpipeError, ValueError):
    """A catalog or schema operation on inconsistent data.

    Raised for invalid field names, dtypes, units or shapes, schemas that do not match,
    selections of the wrong length and metadata that a format cannot store.
    """
