"""Transfer backends: ``local`` (link or copy), ``rsync`` (over ssh), ``globus`` (globus-sdk).

Each backend is one module holding its :class:`TransferBackend` subclass and the model of its locations'
configuration (``location_model``; Globus also a model of its site-wide settings); :data:`TRANSFER_BACKENDS`
names them. A new backend is one module plus one ``TRANSFER_BACKENDS.register`` line. The site's transfer
service builds one backend per location alias with :func:`get_backend` and drives :class:`TransferTask`
batches through it (see :mod:`beambridge.platform.transfer.base` for the protocol).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from beambridge.platform.registry import Registry
from beambridge.platform.transfer.base import (
    Failure,
    FailureKind,
    TaskState,
    TaskStatus,
    TransferBackend,
    TransferError,
    TransferFile,
    TransferHandle,
    TransferTask,
    join_remote,
)
from beambridge.schemas.common import InputModel

TRANSFER_BACKENDS: Registry[TransferBackend] = Registry(
    "transfer backend",
    TransferBackend,
    {
        "local": "beambridge.platform.transfer.local:LocalBackend",
        "rsync": "beambridge.platform.transfer.rsync:RsyncBackend",
        "globus": "beambridge.platform.transfer.globus:GlobusBackend",
    },
)


def parse_location(data: Mapping[str, Any]) -> InputModel:
    """Validate one location's configuration: its ``kind`` names the backend whose model checks the rest
    (unknown keys are errors). ``ValueError`` (a pydantic ``ValidationError`` for bad fields)."""
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise ValueError(f"a location needs a kind: one of {', '.join(TRANSFER_BACKENDS.names())}")
    return TRANSFER_BACKENDS.load(kind).location_model.model_validate(dict(data))


def parse_backend_settings(kind: str, data: Mapping[str, Any]) -> BaseModel:
    """Validate the site-wide settings of one backend kind (``site.yml``'s ``transfer_backends.<kind>``)."""
    model = TRANSFER_BACKENDS.load(kind).settings_model
    if model is None:
        raise ValueError(f"transfer backend {kind!r} takes no site-wide settings")
    return model.model_validate(dict(data))


def get_backend(
    kind: str,
    location_config: Mapping[str, Any] | BaseModel,
    *,
    site_root: Path | None = None,
    settings: Mapping[str, Any] | BaseModel | None = None,
) -> TransferBackend:
    """The backend for one location.

    ``location_config``: the location's model or mapping (its ``kind``, if given, must be ``kind``).
    ``site_root``: the site directory (where a backend keeps files of its own, e.g. rsync's staging).
    ``settings``: the site-wide settings of this kind, for the backends that need them (``globus``).
    Backends are imported on first use (globus-sdk is heavy).
    """
    cls = TRANSFER_BACKENDS.load(kind)
    data = location_config.model_dump() if isinstance(location_config, BaseModel) else dict(location_config)
    if data.setdefault("kind", kind) != kind:
        raise ValueError(f"location config of kind {data['kind']!r} given for a {kind!r} backend")
    location = cls.location_model.model_validate(data)
    if isinstance(settings, BaseModel):
        settings = settings.model_dump()
    return cls.for_site(location, site_root=site_root, settings=settings)


__all__ = [
    "TRANSFER_BACKENDS",
    "Failure",
    "FailureKind",
    "TaskState",
    "TaskStatus",
    "TransferBackend",
    "TransferError",
    "TransferFile",
    "TransferHandle",
    "TransferTask",
    "get_backend",
    "join_remote",
    "parse_backend_settings",
    "parse_location",
]
