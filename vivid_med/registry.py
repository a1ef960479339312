"""A name -> class registry: how objectives and dataset adapters are found from a ``kind:`` in params."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes by name. ``@REGISTRY.register("name")`` adds one; ``REGISTRY["name"]`` finds it (a KeyError
    naming the known names otherwise). Registering a taken name is refused, so two classes never share one."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.what} {name!r} is registered already ({self._items[name]!r})")
            self._items[name] = item
            return item
        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a toy entry clean up after themselves)."""
        self._items.pop(name, None)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.what} {name!r}; known: {sorted(self._items)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
