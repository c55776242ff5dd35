"""The console in a real Chromium: log in, see only your own jobs, filter, open a job, cancel; no page
breaks its Content-Security-Policy or loads anything from another host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD, ApiUser
from tests.server.console.chromium import PageWatch, chromium, screenshot
from tests.server.helpers import states
from tests.servers import LiveServer

__all__ = ["chromium"]

# One database is enough for the browser: the pages' SQL is tested on both by test_pages.py.
pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.xdist_group("chromium"),
]


@pytest.fixture
def page(chromium: Any, live_server: LiveServer) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.watch = PageWatch(page, live_server.url)
    yield page
    context.close()


def log_in(page: Any, base_url: str, user: ApiUser, target: str = "/ui/jobs") -> None:
    page.goto(base_url + target)
    assert "/ui/login" in page.url
    page.fill("input[name=username]", user.name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + target)


def test_log_in_filter_open_and_cancel(
    page: Any, live_server: LiveServer, alice: ApiUser, bob: ApiUser
) -> None:
    base = live_server.url
    site = alice.site()
    app = alice.app(site["id"])
    mine = alice.jobs([
        {"app_id": app["id"], "workdir": f"w{i}", "tags": {"experiment": "A001" if i % 2 else "B002"}}
        for i in range(6)
    ])  # fmt: skip
    theirs = bob.jobs([{"app_id": bob.app(bob.site()["id"])["id"], "workdir": "x"}])

    page.goto(base + "/ui/login")
    screenshot(page, "login")
    log_in(page, base, alice)
    shown = {
        int(x) for x in page.locator("tr[data-job-id]").evaluate_all("rs => rs.map(r => r.dataset.jobId)")
    }
    assert shown == {j["id"] for j in mine}
    assert theirs[0]["id"] not in shown
    screenshot(page, "jobs")

    page.fill("input[name=tag]", "experiment:A001")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**tag=experiment%3AA001**")
    assert page.locator("tr[data-job-id]").count() == 3

    first = mine[1]["id"]
    page.click(f"a[href='/ui/jobs/{first}']")
    page.wait_for_url(f"{base}/ui/jobs/{first}")
    assert page.locator("#job-state").inner_text() == states(alice, [first])[first]
    assert page.locator("#timeline tbody tr").count() >= 1
    screenshot(page, "job")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Cancel job")
    page.wait_for_url(f"{base}/ui/jobs/{first}")
    assert page.locator("#job-state").inner_text() == "KILLED"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Retry job")
    page.wait_for_url(f"{base}/ui/jobs/{first}")
    assert page.locator("#job-state").inner_text() not in ("KILLED", "FAILED")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Cancel job")
    page.wait_for_url(f"{base}/ui/jobs/{first}")

    page.goto(base + "/ui/jobs")
    for job in mine[2:4]:
        page.check(f"input[name=ids][value='{job['id']}']")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Cancel selected")
    page.wait_for_url(base + "/ui/jobs?")
    killed = [j["id"] for j in mine[1:4]]
    assert set(states(alice, killed).values()) == {"KILLED"}
    assert states(alice, [mine[0]["id"]]) != {mine[0]["id"]: "KILLED"}
    page.watch.assert_clean()


def test_another_users_job_page_is_not_found(
    page: Any, live_server: LiveServer, alice: ApiUser, bob: ApiUser
) -> None:
    [job] = alice.jobs([{"app_id": alice.app(alice.site()["id"])["id"], "workdir": "w"}])
    log_in(page, live_server.url, bob)
    response = page.goto(f"{live_server.url}/ui/jobs/{job['id']}")
    assert response.status == 404


def test_docs_render_offline(page: Any, live_server: LiveServer) -> None:
    page.goto(live_server.url + "/docs")
    page.wait_for_selector(".opblock-summary-path[data-path='/jobs/{job_id}']", timeout=15_000)
    screenshot(page, "docs")
    page.watch.assert_clean()


def test_pages_read_on_a_phone(chromium: Any, live_server: LiveServer, alice: ApiUser) -> None:
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    alice.jobs([{"app_id": alice.app(alice.site()["id"])["id"], "workdir": "w"}])
    log_in(page, live_server.url, alice)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the jobs page is {overflow} px wider than a phone"
    screenshot(page, "jobs-phone")
    context.close()


def wait_live(page: Any) -> None:
    expect(page.locator("#live-status")).to_contain_text("live")


def test_a_state_change_appears_on_screen_within_a_second(
    page: Any, live_server: LiveServer, alice: ApiUser
) -> None:
    base = live_server.url
    app = alice.app(alice.site()["id"])
    [job, other] = alice.jobs([{"app_id": app["id"], "workdir": f"w{i}"} for i in range(2)])
    log_in(page, base, alice)
    wait_live(page)
    cell = f"tr[data-job-id='{job['id']}'] [data-state]"
    started = time.monotonic()
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [job["id"]]}))
    expect(page.locator(cell)).to_have_text("KILLED", timeout=5000)
    elapsed = time.monotonic() - started  # includes the cancel request itself
    assert elapsed < 1.0, f"the change took {elapsed:.2f} s to appear"
    assert "cancelled by user" in page.inner_text(f"tr[data-job-id='{job['id']}'] [data-reason]")

    alice.jobs([{"app_id": app["id"], "workdir": "new"}])
    page.wait_for_selector("#live-new:not([hidden])")
    screenshot(page, "jobs-live")

    page.goto(f"{base}/ui/jobs/{other['id']}")
    wait_live(page)
    rows = page.locator("#timeline tbody tr").count()
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [other["id"]]}))
    expect(page.locator("#job-state")).to_have_text("KILLED", timeout=5000)
    assert page.locator("#timeline tbody tr").count() == rows + 1
    page.watch.assert_clean()


def test_a_flood_of_events_keeps_the_page_responsive(
    page: Any, live_server: LiveServer, alice: ApiUser
) -> None:
    """Thousands of events in a burst: the page applies them in a few frames and still answers."""
    app = alice.app(alice.site()["id"])
    jobs = alice.jobs([{"app_id": app["id"], "workdir": f"w{i}"} for i in range(200)])
    log_in(page, live_server.url, alice, "/ui/jobs?limit=200")
    wait_live(page)
    for start in range(0, 200, 50):  # four bulk cancels in a row: 200 state changes, plus 5,000 new jobs
        alice.ok(alice.http.post("/jobs/cancel", json={"ids": [j["id"] for j in jobs[start : start + 50]]}))
    alice.jobs([{"app_id": app["id"], "workdir": f"n{i}"} for i in range(5000)])
    # Playwright's expect polls without evaluating strings in the page (the CSP forbids 'unsafe-eval')
    state_cells = page.locator("tr[data-job-id] [data-state]")
    expect(state_cells.filter(has_not_text="KILLED")).to_have_count(0, timeout=15_000)
    expect(page.locator("#live-new [data-count]")).to_have_text("5000", timeout=15_000)
    started = time.monotonic()
    assert page.evaluate("1 + 1") == 2
    assert time.monotonic() - started < 0.5
    applied = page.evaluate("window.bbLive.applied")
    assert applied < 100, f"{applied} repaints for one burst"
    page.watch.assert_clean()


def test_overview_sites_and_weather_draw(page: Any, live_server: LiveServer, alice: ApiUser) -> None:
    from tests.server.console.test_insight import _run

    _run(alice, "A001", 6, 2)
    log_in(page, live_server.url, alice, "/ui/overview?tag=experiment%3AA001")
    page.wait_for_selector("#throughput-chart canvas")  # uPlot drew the chart
    assert page.is_visible("#failures-banner")
    screenshot(page, "overview")
    page.goto(live_server.url + "/ui/sites")
    assert page.locator("section.site").count() == 1
    screenshot(page, "sites")
    page.goto(live_server.url + "/ui/weather")
    deadline = time.monotonic() + 30  # page.evaluate goes through the debugger, not the page's CSP
    while not page.evaluate("document.getElementById('weather').naturalWidth > 0"):
        assert time.monotonic() < deadline, "the weather plot never drew"
        time.sleep(0.1)
    screenshot(page, "weather")
    page.watch.assert_clean()


def wait_drawn(page: Any, selector: str, what: str) -> None:
    """Wait until an image has loaded and has pixels (page.evaluate is not subject to the page's CSP)."""
    image = page.locator(selector)
    image.scroll_into_view_if_needed()
    deadline = time.monotonic() + 30
    while not image.evaluate("img => img.complete && img.naturalWidth > 0"):
        assert time.monotonic() < deadline, f"the {what} plot never drew"
        time.sleep(0.1)


def test_results_and_output_draw_and_hostile_text_stays_text(
    page: Any, live_server: LiveServer, alice: ApiUser
) -> None:
    """A job's g2 curves and two-time map draw; its stdout/stderr tails show; a script in a tag, a tail or
    an artifact's title never runs (an alert would be a dialog; the CSP would log a violation)."""
    from tests.server.console.test_results import XSS, finished_job, g2, twotime

    clean = finished_job(
        alice, tags={"experiment": "A001"}, stdout="frames correlated: 1000 (256 x 256)\nD = 1.02e7 A^2/s",
        stderr="warning: 12 hot pixels masked", site="aurora",
    )  # fmt: skip
    alice.ok(alice.http.put(f"/jobs/{clean}/artifacts/g2", json=g2(title="g2 of A001_raw.h5")))
    alice.ok(alice.http.put(f"/jobs/{clean}/artifacts/twotime-2", json=twotime()))
    log_in(page, live_server.url, alice, f"/ui/jobs/{clean}")
    for name in ("g2", "twotime-2"):
        wait_drawn(page, f"figure[data-artifact='{name}'] img", name)
    screenshot(page, "results")
    page.context.clear_cookies()

    job = finished_job(alice, tags={"experiment": XSS}, stdout="D = 1.2e7 A^2/s\n" + XSS, stderr=XSS)
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/g2", json=g2(title=XSS)))
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/twotime-2", json=twotime()))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, live_server.url, alice, f"/ui/jobs/{job}")
    for name in ("g2", "twotime-2"):
        wait_drawn(page, f"figure[data-artifact='{name}'] img", name)
    expect(page.locator("#output pre[data-stream='stdout']").first).to_contain_text("D = 1.2e7")
    assert XSS in page.locator("#output pre[data-stream='stderr']").first.inner_text()
    assert page.locator("#output script, #results script, .tag img").count() == 0
    screenshot(page, "results-hostile")
    page.goto(live_server.url + "/ui/jobs")
    assert XSS in page.locator(f"tr[data-job-id='{job}']").inner_text()
    assert dialogs == []
    page.watch.assert_clean()


def test_overview_and_throughput_follow_the_event_stream(
    page: Any, live_server: LiveServer, alice: ApiUser
) -> None:
    """The figures pages fetch their figures again when the stream says something changed: the funnel,
    the failures banner and the throughput chart move without a reload."""
    from tests.server.helpers import acquire, report

    base = live_server.url
    site = alice.site()
    app = alice.app(site["id"])
    alice.jobs([{"app_id": app["id"], "workdir": f"w{i}", "tags": {"experiment": "L1"}} for i in range(3)])
    log_in(page, base, alice, "/ui/overview?tag=experiment%3AL1")
    wait_live(page)
    expect(page.locator("#funnel-total")).to_have_text("3")
    expect(page.locator('[data-stage="finished"]')).to_have_text("0")
    assert page.is_hidden("#failures-banner") and page.is_visible("#throughput-empty")
    session = alice.session(site["id"])
    ids = [j["id"] for j in acquire(alice, session["id"], max_jobs=3)]
    report(alice, session["id"], [{"id": i, "state": "RUNNING"} for i in ids])
    expect(page.locator('[data-stage="running"]')).to_have_text("3", timeout=5000)
    started = time.monotonic()
    report(alice, session["id"], [{"id": i, "state": "RUN_DONE"} for i in ids[:2]])
    report(alice, session["id"], [{"id": ids[2], "state": "RUN_ERROR", "error": "ValueError: mask is empty"}])
    expect(page.locator('[data-stage="finished"]')).to_have_text("2", timeout=5000)
    elapsed = time.monotonic() - started  # the figures are fetched at most once a second
    assert elapsed < 4.0, f"the overview took {elapsed:.2f} s to follow"
    expect(page.locator("#failures-banner")).to_be_visible(timeout=5000)
    expect(page.locator("#failures-banner")).to_contain_text("mask is empty")
    page.wait_for_selector("#throughput-chart canvas")  # the chart appeared with the first finished jobs
    assert page.is_hidden("#throughput-empty")
    screenshot(page, "overview-live")

    page.goto(base + "/ui/throughput?tag=experiment%3AL1")
    wait_live(page)
    expect(page.locator("#finished-count")).to_have_text("2")
    alice.jobs([{"app_id": app["id"], "workdir": "x", "tags": {"experiment": "L1"}}])
    [job] = acquire(alice, session["id"], max_jobs=1)  # the retried one or the new one: either finishes
    report(alice, session["id"], [{"id": job["id"], "state": "RUNNING"}])
    report(alice, session["id"], [{"id": job["id"], "state": "RUN_DONE"}])
    expect(page.locator("#finished-count")).to_have_text("3", timeout=5000)
    screenshot(page, "throughput-live")
    page.watch.assert_clean()
