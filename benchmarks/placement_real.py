"""The real-system half of the placement benchmark: three real sites on this machine, one trace, an outage.

Three sites on the local scheduler with 1, 2 and 4 job slots (pilots of 1, 2 and 4 nodes, one job per
node), each registering the same ``Proxy`` app whose run time depends on the site. Two site sets
(:data:`SITE_SETS`): ``balanced`` (per unit of input 0.5 s on the 1-slot site, 1.0 s on the 2-slot site,
2.0 s on the 4-slot site: equal capacity, the smallest site the fastest per job) and ``uneven`` (0.4,
0.8 and 4.0 s: the 4-slot site has the most slots and 2/5 of the others' capacity). One seeded arrival
trace: a dataset every ``--every`` seconds, of 1–4 jobs of sizes 1–3. Midway, the fastest site dies for
real: its agent and its pilots get SIGKILL. Each policy replays the same trace on a fresh system (server,
three agents), so no policy inherits another's history.

With ``--hedge`` every job of the trace is submitted with ``hedge=True`` (a copy on the next-best site
once it passes the p95 of its predicted finish; its copies are not counted as jobs).

With ``--warmup N`` each site first runs N pinned jobs (not counted), so that the policies start from a
running deployment (pilots up, run times measured) rather than from nothing.

Reported per policy: jobs/min per site and in total (finished jobs over the time from the first
submission to the last finish), latency submission → finished (median, p95), jobs re-placed, jobs
stranded (not finished ``--drain`` seconds after the last arrival), seconds from the outage to the last
re-placement, and the decision cost per job (bulk create of 2,000 jobs by app name on three sites,
minus the same by app id, per job). A plot of jobs per site over time per policy goes to ``--plot``.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.site.harness import System, launcher_pids, wait_for

from beambridge.client import Client
from beambridge.states import TERMINAL_STATES, JobState

SITE_SETS: dict[str, dict[str, tuple[int, float]]] = {
    # every site finishes 2 units of input per second: counting jobs (shortest_backlog) is already the
    # balanced split, and only the per-job speed differs
    "balanced": {"fast-1": (1, 0.5), "mid-2": (2, 1.0), "slow-4": (4, 2.0)},
    # capacities 2.5 / 2.5 / 1 units per second: the 4-slot site has the most free slots and is the
    # slowest per job, the case a policy that counts jobs gets wrong
    "uneven": {"fast-1": (1, 0.4), "mid-2": (2, 0.8), "slow-4": (4, 4.0)},
}
SITES: dict[str, tuple[int, float]] = dict(SITE_SETS["balanced"])
"""Name → (job slots, seconds of run time per unit of input), of the set in use (:func:`use_sites`)."""


def use_sites(name: str) -> None:
    """Run the next systems with the site set ``name`` of :data:`SITE_SETS`."""
    SITES.clear()
    SITES.update(SITE_SETS[name])


OUTAGE_SITE = "fast-1"
DOWN_AFTER_S = 6.0

APP_FILE = '''"""The placement benchmark's proxy app: its run time here is {factor} s per unit of input."""

from beambridge.apps.base import ApplicationDefinition


class Proxy(ApplicationDefinition):
    """Stand-in analysis whose run time depends on the site."""

    command_template = "sleep {{{{ size * {factor} }}}}"
