"""The bundled models' servers follow their stored status, across restarts of `lisa serve` and while it runs.

At start, a bundled model an admin disabled (Stopped) or that failed (Failed) is not started, and keeps its status
and reason (``startable``); the others start, as before. While LISA runs, :class:`BundledWatcher` (a thread of the
`lisa serve` process, which owns these servers: its uvicorn workers cannot reach its supervisor) reads the bundled
models' rows every ``interval`` seconds and makes the processes match: a model disabled is stopped, one enabled
again is started, one deleted is stopped (the next start registers it again). A server the supervisor gives up on
(``max_restarts`` deaths in a row) marks its model Failed with the reason, which it keeps until an admin deletes it.

Polling a handful of rows once a second costs one indexed query; it needs no change-feed connection of its own.
The thread lives as long as the process: servers it starts get their parent-death signal when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db import tables
from backend.db.engine import create_engine
from backend.lifecycle import store
from backend.lifecycle.schemas import EventKind
from backend.registry.schemas import ModelHealth, ModelStatus
from backend.registry.service import ModelRegistry
from backend.runtime.local_models import MANAGED_BY, Bundled
from backend.runtime.supervisor import Supervisor

log = logging.getLogger("lisa.bundled")
T = tables.models
# The statuses in which a bundled model's server runs (Updating: a registry change, served meanwhile).
RUNS = frozenset({ModelStatus.in_service.value, ModelStatus.updating.value})


async def stored_rows(engine: AsyncEngine, ids: Iterable[str]) -> dict[str, RowMapping]:
    """The bundled models' rows (only those LISA manages: an admin's own model of the same id is not ours)."""
    query = sa.select(T).where(T.c.id.in_(list(ids)), T.c.managed_by == MANAGED_BY)
    async with engine.connect() as conn:
        return {r._mapping["id"]: r._mapping for r in (await conn.execute(query)).all()}


async def startable(database_url: str, bundled: list[Bundled]) -> list[Bundled]:
    """The bundled models to start now: new ones, and those whose stored status runs."""
    engine = create_engine(database_url, 1)
    try:
        rows = await stored_rows(engine, [b.model.id for b in bundled])
    finally:
        await engine.dispose()
    return [b for b in bundled if b.model.id not in rows or rows[b.model.id]["status"] in RUNS]


async def mark_failed(engine: AsyncEngine, model_id: str, reason: str) -> bool:
    """Failed with ``reason``, audited and recorded as an event, when the model is still in a running status."""
    async with engine.begin() as conn:
        current = await ModelRegistry.locked(conn, model_id)
        if current is None or current["status"] not in RUNS:
            return False
        values: dict[str, Any] = {
            "status": ModelStatus.failed.value, "status_reason": reason, "updated_at": datetime.now(UTC),
            "health": ModelHealth.unknown.value, "health_reason": None, "unreachable_since": None,
            "health_failures": 0,
        }  # fmt: skip
        await ModelRegistry.write(conn, model_id, values, action="model.fail", before=current, reason=reason)
        await store.add_event(conn, model_id, EventKind.status, f"failed: {reason}", status=ModelStatus.failed)
    return True


class BundledWatcher:
    def __init__(
        self, database_url: str, supervisor: Supervisor, bundled: list[Bundled], interval: float = 1.0
    ) -> None:
        self.database_url = database_url
        self.supervisor = supervisor
        self.bundled = bundled
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lisa-bundled-models", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the servers themselves are the supervisor's to stop)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 15)

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        engine = create_engine(self.database_url, 1)
        try:
            while not self._stop.is_set():
                try:
                    await self.reconcile(engine)
                except Exception as exc:  # the database restarting, say: try again at the next tick
                    log.warning("bundled models not reconciled now: %s", exc)
                await asyncio.sleep(self.interval)
        finally:
            await engine.dispose()

    async def reconcile(self, engine: AsyncEngine) -> None:
        rows = await stored_rows(engine, [b.model.id for b in self.bundled])
        for item in self.bundled:
            if self._stop.is_set():
                return
            row, child = rows.get(item.model.id), item.child
            wanted = row is not None and row["status"] in RUNS
            watched = self.supervisor.watches(child)
            if watched and child.given_up:
                process = child.process
                code = process.returncode if process is not None else None
                reason = (
                    f"its server ({child.name}) exited with status {code}, {child.restarts + 1} times in a row; "
                    f"its log: {child.log_path}"
                )
                self.supervisor.remove(child)
                if await mark_failed(engine, item.model.id, reason):
                    log.error("bundled model %s failed: %s", item.model.id, reason)
            elif wanted and not watched:
                log.info("starting the server of bundled model %s (status %s)", item.model.id, row and row["status"])
                child.restarts, child.given_up, child.restart_at = 0, False, None
                self.supervisor.add(child)
            elif not wanted and watched:
                status = row["status"] if row is not None else "deleted"
                log.info("stopping the server of bundled model %s (status %s)", item.model.id, status)
                self.supervisor.remove(child)
