"""A site's configuration: ``site.yml`` in the site directory, validated with pydantic.

The site directory holds everything of one deployment::

    site.yml      this configuration
    token         the site token (mode 0600) the agent and its launchers authenticate with
    apps/         the site's apps (Python files with ApplicationDefinition classes)
    data/         job workdirs (``data/<job workdir>``)
    pilots/       one folder per batch job: its script, scheduler output and launcher log
    log/          the agent's log
    agent.pid     the running agent's process id
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from beambridge.launcher.config import LauncherSettings
from beambridge.schemas.batch_jobs import JobMode
from beambridge.schemas.placement import SitePriors

SITE_FILE = "site.yml"


class SiteConfigError(ValueError):
    """A site directory or ``site.yml`` that cannot be used (names the file and the problem)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ElasticQueue(_Section):
    """How the agent sizes pilot allocations to the runnable backlog."""

    enabled: bool = True
    project: str = ""
    queue: str = ""
    job_mode: JobMode = JobMode.SERIAL
    min_nodes: int = Field(default=1, ge=1)
    max_nodes: int = Field(default=1, ge=1, description="Largest pilot to ask for")
    max_total_nodes: int = Field(default=4, ge=1, description="Nodes queued and running, all pilots together")
    max_queued_jobs: int = Field(default=1, ge=1, description="Pilots waiting in the queue at once")
    wall_time_min: int = Field(default=30, ge=1)
    max_queue_wait_min: float | None = Field(
        default=None, gt=0, description="Remove a pilot still queued after this long (and ask again)"
    )
    optional_params: dict[str, str] = Field(default_factory=dict)
    warm_pilot: bool = Field(
        default=False,
        description=(
            "Keep one single-node pilot running for quick looks (one node on top of max_total_nodes): it "
            "takes only quick-look jobs, never exits idle, and its workers warm the apps up (imports, JIT "
            "compiles) before the first one arrives"
        ),
    )


class Periods(_Section):
    """How often each agent service runs (seconds)."""

    heartbeat: float = Field(default=10, gt=0)
    scheduler_sync: float = Field(default=5, gt=0)
    elastic_queue: float = Field(default=5, gt=0)
    processing: float = Field(default=1, gt=0)
    transfers: float = Field(default=1, gt=0)
    apps: float = Field(default=2, gt=0, description="Look for added or changed files in apps/")
    token_check: float = Field(
        default=300, gt=0, description="How often the agent checks whether its site token is due for rotation"
    )


class TransferSettings(_Section):
    """How the site batches and retries transfers."""

    max_files_per_task: int = Field(default=100, ge=1, description="Files (or directories) per task")
    max_bytes_per_task: int = Field(default=100 * 2**30, ge=1, description="Bytes per task (outbound)")
    max_concurrent_tasks: int = Field(default=4, ge=1)
    retry_limit: int = Field(default=3, ge=1, description="Attempts of a failing task before its jobs fail")
    retry_backoff_s: float = Field(default=10, ge=0, description="First retry delay (doubles each time)")


