"""The one name -> class registry behind losses, scores and backbones.

Looking up a name that is not registered raises :class:`UnknownNameError`, which lists the
choices and suggests close matches, so every registry answers a typo the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from oodlab.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Read like a mapping (``REG[name]``, ``name in REG``, ``items()``), filled by a
    decorator (``@REG.register(name)``). ``get`` is ``[]``: both raise for unknown names."""

    def __init__(self, kind: str, hint: str = ""):
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries, hint=self.hint) from None

    get = __getitem__

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]

    def values(self) -> list[T]:
        return [self._entries[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
