"""Fixtures shared by the server tests (the placement ones live in ``placement_fixtures``)."""

from tests.server.placement_fixtures import fast, two_sites

__all__ = ["fast", "two_sites"]
