"""The overview, sites and weather pages: right figures, scoped to the caller, bad input refused."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable

from tests.conftest import ApiUser
from tests.server.console.client import Browser
from tests.server.helpers import acquire, report

BrowserFor = Callable[[ApiUser], Browser]


def _run(user: ApiUser, tag: str, n_ok: int, n_bad: int) -> dict:
    site = user.site()
    app = user.app(site["id"])
    jobs = user.jobs(
        [{"app_id": app["id"], "workdir": f"w{i}", "tags": {"experiment": tag}} for i in range(n_ok + n_bad)]
    )
    session = user.session(site["id"])
    got = acquire(user, session["id"], max_jobs=n_ok + n_bad)
    ids = [j["id"] for j in got]
    report(
        user, session["id"], [{"id": i, "state": "RUNNING", "state_data": {"node": "nid0001"}} for i in ids]
    )
    report(user, session["id"], [{"id": i, "state": "RUN_DONE"} for i in ids[:n_ok]])
    if n_bad:
        failing = [{"id": i, "state": "RUN_ERROR", "error": "ValueError: mask is empty"} for i in ids[n_ok:]]
        report(user, session["id"], failing)
    return {"site": site, "jobs": jobs}


def test_overview_funnel_stage_times_and_failures(browser_for: BrowserFor, alice: ApiUser) -> None:
    _run(alice, "A001", 3, 2)
    alice.jobs(
        [{"app_id": alice.app(alice.site("other")["id"])["id"], "workdir": "x", "tags": {"experiment": "B"}}]
    )
    browser = browser_for(alice)
    page = browser.http.get("/ui/overview?tag=experiment:A001")
    assert page.status_code == 200, page.text
    counts = dict(re.findall(r'data-stage="([^"]+)">(\d+)<', page.text))
    assert int(counts["staging out"]) + int(counts["finished"]) == 3
    assert (
        int(counts["failed"]) + int(counts["queued"]) == 2 and counts["submitted"] == "0"
    )  # errors may be retried
    assert "2 failures in the last hour" in page.text and "ValueError: mask is empty" in page.text
    chart = json.loads(
        html.unescape(re.search(r'id="throughput-data">(.*?)</script>', page.text, re.S).group(1))
    )
    assert chart["bucket_s"] == 60 and sum(sum(v) for v in chart["series"].values()) == int(
        counts["finished"]
    )
    stages = re.search(r'id="stage-times".*?</table>', page.text, re.S)
    assert stages is not None and "run delay" in stages.group(0)
    everything = browser.http.get("/ui/overview?window=24h")
    assert int(dict(re.findall(r'data-stage="([^"]+)">(\d+)<', everything.text))["queued"]) >= 1
    assert browser.http.get("/ui/overview?window=forever").status_code == 422
    assert browser.http.get("/ui/overview?tag=bad").status_code == 422


def test_counts_kept_with_the_events_agree_with_the_events(browser_for: BrowserFor, alice: ApiUser) -> None:
    """The figures from activity_minutes (all jobs, one experiment) equal those read from the events (a
    filter the counts are not keyed by, true of every job, sends the page there)."""
    site = _run(alice, "C1", 3, 2)["site"]
    browser = browser_for(alice)
    every_job = "created_after=2000-01-01T00:00:00"
    for query in ("", "tag=experiment:C1", f"tag=experiment:C1&site_id={site['id']}&window=24h"):
        for page in ("overview", "throughput"):
            for _ in range(3):  # both read in one clock minute (each page's windows end at its own now)
                minute = time.time() // 60
                counted = browser.http.get(f"/ui/{page}/figures?{query}")
                read = browser.http.get(f"/ui/{page}/figures?{query}&{every_job}")
                if time.time() // 60 == minute:
                    break
            assert counted.status_code == read.status_code == 200, counted.text
            fast, slow = counted.json(), read.json()
            assert fast["throughput"] == slow["throughput"] and fast["throughput"], (page, query)
            if page == "overview":
                assert fast["failures_recent"] == slow["failures_recent"] > 0
                assert fast["top_reasons"] == slow["top_reasons"] and fast["funnel"] == slow["funnel"]
    for bad in ("window=forever", "tag=bad", "state=NOPE"):
        for page in ("overview", "throughput"):
            response = browser.http.get(f"/ui/{page}/figures?{bad}")
            assert response.status_code == 422, (page, bad)


def test_sites_board_shows_own_sites_with_backlog(
    browser_for: BrowserFor, alice: ApiUser, bob: ApiUser
) -> None:
    world = _run(alice, "A", 1, 0)
    alice.http.post(f"/sites/{world['site']['id']}/heartbeat")
    bob_site = bob.site("bobs-site")
    page = browser_for(alice).http.get("/ui/sites")
    assert page.status_code == 200
    assert f'data-site-id="{world["site"]["id"]}"' in page.text
    assert f'data-site-id="{bob_site["id"]}"' not in page.text and "bobs-site" not in page.text
    assert 'class="light ok"' in page.text


def test_weather_plot_draws_runs_of_the_window(browser_for: BrowserFor, alice: ApiUser, bob: ApiUser) -> None:
    _run(alice, "A", 4, 1)
    browser = browser_for(alice)
    page = browser.http.get("/ui/weather")
    assert page.status_code == 200
    assert "5 runs" in page.text
    image = browser.http.get("/ui/weather.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert "0 runs" in browser_for(bob).http.get("/ui/weather").text
    for bad in ("since=yesterday", "since=2026-01-02T00:00:00&until=2026-01-01T00:00:00",
                "since=2020-01-01T00:00:00&until=2026-01-01T00:00:00", "batch_job_id=-3"):  # fmt: skip
        assert browser.http.get(f"/ui/weather?{bad}").status_code == 422, bad
        assert browser.http.get(f"/ui/weather.png?{bad}").status_code == 422, bad


def test_throughput_page_counts_finished_jobs_per_site(
    browser_for: BrowserFor, alice: ApiUser, bob: ApiUser
) -> None:
    _run(alice, "T1", 4, 1)
    _run(bob, "T1", 2, 0)
    browser = browser_for(alice)
    page = browser.http.get("/ui/throughput?tag=experiment:T1")
    assert page.status_code == 200, page.text
    chart = json.loads(
        html.unescape(re.search(r'id="throughput-data">(.*?)</script>', page.text, re.S).group(1))
    )
    assert sum(sum(v) for v in chart["series"].values()) == 4 and list(chart["series"]) == ["polaris"]
    assert '<span id="finished-count">4</span>' in page.text
    assert "run delay" in page.text
    week = browser.http.get("/ui/throughput?window=7d")
    assert week.status_code == 200 and '<span id="finished-count">4</span>' in week.text  # not bob's 2
    for bad in ("window=1y", "tag=nocolon"):
        assert browser.http.get(f"/ui/throughput?{bad}").status_code == 422, bad


def test_weather_plot_coloured_by_app(browser_for: BrowserFor, alice: ApiUser) -> None:
    import io

    import numpy as np
    from PIL import Image

    _run(alice, "W", 3, 0)
    browser = browser_for(alice)
    by_outcome = browser.http.get("/ui/weather.png")
    by_app = browser.http.get("/ui/weather.png?colour=app")
    assert by_app.status_code == 200 and by_app.content.startswith(b"\x89PNG")
    colours = {
        tuple(c) for c in np.asarray(Image.open(io.BytesIO(by_app.content)).convert("RGB")).reshape(-1, 3)
    }
    assert (0x09, 0x69, 0xDA) in colours  # the busiest app's colour
    assert by_app.content != by_outcome.content
    assert (
        'value="app"' in browser.http.get("/ui/weather?colour=app").text
        or "<option selected>app" in browser.http.get("/ui/weather?colour=app").text
    )
    assert browser.http.get("/ui/weather.png?colour=rainbow").status_code == 422