class SiteConfig(_Section):
    """``site.yml``."""

    name: str
    server: str
    site_id: int
    platform: str = "local"
    scheduler: str = Field(default="local", description="A registered scheduler (`beambridge site adapters`)")
    token_file: str = "token"
    environment: dict[str, str] = Field(default_factory=dict, description="Every job sees these")
    setup_lines: list[str] = Field(default_factory=list, description="Shell lines before every pilot and job")
    launcher: LauncherSettings = Field(default_factory=LauncherSettings)
    elastic_queue: ElasticQueue = Field(default_factory=ElasticQueue)
    periods: Periods = Field(default_factory=Periods)
    placement: SitePriors = Field(
        default_factory=SitePriors,
        description="What placement should expect here before there is history: run_time_s per app, "
        "queue_wait_s of a new pilot, transfer_rate_bps, transfer_overhead_s, dispatch_s",
    )
    locations: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Transfer location aliases, each checked by its kind's backend: {kind: local, path} | "
        "{kind: rsync, host, user, path…} | {kind: globus, endpoint_id, path}",
    )
    transfer_backends: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Site-wide settings of transfer backends by kind (globus: collection_id, token_file…)",
    )
    transfers: TransferSettings = Field(default_factory=TransferSettings)
    session_timeout_s: float = Field(
        default=60, gt=0, description="The server's session expiry (for heartbeats)"
    )
    processing_threads: int = Field(default=4, ge=1)
    hook_timeout_s: float = Field(
        default=600,
        gt=0,
        description="How long one app hook (preprocess, postprocess, handle_error, handle_timeout) may run; "
        "a hook still running then fails its job with that reason, and the others go on",
    )
    shutdown_grace_s: float = Field(
        default=30,
        gt=0,
        description="On SIGTERM/SIGINT, how long the services may take to finish their current step; "
        "after that the agent logs what each busy one is doing and exits (its work is then picked up as "
        "after a crash)",
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Serve Prometheus /metrics on this port (none: off)"
    )
    metrics_address: str = Field(default="127.0.0.1", description="Address /metrics listens on")

    @model_validator(mode="before")
    @classmethod
    def _globus_section(cls, data: Any) -> Any:
        """``globus:`` (the settings' earlier place) is ``transfer_backends.globus``."""
        if isinstance(data, dict) and "globus" in data:
            data = dict(data)
            globus = data.pop("globus")
            if globus is not None:
                data["transfer_backends"] = {"globus": globus, **(data.get("transfer_backends") or {})}
        return data

    @field_validator("scheduler")
    @classmethod
    def _registered_scheduler(cls, name: str) -> str:
        from beambridge.platform.schedulers import SCHEDULERS

        return SCHEDULERS.check(name)

    @field_validator("locations")
    @classmethod
    def _valid_locations(cls, locations: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from beambridge.platform.transfer import parse_location

        for alias, location in locations.items():
            _check(alias, parse_location, location)
        return locations

    @field_validator("transfer_backends")
    @classmethod
    def _valid_backend_settings(cls, backends: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from beambridge.platform.transfer import parse_backend_settings

        for kind, settings in backends.items():
            _check(kind, parse_backend_settings, kind, settings)
        return backends


def _check(where: str, validate: Any, *args: Any) -> None:
    """Run an adapter's validation; its problems as one ``ValueError`` that names ``where``."""
    try:
        validate(*args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()[:5]
        )
        raise ValueError(f"{where}: {problems}") from None
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


class SiteDir:
    """Paths of one site directory and its configuration."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def config_file(self) -> Path:
        return self.root / SITE_FILE

    @property
    def apps(self) -> Path:
        return self.root / "apps"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pilots(self) -> Path:
        return self.root / "pilots"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def pid_file(self) -> Path:
        return self.root / "agent.pid"

    def token_path(self, config: SiteConfig) -> Path:
        return self.root / config.token_file

    def pilot_dir(self, batch_job_id: int) -> Path:
        return self.pilots / f"{batch_job_id:06d}"

    def workdir(self, job_workdir: str) -> Path:
        return self.data / job_workdir

    def load(self) -> SiteConfig:
        """The validated ``site.yml``; :class:`SiteConfigError` naming the file and field otherwise."""
        path = self.config_file
        if not path.is_file():
            raise SiteConfigError(
                f"{self.root} is not a site directory (no {SITE_FILE}); run `beambridge site init`"
            )
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SiteConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise SiteConfigError(f"{path}: expected a mapping of settings")
        try:
            return SiteConfig.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
                for err in exc.errors()[:10]
            )
            raise SiteConfigError(f"{path}: {problems}") from None

    def save(self, config: SiteConfig) -> None:
        """Write ``site.yml`` (atomically)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.config_file.with_suffix(".yml.tmp")
        tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        tmp.replace(self.config_file)

    def read_token(self, config: SiteConfig) -> str:
        """The site token; :class:`SiteConfigError` if the file is missing or empty."""
        path = self.token_path(config)
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise SiteConfigError(f"cannot read the site token {path}: {exc.strerror}") from None
        if not token:
            raise SiteConfigError(f"the site token file {path} is empty")
        return token

    def write_token(self, config: SiteConfig, token: str) -> None:
        """Store the site token readable by its owner only, replacing the file in one step (a launcher
        reading it meanwhile sees the old token or the new one, never a part)."""
        path = self.token_path(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
