"""The site agent's own /metrics (site.yml ``metrics_port``): scheduler command latency and failures,
transfer bytes and outcomes, pilots by state, service rounds — scraped over HTTP and parsed."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from beambridge.states import JobState
from tests.servers import free_port
from tests.site.harness import System, wait_for
from tests.site.test_staging import staging_site


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def test_agent_metrics_count_scheduler_transfers_and_pilots(system: System, tmp_path) -> None:  # type: ignore[no-untyped-def]
    beamline = tmp_path / "beamline"
    (beamline / "data").mkdir(parents=True)
    for i in range(3):
        (beamline / "data" / f"A{i}.dat").write_bytes(b"x" * 5000)
    port = free_port()
    _, config, _, app_id = staging_site(
        system, "metered", {"aps_dtn": {"kind": "local", "path": str(beamline)}}, metrics_port=port
    )
    jobs = system.client.jobs.bulk_create(
        {"app_id": app_id, "workdir": f"count/{i}",
         "transfers": {"raw": f"aps_dtn:/data/A{i}.dat", "result": f"aps_dtn:/results/A{i}.txt"}}
        for i in range(3)
    )  # fmt: skip
    done = system.wait_all([j.id for j in jobs], timeout_s=120)
    assert all(j.state == JobState.JOB_FINISHED for j in done), system.logs()

    def counted() -> dict | None:  # type: ignore[type-arg]
        samples = _scrape(port)
        out = _total(samples, "beambridge_agent_transfer_bytes_total", direction="out", backend="local")
        return samples if out >= 3 and _total(samples, "beambridge_agent_service_ticks_total") > 0 else None

    samples = wait_for(counted, 30, what="the agent's metrics to count the transfers")
    assert _total(samples, "beambridge_agent_transfer_bytes_total", direction="in", backend="local") >= 15_000
    assert _total(samples, "beambridge_agent_transfer_tasks_total", outcome="done") >= 2
    assert _total(samples, "beambridge_agent_scheduler_command_seconds_count", command="submit") >= 1
    assert _total(samples, "beambridge_agent_scheduler_command_seconds_count", command="statuses") >= 1
    assert ("beambridge_agent_pilots", (("state", "running"),)) in samples
    assert _total(samples, "beambridge_agent_service_ticks_total", service="scheduler-sync") >= 1
    labels = {label for (name, ls) in samples for label, _ in ls}
    assert labels <= {"command", "error", "direction", "backend", "outcome", "state", "service", "le"}, labels
    assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
    del config
