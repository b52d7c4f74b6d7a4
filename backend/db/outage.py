"""Telling a database outage apart from other failures, so that it reaches clients as a 503 with a reason.

The drivers report an unreachable or restarting server in many ways: a refused or reset connection raised by
asyncpg's connect (SQLAlchemy passes it through unwrapped), a pooled connection found dead (SQLAlchemy's
``connection_invalidated``), a server shutting down or starting up (SQLSTATE 57P01-57P03), a connection failure
(class 08), a pool that had no connection to give in time, and psycopg's equivalents (procrastinate). Anything
else, integrity errors and timeouts of a query included, is not an outage and keeps its own handling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import TypeVar

import asyncpg
import psycopg
import psycopg_pool
from procrastinate import exceptions as procrastinate_exceptions
from sqlalchemy import exc as sa_exc

from backend.errors import DatabaseUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
DRIVER_MODULES = ("asyncpg", "sqlalchemy", "psycopg", "psycopg_pool", "procrastinate")
# What a database outage can surface as, for exception handlers to look at (as_unavailable decides).
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, psycopg.Error, OSError, asyncio.TimeoutError,
    procrastinate_exceptions.ProcrastinateException,
)  # fmt: skip
_SHUTDOWN_STATES = {"57P01": "the database server is shutting down", "57P02": "the database server crashed",
                    "57P03": "the database server is starting up"}  # fmt: skip


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _from_driver(tb: TracebackType | None) -> bool:
    """True when the traceback passes through a database driver: an OSError raised there is the connection's."""
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.split(".", 1)[0] in DRIVER_MODULES:
            return True
        tb = tb.tb_next
    return False


def _sqlstate_reason(state: str | None) -> str | None:
    if not state:
        return None
    if state in _SHUTDOWN_STATES:
        return _SHUTDOWN_STATES[state]
    if state.startswith("08"):
        return "the connection to the database failed"
    if state == "53300":
        return "the database has no connection slots left"
    return None


def outage_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means the database cannot be used right now, or None when it is some other failure."""
    for e in _chain(exc):
        if isinstance(e, DatabaseUnavailable):
            return e.reason
        if isinstance(e, sa_exc.TimeoutError | psycopg_pool.PoolTimeout):
            return "no database connection became free in time"
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return "the connection to the database was lost"
        if isinstance(e, asyncpg.PostgresError):
            if reason := _sqlstate_reason(e.sqlstate):
                return reason
        elif isinstance(e, psycopg.OperationalError):
            if e.sqlstate is None:
                return "the database is not reachable"
            if reason := _sqlstate_reason(e.sqlstate):
                return reason
        elif isinstance(e, asyncpg.InterfaceError) and "connection" in str(e) and "closed" in str(e):
            return "the connection to the database was lost"
        elif isinstance(e, OSError | asyncio.TimeoutError) and _from_driver(e.__traceback__):
            if isinstance(e, ConnectionRefusedError | FileNotFoundError):
                return "the database refused the connection"
            if isinstance(e, asyncio.TimeoutError):
                return "the database did not answer in time"
            return "the connection to the database failed"
    return None


def as_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The 503 to answer for ``exc``, when it is a database outage."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    reason = outage_reason(exc)
    return DatabaseUnavailable(reason) if reason is not None else None


class OutageGate:
    """A cache's memory of its last failed reload: while the database looked down a moment ago, the cache serves what
    it holds without asking again, and retries once per ``retry_seconds`` (one probe at a time) — so requests pay no
    connect attempts, let alone connect timeouts, during an outage, and fresh data returns within a second of it."""

    def __init__(self, name: str, retry_seconds: float = 1.0) -> None:
        self.name = name
        self.retry_seconds = retry_seconds
        self.reason: str | None = None  # why the last reload failed; None: the last one worked
        self._retry_at = 0.0
        self._probing = False

    def closed(self) -> bool:
        """True: serve what is cached (or answer 503) without asking the database now."""
        return self.reason is not None and (self._probing or time.monotonic() < self._retry_at)

    async def load(self, loader: Callable[[], Awaitable[T]]) -> T:
        """Run a reload; an outage is remembered and raised as DatabaseUnavailable, anything else raised as it is."""
        self._probing = self.reason is not None
        try:
            value = await loader()
        except Exception as exc:
            reason = outage_reason(exc)
            if reason is None:
                raise
            if self.reason is None:
                log.warning("%s: the database is unavailable (%s); serving what is cached", self.name, reason)
            self.reason, self._retry_at = reason, time.monotonic() + self.retry_seconds
            raise DatabaseUnavailable(reason) from exc
        finally:
            self._probing = False
        if self.reason is not None:
            log.warning("%s: the database is back", self.name)
            self.reason = None
        return value

    def unavailable(self) -> DatabaseUnavailable:
        return DatabaseUnavailable(self.reason or "the database is unavailable")
