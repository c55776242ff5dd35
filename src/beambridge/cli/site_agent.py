"""``beambridge site init|start|stop|status|run``: deploy and operate a site agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from beambridge.cli.connection import open_client
from beambridge.cli.output import JsonFlag, print_json
from beambridge.site.config import SiteDir
from beambridge.site.templates import PLATFORM_TEMPLATES

if TYPE_CHECKING:
    from beambridge.platform.registry import Registry

SiteDirArg = Annotated[Path, typer.Argument(help="The site directory.")]


def init(
    directory: SiteDirArg,
    name: Annotated[str, typer.Option("--name", help="The site's name on the service.")],
    platform: Annotated[
        str, typer.Option(help=f"Scheduler or machine template: {', '.join(PLATFORM_TEMPLATES)}.")
    ] = "local",
    reuse: Annotated[
        bool, typer.Option("--reuse", help="Attach this directory to your existing site of that name.")
    ] = False,
) -> None:
    """Create a site directory, register the site (with your saved login) and store its agent token."""
    from beambridge.site.init import init_site

    with open_client() as client:
        config = init_site(directory, name, platform, client, reuse=reuse)
    typer.echo(
        f"site {config.name!r} (id {config.site_id}, {config.scheduler}) initialised in {SiteDir(directory).root}"
    )
    typer.echo(
        f"edit {SiteDir(directory).config_file} for your project and queue, then: beambridge site start {directory}"
    )


def run_agent(directory: SiteDirArg) -> None:
    """Run the agent in the foreground (``site start`` runs this in the background)."""
    from beambridge.logs import configure_logging
    from beambridge.site.agent import SiteAgent

    configure_logging()
    agent = SiteAgent(directory)
    agent.install_signal_handlers()
    if agent.run():
        # Threads still inside a step (a hung scheduler command, a long hook) would hold the interpreter's
        # exit (the hook pool's threads are joined at exit): leave now, as the log says.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def start(
    directory: SiteDirArg,
    wait_s: Annotated[float, typer.Option(help="How long to wait for the agent to come up.")] = 30,
) -> None:
    """Start the agent as a daemon (pid in agent.pid, log in log/agent.log)."""
    from beambridge.site.agent import running_pid

    site = SiteDir(directory)
    site.load()
    pid = running_pid(site.pid_file)
    if pid is not None:
        raise typer.BadParameter(f"the agent of {site.root} is already running (pid {pid})")
    site.log.mkdir(parents=True, exist_ok=True)
    log_file = site.log / "agent.log"
    with log_file.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "beambridge", "site", "run", str(site.root)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=site.root,
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if running_pid(site.pid_file) == process.pid:
            typer.echo(f"agent started (pid {process.pid}); log: {log_file}")
            return
        if process.poll() is not None:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise typer.BadParameter(f"the agent exited at once ({process.returncode}): {tail[0]}")
        time.sleep(0.1)
    raise typer.BadParameter(f"the agent did not come up within {wait_s:.0f} s; see {log_file}")


def stop(
    directory: SiteDirArg,
    timeout_s: Annotated[float, typer.Option(help="Wait this long before SIGKILL.")] = 60,
) -> None:
    """Stop the agent (its pilots keep running; a new agent re-attaches to them)."""
    from beambridge.site.agent import running_pid

    site = SiteDir(directory)
    pid = running_pid(site.pid_file)
    if pid is None or pid < 0:
        typer.echo("the agent is not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running_pid(site.pid_file) is None:
            typer.echo(f"agent stopped (pid {pid})")
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    typer.echo(f"agent killed after {timeout_s:.0f} s (pid {pid})")


def status(directory: SiteDirArg, as_json: JsonFlag = False) -> None:
    """Whether the agent runs, and what the service knows of the site: pilots and jobs by state."""
    from beambridge.site.agent import running_pid, site_client
    from beambridge.site.services.scheduler_sync import ACTIVE

    site = SiteDir(directory)
    config = site.load()
    pid = running_pid(site.pid_file)
    with site_client(site, config, retries=1) as client:
        service_site = client.sites.get(config.site_id)
        pilots = list(client.batch_jobs.filter(site_id=config.site_id, state=ACTIVE))
        from beambridge.states import JobState

        counts = {}
        for state in JobState:
            n = client.jobs.filter(site_id=config.site_id, state=state).count()
            if n:
                counts[state.value] = n
    report = {
        "site": config.name,
        "site_id": config.site_id,
        "agent_pid": pid,
        "last_heartbeat": service_site.last_heartbeat.isoformat() if service_site.last_heartbeat else None,
        "pilots": [
            {"id": p.id, "state": p.state.value, "scheduler_id": p.scheduler_id, "nodes": p.num_nodes}
            for p in pilots
        ],
        "jobs": counts,
    }
    if as_json:
        print_json(report)
        return
    typer.echo(
        f"site {config.name} (id {config.site_id}): agent {'running, pid ' + str(pid) if pid else 'not running'}"
    )
    typer.echo(f"last heartbeat: {report['last_heartbeat'] or 'never'}")
    typer.echo(f"pilots: {len(pilots)} active")
    for p in pilots:
        typer.echo(f"  {p.id}: {p.state.value} {p.scheduler_id or '-'} ({p.num_nodes} nodes)")
    typer.echo("jobs: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))


def adapters(as_json: JsonFlag = False) -> None:
    """The schedulers, MPI launchers and transfer backends this installation knows (site.yml's names)."""
    from beambridge.platform.mpi import MPI_LAUNCHERS
    from beambridge.platform.schedulers import SCHEDULERS
    from beambridge.platform.transfer import TRANSFER_BACKENDS

    kinds: dict[str, Registry[Any]] = {
        "scheduler": SCHEDULERS,
        "launcher.mpi_launcher": MPI_LAUNCHERS,
        "locations.<alias>.kind": TRANSFER_BACKENDS,
    }
    rows = [
        {"setting": setting, "name": name, "adapter": registry.where(name)}
        for setting, registry in kinds.items()
        for name in registry.names()
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        typer.echo(f"{row['setting']:<24} {row['name']:<10} {row['adapter']}")


def register(app: typer.Typer) -> None:
    """Add the agent commands to ``beambridge site``."""
    app.command("init")(init)
    app.command("start")(start)
    app.command("stop")(stop)
    app.command("status")(status)
    app.command("run", hidden=True)(run_agent)
    app.command("adapters")(adapters)
