"""Model schedules: the stored windows (:class:`ScheduleStore`, behind /api/models/{id}/schedule) and the
:class:`Scheduler`, which evaluates them and asks the lifecycle (:class:`LifecycleActions`) to enable or disable.

The scheduler runs on the background worker's once-a-minute tick (procrastinate's periodic task: one backend
process runs each tick), under a PostgreSQL advisory lock as well, so two ticks never overlap. Each schedule's
decision is :func:`decide`'s, on the model's status as the database has it. It acts, then stores the change it acted
on: a process that dies in between acts again at the next tick, and finds the model Starting or InService (the
first enable took), which settles it with nothing done twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit import log as audit
from backend.auth.principal import Principal
from backend.db import tables
from backend.errors import NotFound
from backend.lifecycle.actions import LifecycleActions
from backend.lifecycle.schedule_windows import (
    Action,
    Decision,
    ScheduleWindow,
    Weekday,
    decide,
    is_open,
    next_change,
)
from backend.registry.schemas import ModelStatus

log = logging.getLogger("lisa.lifecycle")
S = tables.model_schedules
M = tables.models
TICK_LOCK = 0x4C15A5C4  # the advisory lock key of the scheduler's tick (one tick at a time, across processes)


class NextChange(BaseModel):
    action: Action
    at: datetime


class SchedulePublic(BaseModel):
    model_id: str
    timezone: str
    days: list[Weekday]
    start: str
    end: str
    is_open: bool = Field(description="Whether a window is open now (the model should be running).")
    next_change: NextChange | None = Field(description="The next opening (enable) or closing (disable).")
    last_action: Action | None = Field(description="What the scheduler last did: enable or disable.")
    last_action_at: datetime | None
    last_reason: str | None = Field(description="Why it last decided as it did (or did nothing).")
    last_error: str | None = Field(description="Why its last action failed; retried at the next tick.")
    created_at: datetime
    updated_at: datetime


def to_public(row: Any, now: datetime | None = None) -> SchedulePublic:
    window = ScheduleWindow.model_validate({k: row[k] for k in ("timezone", "days", "start", "end")})
    now = now or datetime.now(UTC)
    upcoming = next_change(window, now)
    coming = NextChange(action=upcoming[0], at=upcoming[1]) if upcoming else None
    return SchedulePublic.model_validate({**row, "is_open": is_open(window, now), "next_change": coming})


class ScheduleStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, model_id: str) -> SchedulePublic:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(S).where(S.c.model_id == model_id))).first()
        if row is None:
            raise NotFound(f"model '{model_id}' has no schedule")
        return to_public(row._mapping)

    async def put(self, model_id: str, window: ScheduleWindow, *, actor: Principal | None = None) -> SchedulePublic:
        """Set the model's schedule (replacing one it had); it is acted on from the next tick, as a new one."""
        values = window.model_dump() | {"acted_through": None, "last_error": None, "updated_at": datetime.now(UTC)}
        async with self.engine.begin() as conn:
            model = (await conn.execute(sa.select(M.c.id).where(M.c.id == model_id).with_for_update())).first()
            if model is None:
                raise NotFound(f"model '{model_id}' not found")
            before = (await conn.execute(sa.select(S).where(S.c.model_id == model_id))).first()
            upsert = (
                pg_insert(S)
                .values(model_id=model_id, **values)
                .on_conflict_do_update(index_elements=[S.c.model_id], set_=values)
                .returning(S)
            )
            row = (await conn.execute(upsert)).one()
            await audit.record(
                conn, actor, "model.schedule.set", "model", model_id,
                before=dict(before._mapping) if before else None, after=dict(row._mapping),
            )  # fmt: skip
        return to_public(row._mapping)

    async def delete(self, model_id: str, *, actor: Principal | None = None) -> None:
        async with self.engine.begin() as conn:
            gone = (await conn.execute(S.delete().where(S.c.model_id == model_id).returning(S))).first()
            if gone is None:
                raise NotFound(f"model '{model_id}' has no schedule")
            await audit.record(conn, actor, "model.schedule.delete", "model", model_id, before=dict(gone._mapping))


class Scheduler:
    """Evaluates every schedule (``tick``) and enables or disables models through ``actions``; without actions (no
    lifecycle wired in this process) a tick does nothing."""

    def __init__(self, engine: AsyncEngine, actions: LifecycleActions | None = None) -> None:
        self.engine = engine
        self.actions = actions

    async def run_tick(self) -> None:
        """The background worker's hook (``RagWorker.on_tick``)."""
        await self.tick()

    async def tick(self, now: datetime | None = None) -> list[tuple[str, Action]]:
        """One evaluation of every schedule; what it asked of the lifecycle (model id, action)."""
        if self.actions is None:
            return []
        now = now or datetime.now(UTC)
        done: list[tuple[str, Action]] = []
        async with self.engine.connect() as lock:
            if not await lock.scalar(sa.select(sa.func.pg_try_advisory_lock(TICK_LOCK))):
                return done  # another process is in the middle of a tick
            try:
                async with self.engine.connect() as conn:
                    query = sa.select(S, M.c.status).join(M, M.c.id == S.c.model_id).order_by(S.c.model_id)
                    rows = (await conn.execute(query)).all()
                for row in rows:
                    action = await self._evaluate(row._mapping, now)
                    if action is not None:
                        done.append((row.model_id, action))
            finally:
                await lock.execute(sa.select(sa.func.pg_advisory_unlock(TICK_LOCK)))
        return done

    async def _evaluate(self, row: Any, now: datetime) -> Action | None:
        assert self.actions is not None
        window = ScheduleWindow.model_validate({k: row[k] for k in ("timezone", "days", "start", "end")})
        decision = decide(window, now, ModelStatus(row["status"]), row["acted_through"])
        if decision.settles is None:
            return None
        try:
            if decision.action == Action.enable:
                await self.actions.enable(row["model_id"], decision.reason)
            elif decision.action == Action.disable:
                await self.actions.disable(row["model_id"], decision.reason)
        except Exception as exc:  # recorded on the schedule; the next tick tries again
            log.warning("schedule of %s: %s failed: %s", row["model_id"], decision.action, exc)
            await self._record(row, now, decision, error=f"{decision.action} failed: {exc}")
            return None
        await self._record(row, now, decision)
        return decision.action

    async def _record(self, row: Any, now: datetime, decision: Decision, error: str | None = None) -> None:
        """Store the change as acted on, unless the schedule was replaced or deleted meanwhile (its updated_at)."""
        values: dict[str, Any] = {"last_reason": decision.reason, "last_error": error}
        if error is None:
            values["acted_through"] = decision.settles
            if decision.action is not None:
                values |= {"last_action": decision.action.value, "last_action_at": now}
        async with self.engine.begin() as conn:
            await conn.execute(
                S.update().where(S.c.model_id == row["model_id"], S.c.updated_at == row["updated_at"]).values(**values)
            )
