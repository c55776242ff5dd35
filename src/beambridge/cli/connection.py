"""The SDK client the CLI's commands use: the one ``beambridge login`` saved."""

from __future__ import annotations

from beambridge.client import Client


def open_client() -> Client:
    """A client from ``$BEAMBRIDGE_HOME/client.json`` (an error telling you to log in if there is none)."""
    return Client.from_saved()
