"""Chaos in CI: a few hundred jobs while the server, the site agent and launchers are killed with SIGKILL.

The short version of ``benchmarks/chaos.py`` (same code): every job ends exactly once, every extra
execution (from an execution log the test's own app keeps, outside the service) is explained by a
RUN_TIMEOUT in the job's history, no launcher outlives the run, and the SQLite file passes
``integrity_check``.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.servers import postgres_database
from tests.site.harness import launcher_pids, wait_for


def _chaos() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos.py"
    spec = importlib.util.spec_from_file_location("beambridge_chaos_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def chaos_database(request: pytest.FixtureRequest, pg_admin_url: str | None) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    if pg_admin_url is None:
        from tests.servers import IN_CI

        assert not IN_CI, "PostgreSQL is required in CI"
        pytest.skip("PostgreSQL is not available here (in CI this is an error)")
    with postgres_database(pg_admin_url) as url:
        yield url


def test_jobs_survive_random_kills_exactly_once(chaos_database: str | None, tmp_path: Path) -> None:
    result = _chaos().run(
        jobs=150,
        minutes=0.6,
        seconds=0.3,
        database_url=chaos_database,
        seed=7,
        root=tmp_path,
        pause_s=(1.0, 3.0),  # kills close together: a PostgreSQL server takes seconds to come back
    )
    assert set(result["kills"]) == {"server", "agent", "launcher"}, result["kills"]  # each kind at least once
    assert result["lost"] == 0, result
    assert result["twice"] == 0, result
    assert result["unexplained"] == 0, result
    # the pilots were cancelled when the run ended; their launchers drain and exit within seconds
    wait_for(lambda: not launcher_pids(result["site_root"]), 30, what="every launcher of the run ended")
    if chaos_database is None:
        with sqlite3.connect(result["home"] / "beambridge.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
