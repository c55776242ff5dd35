"""Registries of adapters: one per kind (schedulers, MPI launchers, transfer backends).

A registry maps a name (``slurm``, ``mpiexec``, ``rsync``…) to the adapter's class, given either as the
class itself or as ``"module:Class"`` imported on first use (so a site without Globus never imports
globus-sdk). The site configuration and the CLI take the allowed names from here, so adding an adapter is
one file plus one ``register`` line::

    SCHEDULERS.register("htcondor", "beambridge.platform.schedulers.htcondor:HTCondorScheduler")
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Adapters of one kind, by name."""

    def __init__(self, kind: str, base: type, entries: dict[str, str | type[T]] | None = None) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, str | type[T]] = {}
        for name, target in (entries or {}).items():
            self.register(name, target)

    def register(self, name: str, target: str | type[T]) -> None:
        """Add (or replace) the adapter called ``name``: its class, or ``"module:Class"``."""
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{self.kind} name {name!r}: letters, digits, '-' and '_' only")
        if isinstance(target, str) and ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: {target!r} is not 'module:Class'")
        self._entries[name] = target

    def unregister(self, name: str) -> None:
        """Remove an adapter (tests use it to clean up after a toy adapter)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def where(self, name: str) -> str:
        """Where the adapter's class lives (``module:Class``), without importing it."""
        target = self._entries[self.check(name)]
        return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check(self, name: str) -> str:
        """``name`` if registered; ``ValueError`` naming the known ones otherwise (a pydantic validator)."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries) or 'none'}")
        return name

    def load(self, name: str) -> type[T]:
        """The adapter class called ``name`` (imported now if registered by path)."""
        target = self._entries[self.check(name)]
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module_name), attr)
            assert isinstance(target, type) and issubclass(target, self.base), f"{name}: not a {self.kind}"
            self._entries[name] = target
        return target
