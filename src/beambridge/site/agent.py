"""The site agent: registers the site's apps, then runs its services until told to stop."""

from __future__ import annotations

import faulthandler
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from beambridge.client import Client
from beambridge.launcher.config import xpcs_warmup_argv
from beambridge.logs import get_logger
from beambridge.platform.schedulers import Scheduler, scheduler_class
from beambridge.platform.transfer import TransferBackend
from beambridge.site import metrics as site_metrics
from beambridge.site.config import SiteConfig, SiteDir
from beambridge.site.figures import CountedScheduler, PlacementFigures
from beambridge.site.services.apps import AppsWatch, SiteApps
from beambridge.site.services.base import Service
from beambridge.site.services.elastic_queue import ElasticQueue
from beambridge.site.services.heartbeat import Heartbeat
from beambridge.site.services.processing import Processing
from beambridge.site.services.scheduler_sync import SchedulerSync
from beambridge.site.services.token_rotation import TokenRotation
from beambridge.site.services.transfers import Transfers

log = get_logger(__name__)


def site_client(site: SiteDir, config: SiteConfig, **options: Any) -> Client:
    """A client acting with the site's token (retrying long: agents outlive server restarts)."""
    options.setdefault("retries", 8)
    options.setdefault("backoff_s", 0.5)
    path = site.token_path(config)
    return Client(config.server, site_token=site.read_token(config), site_token_file=path, **options)


def make_scheduler(site: SiteDir, config: SiteConfig) -> Scheduler:
    """The site's scheduler adapter."""
    return scheduler_class(config.scheduler).for_site(site.root)


def make_backends(site: SiteDir, config: SiteConfig) -> dict[str, TransferBackend]:
    """A transfer backend per location alias of ``site.yml``."""
    from beambridge.platform.transfer import get_backend

    return {
        alias: get_backend(
            str(location.get("kind", "")),
            location,
            site_root=site.root,
            settings=config.transfer_backends.get(str(location.get("kind", ""))),
        )
        for alias, location in config.locations.items()
    }


def register_locations(client: Client, config: SiteConfig) -> None:
    """Tell the service the site's location aliases and kinds (never addresses or credentials)."""
    client.sites.update(
        config.site_id, locations={alias: str(loc.get("kind", "")) for alias, loc in config.locations.items()}
    )


