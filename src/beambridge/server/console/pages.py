"""The console's pages and actions: login, the jobs list, one job, cancelling."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from beambridge.schemas.artifacts import check_artifact_name
from beambridge.schemas.jobs import JobRetry
from beambridge.schemas.queries import JobQuery
from beambridge.server import audit
from beambridge.server.auth.login import check_login, client_address
from beambridge.server.console import queries, results
from beambridge.server.console.live import latest_event_id
from beambridge.server.console.sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    close_session,
    new_login_token,
    open_session,
    tokens_match,
)
from beambridge.server.console.web import (
    Form,
    LoginRequired,
    PageError,
    User,
    context_of,
    current_user,
    first_value,
    read_form,
    render,
    same_origin,
)
from beambridge.server.context import utcnow
from beambridge.server.errors import AuthenticationError, NotFoundError, ServiceError, TooManyRequestsError
from beambridge.server.jobs.removal import cancel_jobs
from beambridge.server.jobs.retry import retry_jobs
from beambridge.server.json_body import JsonRoute
from beambridge.states import JobState

router = APIRouter(include_in_schema=False, route_class=JsonRoute)

PAGE_SIZES = (25, 50, 100, 200)
JOB_FILTERS = ("state", "tag", "site_id", "app_id", "created_after", "created_before")
MAX_CANCEL = 5000

JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _secure(request: Request) -> bool:
    configured = context_of(request).settings.console_secure_cookie
    return request.url.scheme == "https" if configured is None else configured


def _safe_next(target: str | None) -> str:
    """Where to go after login: only a console page of this service (never another host)."""
    if target and target.startswith("/ui/") and "\\" not in target and not target.startswith("//"):
        return target
    return "/ui/jobs"


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


@router.get("/ui")
@router.get("/ui/")
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


@router.get("/ui/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    token = request.cookies.get(LOGIN_COOKIE) or new_login_token()
    response = render(request, "login.html", None, login_token=token, next=_safe_next(next))
    _set_login_cookie(request, response, token)
    return response


def _set_login_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=3600, path="/ui/login", httponly=True, samesite="strict",
        secure=_secure(request),
    )  # fmt: skip


@router.post("/ui/login")
async def login(request: Request) -> Response:
    if not same_origin(request):
        raise PageError(403, "refused: the login form came from another site")
    form = await read_form(request)
    first = {key: values[0] for key, values in form.items() if values}
    cookie = request.cookies.get(LOGIN_COOKIE)
    target = _safe_next(first.get("next"))
    if cookie is None or not tokens_match(first.get("login_token"), cookie):
        token = new_login_token()
        response = render(
            request, "login.html", None, 400, login_token=token, next=target,
            error="the login form expired; please try again",
        )  # fmt: skip
        _set_login_cookie(request, response, token)
        return response
    ctx = context_of(request)
    name, password = first.get("username", "")[:100], first.get("password", "")[:1000]
    try:
        user_id = await check_login(ctx, name, password, client_address(request))
    except TooManyRequestsError as exc:
        response = render(
            request, "login.html", None, 429, login_token=cookie, next=target, error=exc.detail, username=name
        )
        response.headers.update(exc.headers)
        return response
    except AuthenticationError:
        response = render(
            request, "login.html", None, 401, login_token=cookie, next=target,
            error="wrong username or password", username=name,
        )  # fmt: skip
        return response

    def start() -> str:
        now = utcnow()
        with ctx.db.write() as conn:
            audit.record_login(conn, user_id, name, via="console", address=client_address(request), now=now)
            return open_session(conn, user_id, now, ctx.settings.console_session_ttl_s)

    secret = await run_in_threadpool(start)
    done = RedirectResponse(target, status_code=303)
    done.set_cookie(
        SESSION_COOKIE, secret, max_age=ctx.settings.console_session_ttl_s, path="/", httponly=True,
        samesite="strict", secure=_secure(request),
    )  # fmt: skip
    done.delete_cookie(LOGIN_COOKIE, path="/ui/login")
    return done


@router.post("/ui/logout")
async def logout(request: Request, _form: Form) -> Response:
    ctx = context_of(request)
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:

        def end() -> None:
            with ctx.db.write() as conn:
                close_session(conn, secret, utcnow())

        await run_in_threadpool(end)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def parse_job_filters(params: dict[str, list[str]]) -> tuple[JobQuery, str | None]:
    """The job filters of a query string (blank fields ignored), or no filter and the error to show."""
    given = {
        key: [v.strip() for v in values if v.strip()] for key, values in params.items() if key in JOB_FILTERS
    }
    fields: dict[str, Any] = {}
    for key, values in given.items():
        if not values:
            continue
        fields[key] = values if key in ("state", "tag", "site_id", "app_id") else values[0]
    try:
        return JobQuery.model_validate(fields), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][:1])}: {err['msg']}" for err in exc.errors()[:3]
        )
        return JobQuery(), f"filter not understood ({problems})"


def _int_param(value: str | None, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise PageError(422, f"{value!r} is not a whole number") from None
    if not low <= number <= high:
        raise PageError(422, f"{number} is out of range")
    return number


@router.get("/ui/jobs")
async def jobs_page(request: Request, user: User) -> Response:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    query, error = parse_job_filters(params)
    before = _int_param(request.query_params.get("before"), 1, 2**63 - 1)
    limit = _int_param(request.query_params.get("limit"), 1, max(PAGE_SIZES)) or 50
    ctx = context_of(request)

    def read() -> tuple[list[dict[str, Any]], int | None, tuple[dict[int, str], ...], int]:
        with ctx.db.read() as conn:
            # The cursor first: an event committed while the page is read is sent again, never lost.
            cursor = latest_event_id(conn, user.user_id)
            rows, older = queries.jobs_newest_first(conn, user.principal, query, before=before, limit=limit)
            return rows, older, queries.names(conn, user.principal), cursor

    rows, older, (site_names, app_names, app_labels), cursor = await run_in_threadpool(read)
    kept = [(k, v) for k, values in params.items() if k in (*JOB_FILTERS, "limit") for v in values if v]
    return render(
        request, "jobs.html", user, 422 if error else 200,
        jobs=rows, older=older, error=error, query=query, site_names=site_names, app_names=app_names,
        app_labels=app_labels, states=[s.value for s in JobState], filters_qs=urlencode(kept), limit=limit, before=before,
        page_sizes=PAGE_SIZES, live_after=cursor,
    )  # fmt: skip


@router.get("/ui/jobs/{job_id}")
async def job_page(request: Request, user: User, job_id: JobId) -> Response:
    ctx = context_of(request)

    def read() -> tuple[Any, tuple[dict[int, str], ...], int]:
        with ctx.db.read() as conn:
            cursor = latest_event_id(conn, user.user_id)
            found = queries.job_with_history(conn, user.principal, job_id)
            return found, queries.names(conn, user.principal), cursor

    found, (site_names, app_names, _labels), cursor = await run_in_threadpool(read)
    if found is None:
        raise PageError(404, f"job {job_id} not found")
    job, history, results = found
    return render(
        request, "job.html", user, job=job, history=history, site_names=site_names, app_names=app_names,
        live_after=cursor, results=results, runs=queries.run_logs(history),
    )  # fmt: skip


@router.get("/ui/jobs/{job_id}/artifacts/{name}.png")
async def artifact_png(request: Request, user: User, job_id: JobId, name: str) -> Response:
    """A result artifact of one of the caller's jobs, drawn (g2 curves with fits, a two-time map)."""
    try:
        check_artifact_name(name)
    except ValueError as exc:
        raise PageError(404, str(exc)) from None
    ctx = context_of(request)

    def draw() -> bytes | None:
        with ctx.db.read() as conn:
            content = queries.artifact_content(conn, user.principal, job_id, name)
        return None if content is None else results.render(content)

    png = await run_in_threadpool(draw)
    if png is None:
        raise PageError(404, f"job {job_id} has no result {name!r}")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


