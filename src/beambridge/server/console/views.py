"""The experiment overview, the sites board and the weather plot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from beambridge.schemas.queries import JobQuery
from beambridge.server.console import insight, queries, weather
from beambridge.server.console.live import latest_event_id
from beambridge.server.console.pages import parse_job_filters
from beambridge.server.console.sessions import ConsoleUser
from beambridge.server.console.web import PageError, User, context_of, render
from beambridge.server.context import utcnow
from beambridge.server.json_body import JsonRoute

router = APIRouter(include_in_schema=False, route_class=JsonRoute)

WINDOWS_H = {"1h": 1.0, "24h": 24.0, "7d": 168.0}
MAX_WEATHER_SPAN = timedelta(days=7)


def _params(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


WINDOWED: dict[str, Callable[..., insight.Overview | insight.Throughput]] = {
    "overview": insight.overview,
    "throughput": insight.throughput,
}


def _chart(data: insight.Overview | insight.Throughput) -> dict[str, Any]:
    return {"bucket_s": data.bucket_s, "start": data.window_start.timestamp(), "series": data.throughput}


async def _windowed_page(
    request: Request, user: ConsoleUser, page: str, *, figures: bool = False
) -> Response:
    """The overview or throughput page (``figures``: its figures as JSON, which the open page fetches when
    the event stream says something changed): the caller's jobs in the query string's filters over the
    ``window``."""
    query, error = parse_job_filters(_params(request))
    window = request.query_params.get("window", "1h")
    if window not in WINDOWS_H:
        raise PageError(422, f"window must be one of {', '.join(WINDOWS_H)}")
    if figures and error:
        raise PageError(422, error)
    compute = WINDOWED[page]
    ctx = context_of(request)

    def read() -> tuple[insight.Overview | insight.Throughput, int]:
        with ctx.db.read() as conn:
            # The cursor first: an event committed while the figures are read makes the page read them again.
            cursor = latest_event_id(conn, user.user_id)
            return compute(conn, user.principal, query, utcnow(), WINDOWS_H[window]), cursor

    data, cursor = await run_in_threadpool(read)
    if figures:
        body = {**asdict(data), "window_start": data.window_start.isoformat(), "chart": _chart(data)}
        return Response(
            orjson.dumps(body), media_type="application/json", headers={"Cache-Control": "no-store"}
        )
    return render(
        request, f"{page}.html", user, 422 if error else 200, nav=page, data=data, error=error, query=query,
        window=window, windows=list(WINDOWS_H), chart=_chart(data), live_after=cursor,
        stage_sample=insight.STAGE_SAMPLE,
        figures_url=f"/ui/{page}/figures" + (f"?{request.url.query}" if request.url.query else ""),
    )  # fmt: skip


@router.get("/ui/overview")
async def overview_page(request: Request, user: User) -> Response:
    return await _windowed_page(request, user, "overview")


@router.get("/ui/overview/figures")
async def overview_figures(request: Request, user: User) -> Response:
    return await _windowed_page(request, user, "overview", figures=True)


@router.get("/ui/throughput")
async def throughput_page(request: Request, user: User) -> Response:
    return await _windowed_page(request, user, "throughput")


@router.get("/ui/throughput/figures")
async def throughput_figures(request: Request, user: User) -> Response:
    return await _windowed_page(request, user, "throughput", figures=True)


@router.get("/ui/sites")
async def sites_page(request: Request, user: User) -> Response:
    ctx = context_of(request)

    def read() -> list[dict[str, Any]]:
        with ctx.db.read() as conn:
            return insight.site_cards(conn, user.principal, utcnow())

    return render(request, "sites.html", user, nav="sites", cards=await run_in_threadpool(read))


def _window(request: Request) -> tuple[datetime, datetime, int | None]:
    """The weather plot's window (default: the last hour) and pilot, from the query string."""
    try:
        spec = JobQuery.model_validate(
            {
                key: request.query_params[name]
                for key, name in (("created_after", "since"), ("created_before", "until"))
                if request.query_params.get(name)
            }
        )
    except ValidationError:
        raise PageError(422, "since and until must be times like 2026-12-03T14:00:00") from None
    until = spec.created_before or utcnow()
    until = until if until.tzinfo else until.replace(tzinfo=UTC)
    since = spec.created_after or until - timedelta(hours=1)
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    if not since < until or until - since > MAX_WEATHER_SPAN:
        raise PageError(422, "the window must end after it starts and span at most 7 days")
    raw = request.query_params.get("batch_job_id") or None
    batch_job_id = None
    if raw is not None:
        if not raw.isdigit() or not 0 < int(raw) < 2**63:
            raise PageError(422, "batch_job_id must be a pilot's id")
        batch_job_id = int(raw)
    return since, until, batch_job_id


COLOURS = ("outcome", "app")


def _colour(request: Request) -> str:
    colour = request.query_params.get("colour") or "outcome"
    if colour not in COLOURS:
        raise PageError(422, f"colour must be one of {', '.join(COLOURS)}")
    return colour


@router.get("/ui/weather")
async def weather_page(request: Request, user: User) -> Response:
    since, until, batch_job_id = _window(request)
    colour = _colour(request)
    ctx = context_of(request)

    def read() -> dict[str, Any]:
        with ctx.db.read() as conn:
            return weather.summary(weather.read_runs(conn, user.principal, since, until, batch_job_id))

    return render(
        request, "weather.html", user, nav="weather", summary=await run_in_threadpool(read), since=since,
        until=until, batch_job_id=batch_job_id, image_query=request.url.query, outcomes=weather.OUTCOMES,
        colour=colour, colours=COLOURS,
    )  # fmt: skip


@router.get("/ui/weather.png")
async def weather_png(request: Request, user: User) -> Response:
    since, until, batch_job_id = _window(request)
    by_app = _colour(request) == "app"
    ctx = context_of(request)

    def draw() -> bytes:
        with ctx.db.read() as conn:
            runs = weather.read_runs(conn, user.principal, since, until, batch_job_id)
            labels = queries.names(conn, user.principal)[2] if by_app else None
        title = f"{len(runs.start):,} runs" + (f" of pilot {batch_job_id}" if batch_job_id else "")
        return weather.render_png(runs, since, until, title, labels)

    return Response(await run_in_threadpool(draw), media_type="image/png")
