"""Small steps the server tests repeat: walking jobs through the launcher's part of the lifecycle."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiUser


def acquire(user: ApiUser, session_id: int, **body: Any) -> list[dict[str, Any]]:
    return user.ok(user.http.post(f"/sessions/{session_id}/acquire", json=body))  # type: ignore[return-value]


def report(user: ApiUser, session_id: int, reports: list[dict[str, Any]], status: int = 200) -> Any:
    return user.ok(user.http.post(f"/sessions/{session_id}/report", json={"reports": reports}), status)


def run_to(user: ApiUser, session_id: int, ids: list[int], final: str, **extra: Any) -> None:
    report(user, session_id, [{"id": i, "state": "RUNNING"} for i in ids])
    report(user, session_id, [{"id": i, "state": final, **extra} for i in ids])


def states(user: ApiUser, ids: list[int]) -> dict[int, str]:
    query = "&".join(f"id={i}" for i in ids)
    page = user.ok(user.http.get(f"/jobs?{query}&limit=5000"))
    return {job["id"]: job["state"] for job in page["items"]}  # type: ignore[index]


def event_path(user: ApiUser, job_id: int) -> list[str]:
    events = user.ok(user.http.get(f"/jobs/{job_id}/events"))
    return [events[0]["from_state"]] + [e["to_state"] for e in events]  # type: ignore[index]
