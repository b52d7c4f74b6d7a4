"""The async engine and session factory, and URL helpers shared by SQLAlchemy, asyncpg and Alembic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` (any driver suffix) -> ``postgresql+asyncpg://...``."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"only PostgreSQL is supported, got {parsed.get_backend_name()!r}")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """A DSN asyncpg accepts directly (no ``+driver`` suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(
    url: str, pool_size: int = 10, *, connect_timeout: float = 5.0, pool_timeout: float = 5.0
) -> AsyncEngine:
    """The pool checks each connection before use (``pool_pre_ping``: a connection the server dropped, after a
    restart or a failover, is replaced, and the whole pool with it); a connection that cannot be opened within
    ``connect_timeout``, or got from the pool within ``pool_timeout``, fails the request (503) rather than hang it."""
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=pool_timeout,
        connect_args={"timeout": connect_timeout},
    )


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.begin() as conn:
        yield conn
