"""The batch script of a pilot: the site's setup lines, then the launcher."""

from __future__ import annotations

import shlex
import sys

from beambridge.schemas.batch_jobs import BatchJob
from beambridge.site.config import SiteConfig, SiteDir


def render_pilot_script(site: SiteDir, config: SiteConfig, batch_job: BatchJob) -> str:
    """A bash script that starts ``beambridge launcher`` for ``batch_job`` inside its allocation."""
    python = config.launcher.python or sys.executable
    argv = [
        python,
        "-m",
        "beambridge",
        "launcher",
        "--site-dir",
        str(site.root),
        "--batch-job-id",
        str(batch_job.id),
        "--mode",
        batch_job.job_mode.value,
        "--wall-time-min",
        str(batch_job.wall_time_min),
    ]
    lines = [
        "#!/bin/bash",
        f"# beambridge pilot {batch_job.id} of site {config.name!r} ({config.scheduler})",
        *config.setup_lines,
        *(f"export {key}={shlex.quote(value)}" for key, value in config.environment.items()),
        "exec " + " ".join(shlex.quote(arg) for arg in argv),
        "",
    ]
    return "\n".join(lines)
