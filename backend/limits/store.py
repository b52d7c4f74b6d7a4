"""Limit configuration: stored per (scope, subject), cached per process, resolved into buckets per principal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit import log as audit
from backend.auth.principal import Principal
from backend.db import tables
from backend.db.changes import publish
from backend.db.outage import OutageGate
from backend.errors import DatabaseUnavailable, NotFound
from backend.limits.schemas import Bucket, LimitPublic, LimitSet, Period, Scope

TOPIC = "limits"
L = tables.rate_limits
FIELDS = ("rpm", "tpm", "parallel", "budget_tokens", "budget_period")


def _tightest(sets: list[LimitSet]) -> LimitSet | None:
    """Several groups' limits for one user: the smallest value of each kind."""
    if not sets:
        return None

    def smallest(name: str) -> int | None:
        values = [getattr(s, name) for s in sets if getattr(s, name) is not None]
        return min(values) if values else None

    budgets = [s for s in sets if s.budget_tokens is not None]
    budget = min(budgets, key=lambda s: s.budget_tokens or 0) if budgets else None
    return LimitSet.model_construct(
        rpm=smallest("rpm"),
        tpm=smallest("tpm"),
        parallel=smallest("parallel"),
        budget_tokens=budget.budget_tokens if budget else None,
        budget_period=budget.budget_period if budget else None,
    )


class LimitStore:
    def __init__(self, engine: AsyncEngine, on_commit: Callable[[str], None] = lambda _t: None) -> None:
        self.engine = engine
        self._on_commit = on_commit
        self._cache: dict[tuple[str, str], LimitSet] | None = None
        self._version = 0  # bumped by every change notice (and when the feed was interrupted)
        self._loaded_version = -1
        self._lock = asyncio.Lock()
        self._gate = OutageGate("limit configuration")

    def on_change(self, topic: str) -> None:
        if topic in (TOPIC, "*"):
            self._version += 1

    async def set(self, scope: Scope, subject: str, limits: LimitSet, actor: Principal) -> LimitPublic:
        values = limits.model_dump()
        values["budget_period"] = limits.budget_period.value if limits.budget_period else None
        async with self.engine.begin() as conn:
            before = (await conn.execute(sa.select(L).where(L.c.scope == scope, L.c.subject == subject))).first()
            stmt = insert(L).values(scope=scope.value, subject=subject, **values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[L.c.scope, L.c.subject], set_={**values, "updated_at": datetime.now(UTC)}
            )
            row = (await conn.execute(stmt.returning(L))).one()
            await audit.record(
                conn, actor, "limit.set", "limit", f"{scope.value}:{subject}",
                before=dict(before._mapping) if before else None, after=dict(row._mapping),
            )  # fmt: skip
            await publish(conn, TOPIC)
        self._on_commit(TOPIC)
        return LimitPublic.model_validate(row._mapping)

    async def delete(self, scope: Scope, subject: str, actor: Principal) -> None:
        async with self.engine.begin() as conn:
            gone = (
                await conn.execute(L.delete().where(L.c.scope == scope, L.c.subject == subject).returning(L))
            ).first()
            if gone is None:
                raise NotFound(f"no {scope.value} limit for '{subject}'")
            await audit.record(
                conn, actor, "limit.delete", "limit", f"{scope.value}:{subject}", before=dict(gone._mapping)
            )
            await publish(conn, TOPIC)
        self._on_commit(TOPIC)

    async def all(self) -> list[LimitPublic]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(L).order_by(L.c.scope, L.c.subject))).all()
        return [LimitPublic.model_validate(r._mapping) for r in rows]

    async def _config(self) -> dict[tuple[str, str], LimitSet]:
        """Every configured limit, cached per process. While the database is unreachable the last configuration
        serves (it cannot change meanwhile): callers without limits go on needing no database at all, callers with
        limits are refused with 503 by the limiter, which needs it (fail closed)."""
        if self._loaded_version == self._version and self._cache is not None:
            return self._cache
        if self._gate.closed():
            return self._stale()
        async with self._lock:
            while self._loaded_version != self._version or self._cache is None:
                if self._gate.closed():
                    return self._stale()
                target = self._version
                try:
                    rows = await self._gate.load(self.all)
                except DatabaseUnavailable:
                    return self._stale()
                self._cache = {
                    (p.scope.value, p.subject): LimitSet.model_construct(**{f: getattr(p, f) for f in FIELDS})
                    for p in rows
                }
                self._loaded_version = target
            return self._cache

    def _stale(self) -> dict[tuple[str, str], LimitSet]:
        if self._cache is None:
            raise self._gate.unavailable()
        return self._cache

    async def buckets_for(self, principal: Principal) -> list[Bucket]:
        config = await self._config()
        if not config:
            return []
        found: list[tuple[str, LimitSet]] = []
        if principal.token_id and (limits := config.get((Scope.token.value, principal.token_id))):
            found.append(("token:" + principal.token_id, limits))
        own = config.get((Scope.user.value, principal.username))
        if own is None:
            # The owner's groups, however far a token narrows them for access.
            own = _tightest([s for g in principal.limit_groups if (s := config.get((Scope.group.value, g)))])
        if own is not None:
            found.append(("user:" + principal.username, own))
        return [
            Bucket(key, s.rpm, s.tpm, s.parallel, s.budget_tokens, Period(s.budget_period) if s.budget_period else None)
            for key, s in found
        ]
