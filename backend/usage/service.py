"""Aggregated usage over a time range, per model and/or per user."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db import tables


class GroupBy(StrEnum):
    model = "model"
    user = "user"
    model_user = "model,user"


class UsageRow(BaseModel):
    model: str | None = None
    username: str | None = None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    avg_latency_ms: float
    p95_latency_ms: float


class UsageReport(BaseModel):
    start: datetime
    end: datetime
    group_by: GroupBy
    rows: list[UsageRow]


async def aggregate(
    engine: AsyncEngine, start: datetime, end: datetime, group_by: GroupBy, username: str | None = None
) -> UsageReport:
    u = tables.usage_records
    keys = {
        GroupBy.model: [u.c.model],
        GroupBy.user: [u.c.username],
        GroupBy.model_user: [u.c.model, u.c.username],
    }[group_by]
    query = (
        sa.select(
            *keys,
            sa.func.count().label("requests"),
            sa.func.count().filter(u.c.status >= 400).label("errors"),
            sa.func.coalesce(sa.func.sum(u.c.prompt_tokens), 0).label("prompt_tokens"),
            sa.func.coalesce(sa.func.sum(u.c.completion_tokens), 0).label("completion_tokens"),
            sa.func.avg(u.c.latency_ms).label("avg_latency_ms"),
            sa.func.percentile_cont(0.95).within_group(u.c.latency_ms).label("p95_latency_ms"),
        )
        .where(u.c.created_at >= start, u.c.created_at < end)
        .where(u.c.username == username if username is not None else sa.true())
        .group_by(*keys)
        .order_by(*keys)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    out = []
    for r in rows:
        m = r._mapping
        out.append(
            UsageRow(
                model=m.get("model"),
                username=m.get("username"),
                requests=m["requests"],
                errors=m["errors"],
                prompt_tokens=int(m["prompt_tokens"]),
                completion_tokens=int(m["completion_tokens"]),
                total_tokens=int(m["prompt_tokens"]) + int(m["completion_tokens"]),
                avg_latency_ms=round(float(m["avg_latency_ms"] or 0), 3),
                p95_latency_ms=round(float(m["p95_latency_ms"] or 0), 3),
            )
        )
    return UsageReport(start=start, end=end, group_by=group_by, rows=out)
