"""``beambridge launcher``: the pilot runtime, started by the pilot's batch script inside an allocation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from beambridge.schemas.batch_jobs import JobMode

if TYPE_CHECKING:
    from beambridge.launcher.config import LauncherConfig
    from beambridge.site.config import SiteConfig, SiteDir


def launcher(
    site_dir: Annotated[Path, typer.Option("--site-dir", help="The site directory.")],
    batch_job_id: Annotated[int | None, typer.Option(help="The pilot's batch job on the service.")] = None,
    mode: Annotated[
        JobMode, typer.Option(help="serial: pack single-node jobs; mpi: any job.")
    ] = JobMode.SERIAL,
    wall_time_min: Annotated[float | None, typer.Option(help="The allocation's wall time.")] = None,
    idle_timeout_s: Annotated[float | None, typer.Option(help="Exit after this long idle.")] = None,
    nodes: Annotated[
        str | None, typer.Option(help="Comma-separated node names (default: from the scheduler).")
    ] = None,
) -> None:
    """Run jobs of the site inside this allocation until idle, drained or signalled."""
    from beambridge.launcher.launcher import Launcher, LauncherOptions, install_signal_handlers
    from beambridge.logs import configure_logging
    from beambridge.platform.schedulers import scheduler_class
    from beambridge.site.agent import site_client
    from beambridge.site.config import SiteDir
    from beambridge.site.services.elastic_queue import is_warm_pilot

    configure_logging()
    site = SiteDir(site_dir)
    config = site.load()
    node_list = nodes.split(",") if nodes else scheduler_class(config.scheduler).allocation_nodes(os.environ)
    with site_client(site, config, retries=20) as client:
        filter_tags, keep_warm = None, False
        if batch_job_id is not None:
            pilot = client.batch_jobs.get(batch_job_id)
            filter_tags = pilot.filter_tags or None
            keep_warm = is_warm_pilot(pilot)
        options = LauncherOptions(
            batch_job_id=batch_job_id,
            job_mode=mode,
            wall_time_min=wall_time_min,
            nodes=node_list or None,
            idle_timeout_s=idle_timeout_s,
            filter_tags=filter_tags,
            keep_warm=keep_warm,
        )
        runner = Launcher(options, client, launcher_config(site, config))
        install_signal_handlers(runner)
        raise typer.Exit(runner.run())


def launcher_config(site: SiteDir, config: SiteConfig) -> LauncherConfig:
    """What the launcher needs of the site: its ``launcher:`` settings and a few facts of ``site.yml``."""
    from beambridge.launcher.config import LauncherConfig

    return LauncherConfig(
        site_id=config.site_id,
        apps_dir=site.apps,
        data_dir=site.data,
        local_scheduler=config.scheduler == "local",
        environment=config.environment,
        setup_lines=config.setup_lines,
        session_timeout_s=config.session_timeout_s,
        settings=config.launcher,
    )
