"""Managers for the smaller resources: sites, apps, batch jobs, transfer items and events.

Each manager is reached from a :class:`~beambridge.client.Client` (``client.sites``, ``client.apps``…),
returns the typed models of :mod:`beambridge.schemas`, and offers ``filter(...)`` as a lazy
:class:`~beambridge.client.query.Query`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from beambridge.client.errors import NotFound
from beambridge.client.query import FilterField, Query, filter_fields
from beambridge.client.transport import Transport
from beambridge.schemas.apps import App, AppHook, AppParameter, TransferDirection, TransferSlot
from beambridge.schemas.audit import AuditEntry
from beambridge.schemas.auth import SiteToken, SiteTokenCreated, SiteTokenRotated
from beambridge.schemas.batch_jobs import BatchJob, BatchJobState, JobMode
from beambridge.schemas.common import MAX_PAGE_SIZE
from beambridge.schemas.events import Event
from beambridge.schemas.jobs import BulkResult
from beambridge.schemas.placement import SiteGroup, SitePlacement
from beambridge.schemas.queries import (
    AppQuery,
    AuditQuery,
    BatchJobQuery,
    EventQuery,
    SiteQuery,
    TransferQuery,
)
from beambridge.schemas.sites import Site
from beambridge.schemas.transfers import TransferItem, TransferItemUpdate, TransferState
from beambridge.states import JobState

M = TypeVar("M", bound=BaseModel)
StateArg = JobState | str | Iterable[JobState | str] | None


def as_body(item: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    """A request body from a schema model (only the fields that were set) or a plain mapping."""
    if isinstance(item, BaseModel):
        return item.model_dump(mode="json", exclude_unset=True)
    return dict(item)


def as_list(value: Any) -> Any:
    """A filter value as given, with iterables other than strings turned into lists."""
    if value is None or isinstance(value, str | int | float | datetime):
        return value
    return list(value)


class Manager(Generic[M]):
    """What every resource shares: a path, a model, filters, and ``get``."""

    path: str
    model: type[M]
    noun: str
    fields: ClassVar[Mapping[str, FilterField]] = {}
    count_path: str | None = None

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def _query(self, **filters: Any) -> Query[M]:
        query: Query[M] = Query(
            self._transport, self.path, self.model, self.fields, count_path=self.count_path
        )
        return query.filter(**filters)

    def all(self) -> Query[M]:
        """Every object of this kind you may see (lazily)."""
        return self._query()

    def get(self, object_id: int) -> M:
        """One object by id; :class:`~beambridge.client.errors.NotFound` if it is not there or not yours."""
        return self.model.model_validate(self._transport.request("GET", f"{self.path}/{int(object_id)}"))

    def _post(self, path: str, body: Any) -> M:
        return self.model.model_validate(self._transport.request("POST", path, json=body))

    def _patch(self, object_id: int, fields: Mapping[str, Any]) -> M:
        body = {key: value for key, value in fields.items() if value is not None}
        return self.model.model_validate(
            self._transport.request("PATCH", f"{self.path}/{int(object_id)}", json=body)
        )

    def _delete(self, object_id: int) -> None:
        self._transport.request("DELETE", f"{self.path}/{int(object_id)}")


class SiteManager(Manager[Site]):
    """Sites: facility deployments of the agent (``client.sites``)."""

    path, model, noun = "/sites", Site, "site"
    fields: ClassVar[Mapping[str, FilterField]] = filter_fields(SiteQuery)

    def filter(self, *, name: str | None = None) -> Query[Site]:
        """Your sites, optionally the one with ``name``."""
        return self._query(name=name)

    def create(self, name: str, *, hostname: str = "", path: str = "", description: str = "") -> Site:
        """Register a site; :class:`Conflict` if you already have one of that name."""
        body = {"name": name, "hostname": hostname, "path": path, "description": description}
        return self._post(self.path, body)

    def update(
        self,
        site_id: int,
        *,
        hostname: str | None = None,
        path: str | None = None,
        description: str | None = None,
        status: dict[str, Any] | None = None,
        locations: Mapping[str, str] | None = None,
    ) -> Site:
        """Change a site's descriptive fields, its self-reported status, or its transfer location
        aliases (``{"aps_dtn": "globus"}``: what jobs may name in their transfers)."""
        return self._patch(
            site_id,
            {
                "hostname": hostname,
                "path": path,
                "description": description,
                "status": status,
                "locations": dict(locations) if locations is not None else None,
            },
        )

    def delete(self, site_id: int) -> None:
        """Delete a site with its apps, jobs, batch jobs, sessions and tokens."""
        self._delete(site_id)

    def heartbeat(self, site_id: int) -> Site:
        """Tell the service the site's agent is alive."""
        return self._post(f"{self.path}/{int(site_id)}/heartbeat", None)

    def create_token(
        self, site_id: int, name: str = "agent", *, expires_in_days: float | None = None
    ) -> SiteTokenCreated:
        """A long-lived token acting for you on this site only; its ``token`` is shown only this once.
        It lasts ``expires_in_days`` (default: the service's site-token lifetime, 90 days unless set)."""
        request: dict[str, Any] = {"name": name}
        if expires_in_days is not None:
            request["expires_in_days"] = expires_in_days
        body = self._transport.request("POST", f"{self.path}/{int(site_id)}/tokens", json=request)
        return SiteTokenCreated.model_validate(body)

    def rotate_token(self, site_id: int, token_id: int | None = None) -> SiteTokenRotated:
        """Replace a site token with a new one (shown only this once). With a site token: that token
        (``token_id`` not needed); a user names the token. The old one works for the service's grace
        period more, then is refused."""
        body = {} if token_id is None else {"token_id": int(token_id)}
        answer = self._transport.request("POST", f"{self.path}/{int(site_id)}/tokens/rotate", json=body)
        return SiteTokenRotated.model_validate(answer)

    def current_token(self, site_id: int) -> SiteToken:
        """The record of the site token this client uses (when it expires); site tokens only."""
        return SiteToken.model_validate(
            self._transport.request("GET", f"{self.path}/{int(site_id)}/tokens/current")
        )

    def tokens(self, site_id: int) -> list[SiteToken]:
        """The site's tokens, without their secrets."""
        body = self._transport.request("GET", f"{self.path}/{int(site_id)}/tokens")
        return [SiteToken.model_validate(item) for item in body]

    def revoke_token(self, site_id: int, token_id: int) -> None:
        """Revoke a site token; it stops working at once."""
        self._transport.request("DELETE", f"{self.path}/{int(site_id)}/tokens/{int(token_id)}")

    def drain(self, site_id: int, reason: str = "") -> Site:
        """Send the site no new work (planned maintenance); its jobs not yet claimed move elsewhere."""
        return self._post(f"{self.path}/{int(site_id)}/drain", {"reason": reason})

    def undrain(self, site_id: int) -> Site:
        """Let a drained site take new work again."""
        return self._post(f"{self.path}/{int(site_id)}/undrain", None)

    def placement(self) -> list[SitePlacement]:
        """Each site as placement sees it now: health, capacity, backlog, rates, predicted finish per app."""
        body = self._transport.request("GET", "/placement/sites")
        return [SitePlacement.model_validate(item) for item in body]


