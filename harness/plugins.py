"""Helpers over :class:`harness.registry.Registry` shared by the plugin families.

:class:`InfoView` reads a registry as a ``name -> info`` mapping (the shape the older closed
tables had, so their users keep working), and :func:`load_plugin` is ``Registry.get`` with an
error that names the family and the entry when a registered implementation cannot be loaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from harness.errors import HarnessError
from harness.registry import Registry

T = TypeVar("T")
InfoT = TypeVar("InfoT")


class PluginError(HarnessError):
    """A registered plugin whose implementation cannot be imported."""


class InfoView(Mapping[str, InfoT]):
    """A read-only ``name -> info`` mapping over a :class:`Registry`, in registration order.

    It is a view, not a copy: a level or method registered later (a plugin, a test) shows up
    here too, so there is no second table to keep in sync with the registry.
    """

    def __init__(self, registry: Registry[Any]) -> None:
        self._registry = registry

    def __getitem__(self, name: str) -> InfoT:
        if name not in self._registry:
            raise KeyError(name)
        info: InfoT = self._registry.info(name)
        return info

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names())

    def __len__(self) -> int:
        return len(self._registry)


def load_plugin(registry: Registry[T], name: str) -> T:
    """``registry.get(name)``, failing clearly when a registered lazy target cannot be loaded.

    A name registered with its info but whose implementation is missing (a typo in the
    ``"module:attr"``, an optional dependency not installed) would otherwise surface as a bare
    AttributeError or ImportError that names neither the family nor the entry.
    """
    try:
        return registry.get(name)
    except (ImportError, AttributeError) as exc:
        target = registry.entry(name).target
        raise PluginError(f"{registry.family} {name!r} is registered, but its implementation "
                          f"{target!r} cannot be loaded: {type(exc).__name__}: {exc}") from exc
