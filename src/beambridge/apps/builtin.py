"""Apps every site has without writing any: the XPCS correlators and two no-op apps for measurements."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import JsonValue

from beambridge.apps.base import ApplicationDefinition
from beambridge.apps.quicklook import XpcsQuickLook
from beambridge.apps.xpcs import XpcsMultiTau, XpcsSimulate, XpcsTwoTime


class Noop(ApplicationDefinition):
    """A Python app that does nothing (to measure the system's own overhead)."""

    def run(self) -> JsonValue:
        return None


class NoopShell(ApplicationDefinition):
    """A shell app that runs ``true`` (to measure the system's own overhead)."""

    command_template = "true"


class Sha256(ApplicationDefinition):
    """SHA-256 of a file in the workdir (or of ``size_mb`` MiB of generated data, when no file is named)."""

    def run(self, path: str = "", size_mb: int = 16, seed: int = 0) -> JsonValue:
        digest = hashlib.sha256()
        if path:
            with Path(path).open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
            return {"path": path, "sha256": digest.hexdigest()}
        block = hashlib.sha256(str(seed).encode()).digest() * (1 << 15)
        for _ in range(size_mb):
            digest.update(block)
        return {"size_mb": size_mb, "seed": seed, "sha256": digest.hexdigest()}


BUILTIN_APPS: tuple[type[ApplicationDefinition], ...] = (
    Noop,
    NoopShell,
    Sha256,
    XpcsMultiTau,
    XpcsQuickLook,
    XpcsSimulate,
    XpcsTwoTime,
)

__all__ = [
    "BUILTIN_APPS",
    "Noop",
    "NoopShell",
    "Sha256",
    "XpcsMultiTau",
    "XpcsQuickLook",
    "XpcsSimulate",
    "XpcsTwoTime",
]
