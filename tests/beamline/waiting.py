"""Waiting in the beamline tests: for what must eventually happen, with room for a loaded machine."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 60, what: str = "") -> None:
    """Return once ``predicate()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s" + (
            f" waiting for {what}" if what else ""
        )
        time.sleep(0.05)
