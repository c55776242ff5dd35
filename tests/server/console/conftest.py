"""Console fixtures."""

from tests.server.console.client import browser_for

__all__ = ["browser_for"]
