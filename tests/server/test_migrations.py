"""The schema comes from the Alembic migrations, and they produce exactly what the code describes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from beambridge.server.app import SchemaOutOfDate, open_database
from beambridge.server.db import migrate
from beambridge.server.db.tables import metadata
from beambridge.server.settings import ServerSettings
from tests.servers import IN_CI, postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path, pg_admin_url: str | None) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    assert pg_admin_url is not None or not IN_CI, "PostgreSQL is required in CI"
    if pg_admin_url is None:
        pytest.skip("PostgreSQL is not available here (in CI this is an error)")
    with postgres_database(pg_admin_url) as url:
        yield url


def test_migrations_build_the_described_schema(empty_database: str) -> None:
    engine = sa.create_engine(empty_database)
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
    with engine.connect() as conn:
        differences = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    if engine.dialect.name == "sqlite":  # the GIN index on tags exists on PostgreSQL only, by design
        differences = [
            d for d in differences if not (d[0] == "add_index" and d[1].name == "ix_jobs_tags_gin")
        ]
    assert differences == []
    migrate.upgrade(engine)  # idempotent
    engine.dispose()


def test_server_refuses_an_unmigrated_database(empty_database: str, tmp_path: Path) -> None:
    settings = ServerSettings(home=tmp_path, database_url=empty_database, secret_key="x" * 40)
    with pytest.raises(SchemaOutOfDate, match="run 'beambridge server migrate'"):
        open_database(settings, upgrade=False)
    open_database(settings, upgrade=True).dispose()
    open_database(settings, upgrade=False).dispose()


def test_downgrade_and_upgrade_again(empty_database: str) -> None:
    engine = sa.create_engine(empty_database)
    migrate.upgrade(engine)
    command.downgrade(migrate.alembic_config(engine), "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert "jobs" in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_sqlite_table_rebuilds_keep_every_row(tmp_path: Path) -> None:
    """Rebuilding ``jobs`` (0005) must not cascade into the rows that refer to it."""
    from beambridge.server.db.engine import Database

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(db.engine, "0004")
    now = "2026-11-30 00:00:00"
    rows = [
        f"INSERT INTO users VALUES (1, 'maya', 'x', '{now}')",
        f"INSERT INTO sites (id, owner_id, name, status, created_at) VALUES (1, 1, 's', '{{}}', '{now}')",
        "INSERT INTO apps (id, owner_id, site_id, name, parameters, transfer_slots, hooks, created_at) "
        f"VALUES (1, 1, 1, 'a', '{{}}', '{{}}', '[]', '{now}')",
        *(
            "INSERT INTO jobs (id, owner_id, site_id, app_id, workdir, state, parameters, tags, data, "
            "launch_params, num_nodes, ranks_per_node, threads_per_rank, gpus_per_rank, node_packing_count, "
            "wall_time_min, parent_ids, transfers, has_stage_ins, has_stage_outs, retry_count, retry_limit, "
            f"priority, created_at, updated_at) VALUES ({i}, 1, 1, 1, 'w', 'READY', '{{}}', '{{}}', '{{}}', "
            f"'{{}}', 1, 1, 1, 0, 1, 0, '[]', '{{}}', 1, 0, 0, 3, 0, '{now}', '{now}')"
            for i in (1, 2)
        ),
        "INSERT INTO job_parents VALUES (2, 1)",
        "INSERT INTO transfer_items (id, job_id, owner_id, site_id, direction, slot, location, remote_path, "
        f"local_path, recursive, state, info, created_at, updated_at) VALUES (1, 2, 1, 1, 'in', 'raw', 'a', "
        f"'/x', 'x', 0, 'pending', '{{}}', '{now}', '{now}')",
        f"INSERT INTO events VALUES (1, 2, 1, 1, 'CREATED', 'READY', '{now}', '{{}}')",
    ]
    with db.write() as conn:
        for statement in rows:
            conn.exec_driver_sql(statement)
    migrate.upgrade(db.engine)
    with db.read() as conn:
        counts = {
            table: conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
            for table in ("users", "sites", "apps", "jobs", "job_parents", "transfer_items", "events")
        }
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert counts == dict.fromkeys(counts, 1) | {"jobs": 2}
    db.dispose()
