"""``site init``: make a site directory, register the site, and store a token for its agent."""

from __future__ import annotations

import copy
import re
import socket
from pathlib import Path
from typing import Any

from beambridge.client import Client
from beambridge.site.config import SITE_FILE, SiteConfig, SiteConfigError, SiteDir
from beambridge.site.templates import PLATFORM_TEMPLATES

EXAMPLE_APP = '''"""Apps of this site. Each ApplicationDefinition subclass here is registered when the agent starts."""

from beambridge.apps.base import ApplicationDefinition


class Greeting(ApplicationDefinition):
    """Say hello (a shell app: parameters are shell-quoted)."""

    command_template = "echo hello, {{ name }}"


class AddNumbers(ApplicationDefinition):
    """Add two numbers (a Python app: the return value is the job's result)."""

    def run(self, a: float, b: float) -> float:
        return a + b
'''


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def init_site(
    root: Path,
    name: str,
    platform: str,
    client: Client,
    *,
    overrides: dict[str, Any] | None = None,
    reuse: bool = False,
) -> SiteConfig:
    """Create the site on the service, a token, and the site directory. A site of yours with that name is
    refused (two directories would run one site's jobs) unless ``reuse`` says to attach this one to it."""
    if platform not in PLATFORM_TEMPLATES:
        raise SiteConfigError(f"unknown platform {platform!r}; known: {', '.join(PLATFORM_TEMPLATES)}")
    site_dir = SiteDir(root)
    if site_dir.config_file.exists():
        raise SiteConfigError(f"{site_dir.root} is already a site directory ({SITE_FILE} exists)")
    existing = client.sites.filter(name=name).first()
    if existing is not None and not reuse:
        where = f" ({existing.hostname}:{existing.path})" if existing.path else ""
        raise SiteConfigError(
            f"you already have a site named {name!r} (id {existing.id}){where}; choose another --name, or "
            "--reuse to attach this directory to it (stop the other directory's agent first)"
        )
    site = existing or client.sites.create(
        name, hostname=socket.gethostname(), path=str(site_dir.root), description=f"{platform} site"
    )
    raw = _merge(
        {"name": name, "server": client.url, "site_id": site.id, "platform": platform},
        PLATFORM_TEMPLATES[platform],
    )
    config = SiteConfig.model_validate(_merge(raw, overrides or {}))
    for folder in (site_dir.apps, site_dir.data, site_dir.pilots, site_dir.log):
        folder.mkdir(parents=True, exist_ok=True)
    example = site_dir.apps / "examples.py"
    if not example.exists():
        example.write_text(EXAMPLE_APP)
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:80] or "host"
    token = client.sites.create_token(site.id, f"agent.{host}")
    site_dir.write_token(config, token.token)
    site_dir.save(config)
    return config
