"""Alembic environment: runs migrations over the async engine."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from backend.db.engine import sqlalchemy_url
from backend.db.tables import metadata

config = context.config
url = config.attributes.get("database_url") or os.environ["LISA_DATABASE_URL"]


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        # One migrator at a time, even when several processes start together.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7419001)")
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(sqlalchemy_url(url))
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=sqlalchemy_url(url), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_main())
