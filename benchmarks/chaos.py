"""Chaos: jobs run while the server, the site agent and the launchers are killed with SIGKILL at random.

The whole system runs on this machine as real processes (a server on SQLite or PostgreSQL, a local site
with its agent, pilots on the local scheduler). Each job is a shell app that appends its id to an
execution log in the site's data directory before it sleeps: that log, kept outside the service, is
checked against the service's histories at the end.

Printed: jobs lost (not finished), jobs finished twice, extra executions not explained by a RUN_TIMEOUT in
the job's history, and the recovery after each kind of kill (median, max): the server answering again,
completions resuming, a replacement launcher running.

    python benchmarks/chaos.py                     # the long version: 2,000 jobs, 10 minutes of kills
    python benchmarks/chaos.py --jobs 200 --minutes 1 --database postgresql+psycopg://…
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.site.harness import System, launcher_pids

from beambridge.states import TERMINAL_STATES, JobState

APP = '''
from beambridge.apps.base import ApplicationDefinition


class Tick(ApplicationDefinition):
    """Appends its job id to the site's execution log, then sleeps."""

    command_template = "echo {{ job.id }} >> ../../executions.log; sleep {{ seconds }}"
'''


def _finished(system: System, ids: list[int]) -> int:
    try:
        return sum(1 for job in system.client.jobs.filter(id=ids) if job.state == JobState.JOB_FINISHED)
    except Exception:  # the server is down: not counted now
        return -1


def _heartbeat_after(system: System, site_id: int, when: datetime) -> bool:
    """Whether the site's agent has heartbeated since ``when`` (it is back)."""
    try:
        beat = system.client.sites.get(site_id).last_heartbeat
    except Exception:
        return False
    return beat is not None and beat.replace(tzinfo=beat.tzinfo or UTC) > when


def _wait(condition, timeout_s: float) -> float | None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    return None


KINDS = ["server", "agent", "launcher"]


def run(
    jobs: int,
    minutes: float,
    seconds: float,
    database_url: str | None,
    seed: int,
    root: Path | None = None,
    pause_s: tuple[float, float] = (3.0, 8.0),
) -> dict:
    """Run the campaign in ``root`` (a new temporary directory by default); its figures."""
    rng = random.Random(seed)
    root = root or Path(tempfile.mkdtemp(prefix="bb-chaos-"))
    system = System(root, session_timeout_s=6.0)
    if database_url:  # the harness starts on SQLite: move the server, and the user, to PostgreSQL
        from tests.site.harness import PASSWORD

        from beambridge.client import Client
        from beambridge.server.app import open_database
        from beambridge.server.settings import ServerSettings
        from beambridge.server.users import add_user

        system.server.stop()
        database = open_database(ServerSettings(home=system.home, database_url=database_url), upgrade=True)
        add_user(database, "scientist", PASSWORD)
        database.dispose()
        system.server.database_url = database_url
        system.server.start()
        system.client.close()
        system.client = Client.login(system.server.url, "scientist", PASSWORD, retries=10, backoff_s=0.3)
    console = Console()
    recovery: dict[str, dict[str, list[float]]] = {
        kind: {"back": [], "resumed": []} for kind in ("server", "agent", "launcher")
    }
    try:
        site, config = system.make_site(
            "chaos",
            launcher={"idle_timeout_s": 20, "cores_per_node": 2},
            elastic_queue={"max_queued_jobs": 2, "max_total_nodes": 3, "max_nodes": 1},
        )
        (site.apps / "chaos_apps.py").write_text(APP)
        agent = system.start_agent(site)
        apps = {}
        deadline = time.monotonic() + 60
        while "Tick" not in apps and time.monotonic() < deadline:
            apps = {app.name: app.id for app in system.client.apps.filter(site_id=config.site_id)}
            time.sleep(0.3)
        specs = [
            {
                "app_id": apps["Tick"],
                "workdir": f"c/{i}",
                "parameters": {"seconds": seconds},
                "retry_limit": 20,
            }
            for i in range(jobs)
        ]
        ids = [job.id for job in system.client.jobs.bulk_create(specs)]
        started = time.monotonic()
        end_kills = started + minutes * 60
        kills: Counter[str] = Counter()
        first_kinds = rng.sample(KINDS, len(KINDS))
        # the kills go on past ``minutes`` until every kind has been killed once: on a loaded machine
        # a short run would otherwise end before its first draws reached all three
        give_up = end_kills + 600  # a kind owed for ten minutes more (no launcher ever up) is not coming
        while (time.monotonic() < end_kills or first_kinds) and time.monotonic() < give_up:
            time.sleep(rng.uniform(*pause_s))
            before = _finished(system, ids)
            if before >= len(ids):
                if not first_kinds:
                    break
                # Done before every kind was killed once (a quick machine, or kills slowed by load): more
                # work, so that the kinds still to come are killed while jobs run.
                more = [{**spec, "workdir": f"c/{len(ids) + i}"} for i, spec in enumerate(specs[: jobs // 2])]
                ids.extend(job.id for job in system.client.jobs.bulk_create(more))
            # every kind once, in a random order, before the draws: a short run still kills each kind
            kind = first_kinds.pop() if first_kinds else rng.choice(KINDS)
            owed = [kind] if kind not in kills else []  # a kind not killed yet stays owed if it is skipped
            if kind == "server":
                assert system.server.process is not None
                system.server.process.send_signal(signal.SIGKILL)
                system.server.process.wait()
                killed = time.monotonic()
                system.server.start()
                recovery[kind]["back"].append(time.monotonic() - killed)
            elif kind == "agent":
                agent.kill(signal.SIGKILL)
                killed, killed_at = time.monotonic(), datetime.now(UTC)
                agent = system.start_agent(site)
                back = _wait(lambda at=killed_at: _heartbeat_after(system, config.site_id, at), 60)
                if back is not None:
                    recovery[kind]["back"].append(back)
            else:
                pids = launcher_pids(site.root)
                if not pids:
                    first_kinds += owed
                    continue
                victim = rng.choice(pids)
                with_victim = set(pids)
                try:
                    signal_pid(victim)
                except ProcessLookupError:
                    first_kinds += owed
                    continue
                killed = time.monotonic()
                back = _wait(lambda seen=with_victim: bool(set(launcher_pids(site.root)) - seen), 60)
                if back is not None:
                    recovery[kind]["back"].append(back)
            kills[kind] += 1
            resumed = _wait(lambda b=before: _finished(system, ids) > max(b, 0), 60)
            if resumed is not None:
                recovery[kind]["resumed"].append(time.monotonic() - killed)
            console.print(
                f"{time.monotonic() - started:6.1f} s  kill -9 {kind:8s}  finished {before}/{len(ids)}"
            )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                states = [job.state for job in system.client.jobs.filter(id=ids)]
            except Exception:
                time.sleep(1)
                continue
            if all(state in TERMINAL_STATES for state in states):
                break
            time.sleep(1)
        elapsed = time.monotonic() - started
        histories = {job_id: [e.to_state for e in system.client.jobs.events(job_id)] for job_id in ids}
        log = site.data / "executions.log"
        executions = Counter(int(line) for line in log.read_text().split()) if log.exists() else Counter()
        final = {job.id: job.state for job in system.client.jobs.filter(id=ids)}
        lost = sum(1 for job_id in ids if final[job_id] != JobState.JOB_FINISHED)
        twice = sum(1 for job_id in ids if histories[job_id].count(JobState.JOB_FINISHED) > 1)
        unexplained = sum(
            max(0, executions[job_id] - 1 - histories[job_id].count(JobState.RUN_TIMEOUT)) for job_id in ids
        )
        reruns = sum(max(0, executions[job_id] - 1) for job_id in ids)
        return {
            "site_root": site.root,
            "home": system.home,
            "jobs": len(ids),
            "kills": kills,
            "elapsed": elapsed,
            "lost": lost,
            "twice": twice,
            "unexplained": unexplained,
            "reruns": reruns,
            "recovery": recovery,
            "database": "PostgreSQL" if database_url else "SQLite",
        }
    finally:
        system.close()


def signal_pid(pid: int) -> None:
    import os

    os.kill(pid, signal.SIGKILL)


def _figure(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):.1f} / {max(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=0.5, help="how long each job sleeps")
    parser.add_argument("--database", default=None, help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = run(args.jobs, args.minutes, args.seconds, args.database, args.seed)
    table = Table(title=f"chaos: {result['jobs']} jobs on {result['database']}, {result['elapsed']:.0f} s")
    table.add_column("kill -9 of")
    table.add_column("kills", justify="right")
    table.add_column("back up, s (median / max)", justify="right")
    table.add_column("completions resumed, s (median / max)", justify="right")
    for kind, figures in result["recovery"].items():
        table.add_row(kind, str(result["kills"][kind]), _figure(figures["back"]), _figure(figures["resumed"]))
    Console().print(table)
    print(
        f"jobs lost: {result['lost']}, finished twice: {result['twice']}, re-runs: {result['reruns']}, "
        f"unexplained re-runs: {result['unexplained']}"
    )


if __name__ == "__main__":
    main()
