"""Cross-process change feed over PostgreSQL LISTEN/NOTIFY.

Writers call :func:`publish` inside their transaction; PostgreSQL delivers the notification on commit to every
backend process, whose in-memory caches (model registry, API tokens) then reload on their next use. While the
listening connection is down, subscribers are told ``"*"`` so their caches stop trusting themselves (they still serve
what they hold while the database is unreachable, and reload once it answers); they are told again on reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CHANNEL = "lisa_changes"
MAX_RETRY_SECONDS = 2.0  # between reconnection attempts: caches trust themselves again this soon after an outage
log = logging.getLogger(__name__)

Listener = Callable[[str], None]


async def publish(conn: AsyncConnection, topic: str) -> None:
    await conn.execute(text("SELECT pg_notify(:channel, :topic)"), {"channel": CHANNEL, "topic": topic})


class ChangeFeed:
    def __init__(self, dsn: str, connect_timeout: float = 5.0) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self.connected = asyncio.Event()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def dispatch(self, topic: str) -> None:
        for listener in self._listeners:
            try:
                listener(topic)
            except Exception:  # a broken subscriber must not stop the others
                log.exception("change listener failed for %s", topic)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.dispatch(payload)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lisa-change-feed")
        await asyncio.wait_for(self.connected.wait(), timeout=30)

    async def _run(self) -> None:
        delay = 0.2
        while True:
            lost = asyncio.Event()
            try:
                self._conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
                self._conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await self._conn.add_listener(CHANNEL, self._on_notify)
                # Anything may have changed while we were not listening.
                self.dispatch("*")
                self.connected.set()
                delay = 0.2
                while not lost.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=5)
                    if not lost.is_set() and self._conn.is_closed():
                        lost.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("change feed connection failed: %s", exc)
            self.connected.clear()
            self.dispatch("*")
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
