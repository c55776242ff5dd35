"""Security headers for the console's pages and assets (the JSON API is left as it is)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""Only this service's own scripts, styles and images: no inline script, no other host (no CDN)."""

_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_PAGE_PREFIXES = ("/ui", "/docs", "/redoc")


def is_console_path(path: str) -> bool:
    """Whether ``path`` is one of the console's pages or assets."""
    return path == "/" or path.startswith(_PAGE_PREFIXES)


class SecurityHeadersMiddleware:
    """Adds the headers above to console responses; a pass-through for everything else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_console_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
                if scope["path"].startswith("/ui/static/"):
                    message["headers"].append((b"cache-control", b"public, max-age=3600"))
                else:
                    message["headers"].append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, with_headers)
