"""Alembic environment: runs migrations on the engine handed over in ``config.attributes``."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from beambridge.server.db.tables import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # the `alembic` command line: take the URL from the environment
    from beambridge.server.settings import ServerSettings

    engine = sa.create_engine(ServerSettings().resolved_database_url())


def _sqlite_foreign_keys(connection: sa.Connection, on: bool) -> None:
    """Switch SQLite's foreign-key enforcement (a no-op inside a transaction, so before one begins).

    Batch migrations rebuild a table by copying it and dropping the old one; with enforcement on, that
    drop would first delete the rows, cascading into every table that refers to it.
    """
    raw = connection.connection.dbapi_connection
    assert raw is not None
    raw.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _sqlite_foreign_keys(connection, False)
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=sqlite,
        compare_type=True,
    )
    try:
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left rows with dangling references: {broken[:10]}")
        connection.commit()
    finally:
        if sqlite:
            _sqlite_foreign_keys(connection, True)
