"""beambridge: near-real-time analysis of light-source experiments at whichever HPC facility finishes first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from beambridge.client import Client

__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    # `from beambridge import Client` without importing httpx for users of the science package alone.
    if name == "Client":
        from beambridge.client import Client

        return Client
    raise AttributeError(name)
