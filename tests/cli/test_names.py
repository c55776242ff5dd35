"""Names wherever a site or an app is asked for: the SDK (``client.jobs.create(app=..., site=...)``) and
the CLI (``--app XpcsMultiTau --site polaris``) against a live server; tables show names, not ids."""

from __future__ import annotations

import json

import pytest

from beambridge.client import Client, NotFound, ValidationError
from tests.cli.conftest import RunCli
from tests.conftest import PASSWORD, ApiUser
from tests.servers import LiveServer


@pytest.fixture
def two_sites(alice: ApiUser) -> dict[str, dict]:
    polaris, aurora = alice.site("polaris"), alice.site("aurora")
    return {
        "polaris": polaris,
        "aurora": aurora,
        "xpcs@polaris": alice.app(polaris["id"], "XpcsMultiTau", parameters={"frames": {"required": False}}),
        "xpcs@aurora": alice.app(aurora["id"], "XpcsMultiTau", parameters={"frames": {"required": False}}),
        "noop@polaris": alice.app(polaris["id"], "Noop"),
    }


def test_the_sdk_takes_names(live_server: LiveServer, alice: ApiUser, two_sites: dict[str, dict]) -> None:
    with Client.login(live_server.url, alice.name, PASSWORD) as client:
        job = client.jobs.create(
            app="XpcsMultiTau", site="polaris", workdir="A001/g2", parameters={"frames": 9}
        )
        assert (job.app_id, job.site_id) == (two_sites["xpcs@polaris"]["id"], two_sites["polaris"]["id"])
        by_ids = client.jobs.create(app=two_sites["noop@polaris"]["id"], workdir="n")  # an id still works
        assert by_ids.app_id == two_sites["noop@polaris"]["id"]
        same = client.jobs.create(app="XpcsMultiTau", site=two_sites["aurora"]["id"], workdir="B")
        assert same.site_id == two_sites["aurora"]["id"]

        with pytest.raises(NotFound, match=r"no site named 'theta' \(yours: aurora, polaris\)"):
            client.jobs.create(app="XpcsMultiTau", site="theta", workdir="x")
        with pytest.raises(
            NotFound, match=r"no app named 'Xpcs' on site 'aurora' \(apps on site 'aurora': Xp"
        ):
            client.jobs.create(app="Xpcs", site="aurora", workdir="x")
        with pytest.raises(TypeError, match="site names one site"):
            client.jobs.create(app="Noop", site="polaris", sites=["aurora"], workdir="x")
        with pytest.raises(ValidationError, match=r"on several of your sites \(aurora, polaris\)"):
            client.names.app_id("XpcsMultiTau")

        # an app registered after the names were first read is found (they are read again on a miss)
        alice.app(two_sites["aurora"]["id"], "Late")
        assert client.jobs.create(app="Late", site="aurora", workdir="l").site_id == two_sites["aurora"]["id"]


def test_the_cli_takes_and_shows_names(
    cli: RunCli, live_server: LiveServer, alice: ApiUser, two_sites: dict[str, dict]
) -> None:
    assert (
        cli("login", live_server.url, "--user", alice.name, "--password-stdin", stdin=PASSWORD + "\n").code
        == 0
    )
    made = cli(
        "job",
        "create",
        "--app",
        "XpcsMultiTau",
        "--site",
        "polaris",
        "--workdir",
        "A1",
        "--param",
        "frames=5",
    )
    assert made.code == 0, made.err
    assert made.out.startswith("created job ") and made.out.rstrip().endswith(": XpcsMultiTau on polaris")
    job_id = int(made.out.split()[2])

    listed = json.loads(cli("job", "ls", "--app", "XpcsMultiTau", "--site", "polaris", "--json").out)
    assert [job["id"] for job in listed] == [job_id]
    table = cli("job", "ls").out
    assert "XpcsMultiTau" in table and "polaris" in table
    shown = cli("job", "show", str(job_id)).out
    assert f"XpcsMultiTau (id {two_sites['xpcs@polaris']['id']})" in shown and "polaris (id" in shown

    wrong = cli("job", "create", "--app", "XpcsMultiTau", "--site", "theta", "--workdir", "x")
    assert (wrong.code, wrong.err) == (1, "error: no site named 'theta' (yours: aurora, polaris)\n")
    mixed = cli("job", "create", "--app", "Noop", "--site", "polaris", "--sites", "aurora", "--workdir", "x")
    assert mixed.code == 2 and "without --site" in mixed.err
