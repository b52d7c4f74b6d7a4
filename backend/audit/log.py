"""Audit log: every admin write, recorded in the same transaction as the write itself (who, what, when, before
and after, with secrets masked), and read back by admins with filters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.auth.principal import Principal
from backend.db import tables
from backend.paging import Page, PageParams, read_page

MASK = "***"
SECRET_KEYS = {"api_key", "api_key_encrypted", "token", "token_hash", "secret", "password", "client_secret"}


def masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (MASK if k in SECRET_KEYS and v is not None else masked(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def record(
    conn: AsyncConnection,
    actor: Principal | None,
    action: str,
    resource_type: str,
    resource_id: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        tables.audit_events.insert().values(
            actor=actor.username if actor else "system",
            actor_token_id=actor.token_id if actor else None,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            before=masked(before) if before is not None else None,
            after=masked(after) if after is not None else None,
        )
    )


class AuditEvent(BaseModel):
    id: str
    at: datetime
    actor: str
    actor_token_id: str | None
    action: str
    resource_type: str
    resource_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(Page[AuditEvent]):
    pass


async def query(
    engine: AsyncEngine,
    params: PageParams,
    *,
    actor: str | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> AuditPage:
    """Newest first."""
    a = tables.audit_events
    q = sa.select(a)
    for column, value in ((a.c.actor, actor), (a.c.action, action), (a.c.resource_type, resource_type),
                          (a.c.resource_id, resource_id)):  # fmt: skip
        if value is not None:
            q = q.where(column == value)
    if start is not None:
        q = q.where(a.c.at >= start)
    if end is not None:
        q = q.where(a.c.at < end)
    rows, next_cursor = await read_page(engine, q, a.c.id, params, descending=True)
    return AuditPage(data=[AuditEvent.model_validate({**m, "id": str(m["id"])}) for m in rows], next_cursor=next_cursor)
