"""The launcher tests use the end-to-end system of the site tests."""

from tests.site.conftest import system

__all__ = ["system"]
