from tests.conftest import ApiUser


def test_health(alice: ApiUser) -> None:
    body = alice.ok(alice.http.get("/health"))
    assert body["status"] == "ok"


def test_job_walks_to_finish(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w/1"}])
    assert job["state"] == "PREPROCESSED"
