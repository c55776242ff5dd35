"""What a launcher is configured with: the settings of the site's ``launcher:`` section and the few facts of
the site it needs (its id, folders, environment). The launcher reads nothing else of the site.

``beambridge launcher`` builds a :class:`LauncherConfig` from the site directory the pilot script names;
the launcher package itself never imports ``beambridge.site`` (a test holds it to that).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from beambridge.platform.mpi import MPI_LAUNCHERS


class LauncherSettings(BaseModel):
    """How pilots run jobs (``site.yml``'s ``launcher:`` section)."""

    model_config = ConfigDict(extra="forbid")

    cores_per_node: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    gpus_per_node: int = Field(default=0, ge=0)
    gpu_variable: str = Field(default="CUDA_VISIBLE_DEVICES", description="How a job is told its GPUs")
    mpi_launcher: str = Field(
        default="mpirun", description="A registered MPI launcher (`beambridge site adapters`)"
    )
    mpi_executable: str | None = None
    mpi_args: list[str] = Field(default_factory=list)
    idle_timeout_s: float = Field(default=60, gt=0, description="Exit after this long with nothing to do")
    prefetch: int = Field(default=16, ge=0, description="Jobs acquired beyond free slots (serial mode)")
    long_poll_s: float = Field(default=10, gt=0, le=60)
    report_interval_s: float = Field(default=0.05, gt=0)
    report_batch: int = Field(default=500, ge=1)
    report_drain_s: float = Field(
        default=30, gt=0, description="On exit, how long to keep sending the last reports before giving up"
    )
    drain_margin_s: float = Field(
        default=60, ge=0, description="Stop work this long before the allocation ends"
    )
    unlimited_jobs_cutoff_min: float = Field(
        default=5,
        ge=0,
        description="Take no job without a wall-time limit once less than this is left before draining",
    )
    python: str = Field(default="", description="Python on the compute nodes (default: the agent's)")
    warm_xpcs: bool = Field(
        default=True,
        description=(
            "Compile the XPCS kernels into numba's cache in the background when the agent and each pilot "
            "start (skipped in about a second when already cached), so the first XPCS job does not"
        ),
    )

    @field_validator("mpi_launcher")
    @classmethod
    def _registered_mpi_launcher(cls, name: str) -> str:
        return MPI_LAUNCHERS.check(name)


def xpcs_warmup_argv(python: str = "") -> list[str]:
    """The command that compiles the XPCS kernels ahead of the first job, at low priority."""
    nice = shutil.which("nice")
    return [*([nice, "-n", "10"] if nice else []), python or sys.executable, "-m", "beambridge.xpcs.warmup"]


class LauncherConfig(BaseModel):
    """Everything one launcher needs to know of its site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site_id: int
    apps_dir: Path
    """The site's apps folder (Python files with ApplicationDefinition classes)."""
    data_dir: Path
    """Where job workdirs live (``data_dir / job.workdir``)."""
    local_scheduler: bool = False
    """Whether the allocation is the local scheduler's: every node name then means this host."""
    environment: dict[str, str] = Field(default_factory=dict)
    """Every job sees these."""
    setup_lines: list[str] = Field(default_factory=list)
    """Shell lines before every shell job."""
    session_timeout_s: float = Field(default=60, gt=0)
    """The server's session expiry (heartbeats come four times as often)."""
    settings: LauncherSettings = Field(default_factory=LauncherSettings)

    def workdir(self, job_workdir: str) -> Path:
        """A job's working directory."""
        return self.data_dir / job_workdir
