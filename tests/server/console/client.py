"""A browser-like HTTP client of the console: keeps cookies, logs in through the form, reads CSRF tokens."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import PASSWORD, ApiUser
from tests.servers import LiveServer


class Browser:
    """An httpx client that keeps cookies and reads the CSRF token out of pages, like a browser."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=60, follow_redirects=False)

    def login(self, name: str, password: str = PASSWORD) -> httpx.Response:
        page = self.http.get("/ui/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page.text)
        assert token, page.text
        return self.http.post(
            "/ui/login",
            data={"login_token": token.group(1), "username": name, "password": password, "next": "/ui/jobs"},
        )

    def csrf(self, path: str = "/ui/jobs") -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert match, page.text
        return match.group(1)

    def post(self, path: str, data: dict[str, object], **headers: str) -> httpx.Response:
        return self.http.post(path, data=data, headers=headers)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browser_for(live_server: LiveServer) -> Iterator[Callable[[ApiUser], Browser]]:
    made: list[Browser] = []

    def factory(user: ApiUser) -> Browser:
        browser = Browser(live_server.url)
        response = browser.login(user.name)
        assert response.status_code == 303, response.text
        made.append(browser)
        return browser

    yield factory
    for browser in made:
        browser.close()
