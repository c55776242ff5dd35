"""Result artifacts of a job: small typed summaries (g2 curves, a two-time map) the console draws."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path

from beambridge.schemas.artifacts import (
    ARTIFACT_NAME_RULE,
    Artifact,
    ArtifactInfo,
    XpcsG2,
    XpcsTwoTime,
    check_artifact_name,
)
from beambridge.schemas.common import PositiveId
from beambridge.server import artifacts
from beambridge.server.context import utcnow
from beambridge.server.deps import Caller, Ctx
from beambridge.server.errors import InvalidRequestError
from beambridge.server.json_body import JsonRoute

router = APIRouter(prefix="/jobs/{job_id}/artifacts", tags=["jobs"], route_class=JsonRoute)

ArtifactName = Annotated[str, Path(max_length=200, description=ARTIFACT_NAME_RULE)]


def _name(name: str) -> str:
    try:
        return check_artifact_name(name)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None


@router.put("/{name}", response_model=ArtifactInfo)
def put_artifact_route(
    ctx: Ctx,
    caller: Caller,
    job_id: PositiveId,
    name: ArtifactName,
    body: Annotated[XpcsG2 | XpcsTwoTime, Body(discriminator="kind")],
) -> dict[str, Any]:
    """Store (or replace) one artifact of a job. Kinds: ``xpcs.g2``, ``xpcs.twotime`` (see the schemas);
    at most 512 KiB of JSON each and 16 per job. A site token may store them while the job runs."""
    name = _name(name)
    with ctx.db.write() as conn:
        return artifacts.put_artifact(conn, caller, job_id, name, body, utcnow())


@router.get("", response_model=list[ArtifactInfo])
def list_artifacts_route(ctx: Ctx, caller: Caller, job_id: PositiveId) -> list[dict[str, Any]]:
    """A job's artifacts, without their content."""
    with ctx.db.read() as conn:
        return artifacts.list_artifacts(conn, caller, job_id)


@router.get("/{name}", response_model=Artifact)
def get_artifact_route(ctx: Ctx, caller: Caller, job_id: PositiveId, name: ArtifactName) -> dict[str, Any]:
    """One artifact with its content."""
    with ctx.db.read() as conn:
        return artifacts.get_artifact(conn, caller, job_id, _name(name))


__all__ = ["router"]
