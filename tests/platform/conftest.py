"""Fixtures of the platform-adapter tests: a real Slurm cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.slurm_cluster import SlurmCluster, slurm_cluster_session


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running Slurm cluster whose nodes all answer (started, and later stopped, if none was running).
    Without one: the test fails in CI (``CI=true``) and is skipped elsewhere. Tests using it must carry
    ``@pytest.mark.xdist_group("slurm")``."""
    yield from slurm_cluster_session(tmp_path_factory)
