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
