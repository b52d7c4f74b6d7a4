"""Health checks of every internal model in service: ``GET {base_url}/models`` with a timeout, every
``health_interval_seconds``. A model failing ``health_failures`` checks in a row is marked unreachable (its status
stays what the lifecycle made it; the gateway answers 503 for it at once instead of waiting on it), with an event;
it is marked ok again, with an event, at its first answer.

Each backend process runs the loop; a check is claimed by writing its time first (``UPDATE ... RETURNING`` the models
due), so replicas share the checks and no model is checked twice in an interval. Not a procrastinate periodic task:
checks every few seconds would each be a job row written, fetched and deleted, and they would wait behind
hour-long workflows in the worker's slots, when a check must come on time to mean anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit import log as audit
from backend.db import tables
from backend.db.changes import publish
from backend.lifecycle import store
from backend.lifecycle.probe import Probe
from backend.lifecycle.schemas import EventKind
from backend.registry.schemas import Hosting, ModelHealth, ModelStatus
from backend.registry.service import TOPIC, ModelRegistry

log = logging.getLogger("lisa.lifecycle")
T = tables.models
PARALLEL = 16  # checks in flight per process


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HealthMonitor:
    def __init__(
        self, engine: AsyncEngine, registry: ModelRegistry, probe: Probe, *, interval: float, failures: int
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.probe = probe
        self.interval = interval  # 0: no checks in this process
        self.failures = max(1, failures)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.create_task(self._loop(), name="lisa-model-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.check_due()
            except Exception as exc:  # the database away, most likely: try again next round
                log.warning("model health checks failed this round: %s", exc)
            await asyncio.sleep(self.interval)

    async def check_due(self) -> None:
        """Check the internal models in service whose last check is an interval old (claimed by this process)."""
        due = sa.or_(
            T.c.health_checked_at.is_(None),
            T.c.health_checked_at <= sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, self.interval * 0.9),
        )
        claim = (
            T.update()
            .where(
                T.c.hosting == Hosting.internal.value,
                T.c.base_url.isnot(None),
                T.c.status == ModelStatus.in_service.value,
                due,
            )
            .values(health_checked_at=sa.func.now())
            .returning(T.c.id, T.c.base_url, T.c.health, T.c.health_failures, T.c.unreachable_since)
        )
        async with self.engine.begin() as conn:
            rows = [r._mapping for r in (await conn.execute(claim)).all()]
        if not rows:
            return
        limit = asyncio.Semaphore(PARALLEL)

        async def check(row: RowMapping) -> None:
            async with limit:
                why = await self.probe.not_answering(str(row["base_url"]))
            await self._record(row, why)

        await asyncio.gather(*(check(row) for row in rows))

    async def _record(self, row: RowMapping, why: str | None) -> None:
        model_id, health = str(row["id"]), ModelHealth(row["health"])
        now = datetime.now(UTC)
        values: dict[str, Any]
        if why is None:
            if health == ModelHealth.ok and row["health_failures"] == 0:
                return
            values = {"health": ModelHealth.ok.value, "health_failures": 0, "unreachable_since": None,
                      "health_reason": None}  # fmt: skip
            flipped = health == ModelHealth.unreachable
            since = row["unreachable_since"]
            message = "answering again" + (
                f" (unreachable since {_at(since)}, {int((now - since).total_seconds())} s)" if since else ""
            )
        else:
            failures = int(row["health_failures"]) + 1
            since = row["unreachable_since"] or now
            marked = failures >= self.failures
            values = {"health_failures": failures, "unreachable_since": since, "health_reason": store.clip(why)}
            if marked:
                values["health"] = ModelHealth.unreachable.value
            flipped = marked and health != ModelHealth.unreachable
            message = f"unreachable since {_at(since)}: {why}"
        async with self.engine.begin() as conn:
            changed = (
                await conn.execute(
                    T.update()
                    .where(
                        T.c.id == model_id, T.c.status == ModelStatus.in_service.value, T.c.base_url == row["base_url"]
                    )
                    .values(**values)
                    .returning(T.c.id)
                )
            ).first()
            if changed is None or not (flipped or (why is None and health == ModelHealth.unknown)):
                return
            if flipped:
                log.warning("model %s: %s", model_id, message)
                await store.add_event(conn, model_id, EventKind.health, message, status=ModelStatus.in_service)
                before = {"health": health.value}
                after = {"health": values.get("health", health.value), "reason": values["health_reason"]}
                await audit.record(conn, None, "model.health", "model", model_id, before=before, after=after)
            await publish(conn, TOPIC)
        self.registry.committed()
