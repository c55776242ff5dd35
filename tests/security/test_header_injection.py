"""Header and redirect injection: nothing a client sends is reflected into a response header unchecked.

* ``X-Request-ID`` is echoed only when it is a short plain token; anything else gets a fresh id.
* The console's ``next`` (where to go after logging in) is a path of the console: never another host
  (``//evil.example``, ``https://…``, ``/\\evil``), and never a way to add a header.
* ``Retry-After`` is always a whole number of seconds.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from tests.conftest import ApiUser
from tests.server.console.client import Browser


def _raw_get(base_url: str, path: str, headers: list[bytes]) -> bytes:
    """A request written byte by byte (httpx refuses to send the odd headers an attacker would)."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(
            b"GET "
            + path.encode()
            + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + b"".join(headers)
            + b"\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    "value",
    [b"a b", b"x" * 300, b"<script>", b"id\x7f", b"id;Set-Cookie=x", "é".encode(), b"%0d%0aSet-Cookie:%20x"],
)
def test_an_odd_request_id_is_never_reflected(alice: ApiUser, value: bytes) -> None:
    answer = _raw_get(alice.base_url, "/health", [b"X-Request-ID: " + value + b"\r\n"])
    head = answer.split(b"\r\n\r\n", 1)[0]
    if head.startswith(b"HTTP/1.1 400"):  # refused by the HTTP parser itself (a control character)
        assert b"set-cookie" not in head.lower() and value not in head
        return
    assert head.startswith(b"HTTP/1.1 200"), head
    echoed = [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id:")]
    assert echoed and value not in echoed[0], head
    assert b"set-cookie" not in head.lower()


def test_a_plain_request_id_is_kept(alice: ApiUser) -> None:
    answer = alice.http.get("/health", headers={"X-Request-ID": "beamline-42.a_b"})
    assert answer.headers["X-Request-ID"] == "beamline-42.a_b"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/ui/jobs",
        "//evil.example/ui/jobs",
        "/\\evil.example",
        "/ui/\\\\evil.example",
        "/ui/jobs\r\nSet-Cookie: stolen=1",
        "/ui/jobs%0d%0aSet-Cookie:%20stolen=1",
        "javascript:alert(1)",
    ],
)
def test_after_login_the_console_goes_nowhere_else(alice: ApiUser, target: str) -> None:
    import re

    browser = Browser(alice.base_url)
    try:
        page = browser.http.get("/ui/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page.text)
        assert token, page.text
        done = browser.http.post(
            "/ui/login",
            data={
                "login_token": token.group(1),
                "username": alice.name,
                "password": "correct horse battery",
                "next": target,
            },
        )
        assert done.status_code == 303, done.text
        location = done.headers["location"]
        assert location.startswith("/ui/") and not location.startswith("//") and "\\" not in location, (
            location
        )
        assert "\r" not in location and "\n" not in location
        assert "stolen" not in done.headers.get("set-cookie", "")
    finally:
        browser.close()


def test_retry_after_is_whole_seconds(alice: ApiUser) -> None:
    import httpx

    statuses = []
    for _ in range(8):  # the shared server allows 5 failures per user name before it backs off
        answer = httpx.post(
            f"{alice.base_url}/auth/login", json={"username": alice.name, "password": "wrong pw!"}
        )
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            assert answer.headers["Retry-After"].isdigit() and int(answer.headers["Retry-After"]) >= 1
            assert answer.json()["retry_after"] == int(answer.headers["Retry-After"])
            return
    raise AssertionError(f"never backed off: {statuses}")
