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

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
