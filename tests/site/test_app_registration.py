"""The agent registers every app it can, and says which it could not (it used to stop at the first)."""

from __future__ import annotations

from pathlib import Path

from beambridge.apps.loader import load_apps
from beambridge.site.services.apps import register_apps
from tests.site.harness import System

APPS = '''
from beambridge.apps.base import ApplicationDefinition


class TooWordy(ApplicationDefinition):
    """x"""

    description = "x" * 20_000
    command_template = "true"


class Fine(ApplicationDefinition):
    command_template = "true"
'''


def test_one_refused_app_does_not_keep_the_others_out(system: System, tmp_path: Path) -> None:
    site, config = system.make_site("registering", elastic_queue={"enabled": False})
    (site.apps / "mixed.py").write_text(APPS)
    ids = register_apps(system.client, config.site_id, load_apps(site.apps))
    assert "Fine" in ids and "TooWordy" not in ids
    registered = {app.name: app for app in system.client.apps.filter(site_id=config.site_id)}
    assert "Fine" in registered and "TooWordy" not in registered
    assert registered["Fine"].version is not None and registered["Noop"].version is None