class SiteGroupManager:
    """Site groups: named sets of your sites to submit jobs to (``client.site_groups``)."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def list(self) -> list[SiteGroup]:
        """Your site groups."""
        return [SiteGroup.model_validate(item) for item in self._transport.request("GET", "/site-groups")]

    def create(self, name: str, sites: Iterable[str], *, policy: str | None = None) -> SiteGroup:
        """A group of your sites (by name); jobs created with ``site_group=name`` go to one of them."""
        body = {"name": name, "sites": list(sites), "policy": policy}
        return SiteGroup.model_validate(self._transport.request("POST", "/site-groups", json=body))

    def delete(self, group: int | str) -> None:
        """Delete a group, by id or name."""
        if isinstance(group, str):
            match = [g for g in self.list() if g.name == group]
            if not match:
                raise NotFound(404, f"no site group named {group!r}")
            group = match[0].id
        self._transport.request("DELETE", f"/site-groups/{int(group)}")


class AppManager(Manager[App]):
    """Apps registered on sites (``client.apps``)."""

    path, model, noun = "/apps", App, "app"
    fields: ClassVar[Mapping[str, FilterField]] = filter_fields(AppQuery)

    def filter(self, *, site_id: int | None = None, name: str | None = None) -> Query[App]:
        """Your apps, optionally of one site and/or with one name."""
        return self._query(site_id=site_id, name=name)

    def create(
        self,
        site_id: int,
        name: str,
        *,
        description: str = "",
        parameters: Mapping[str, AppParameter | Mapping[str, Any]] | None = None,
        transfer_slots: Mapping[str, TransferSlot | Mapping[str, Any]] | None = None,
        hooks: Iterable[AppHook | str] = (),
        retry_on_error: bool = True,
        version: str | None = None,
    ) -> App:
        """Register an app on one of your sites (``retry_on_error=False``: a failed run is not retried;
        ``version``: which copy of its code, so that launchers with another copy do not get its jobs)."""
        body = {
            "site_id": site_id,
            "name": name,
            "description": description,
            "parameters": {key: as_body(value) for key, value in (parameters or {}).items()},
            "transfer_slots": {key: as_body(value) for key, value in (transfer_slots or {}).items()},
            "hooks": [str(hook) for hook in hooks],
            "retry_on_error": retry_on_error,
        }
        if version is not None:
            body["version"] = version
        return self._post(self.path, body)

    def update(self, app_id: int, **fields: Any) -> App:
        """Change an app's ``description``, ``parameters``, ``transfer_slots``, ``hooks``, ``retry_on_error``
        or ``version``."""
        return self._patch(app_id, fields)

    def delete(self, app_id: int) -> None:
        """Delete an app and its jobs."""
        self._delete(app_id)


class BatchJobManager(Manager[BatchJob]):
    """Pilot allocations a site keeps in its scheduler (``client.batch_jobs``)."""

    path, model, noun = "/batch-jobs", BatchJob, "batch job"
    fields: ClassVar[Mapping[str, FilterField]] = filter_fields(BatchJobQuery)

    def filter(
        self,
        *,
        site_id: int | None = None,
        state: BatchJobState | str | Iterable[BatchJobState | str] | None = None,
    ) -> Query[BatchJob]:
        """Your batch jobs, optionally of one site and in some states."""
        return self._query(site_id=site_id, state=as_list(state))

    def create(
        self,
        site_id: int,
        num_nodes: int,
        wall_time_min: int,
        *,
        project: str = "",
        queue: str = "",
        job_mode: JobMode | str = JobMode.SERIAL,
        filter_tags: Mapping[str, str] | None = None,
        optional_params: Mapping[str, str] | None = None,
    ) -> BatchJob:
        """Ask the site to submit a pilot allocation."""
        body = {
            "site_id": site_id,
            "num_nodes": num_nodes,
            "wall_time_min": wall_time_min,
            "project": project,
            "queue": queue,
            "job_mode": str(job_mode),
            "filter_tags": dict(filter_tags or {}),
            "optional_params": dict(optional_params or {}),
        }
        return self._post(self.path, body)

    def update(self, batch_job_id: int, **fields: Any) -> BatchJob:
        """Record what the scheduler says (``state``, ``scheduler_id``, ``status_info``, times)."""
        body = {
            key: value.isoformat() if isinstance(value, datetime) else value for key, value in fields.items()
        }
        return self._patch(batch_job_id, body)

    def delete(self, batch_job_id: int) -> None:
        """Forget a batch job record (set its state to ``pending_deletion`` to cancel the allocation)."""
        self._delete(batch_job_id)


class TransferManager(Manager[TransferItem]):
    """Transfer items, made with their jobs and worked through by the site (``client.transfers``)."""

    path, model, noun = "/transfers", TransferItem, "transfer item"
    fields: ClassVar[Mapping[str, FilterField]] = filter_fields(TransferQuery)

    def filter(
        self,
        *,
        job_id: int | Iterable[int] | None = None,
        site_id: int | None = None,
        state: TransferState | str | Iterable[TransferState | str] | None = None,
        direction: TransferDirection | str | None = None,
        location: str | None = None,
    ) -> Query[TransferItem]:
        """Your transfer items, filtered."""
        return self._query(
            job_id=as_list(job_id),
            site_id=site_id,
            state=as_list(state),
            direction=direction,
            location=location,
        )

    def update(self, items: Iterable[TransferItemUpdate | Mapping[str, Any]]) -> BulkResult:
        """Record progress of transfer items in bulk, all or none."""
        body = [as_body(item) for item in items]
        return BulkResult.model_validate(self._transport.request("PATCH", self.path, json=body))


class AuditManager(Manager[AuditEntry]):
    """The audit log of your account: tokens made, rotated and revoked, deletions, logins, an
    administrator's actions (``client.audit``; a user's token only)."""

    path, model, noun = "/audit", AuditEntry, "audit entry"
    fields: ClassVar[Mapping[str, FilterField]] = filter_fields(AuditQuery)

    def filter(
        self, *, action: str | None = None, actor: str | None = None, since: datetime | None = None
    ) -> Query[AuditEntry]:
        """Entries of one action or family (``"site_token"``), by an actor (prefix), since a time."""
        return self._query(action=action, actor=actor, since=since)


class EventManager(Manager[Event]):
    """Job state changes, oldest first, and a long-poll to follow new ones (``client.events``)."""

    path, model, noun = "/events", Event, "event"
    fields: ClassVar[Mapping[str, FilterField]] = filter_fields(EventQuery, tags="tag")

    def filter(
        self,
        *,
        job_id: int | Iterable[int] | None = None,
        site_id: int | None = None,
        from_state: StateArg = None,
        to_state: StateArg = None,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: Mapping[str, str] | None = None,
        actor: str | None = None,
    ) -> Query[Event]:
        """Events matching every given filter, in id order (``tags``: of jobs carrying all of them;
        ``actor``: whose actor starts with it, e.g. ``"user:alice"`` or ``"launcher:"``)."""
        return self._query(
            job_id=as_list(job_id),
            site_id=site_id,
            from_state=as_list(from_state),
            to_state=as_list(to_state),
            since=since,
            until=until,
            tags=tags,
            actor=actor,
        )

    def latest_id(self) -> int:
        """The id of your newest event (0 if none): a cursor for "from now on"."""
        return int(self._transport.request("GET", f"{self.path}/latest")["id"])

    def next(self, *, after: int, wait_s: float = 30.0, **filters: Any) -> list[Event]:
        """Events after ``after``: at once if there are any, else the first ones within ``wait_s``
        seconds (a long-poll), else an empty list."""
        wait_s = max(0.0, min(wait_s, 60.0))
        params = [
            *self.filter(**filters).params(),
            ("limit", MAX_PAGE_SIZE),
            ("wait_s", wait_s),
            ("after", after),
        ]
        body = self._transport.request("GET", self.path, params=params, timeout=wait_s + 30)
        return [Event.model_validate(item) for item in body["items"]]

    def follow(self, *, after: int | None = None, wait_s: float = 30.0, **filters: Any) -> Iterator[Event]:
        """Yield events with an id above ``after`` as they happen, forever (stop by leaving the loop).

        Each request long-polls for up to ``wait_s`` seconds, so a new event arrives at once rather than
        at the next poll. Takes the same filters as :meth:`filter`.
        """
        base = self.filter(**filters).params()
        wait_s = max(0.0, min(wait_s, 60.0))
        while True:
            params = [*base, ("limit", MAX_PAGE_SIZE), ("wait_s", wait_s)]
            if after is not None:
                params.append(("after", after))
            body = self._transport.request("GET", self.path, params=params, timeout=wait_s + 30)
            for item in body["items"]:
                event = Event.model_validate(item)
                after = event.id
                yield event
