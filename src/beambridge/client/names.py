"""Sites and apps by name: what people type (``polaris``, ``XpcsMultiTau``) to the ids the service keys on.

An app's name is unique on its site, not across sites: ``XpcsMultiTau`` on ``polaris`` and on
``perlmutter`` are two apps. So a name resolves to one app when the site is given or the name is on one of
your sites only; otherwise the error lists the sites to choose from. A reference that is a whole number
(``3`` or ``"3"``) is taken as an id, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from beambridge.client.errors import NotFound, ValidationError
from beambridge.client.resources import AppManager, SiteManager
from beambridge.schemas.apps import App
from beambridge.schemas.sites import Site

Ref = int | str
"""An id, or a name."""


def as_id(ref: Ref) -> int | None:
    """``ref`` as an id if it is one (an int, or a string of digits), else None."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref
    text = str(ref).strip()
    return int(text) if text.isdigit() else None


class Names:
    """Your sites and apps, read once (on first use) and kept for the life of this object."""

    def __init__(self, sites: SiteManager, apps: AppManager) -> None:
        self._site_manager = sites
        self._app_manager = apps
        self._sites: dict[int, Site] | None = None
        self._apps: dict[int, App] | None = None

    def refresh(self) -> None:
        """Forget what was read: the next use reads your sites and apps again."""
        self._sites = self._apps = None

    @property
    def sites(self) -> dict[int, Site]:
        """Your sites by id."""
        if self._sites is None:
            self._sites = {site.id: site for site in self._site_manager.all()}
        return self._sites

    @property
    def apps(self) -> dict[int, App]:
        """Your apps by id."""
        if self._apps is None:
            self._apps = {app.id: app for app in self._app_manager.all()}
        return self._apps

    def site_name(self, site_id: int) -> str:
        """The site's name (its id as text if it is not among yours)."""
        site = self.sites.get(site_id)
        return site.name if site is not None else str(site_id)

    def app_name(self, app_id: int) -> str:
        """The app's name (its id as text if it is not among yours)."""
        app = self.apps.get(app_id)
        return app.name if app is not None else str(app_id)

    def site_id(self, ref: Ref) -> int:
        """The id of the site ``ref`` names; :class:`NotFound` naming your sites if there is none."""
        found = as_id(ref)
        if found is not None:
            return found
        for fresh in (False, True):  # a name not seen yet: perhaps the site is new, read them again
            if fresh:
                self._sites = None
            for site in self.sites.values():
                if site.name == ref:
                    return site.id
        raise NotFound(404, f"no site named {ref!r} (yours: {_listing(s.name for s in self.sites.values())})")

    def app_ids(self, ref: Ref, site: Ref | None = None) -> list[int]:
        """The ids of every app ``ref`` names (on ``site`` if given); :class:`NotFound` if none."""
        found = as_id(ref)
        if found is not None:
            return [found]
        site_id = self.site_id(site) if site is not None else None
        for fresh in (False, True):  # an app registered since they were read: read them again, once
            if fresh:
                self._apps = None
            matches = [a.id for a in self.apps.values() if a.name == ref and site_id in (None, a.site_id)]
            if matches:
                return sorted(matches)
        where = f" on site {self.site_name(site_id)!r}" if site_id is not None else ""
        names = sorted({a.name for a in self.apps.values() if site_id in (None, a.site_id)})
        raise NotFound(404, f"no app named {ref!r}{where} (apps{where}: {_listing(names)})")

    def app_id(self, ref: Ref, site: Ref | None = None) -> int:
        """The id of the one app ``ref`` names (on ``site`` if given); an error listing the sites if the
        name is on several."""
        ids = self.app_ids(ref, site)
        if len(ids) == 1:
            return ids[0]
        on = _listing(self.site_name(self.apps[i].site_id) for i in ids)
        raise ValidationError(422, f"app {ref!r} is on several of your sites ({on}); say which site")


def _listing(names: Iterable[str]) -> str:
    shown = sorted(set(names))
    if not shown:
        return "none"
    return ", ".join(shown[:20]) + (f" and {len(shown) - 20} more" if len(shown) > 20 else "")