'''


@dataclass
class RealResult:
    """One policy's run on the real system."""

    policy: str
    jobs: int
    finished: int
    makespan_s: float
    per_site: dict[str, int]
    latencies: list[float]
    replaced: int
    stranded: int
    outage_to_last_replacement_s: float | None
    finish_times: dict[str, list[float]] = field(default_factory=dict)
    sized: int = 0
    """Placements whose chosen site's run time was scaled by the job's size (its ``size`` parameter)."""
    scenario: str = "real system, 3 local sites (1, 2, 4 slots), fastest site killed mid-run"

    @property
    def jobs_per_min(self) -> float:
        return self.finished / self.makespan_s * 60 if self.makespan_s > 0 else 0.0

    @property
    def latency_median_s(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def latency_p95_s(self) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def trace(seed: int, arrivals: int, every_s: float) -> list[tuple[float, list[int]]]:
    """(offset seconds, sizes of the dataset's jobs) — the same for every policy."""
    rng = random.Random(seed)
    return [(i * every_s, [rng.randint(1, 3) for _ in range(rng.randint(1, 4))]) for i in range(arrivals)]


def _system(root: Path) -> tuple[System, dict[str, Any]]:
    env = {
        "BEAMBRIDGE_SITE_DEGRADED_AFTER_S": str(DOWN_AFTER_S / 2),
        "BEAMBRIDGE_SITE_DOWN_AFTER_S": str(DOWN_AFTER_S),
        "BEAMBRIDGE_PLACEMENT_INTERVAL_S": "1",
        "BEAMBRIDGE_PLACEMENT_HISTORY_TTL_S": "2",
    }
    system = System(root, session_timeout_s=8.0, server_env=env)
    agents = {}
    configs = {}
    for name, (slots, factor) in SITES.items():
        site, config = system.make_site(
            name,
            launcher={"cores_per_node": 1, "idle_timeout_s": 30, "prefetch": 0},
            elastic_queue={
                "wall_time_min": 30,
                "max_nodes": slots,
                "max_total_nodes": slots,
                "max_queued_jobs": 1,
            },
        )
        (site.apps / "proxy.py").write_text(APP_FILE.format(factor=factor))
        agents[name] = system.start_agent(site)
        configs[name] = config
    wait_for(
        lambda: (
            {s.name for s in system.client.sites.placement() if s.health == "up" and s.apps} >= set(SITES)
        ),
        120,
        what="three sites up with their apps",
    )
    return system, {"agents": agents, "configs": configs}


def warm_up(system: System, per_site: int) -> None:
    """Run ``per_site`` jobs (sizes 1, 2, 3, …) pinned to each site, so every site has pilots and run-time
    history before the trace: a deployment that has been running, not a cold start."""
    specs = [
        {"app": "Proxy", "sites": [name], "workdir": f"warm/{name}/{i}", "parameters": {"size": 1 + i % 3}}
        for name in SITES
        for i in range(per_site)
    ]
    if specs:
        system.wait_all([job.id for job in system.client.jobs.bulk_create(specs)], timeout_s=180)
        time.sleep(2.5)  # past the history cache's 2 s


def run_policy(
    policy: str,
    arrivals: list[tuple[float, list[int]]],
    outage_at_s: float,
    drain_s: float,
    warmup: int = 0,
    hedge: bool = False,
) -> RealResult:
    with tempfile.TemporaryDirectory(prefix="bb-place-") as tmp:
        system, parts = _system(Path(tmp))
        try:
            warm_up(system, warmup)
            return _replay(system, parts, policy, arrivals, outage_at_s, drain_s, hedge)
        finally:
            system.close()


def _replay(
    system: System,
    parts: dict[str, Any],
    policy: str,
    arrivals: list[tuple[float, list[int]]],
    outage_at_s: float,
    drain_s: float,
    hedge: bool = False,
) -> RealResult:
    client: Client = system.client
    names = {config.site_id: name for name, config in parts["configs"].items()}
    start = time.monotonic()
    ids: list[int] = []
    killed_at: float | None = None
    for count, (offset, sizes) in enumerate(arrivals):
        while time.monotonic() - start < offset:
            if killed_at is None and time.monotonic() - start >= outage_at_s:
                killed_at = _outage(system, parts)
            time.sleep(0.05)
        if killed_at is None and time.monotonic() - start >= outage_at_s:
            killed_at = _outage(system, parts)
        specs = [
            {
                "app": "Proxy",
                "workdir": f"d{count}/{i}",
                "parameters": {"size": size},
                "policy": policy,
                "hedge": hedge,
            }
            for i, size in enumerate(sizes)
        ]
        ids += [job.id for job in client.jobs.bulk_create(specs)]
    if killed_at is None:
        killed_at = _outage(system, parts)
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:
        if all(job.state in TERMINAL_STATES for job in client.jobs.filter(id=ids)):
            break
        time.sleep(1)
    jobs = list(client.jobs.filter(id=ids))
    per_site: dict[str, int] = {name: 0 for name in SITES}
    latencies: list[float] = []
    finish_times: dict[str, list[float]] = {name: [] for name in SITES}
    replaced = 0
    sized = 0
    last_replacement: float | None = None
    first_submit = min(job.created_at for job in jobs)
    last_finish = first_submit
    for job in jobs:
        events = client.jobs.events(job.id)
        for event in events:
            if event.data.get("placement") == "re-placed":
                replaced += 1
                last_replacement = max(last_replacement or 0.0, event.timestamp.timestamp())
            decision = event.data.get("decision")
            if isinstance(decision, dict):
                chosen = [e for e in decision.get("estimates", []) if e.get("status") == "chosen"]
                sized += any(e.get("run_basis") == "history_scaled" for e in chosen)
        done = [e for e in events if e.to_state == JobState.JOB_FINISHED]
        if job.state == JobState.JOB_FINISHED and done:
            site = names[job.site_id]
            per_site[site] += 1
            latencies.append((done[0].timestamp - job.created_at).total_seconds())
            finish_times[site].append((done[0].timestamp - first_submit).total_seconds())
            last_finish = max(last_finish, done[0].timestamp)
    wall_kill = time.time() - (time.monotonic() - killed_at)
    return RealResult(
        policy=policy,
        jobs=len(jobs),
        finished=sum(per_site.values()),
        makespan_s=(last_finish - first_submit).total_seconds(),
        per_site=per_site,
        latencies=latencies,
        replaced=replaced,
        stranded=sum(1 for job in jobs if job.state not in TERMINAL_STATES),
        outage_to_last_replacement_s=None if last_replacement is None else last_replacement - wall_kill,
        finish_times=finish_times,
        sized=sized,
    )


def _outage(system: System, parts: dict[str, Any]) -> float:
    """The fastest site dies: SIGKILL to its agent and to its pilots' launchers."""
    site_id = parts["configs"][OUTAGE_SITE].site_id
    pilots = {b.id for b in system.client.batch_jobs.filter(site_id=site_id)}
    agent = parts["agents"][OUTAGE_SITE]
    agent.kill(signal.SIGKILL)
    for pid in launcher_pids(agent.site.root, pilots):  # this site's launchers only, never another's
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def decision_cost_us(jobs: int = 2000) -> dict[str, float]:
    """Microseconds per job that placement adds to a bulk create (app by name on three sites vs app id),
    and the bulk-create rates of both (median of three)."""
    with tempfile.TemporaryDirectory(prefix="bb-place-cost-") as tmp:
        system = System(Path(tmp))
        try:
            client = system.client
            app_ids = []
            for name in SITES:
                site = client.sites.create(name)
                client.sites.heartbeat(site.id)
                app_ids.append(client.apps.create(site.id, "Proxy", parameters={"size": {"type": "int"}}).id)
            by_id = [
                {"app_id": app_ids[0], "workdir": f"i/{i}", "parameters": {"size": 1}} for i in range(jobs)
            ]
            by_name = [{"app": "Proxy", "workdir": f"n/{i}", "parameters": {"size": 1}} for i in range(jobs)]
            rates: dict[str, list[float]] = {"app_id": [], "app": []}
            for _ in range(3):
                for key, specs in (("app_id", by_id), ("app", by_name)):
                    began = time.perf_counter()
                    client.jobs.bulk_create(specs)
                    rates[key].append(time.perf_counter() - began)
        finally:
            system.close()
    plain, placed = statistics.median(rates["app_id"]), statistics.median(rates["app"])
    return {
        "placement_us_per_job": (placed - plain) / jobs * 1e6,
        "bulk_by_id_jobs_per_s": jobs / plain,
        "bulk_by_name_jobs_per_s": jobs / placed,
    }
