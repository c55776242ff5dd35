"""What every console page needs: the logged-in user, CSRF-checked forms, templates, HTML errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from beambridge import __version__
from beambridge.server.auth.tokens import hash_secret
from beambridge.server.console.sessions import (
    SESSION_COOKIE,
    ConsoleUser,
    csrf_token,
    lookup_statement,
    tokens_match,
)
from beambridge.server.context import ServerContext, utcnow
from beambridge.states import TERMINAL_STATES

HERE = Path(__file__).parent
MAX_FORM_BYTES = 1024 * 1024
"""A console form is a few fields and at most some thousands of job ids."""


@dataclass(frozen=True)
class ConsoleState:
    """The console's part of the app state: the key CSRF tokens are made with."""

    secret_key: str


class LoginRequired(Exception):
    """The request has no live console session."""


class PageError(Exception):
    """An error shown as a page (the console's counterpart of the API's JSON errors)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _fmt_time(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["when"] = _fmt_time
templates.env.filters["pretty_json"] = _fmt_json
templates.env.filters["duration"] = _fmt_duration
templates.env.globals["version"] = __version__
templates.env.globals["terminal_states"] = {s.value for s in TERMINAL_STATES}


def context_of(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


def console_state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def current_user(request: Request) -> ConsoleUser:
    """The user of the request's session cookie; otherwise the page answers with the login page."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret or len(secret) > 200:
        raise LoginRequired
    ctx = context_of(request)
    row = await ctx.reader.first(lookup_statement(), {"token_hash": hash_secret(secret)})
    if row is None or _as_utc(row["expires_at"]) <= utcnow():
        raise LoginRequired
    return ConsoleUser(
        user_id=int(row["user_id"]),
        name=str(row["name"]),
        session_id=int(row["id"]),
        csrf=csrf_token(console_state(request).secret_key, secret),
    )


User = Annotated[ConsoleUser, Depends(current_user)]


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site (Sec-Fetch-Site, Origin).

    A client that sends neither (an old browser, a script) still has to present the CSRF token."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


async def read_form(request: Request) -> dict[str, list[str]]:
    """The URL-encoded form of a POST, refused (as a page) when it is too big or not a form."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise PageError(415, "the console accepts only its own HTML forms")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise PageError(413, "form too large")
    try:
        return parse_qs(body.decode(), keep_blank_values=True, max_num_fields=60_000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PageError(400, f"form could not be read: {exc}") from None


def first_value(form: dict[str, list[str]], key: str) -> str | None:
    """The first value of a form field, None when absent."""
    values = form.get(key)
    return values[0] if values else None


async def checked_form(request: Request, user: User) -> dict[str, list[str]]:
    """The form of an action, after checking the session's CSRF token and the request's origin."""
    if not same_origin(request):
        raise PageError(403, "refused: the request came from another site")
    form = await read_form(request)
    if not tokens_match(first_value(form, "csrf"), user.csrf):
        raise PageError(403, "refused: the form's CSRF token is missing or wrong; reload the page")
    return form


Form = Annotated[dict[str, list[str]], Depends(checked_form)]


def render(
    request: Request, template: str, user: ConsoleUser | None, status_code: int = 200, **values: Any
) -> HTMLResponse:
    """A page of the console."""
    return templates.TemplateResponse(request, template, {"user": user, **values}, status_code=status_code)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


def install_page_errors(app: FastAPI) -> None:
    """Console errors answer with pages, not JSON."""

    async def on_login_required(request: Request, _exc: Exception) -> Response:
        if request.method == "GET" and request.url.path.startswith("/ui/"):
            return login_redirect(request)
        return render(request, "error.html", None, 401, message="log in first")

    async def on_page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return render(request, "error.html", None, exc.status_code, message=exc.message)

    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(PageError, on_page_error)