class PidFile:
    """``agent.pid``, locked for as long as the agent lives (so a stale file is never mistaken)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None

    def acquire(self) -> None:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip()
            handle.close()
            raise RuntimeError(f"the site agent is already running (pid {other or '?'})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self.path.unlink(missing_ok=True)
            self._handle.close()
            self._handle = None


def running_pid(path: Path) -> int | None:
    """The pid of the agent holding ``path`` locked, or None when no agent runs."""
    if not path.exists():
        return None
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


class SiteAgent:
    """The long-running process on a facility's login node."""

    def __init__(self, root: Path, client: Client | None = None) -> None:
        self.site = SiteDir(root)
        self.config = self.site.load()
        self.client = client or site_client(self.site, self.config)
        queue = self.config.elastic_queue
        self.figures = PlacementFigures(
            self.config.placement,
            max_total_nodes=queue.max_total_nodes if queue.enabled else 0,
            max_pilot_nodes=queue.max_nodes,
        )
        self.scheduler: Scheduler = CountedScheduler(make_scheduler(self.site, self.config), self.figures)
        self.apps = SiteApps(self.site.apps, self.client, self.config.site_id)
        self.stop_event = threading.Event()
        self.services: list[Service] = []

    def status(self) -> dict[str, Any]:
        """What the heartbeat reports: services' health and apps that failed to load."""
        return {
            "scheduler": self.config.scheduler,
            "services": {s.name: {"ticks": s.ticks, "last_error": s.last_error} for s in self.services},
            "app_errors": {
                str(path.name): error[-500:] for path, error in self.apps.current.catalog.errors.items()
            },
            "placement": self.figures.report(),
        }

    def build_services(self) -> list[Service]:
        register_locations(self.client, self.config)  # first: jobs submitted once the apps show may name them
        self.apps.register()
        self.services = [
            Heartbeat(self.client, self.config, self.status),
            SchedulerSync(self.client, self.site, self.config, self.scheduler),
            ElasticQueue(self.client, self.config),
            Processing(self.client, self.site, self.config, self.apps),
            AppsWatch(self.config, self.apps),
            Transfers(
                self.client, self.site, self.config, make_backends(self.site, self.config), self.figures
            ),
            TokenRotation(self.client, self.site, self.config),
        ]
        return self.services

    def run(self) -> list[str]:
        """Run every service on its own thread until :meth:`stop` (or SIGTERM / SIGINT); return the names
        of the services still busy when the grace ran out (their threads are abandoned: see
        ``run_agent``)."""
        for folder in (self.site.data, self.site.pilots, self.site.log):
            folder.mkdir(parents=True, exist_ok=True)
        pid_file = PidFile(self.site.pid_file)
        pid_file.acquire()
        try:
            self.build_services()
            warmup = self._start_xpcs_warmup()
            metrics_server = None
            if self.config.metrics_port is not None:
                metrics_server = site_metrics.serve(
                    self.config.metrics_port, self.config.metrics_address, lambda: self.services
                )
                log.info(
                    "metrics_serving", address=self.config.metrics_address, port=metrics_server.server_port
                )
            threads = [service.start(self.stop_event) for service in self.services]
            log.info(
                "agent_running",
                site=self.config.name,
                site_id=self.config.site_id,
                services=[s.name for s in self.services],
            )
            # Waits in steps: a signal the kernel hands to a service thread only sets a flag that the main
            # thread (where Python runs handlers) reads when it next runs, and an untimed wait never does.
            while not self.stop_event.wait(timeout=0.5):
                pass
            overdue = self._join(threads)
            for service in self.services:
                if isinstance(service, Processing):
                    service.close(wait=not overdue)
                elif isinstance(service, Transfers):
                    service.close()
            if warmup is not None and warmup.poll() is None:
                warmup.terminate()
                warmup.wait(timeout=10)
            if metrics_server is not None:
                metrics_server.shutdown()
        finally:
            pid_file.release()
            self.client.close()
        log.info("agent_stopped", site_id=self.config.site_id)
        return overdue

    def _join(self, threads: list[threading.Thread]) -> list[str]:
        """Wait for the services to finish their current step, all within ``shutdown_grace_s``; the names
        of those still busy (their threads' stacks go to stderr, the agent's log, to say where)."""
        grace = self.config.shutdown_grace_s
        deadline = time.monotonic() + grace
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        busy = [thread.name for thread in threads if thread.is_alive()]
        if busy:
            log.warning("stop_overdue", site_id=self.config.site_id, services=busy, grace_s=grace)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        return busy

    def _start_xpcs_warmup(self) -> subprocess.Popen[bytes] | None:
        """Compile the XPCS kernels in the background (its lines go to the agent's log), so the first XPCS
        job does not spend a minute compiling; ends in about a second when the cache is already warm."""
        if not self.config.launcher.warm_xpcs:
            return None
        try:
            process = subprocess.Popen(
                xpcs_warmup_argv(), stdin=subprocess.DEVNULL, close_fds=True, cwd=self.site.root
            )
        except OSError as exc:
            log.warning("xpcs_warmup_not_started", site_id=self.config.site_id, error=exc)
            return None
        log.info("xpcs_warmup", site_id=self.config.site_id, pid=process.pid)
        return process

    def stop(self, *_: Any) -> None:
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT stop the agent; SIGUSR1 writes every thread's stack to stderr (the log) and
        carries on, to see what a busy agent is doing."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=False)
