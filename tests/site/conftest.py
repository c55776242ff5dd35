"""End-to-end fixtures: a real server process and site agents as real processes; the real Slurm cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.site.harness import System
from tests.slurm_cluster import SlurmCluster, slurm_cluster_session


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    made = System(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """The tests' own Slurm (fails in CI when it cannot be had). Users carry ``xdist_group("slurm")``."""
    yield from slurm_cluster_session(tmp_path_factory)
