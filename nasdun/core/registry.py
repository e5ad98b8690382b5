"""A small name -> object registry: refuses duplicates, lists the valid names on a miss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, overload

from nasdun.core.errors import NasdunError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects of one kind (neurons, presets, settings, samplers, protocols).

    ``register`` works as a decorator or a plain call; names are case-insensitive and may
    have aliases. ``get`` accepts a name or an object that is already of the right kind.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._canonical: dict[str, str] = {}

    @overload
    def register(self, name: str, obj: None = None, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T, *, aliases: tuple[str, ...] = ()) -> T: ...
    def register(self, name: str, obj: T | None = None, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T] | T:
        def add(item: T) -> T:
            for key in (name, *aliases):
                k = key.lower()
                if k in self._canonical:
                    raise NasdunError(f"{self.kind} {key!r} is already registered")
                self._canonical[k] = name
            self._items[name] = item
            return item

        return add(obj) if obj is not None else add

    def unregister(self, name: str) -> None:
        """Remove ``name`` and its aliases (for tests and plug-ins that register temporarily)."""
        key = self.canonical(name)
        for alias in [a for a, k in self._canonical.items() if k == key]:
            del self._canonical[alias]
        del self._items[key]

    def get(self, name: str) -> T:
        key = self._canonical.get(str(name).lower())
        if key is None:
            raise NasdunError(f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}")
        return self._items[key]

    def canonical(self, name: str) -> str:
        self.get(name)
        return self._canonical[str(name).lower()]

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return str(name).lower() in self._canonical

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())
