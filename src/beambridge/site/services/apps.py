"""Apps: register the site's apps with the service, and again whenever the ``apps/`` folder changes.

A file added to (or rewritten in) the folder is registered within a period, with its version (a digest of
the file), so jobs of a new app can be submitted without restarting the agent, and launchers that have
reloaded the folder get them. A file that no longer loads keeps its apps' last registration: launchers
do not advertise them, so their new jobs wait instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError as InvalidMetadata

from beambridge.apps.base import ApplicationDefinition
from beambridge.apps.loader import AppCatalog, folder_fingerprint, load_apps
from beambridge.client import Client
from beambridge.client.errors import Conflict, ValidationError
from beambridge.logs import get_logger
from beambridge.schemas.apps import App
from beambridge.site.config import SiteConfig
from beambridge.site.services.base import Service

log = get_logger(__name__)

_REGISTERED = {"description", "parameters", "transfer_slots", "hooks", "retry_on_error", "version"}


def register_apps(client: Client, site_id: int, catalog: AppCatalog) -> dict[str, int]:
    """Create or update the service's record of each app (metadata and version, never code); name → id.

    An app whose metadata the service refuses is logged (``app_not_registered``) and left out; the
    others are registered all the same."""
    existing = {app.name: app for app in client.apps.filter(site_id=site_id)}
    ids: dict[str, int] = {}
    for name, cls in catalog.apps.items():
        try:
            ids[name] = _register(client, site_id, cls, catalog.versions.get(name), existing.get(name))
        except (ValidationError, Conflict) as exc:  # the service refused it
            log.error("app_not_registered", app=name, site_id=site_id, detail=exc.detail[:500])
        except InvalidMetadata as exc:  # refused before it was sent (the same models as the service's)
            log.error("app_not_registered", app=name, site_id=site_id, detail=str(exc)[:500])
    return ids


def _register(
    client: Client, site_id: int, cls: type[ApplicationDefinition], version: str | None, current: App | None
) -> int:
    """Register one app, or update its record if it changed; its id."""
    meta = cls.registration(site_id).model_copy(update={"version": version})
    if current is None:
        created = client.apps.create(
            site_id,
            meta.name,
            description=meta.description,
            parameters=meta.parameters,
            transfer_slots=meta.transfer_slots,
            hooks=meta.hooks,
            retry_on_error=meta.retry_on_error,
            version=meta.version,
        )
        log.info("app_registered", app=meta.name, app_id=created.id, site_id=site_id, version=version)
        return created.id
    wanted = meta.model_dump(mode="json", include=_REGISTERED)
    have = current.model_dump(mode="json", include=_REGISTERED)
    if wanted != have:
        client.apps.update(current.id, **{key: value for key, value in wanted.items() if value is not None})
        log.info("app_updated", app=meta.name, app_id=current.id, site_id=site_id, version=version)
    return current.id


@dataclass(frozen=True)
class RegisteredApps:
    """The folder's apps as last loaded, and their ids at the service."""

    catalog: AppCatalog
    ids: dict[str, int] = field(default_factory=dict)


class SiteApps:
    """What the agent's services read the site's apps from (``current``, replaced whole on a change)."""

    def __init__(self, folder: Path, client: Client, site_id: int) -> None:
        self.folder = folder
        self.client = client
        self.site_id = site_id
        self.current = RegisteredApps(load_apps(folder))

    def register(self) -> None:
        """Register the apps as loaded now (at agent start)."""
        catalog = self.current.catalog
        for path, problem in catalog.errors.items():
            log.error("app_file_not_loaded", site_id=self.site_id, path=path, problem=problem)
        self.current = RegisteredApps(catalog, register_apps(self.client, self.site_id, catalog))

    def refresh(self) -> bool:
        """Reload and register the folder if one of its files was added, removed or rewritten."""
        old = self.current.catalog
        if folder_fingerprint(self.folder) == old.fingerprint:
            return False
        new = load_apps(self.folder)
        for path, problem in new.errors.items():
            if old.errors.get(path) != problem:
                log.error("app_file_not_loaded", site_id=self.site_id, path=path, problem=problem)
        ids = register_apps(self.client, self.site_id, new)
        self.current = RegisteredApps(new, ids)
        log.info(
            "apps_reloaded",
            site_id=self.site_id,
            added=sorted(set(new.apps) - set(old.apps)),
            changed=sorted(n for n in set(new.apps) & set(old.apps) if new.versions[n] != old.versions[n]),
            removed=sorted(set(old.apps) - set(new.apps)),
            broken=sorted(path.name for path in new.errors),
        )
        return True


class AppsWatch(Service):
    """Checks the apps folder every period (a few ``stat`` calls) and registers what changed."""

    name = "apps"

    def __init__(self, config: SiteConfig, apps: SiteApps) -> None:
        super().__init__(config.periods.apps)
        self.apps = apps

    def tick(self) -> None:
        self.apps.refresh()
