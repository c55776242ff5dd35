"""Jobs (``client.jobs``): bulk create, filter, update, cancel, delete, history, and waiting."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel

from beambridge.client.query import FilterField, FilterKind, Query
from beambridge.client.resources import Manager, StateArg, as_body, as_list
from beambridge.client.waiting import iter_completed, wait_all
from beambridge.schemas.events import Event
from beambridge.schemas.jobs import BulkResult, Job, JobBulkUpdate, JobCreate

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

    path, model, noun = "/jobs", Job, "job"
    count_path = "/jobs/count"
    fields: ClassVar[Mapping[str, FilterField]] = {
        "id": FilterField("id", FilterKind.MANY),
        "state": FilterField("state", FilterKind.MANY),
        "site_id": FilterField("site_id", FilterKind.MANY),
        "app_id": FilterField("app_id", FilterKind.MANY),
        "tags": FilterField("tag", FilterKind.TAGS),
        "parent_id": FilterField("parent_id"),
        "session_id": FilterField("session_id"),
        "workdir_prefix": FilterField("workdir_prefix"),
        "created_after": FilterField("created_after"),
        "created_before": FilterField("created_before"),
        "updated_after": FilterField("updated_after"),
        "updated_before": FilterField("updated_before"),
    }

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
    ) -> Query[Job]:
        """Jobs matching every given filter (a list matches any of its values; ``tags`` must all be there).

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
        )

    def count(self) -> int:
        """How many jobs you have."""
        return self.all().count()

    def create(self, app_id: int, workdir: str, **fields: Any) -> Job:
        """Create one job; ``fields`` are those of :class:`~beambridge.schemas.JobCreate`
        (``parameters``, ``tags``, ``parent_ids``, ``num_nodes``, ``wall_time_min``, ``priority``…)."""
        [job] = self.bulk_create([{"app_id": app_id, "workdir": workdir, **fields}])
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


def _jsonable(body: dict[str, Any]) -> dict[str, Any]:
    return {
        key: (value.model_dump(mode="json") if isinstance(value, BaseModel) else value)
        for key, value in body.items()
    }