def _ids(form: dict[str, list[str]]) -> list[int]:
    ids: list[int] = []
    for value in form.get("ids", []):
        number = _int_param(value, 1, 2**63 - 1)
        if number is not None:
            ids.append(number)
    if not ids:
        raise PageError(422, "select at least one job")
    if len(ids) > MAX_CANCEL:
        raise PageError(422, f"at most {MAX_CANCEL} jobs at once")
    return sorted(set(ids))


def _back(form: dict[str, list[str]], fallback: str) -> str:
    back = first_value(form, "back")
    return _safe_next(back) if back else fallback


@router.post("/ui/jobs/cancel")
async def cancel(request: Request, user: User, form: Form) -> Response:
    ids = _ids(form)
    ctx = context_of(request)

    def act() -> None:
        with ctx.db.write() as conn:
            outcome = cancel_jobs(conn, user.principal, ids, utcnow())
        ctx.wakeups.notify(outcome.wake_keys)

    try:
        await run_in_threadpool(act)
    except NotFoundError as exc:
        raise PageError(404, exc.detail) from None
    return RedirectResponse(_back(form, "/ui/jobs"), status_code=303)


@router.post("/ui/jobs/retry")
async def retry(request: Request, user: User, form: Form) -> Response:
    """Send the selected FAILED or KILLED jobs back to run (the API's retry: children that failed
    because of them go back with them; other selected jobs are left alone)."""
    ids = _ids(form)
    ctx = context_of(request)

    def act() -> None:
        with ctx.db.write() as conn:
            _result, outcome = retry_jobs(conn, user.principal, JobRetry(ids=ids), utcnow())
        ctx.wakeups.notify(outcome.wake_keys)

    try:
        await run_in_threadpool(act)
    except ServiceError as exc:
        raise PageError(exc.status_code, exc.detail) from None
    return RedirectResponse(_back(form, "/ui/jobs"), status_code=303)


__all__ = ["LoginRequired", "current_user", "router"]
