"""Result artifacts through the API: stored, replaced, bounded, checked, and scoped like their jobs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from beambridge.schemas.artifacts import MAX_ARTIFACT_BYTES, MAX_ARTIFACTS_PER_JOB
from tests.conftest import ApiUser
from tests.server.helpers import acquire, report


def g2_body(n_q: int = 3, n_tau: int = 5, **extra: Any) -> dict[str, Any]:
    tau = [1e-3 * 2**i for i in range(n_tau)]
    return {
        "kind": "xpcs.g2",
        "q": [0.001 * (k + 1) for k in range(n_q)],
        "tau_s": tau,
        "g2": [[1.0 + 0.3 * 0.5**i for i in range(n_tau)] for _ in range(n_q)],
        "fit": [{"beta": 0.3, "gamma": 100.0, "baseline": 1.0}] * n_q,
        **extra,
    }


def site_client(user: ApiUser, site_id: int) -> httpx.Client:
    token = user.ok(user.http.post(f"/sites/{site_id}/tokens", json={"name": "agent"}), 201)["token"]  # type: ignore[index]
    return httpx.Client(base_url=user.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
def world(alice: ApiUser) -> dict[str, Any]:
    site = alice.site()
    app = alice.app(site["id"])
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    return {"site": site, "app": app, "job": job}


def test_store_list_read_and_replace(alice: ApiUser, world: dict[str, Any]) -> None:
    job = world["job"]["id"]
    stored = alice.ok(alice.http.put(f"/jobs/{job}/artifacts/g2", json=g2_body()))
    assert stored["kind"] == "xpcs.g2" and stored["name"] == "g2" and stored["size_bytes"] > 0  # type: ignore[index]
    two = {"kind": "xpcs.twotime", "c2": [[1.2, 1.1], [1.1, 1.2]], "dt_s": 0.01, "q": 0.002, "bin": 3}
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/twotime-3", json=two))
    listed = alice.ok(alice.http.get(f"/jobs/{job}/artifacts"))
    assert [a["name"] for a in listed] == ["g2", "twotime-3"]  # type: ignore[union-attr,index]
    assert "content" not in listed[0]  # type: ignore[index,operator]
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/g2", json=g2_body(n_q=2)))
    read = alice.ok(alice.http.get(f"/jobs/{job}/artifacts/g2"))
    assert len(read["content"]["q"]) == 2  # type: ignore[index]
    assert len(alice.ok(alice.http.get(f"/jobs/{job}/artifacts"))) == 2  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"kind": "xpcs.movie", "frames": []}, "kind"),
        ({"q": [0.1], "tau_s": [1.0], "g2": [[1.0]]}, "kind"),
        (g2_body(g2=[[1.0, 1.0]] * 3), "g2[0] has 2 values"),
        (g2_body(g2_err=[[0.1] * 5] * 2), "g2_err has 2 rows"),
        (g2_body(tau_s=[1.0, 0.5, 2.0, 3.0, 4.0]), "tau_s must increase"),
        (g2_body(fit=[{"beta": 0.3, "gamma": -1.0}] * 3), "gamma"),
        (g2_body(fit=[None]), "fit has 1 entries"),
        (g2_body(q=[0.1] * 200, g2=[[1.0] * 5] * 200), "q"),
        (g2_body(title="x" * 201), "title"),
        ({"kind": "xpcs.twotime", "c2": [[1.0, 2.0]], "dt_s": 0.1}, "c2[0] has 2 values"),
        ({"kind": "xpcs.twotime", "c2": [[1.0]], "dt_s": 0}, "dt_s"),
        ({"kind": "xpcs.twotime", "c2": [[1.0]], "dt_s": 0.1, "script": "<x>"}, "script"),
    ],
)
def test_malformed_artifacts_are_refused_with_the_reason(
    alice: ApiUser, world: dict[str, Any], body: dict[str, Any], named: str
) -> None:
    response = alice.http.put(f"/jobs/{world['job']['id']}/artifacts/g2", json=body)
    assert response.status_code == 422, response.text
    assert named in response.text
    assert alice.ok(alice.http.get(f"/jobs/{world['job']['id']}/artifacts")) == []


def test_non_finite_numbers_are_refused(alice: ApiUser, world: dict[str, Any]) -> None:
    raw = '{"kind": "xpcs.twotime", "c2": [[NaN]], "dt_s": 0.1}'
    response = alice.http.put(
        f"/jobs/{world['job']['id']}/artifacts/t", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and "c2" in response.text, response.text
    # null marks an undefined cell instead
    alice.ok(
        alice.http.put(
            f"/jobs/{world['job']['id']}/artifacts/t",
            json={"kind": "xpcs.twotime", "c2": [[None]], "dt_s": 0.1},
        )
    )


@pytest.mark.parametrize("name", ["G2", "a/b", "..", ".hidden", "x" * 65, "a b", "<script>"])
def test_bad_names_are_refused(alice: ApiUser, world: dict[str, Any], name: str) -> None:
    response = alice.http.put(f"/jobs/{world['job']['id']}/artifacts/{name}", json=g2_body())
    assert response.status_code in (404, 405, 422), response.text  # "a/b", ".." never reach the route
    if response.status_code == 422:
        assert "artifact name" in response.text


def test_oversize_artifacts_are_refused(alice: ApiUser, world: dict[str, Any]) -> None:
    job = world["job"]["id"]
    big = 300  # a 256 × 256 map of long floats is > 512 KiB
    c2 = [[1.0 + 1e-9 * (i * big + j) + 0.123456789012 for j in range(big - 44)] for i in range(big - 44)]
    response = alice.http.put(
        f"/jobs/{job}/artifacts/big", json={"kind": "xpcs.twotime", "c2": c2, "dt_s": 0.1}
    )
    assert response.status_code == 413, response.text[:300]
    assert f"{MAX_ARTIFACT_BYTES:,}" in response.text
    too_wide = [[1.0] * 257] * 257
    response = alice.http.put(
        f"/jobs/{job}/artifacts/big", json={"kind": "xpcs.twotime", "c2": too_wide, "dt_s": 0.1}
    )
    assert response.status_code in (413, 422), response.text[:300]
    assert alice.ok(alice.http.get(f"/jobs/{job}/artifacts")) == []


def test_at_most_sixteen_per_job_but_replacing_is_fine(alice: ApiUser, world: dict[str, Any]) -> None:
    job = world["job"]["id"]
    for i in range(MAX_ARTIFACTS_PER_JOB):
        alice.ok(alice.http.put(f"/jobs/{job}/artifacts/a{i}", json=g2_body(n_q=1, n_tau=2)))
    response = alice.http.put(f"/jobs/{job}/artifacts/one-more", json=g2_body(n_q=1, n_tau=2))
    assert response.status_code == 422 and "16 artifacts" in response.text
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/a0", json=g2_body(n_q=2, n_tau=2)))


def test_other_users_and_other_sites_see_nothing(alice: ApiUser, bob: ApiUser, world: dict[str, Any]) -> None:
    job = world["job"]["id"]
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/g2", json=g2_body()))
    for path in (f"/jobs/{job}/artifacts", f"/jobs/{job}/artifacts/g2"):
        assert bob.http.get(path).status_code == 404
    assert bob.http.put(f"/jobs/{job}/artifacts/g2", json=g2_body(n_q=1)).status_code == 404
    other_site = alice.site("aurora")
    with site_client(alice, other_site["id"]) as agent:
        assert agent.put(f"/jobs/{job}/artifacts/g2", json=g2_body(n_q=1)).status_code == 404
    for token in ("", "bbs_forged", "not-a-jwt"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.put(
            f"{alice.base_url}/jobs/{job}/artifacts/g2", json=g2_body(n_q=1), headers=headers
        )
        assert response.status_code == 401, response.text
    assert len(alice.ok(alice.http.get(f"/jobs/{job}/artifacts/g2"))["content"]["q"]) == 3  # type: ignore[index]


def test_a_site_uploads_only_while_the_job_runs(alice: ApiUser, world: dict[str, Any]) -> None:
    job, site = world["job"]["id"], world["site"]["id"]
    with site_client(alice, site) as agent:
        response = agent.put(f"/jobs/{job}/artifacts/g2", json=g2_body())
        assert response.status_code == 409 and "while the job runs" in response.text, response.text
        session = alice.session(site)
        acquire(alice, session["id"], max_jobs=1)
        # held by a launcher whose RUNNING report may still be queued behind a quick run's upload
        assert agent.put(f"/jobs/{job}/artifacts/g2", json=g2_body(n_q=2)).status_code == 200
        report(alice, session["id"], [{"id": job, "state": "RUNNING"}])
        assert agent.put(f"/jobs/{job}/artifacts/g2", json=g2_body()).status_code == 200
        report(alice, session["id"], [{"id": job, "state": "RUN_DONE"}])
        assert alice.ok(alice.http.get(f"/jobs/{job}"))["state"] == "JOB_FINISHED"  # type: ignore[index]
        assert agent.put(f"/jobs/{job}/artifacts/g2", json=g2_body(n_q=1)).status_code == 409
    # the owner may still add or replace results (a re-analysis in a notebook)
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/g2", json=g2_body(n_q=1)))


def test_deleting_the_job_removes_its_artifacts(alice: ApiUser, world: dict[str, Any]) -> None:
    job = world["job"]["id"]
    alice.ok(alice.http.put(f"/jobs/{job}/artifacts/g2", json=g2_body()))
    alice.ok(alice.http.delete(f"/jobs/{job}"), 204)
    assert alice.http.get(f"/jobs/{job}/artifacts").status_code == 404
    [again] = alice.jobs([{"app_id": world["app"]["id"], "workdir": "w2"}])
    assert alice.ok(alice.http.get(f"/jobs/{again['id']}/artifacts")) == []
