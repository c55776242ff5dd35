"""A site whose apps are registered but which starts no pilots itself, and a launcher started by hand:
the launcher tests decide when a pilot runs and what happens to it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from beambridge.site.config import SiteConfig, SiteDir
from tests.site.harness import System

APPS = Path(__file__).resolve().parents[1] / "site" / "apps_e2e.py"


def site_without_pilots(
    system: System, name: str, **launcher: Any
) -> tuple[SiteDir, SiteConfig, dict[str, int]]:
    """A site with the end-to-end apps registered (its agent ran once) and the elastic queue off; its app
    ids by name."""
    site, config = system.make_site(name, launcher=launcher, elastic_queue={"enabled": False})
    shutil.copy(APPS, site.apps / "e2e.py")
    agent = system.start_agent(site)
    apps = system.app_ids(config.site_id)
    agent.stop()
    return site, config, apps


def launch(site_root: Path, wall_time_min: float) -> subprocess.Popen[bytes]:
    """``beambridge launcher`` on this machine for the site, its output in ``launcher.log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "beambridge", "launcher", "--site-dir", str(site_root), "--nodes", "localhost",
         "--wall-time-min", str(wall_time_min)],
        stdout=(site_root / "launcher.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
