"""Jobs (``client.jobs``): bulk create, filter, update, cancel, delete, history, and waiting."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, JsonValue

from beambridge.client.names import Names, as_id
from beambridge.client.query import FilterField, Query, filter_fields
from beambridge.client.resources import AppManager, Manager, SiteManager, StateArg, as_body, as_list
from beambridge.client.waiting import iter_completed, wait_all
from beambridge.schemas.artifacts import Artifact, ArtifactInfo, XpcsG2, XpcsTwoTime
from beambridge.schemas.events import Event
from beambridge.schemas.jobs import (
    BulkResult,
    Job,
    JobBulkUpdate,
    JobCreate,
    JobSummary,
    JobSummaryGroup,
    RetryResult,
    VerifiedTransfer,
)
from beambridge.schemas.queries import JobQuery

CREATE_CHUNK = 5000
"""Jobs per ``POST /jobs`` request in :meth:`JobManager.bulk_create`."""
UPDATE_CHUNK = 5000
"""Jobs per ``PATCH /jobs`` (and cancel / delete) request."""

JobRef = int | Job


def job_ids(jobs: Iterable[JobRef] | JobRef) -> list[int]:
    """Ids from ids or :class:`Job` models (one or many)."""
    items = [jobs] if isinstance(jobs, int | Job) else list(jobs)
    return [item.id if isinstance(item, Job) else int(item) for item in items]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _merge(results: Iterable[BulkResult]) -> BulkResult:
    ids = sorted({job_id for result in results for job_id in result.ids})
    return BulkResult(count=len(ids), ids=ids)


class JobManager(Manager[Job]):
    """Jobs: one run of an app with its parameters, resources, parents and transfers."""

    @functools.cached_property
    def names(self) -> Names:
        """Your sites and apps by name (read on first use; read again when a name is not found)."""
        return Names(SiteManager(self._transport), AppManager(self._transport))

    path, model, noun = "/jobs", Job, "job"
    count_path = "/jobs/count"
    fields: ClassVar[Mapping[str, FilterField]] = filter_fields(JobQuery, tags="tag")

    def filter(
        self,
        *,
        id: int | Iterable[int] | None = None,
        state: StateArg = None,
        site_id: int | Iterable[int] | None = None,
        app_id: int | Iterable[int] | None = None,
        tags: Mapping[str, str] | None = None,
        parent_id: int | None = None,
        session_id: int | None = None,
        workdir_prefix: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        hedge_of: int | None = None,
        copies: bool | None = None,
    ) -> Query[Job]:
        """Jobs matching every given filter (a list matches any of its values; ``tags`` must all be there).
        ``copies=False`` leaves hedged copies out, ``True`` keeps only them; ``hedge_of`` the copies of a job.

        Lazy: nothing is sent until the query is iterated, counted or asked for ``first()``.
        """
        return self._query(
            id=as_list(id),
            state=as_list(state),
            site_id=as_list(site_id),
            app_id=as_list(app_id),
            tags=tags,
            parent_id=parent_id,
            session_id=session_id,
            workdir_prefix=workdir_prefix,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            updated_before=updated_before,
            hedge_of=hedge_of,
            copies=copies,
        )

    def count(self) -> int:
        """How many jobs you have."""
        return self.all().count()

    def summary(self, by_tag: str | None = None, *, max_groups: int = 1000, **filters: Any) -> JobSummary:
        """Counts by state of the jobs matching ``filters`` (as :meth:`filter` takes them), per value of
        the tag ``by_tag`` if given (``summary("run", tags={"beamline": "8-ID"})``), newest group first."""
        query = self.filter(**filters)
        if query.matches_nothing:
            return JobSummary(by_tag=by_tag, total=0, groups=[])
        extra = [("max_groups", max_groups), *([("by_tag", by_tag)] if by_tag is not None else [])]
        answers = [
            JobSummary.model_validate(
                self._transport.request("GET", f"{self.path}/summary", params=[*params, *extra])
            )
            for params in query.request_params()
        ]
        if len(answers) == 1:
            return answers[0]
        merged: dict[str | None, JobSummaryGroup] = {}
        for answer in answers:  # a very long id list was sent in parts: add their counts up
            for group in answer.groups:
                into = merged.setdefault(group.value, JobSummaryGroup(value=group.value, counts={}, total=0))
                for state, count in group.counts.items():
                    into.counts[state] = into.counts.get(state, 0) + count
                into.total += group.total
        groups = list(merged.values())
        return JobSummary(
            by_tag=by_tag,
            total=sum(g.total for g in groups[:max_groups]),
            groups=groups[:max_groups],
            groups_left_out=max(0, len(groups) - max_groups) + sum(a.groups_left_out for a in answers),
        )

    def create(
        self,
        app_id: int | None = None,
        workdir: str | None = None,
        *,
        app: str | int | None = None,
        site: str | int | None = None,
        sites: Iterable[str] | None = None,
        site_group: str | None = None,
        policy: str | None = None,
        hedge: bool | None = None,
        parameters: Mapping[str, JsonValue] | None = None,
        tags: Mapping[str, str] | None = None,
        data: Mapping[str, JsonValue] | None = None,
        launch_params: Mapping[str, str] | None = None,
        parent_ids: Iterable[JobRef] = (),
        transfers: Mapping[str, str | VerifiedTransfer] | None = None,
        num_nodes: int | None = None,
        ranks_per_node: int | None = None,
        threads_per_rank: int | None = None,
        gpus_per_rank: float | None = None,
        node_packing_count: int | None = None,
        wall_time_limit_min: float | None = None,
        retry_limit: int | None = None,
        priority: int | None = None,
    ) -> Job:
        """Create one job of app ``app_id`` in ``workdir`` (relative to the site's data directory); or of
        the app named ``app`` on the ``site`` named (a name or an id), resolved here to that site's app::

            client.jobs.create(app="XpcsMultiTau", site="polaris", workdir="A001/g2", parameters=...)

        or of the app named ``app`` on whichever of ``sites`` (names; or the sites of ``site_group``; or
        all your sites) the service predicts will finish it soonest::

            client.jobs.create(app="XpcsMultiTau", sites=["polaris", "perlmutter"], workdir="run/1")

        ``policy`` (``round_robin``, ``shortest_backlog``, ``fastest_finish``) overrides the group's or the
        server's; ``hedge=True`` asks for a copy on the second-best site if the job runs late. A job no
        site can run is refused (422) with each site's reason.

        The keywords are the fields of :class:`~beambridge.schemas.JobCreate`; those left out (None)
        take the service's defaults: one node, one rank, no wall-time limit, 3 retries, priority 0.
        ``transfers`` maps the app's transfer slots to ``'location:/path'`` (or a
        :class:`~beambridge.schemas.jobs.VerifiedTransfer` for an input with a known SHA-256).
        """
        optional: dict[str, Any] = {
            "parameters": _dict_or_none(parameters),
            "tags": _dict_or_none(tags),
            "data": _dict_or_none(data),
            "launch_params": _dict_or_none(launch_params),
            "parent_ids": job_ids(parent_ids) or None,
            "transfers": _transfers_body(transfers),
            "num_nodes": num_nodes,
            "ranks_per_node": ranks_per_node,
            "threads_per_rank": threads_per_rank,
            "gpus_per_rank": gpus_per_rank,
            "node_packing_count": node_packing_count,
            "wall_time_limit_min": wall_time_limit_min,
            "retry_limit": retry_limit,
            "priority": priority,
        }
        if workdir is None:
            raise TypeError("create() needs workdir")
        if (app_id is None) == (app is None):
            raise TypeError("create() needs either app_id or app (an app by name)")
        if site is not None or (app is not None and as_id(app) is not None):
            if sites is not None or site_group is not None or policy is not None or hedge:
                raise TypeError(
                    "site names one site; sites, site_group, policy and hedge choose among several"
                )
            app_id = self.names.app_id(app if app is not None else app_id, site)  # type: ignore[arg-type]
            app = None
        body: dict[str, Any] = {"workdir": workdir}
        if app_id is not None:
            body["app_id"] = app_id
        placement: dict[str, Any] = {
            "app": app,
            "sites": list(sites) if sites is not None else None,
            "site_group": site_group,
            "policy": policy,
            "hedge": hedge,
        }
        body.update({name: value for name, value in placement.items() if value is not None})
        body.update({name: value for name, value in optional.items() if value is not None})
        [job] = self.bulk_create([body])
        return job

    def bulk_create(self, specs: Iterable[JobCreate | Mapping[str, Any]]) -> list[Job]:
        """Create many jobs, :data:`CREATE_CHUNK` per request; returns them in the order given.

        Each request is all-or-none; if one fails, the jobs of the earlier requests exist (the error
        says which). A parent must exist before its children, so create a DAG level by level.
        """
        bodies = [as_body(spec) for spec in specs]
        created: list[Job] = []
        for chunk in _chunks(bodies, CREATE_CHUNK):
            answer = self._transport.request("POST", self.path, json=chunk)
            created.extend(Job.model_validate(item) for item in answer)
        return created

    def update(self, jobs: Iterable[JobRef] | JobRef, **fields: Any) -> BulkResult:
        """Apply the same changes to many jobs (``state``, ``state_data``, ``tags``, ``data``,
        ``priority``, ``retry_limit``, ``result``, ``error``); state changes are validated by the service."""
        return self.bulk_update([{"id": job_id, **fields} for job_id in job_ids(jobs)])

    def bulk_update(self, updates: Iterable[JobBulkUpdate | Mapping[str, Any]]) -> BulkResult:
        """Apply per-job changes (each with its ``id``), :data:`UPDATE_CHUNK` per all-or-none request."""
        bodies = [_jsonable(as_body(item)) for item in updates]
        results = [
            BulkResult.model_validate(self._transport.request("PATCH", self.path, json=chunk))
            for chunk in _chunks(bodies, UPDATE_CHUNK)
        ]
        return _merge(results)

    def cancel(self, jobs: Iterable[JobRef] | JobRef) -> BulkResult:
        """Cancel jobs (→ KILLED); the result counts those that had not already ended."""
        return self._bulk_ids("/jobs/cancel", jobs, retry=True)

    def retry(
        self,
        ids: Iterable[JobRef] | JobRef = (),
        *,
        tags: Mapping[str, str] | None = None,
        state: StateArg = None,
    ) -> RetryResult:
        """Send ``FAILED`` or ``KILLED`` jobs back to run: the ``ids`` given and/or every job carrying all
        of ``tags``, among those in ``state`` (FAILED and KILLED unless narrowed)::

            client.jobs.retry(tags={"run": "42"}, state="FAILED")

        Each goes back to where a new job starts with a fresh retry count, and an event naming you; the
        children that failed because of it go back with it. Jobs named by id that had not ended badly are
        left alone and listed in ``skipped`` with the reason.
        """
        body: dict[str, Any] = {"ids": job_ids(ids)}
        if tags:
            body["tags"] = dict(tags)
        states = as_list(state)
        if states is not None:
            body["state"] = [states] if isinstance(states, str) else [str(item) for item in states]
        return RetryResult.model_validate(self._transport.request("POST", "/jobs/retry", json=body))

    def delete(self, jobs: Iterable[JobRef] | JobRef) -> BulkResult:
        """Delete jobs with their history."""
        return self._bulk_ids("/jobs/delete", jobs, retry=False)

    def _bulk_ids(self, path: str, jobs: Iterable[JobRef] | JobRef, *, retry: bool) -> BulkResult:
        ids = job_ids(jobs)
        results = [
            BulkResult.model_validate(self._transport.request("POST", path, json={"ids": chunk}, retry=retry))
            for chunk in _chunks(ids, UPDATE_CHUNK)
        ]
        return _merge(results)

    def events(self, job: JobRef) -> list[Event]:
        """Every state change of one job, oldest first."""
        [job_id] = job_ids(job)
        return [
            Event.model_validate(item) for item in self._transport.request("GET", f"/jobs/{job_id}/events")
        ]

    def put_artifact(self, job: JobRef, name: str, artifact: XpcsG2 | XpcsTwoTime) -> ArtifactInfo:
        """Store (or replace) a result artifact of a job (the launcher does this for its runs)."""
        [job_id] = job_ids(job)
        body = artifact.model_dump(mode="json", exclude_none=True)
        answer = self._transport.request("PUT", f"/jobs/{job_id}/artifacts/{name}", json=body, retry=True)
        return ArtifactInfo.model_validate(answer)

    def artifacts(self, job: JobRef) -> list[ArtifactInfo]:
        """A job's result artifacts (without their content)."""
        [job_id] = job_ids(job)
        return [
            ArtifactInfo.model_validate(item)
            for item in self._transport.request("GET", f"/jobs/{job_id}/artifacts")
        ]

    def artifact(self, job: JobRef, name: str) -> Artifact:
        """One result artifact of a job, with its content."""
        [job_id] = job_ids(job)
        return Artifact.model_validate(self._transport.request("GET", f"/jobs/{job_id}/artifacts/{name}"))

    def as_completed(self, jobs: Iterable[JobRef] | JobRef, timeout: float | None = None) -> Iterator[Job]:
        """Yield each job as it ends (JOB_FINISHED, FAILED or KILLED), pushed by the service's long-poll.

        Raises :class:`~beambridge.client.errors.WaitTimeout` if ``timeout`` seconds pass first.
        """
        return iter_completed(self._transport, job_ids(jobs), timeout)

    def wait(self, jobs: Iterable[JobRef] | JobRef, timeout: float | None = None) -> list[Job]:
        """Block until every job has ended; returns them in the order given.

        Raises :class:`~beambridge.client.errors.WaitTimeout` (a ``TimeoutError``) if ``timeout`` passes.
        """
        return wait_all(self._transport, job_ids(jobs), timeout)


def _jsonable_value(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _jsonable(body: dict[str, Any]) -> dict[str, Any]:
    return {key: _jsonable_value(value) for key, value in body.items()}


def _dict_or_none(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


def _transfers_body(transfers: Mapping[str, str | VerifiedTransfer] | None) -> dict[str, Any] | None:
    return None if transfers is None else {slot: _jsonable_value(value) for slot, value in transfers.items()}
