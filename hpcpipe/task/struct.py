"""A :class:`Struct` of named results, as a task's ``run`` returns them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

__all__ = ["Struct"]


class Struct:
    """Named values, read and set as attributes: what :meth:`Task.run` returns.

    Parameters
    ----------
    **values
        The names and values; a name may not start with ``_`` or be a method's name.

    Examples
    --------
    >>> result = Struct(exposure=None, n_sources=12)
    >>> result.n_sources
    12
    >>> sorted(result.get_dict())
    ['exposure', 'n_sources']
    """

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or callable(getattr(type(self), name, None)):
            raise AttributeError(f"Struct: {name!r} cannot be an item name")
        object.__setattr__(self, name, value)

    if TYPE_CHECKING:
        # the items are set at run time: tell type checkers any attribute may be read
        def __getattr__(self, name: str) -> Any: ...

    def get_dict(self) -> dict[str, Any]:
        """Return a (shallow) dict of the items."""
        return dict(vars(self))

    def merge_items(self, other: Struct, *names: str) -> None:
        """Copy items of ``other`` into this struct (all of them when no names are given).

        Raises
        ------
        AttributeError
            If a name is not in ``other``, or is already in this struct.
        """
        for name in names or tuple(vars(other)):
            if name in vars(self):
                raise AttributeError(f"Struct: item {name!r} is already present")
            setattr(self, name, getattr(other, name))

    def copy(self) -> Struct:
        """Return a shallow copy."""
        return Struct(**vars(self))

    def __contains__(self, name: object) -> bool:
        return name in vars(self)

    def __iter__(self) -> Iterator[str]:
        return iter(vars(self))

    def __len__(self) -> int:
        return len(vars(self))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Struct):
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"Struct({items})"
