"""Transfer backends: ``local`` (link or copy), ``rsync`` (over ssh), ``globus`` (globus-sdk).

The site's transfer service builds one backend per location alias with :func:`get_backend` and drives
:class:`TransferTask` batches through it (see :mod:`beambridge.platform.transfer.base` for the protocol).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from beambridge.platform.transfer.base import (
    Failure,
    FailureKind,
    GlobusLocation,
    LocalLocation,
    LocationConfig,
    RsyncLocation,
    TaskState,
    TaskStatus,
    TransferBackend,
    TransferError,
    TransferFile,
    TransferHandle,
    TransferTask,
    join_remote,
    parse_location,
)

KINDS = ("local", "rsync", "globus")


def get_backend(
    kind: str,
    location_config: Mapping[str, Any] | BaseModel,
    *,
    staging_root: Path | None = None,
    globus: Mapping[str, Any] | BaseModel | None = None,
) -> TransferBackend:
    """The backend for one location.

    ``location_config``: the location's model or mapping (its ``kind``, if given, must be ``kind``).
    ``staging_root``: where the rsync backend stages (default: beside the tasks' local files).
    ``globus``: the site's :class:`~beambridge.platform.transfer.globus.GlobusSiteConfig` (or its
    mapping), required for ``globus``. Backends are imported on first use (globus-sdk is heavy).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown transfer kind {kind!r}; known: {', '.join(KINDS)}")
    data = location_config.model_dump() if isinstance(location_config, BaseModel) else dict(location_config)
    if data.setdefault("kind", kind) != kind:
        raise ValueError(f"location config of kind {data['kind']!r} given for a {kind!r} backend")
    location = parse_location(data)
    if isinstance(location, LocalLocation):
        from beambridge.platform.transfer.local import LocalBackend

        return LocalBackend(location)
    if isinstance(location, RsyncLocation):
        from beambridge.platform.transfer.rsync import RsyncBackend

        return RsyncBackend(location, staging_root=staging_root)
    from beambridge.platform.transfer.globus import GlobusBackend, GlobusSiteConfig

    if globus is None:
        raise ValueError("a globus location needs the site's Globus configuration (collection, token file)")
    site = GlobusSiteConfig.model_validate(globus.model_dump() if isinstance(globus, BaseModel) else globus)
    return GlobusBackend(location, site)


__all__ = [
    "KINDS",
    "Failure",
    "FailureKind",
    "GlobusLocation",
    "LocalLocation",
    "LocationConfig",
    "RsyncLocation",
    "TaskState",
    "TaskStatus",
    "TransferBackend",
    "TransferError",
    "TransferFile",
    "TransferHandle",
    "TransferTask",
    "get_backend",
    "join_remote",
    "parse_location",
]
