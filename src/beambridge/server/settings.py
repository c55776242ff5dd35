"""Server settings: environment variables ``BEAMBRIDGE_*`` over embedded defaults."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from beambridge.schemas.placement import PolicyName
from beambridge.server.auth.keys import KeyRing, ensure_current_key


def default_home() -> Path:
    """``BEAMBRIDGE_HOME``, or ``~/.beambridge``."""
    return Path(os.environ.get("BEAMBRIDGE_HOME") or Path.home() / ".beambridge").expanduser()


class ServerSettings(BaseSettings):
    """Everything the service can be told; every field has a default that works on one machine."""

    model_config = SettingsConfigDict(env_prefix="BEAMBRIDGE_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite in WAL mode under BEAMBRIDGE_HOME"
    )
    secret_key: str | None = Field(
        default=None,
        description="Signs access tokens; default: a file in home, rotated by `beambridge server rotate-key`",
    )
    previous_secret_key: str | None = Field(
        default=None, description="With secret_key: the key it replaced, still accepted until the time below"
    )
    previous_secret_key_until: datetime | None = Field(
        default=None, description="When tokens signed with previous_secret_key stop being accepted"
    )
    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 30 * 24 * 3600
    session_timeout_s: float = Field(
        default=300, description="Silence after which a launcher session expires"
    )
    site_token_ttl_s: float = Field(
        default=90 * 24 * 3600,
        gt=0,
        description="How long a new site token lasts (agents rotate theirs before it ends)",
    )
    site_token_rotation_grace_s: float = Field(
        default=3600,
        ge=0,
        description="How long a rotated-out site token still works (launchers pick up the new one from the "
        "site's token file when theirs is refused)",
    )
    quota_jobs_per_minute: int = Field(
        default=600_000,
        ge=0,
        description="Jobs one user may create per minute (all server processes together; 0: no limit)",
    )
    quota_jobs_in_system: int = Field(
        default=1_000_000,
        ge=0,
        description="Jobs of one user that may be in the system (not ended); 0: no limit",
    )
    quota_event_waits: int = Field(
        default=32,
        ge=0,
        description="Event long-polls one user may hold open per server process; 0: no limit",
    )
    max_body_bytes: int = 64 * 1024 * 1024
    db_pool_size: int = 20
    wakeup_relay: Literal["local", "postgres"] = Field(
        default="local",
        description="How long-polls are woken: in this process only, or across processes via PostgreSQL "
        "LISTEN/NOTIFY (needed with several server workers; `server up --workers N` sets it)",
    )
    worker_threads: int = Field(default=8, ge=1, le=200, description="Threads for blocking database work")
    login_free_failures_per_user: int = Field(
        default=5, ge=1, description="Failed logins for one user name before each further one locks it out"
    )
    login_free_failures_per_address: int = Field(
        default=50, ge=1, description="Failed logins from one client address before it is locked out"
    )
    login_first_lockout_s: float = Field(
        default=2, gt=0, description="The first lock-out; each further failure doubles it"
    )
    login_max_lockout_s: float = Field(default=900, gt=0, description="The longest a lock-out lasts")
    password_check_threads: int = Field(
        default=2, ge=1, le=64, description="Threads that hash passwords (apart from those serving requests)"
    )
    password_check_queue: int = Field(
        default=32, ge=0, description="Logins that may wait for a password thread; more get 429"
    )
    tune_gc: bool = Field(
        default=False,
        description="Tune the garbage collector for a process that runs only the service "
        "(`server up` sets it; see beambridge.server.runtime)",
    )

    console_session_ttl_s: int = Field(
        default=12 * 3600, ge=60, description="How long a console (browser) login lasts"
    )
    console_secure_cookie: bool | None = Field(
        default=None,
        description="Mark the console's cookie Secure; default: when the request came over HTTPS "
        "(behind a TLS proxy, run uvicorn with --proxy-headers or set this to true)",
    )

    metrics_token: str | None = Field(
        default=None, description="When set, /metrics answers only 'Authorization: Bearer <this>'"
    )

    placement_policy: PolicyName = Field(
        default="fastest_finish", description="Placement policy of jobs that name none (nor their site group)"
    )
    placement_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="How often waiting jobs are bound and the jobs of down or draining sites re-placed",
    )
    placement_hedge_max_copies: int = Field(
        default=100,
        ge=0,
        description="Most hedged copies one placement cycle makes (jobs submitted with hedge=True that run late)",
    )
    placement_deferred_event_s: float = Field(
        default=600.0,
        gt=0,
        description="A job the placement cycle cannot place gets a 'deferred' event when the reasons change, "
        "and at least this often while it waits",
    )
    placement_history_ttl_s: float = Field(
        default=10.0, ge=0, description="How long measured run times and queue waits are reused"
    )
    site_degraded_after_s: float = Field(
        default=90.0, gt=0, description="Heartbeat silence after which a site is degraded"
    )
    site_down_after_s: float = Field(
        default=180.0,
        gt=0,
        description="Heartbeat silence after which a site is down (its unclaimed jobs move)",
    )

    site_scheduler_failures_degraded: int = Field(
        default=3, ge=1, description="Scheduler commands failing in a row (as the agent reports) for degraded"
    )
    site_scheduler_failures_down: int = Field(
        default=10, ge=1, description="Scheduler commands failing in a row for down (its unclaimed jobs move)"
    )

    def resolved_database_url(self) -> str:
        """The database to use: the configured URL or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.home / 'beambridge.db'}"

    def resolved_secret_key(self) -> str:
        """The current token-signing secret, created once (mode 0600) under ``home`` when not given."""
        if self.secret_key:
            return self.secret_key
        return ensure_current_key(self.home)

    def key_ring(self) -> KeyRing:
        """The signing keys: the configured ones, or those kept under ``home`` (see
        :mod:`beambridge.server.auth.keys`)."""
        until = self.previous_secret_key_until
        return KeyRing(
            self.home,
            fixed=self.secret_key,
            previous=self.previous_secret_key,
            previous_until=until.timestamp() if until is not None else None,
        )

    @property
    def job_quotas(self) -> tuple[int, int]:
        """(jobs per minute, jobs in the system) of one user; 0 is no limit."""
        return self.quota_jobs_per_minute, self.quota_jobs_in_system

    @property
    def session_sweep_interval_s(self) -> float:
        """How often expired sessions are looked for."""
        return max(0.2, min(self.session_timeout_s / 4, 15.0))
