"""Name -> class registries, so hardware and models are chosen by config rather than by import."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from wovr_core.config import ConfigError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a type name to a factory; entries can be lazy ("module:attr") so drivers import only when used."""

    def __init__(self, family: str):
        self.family = family
        self._entries: dict[str, Callable[..., T] | str] = {}

    def register(self, name: str, target: Callable[..., T] | str | None = None):
        """``registry.register("sim", SimCamera)``, ``registry.register("realsense", "pkg.mod:Cls")``
        or as a class decorator ``@registry.register("sim")``."""
        if target is None:
            def decorator(obj):
                self._entries[name] = obj
                return obj
            return decorator
        self._entries[name] = target
        return target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.family} type {name!r}; registered: {self.names()}."
                              + did_you_mean(name, self._entries))
        entry = self._entries[name]
        if isinstance(entry, str):
            module, attr = entry.split(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry

    def create(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)
