"""End-to-end fixtures: a real server process and site agents as real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.site.harness import System


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    made = System(tmp_path)
    try:
        yield made
    finally:
        made.close()


from tests.platform.conftest import slurm_cluster  # noqa: E402,F401 - the real Slurm cluster fixture
