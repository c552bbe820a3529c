"""One registration point per plugin family, with lazy ``"module:attr"`` entries.

Every family (workloads, quantizers, pruners, runtimes, artifact formats, backends, executors,
exporters) is a :class:`Registry`. An entry is either the object itself or a ``"module:attr"``
string that is imported the first time :meth:`Registry.get` asks for it, so listing names
(``--help``, suite validation) imports neither torch nor onnxruntime. Entries may carry a small
``info`` object (a description, a precision) that is readable without importing the target.

Tests and plugins add entries with :meth:`Registry.register`, and take them back out with
:meth:`Registry.unregister` (or use :meth:`Registry.registered` as a context manager), so a
fake workload or backend can be injected into the real sweep.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from harness.errors import unknown_name

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered name: its target (an object or ``"module:attr"``) and optional info."""

    name: str
    target: Any
    info: Any = None

    @property
    def lazy(self) -> bool:
        return isinstance(self.target, str)


class Registry(Generic[T]):
    """Named plugins of one family; unknown names fail with close matches."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Entry] = {}
        self._loaded: dict[str, T] = {}

    def register(self, name: str, target: T | str, *, info: Any = None,
                 replace: bool = False) -> None:
        """Add ``name``; ``target`` is the object or ``"module:attr"`` to import on first use.

        Registering a name twice is a programming error unless ``replace`` is set.
        """
        if not name:
            raise ValueError(f"a {self.family} name must be non-empty")
        if isinstance(target, str) and ":" not in target:
            raise ValueError(f"lazy {self.family} target must be 'module:attr', got {target!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.family} {name!r} is already registered")
        self._entries[name] = Entry(name=name, target=target, info=info)
        self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)
        self._loaded.pop(name, None)

    @contextmanager
    def registered(self, name: str, target: T | str, *, info: Any = None) -> Iterator[None]:
        """``name`` registered for the duration of a ``with`` block (tests, plugins)."""
        previous = self._entries.get(name)
        self.register(name, target, info=info, replace=True)
        try:
            yield
        finally:
            self.unregister(name)
            if previous is not None:
                self._entries[name] = previous

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> Entry:
        """The entry of ``name`` (no import); unknown names raise an InputError."""
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.family, name, self._entries) from None

    def info(self, name: str) -> Any:
        """The info object registered with ``name`` (no import)."""
        return self.entry(name).info

    def get(self, name: str) -> T:
        """The object registered as ``name``, importing it on first use."""
        if name in self._loaded:
            return self._loaded[name]
        entry = self.entry(name)
        if entry.lazy:
            module, _, attr = entry.target.partition(":")
            obj: T = getattr(importlib.import_module(module), attr)
        else:
            obj = entry.target
        self._loaded[name] = obj
        return obj

    def items(self) -> list[tuple[str, Any]]:
        """(name, info) pairs, in registration order (no import)."""
        return [(e.name, e.info) for e in self._entries.values()]
