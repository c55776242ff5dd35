"""The job page's results (artifacts drawn as PNG) and output tails over HTTP; hostile text stays text."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from tests.conftest import ApiUser
from tests.server.console.client import Browser
from tests.server.helpers import acquire, report

BrowserFor = Callable[[ApiUser], Browser]
XSS = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def g2(title: str = "") -> dict[str, object]:
    tau = [1e-3 * 1.5**i for i in range(20)]
    q = [0.002, 0.004, 0.006]
    rates = [40.0 * (k + 1) ** 2 for k in range(3)]
    curves = [[1.0 + 0.25 * float(np.exp(-2 * r * t)) for t in tau] for r in rates]
    return {
        "kind": "xpcs.g2", "q": q, "tau_s": tau, "g2": curves, "g2_err": [[0.01] * 20] * 3,
        "fit": [{"beta": 0.25, "gamma": r, "baseline": 1.0} for r in rates], "D": 1.0e7, "D_err": 2e5,
        "title": title,
    }  # fmt: skip


def twotime() -> dict[str, object]:
    n = 64
    t = np.arange(n)
    c2 = 1.0 + 0.2 * np.exp(-np.abs(t[:, None] - t[None, :]) / 5.0)
    return {"kind": "xpcs.twotime", "c2": c2.round(5).tolist(), "dt_s": 0.01, "q": 0.004, "bin": 2}


def finished_job(
    user: ApiUser,
    tags: dict[str, str] | None = None,
    *,
    stdout: str = "",
    stderr: str = "",
    site: str = "polaris",
) -> int:
    made = user.site(site)
    app = user.app(made["id"])
    [job] = user.jobs([{"app_id": app["id"], "workdir": "w", "tags": tags or {}}])
    session = user.session(made["id"])
    acquire(user, session["id"], max_jobs=1)
    report(user, session["id"], [{"id": job["id"], "state": "RUNNING"}])
    logs = {"stdout": stdout, "stderr": stderr}
    report(user, session["id"], [{"id": job["id"], "state": "RUN_DONE", "state_data": {"logs": logs}}])
    return int(job["id"])


def _image(response: object) -> Image.Image:
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "image/png"  # type: ignore[attr-defined]
    return Image.open(io.BytesIO(response.content))  # type: ignore[attr-defined]


def test_job_page_draws_g2_and_twotime(browser_for: BrowserFor, alice: ApiUser) -> None:
    job = finished_job(alice)
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/g2", json=g2()))
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/twotime-2", json=twotime()))
    browser = browser_for(alice)
    page = browser.http.get(f"/ui/jobs/{job}")
    assert page.status_code == 200
    assert f'src="/ui/jobs/{job}/artifacts/g2.png"' in page.text
    assert f'src="/ui/jobs/{job}/artifacts/twotime-2.png"' in page.text
    for name in ("g2", "twotime-2"):
        picture = _image(browser.http.get(f"/ui/jobs/{job}/artifacts/{name}.png"))
        assert picture.width >= 600 and picture.height >= 500
        pixels = np.asarray(picture.convert("RGB"), dtype=int)
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, f"{name} drew nothing"
    assert browser.http.get(f"/ui/jobs/{job}/artifacts/nothing.png").status_code == 404
    assert browser.http.get(f"/ui/jobs/{job}/artifacts/BAD%20NAME.png").status_code == 404


def test_output_tails_are_shown_newest_run_first(browser_for: BrowserFor, alice: ApiUser) -> None:
    job = finished_job(alice, stdout="frames read: 1000\nD = 1.2e7", stderr="warning: 3 hot pixels masked")
    page = browser_for(alice).http.get(f"/ui/jobs/{job}").text
    assert "frames read: 1000" in page and "warning: 3 hot pixels masked" in page
    assert 'data-run="1"' in page
    assert "frames read" not in page.split('id="timeline"')[1].split("</table>")[0], "tails belong below"


def test_hostile_text_is_escaped_everywhere(browser_for: BrowserFor, alice: ApiUser) -> None:
    job = finished_job(alice, tags={"experiment": XSS}, stdout=XSS, stderr=XSS)
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/g2", json=g2(title=XSS)))
    browser = browser_for(alice)
    for path in (f"/ui/jobs/{job}", "/ui/jobs", "/ui/overview"):
        page = browser.http.get(path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text and 'onerror="alert' not in page.text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in browser.http.get(f"/ui/jobs/{job}").text
    _image(browser.http.get(f"/ui/jobs/{job}/artifacts/g2.png"))  # the title is drawn as text


def test_another_users_results_are_not_found(browser_for: BrowserFor, alice: ApiUser, bob: ApiUser) -> None:
    job = finished_job(alice)
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/g2", json=g2()))
    intruder = browser_for(bob)
    assert intruder.http.get(f"/ui/jobs/{job}/artifacts/g2.png").status_code == 404
    assert intruder.http.get(f"/ui/jobs/{job}").status_code == 404
