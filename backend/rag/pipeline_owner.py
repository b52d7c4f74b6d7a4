"""Whose rights a pipeline's runs use: its owner's (``created_by``), as they are at each sync.

A pipeline reads server folders and S3 buckets with the platform's credentials and writes into a collection, in
the background, long after its owner last called. So each sync builds the owner's principal afresh
(``Authenticator.principal_for_user``: the user's current groups, not those of the token that created the
pipeline) and makes the checks the owner would face calling now: the RAG-admin right, the repository's and the
collection's ``allowed_groups``, the collection's permission to override its chunking. Where one fails, the
pipeline stops: it is disabled, ``last_error`` says why, an audit event records it, and nothing is ingested.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.audit import log as audit
from backend.auth.principal import Principal, can_access
from backend.db import tables
from backend.errors import Conflict, Forbidden, NotFound

OwnerLookup = Callable[[str], Awaitable[Principal]]  # user id -> their principal now (NotFound, Forbidden)
P, R, C = tables.rag_pipelines, tables.rag_repositories, tables.rag_collections


class PipelineStopped(Conflict):
    """A sync found that the pipeline's owner may no longer run it: it was disabled, saying why."""


@dataclass(frozen=True, slots=True)
class Target:
    """What the owner's rights are checked against: the pipeline's repository and collection as they are now."""

    repository_groups: list[str]
    collection_groups: list[str]
    allow_chunking_override: bool


async def target_of(conn: AsyncConnection, pipeline: Any) -> Target | None:
    """None when the collection (or its repository) is gone."""
    row = (
        await conn.execute(
            sa.select(R.c.allowed_groups, C.c.allowed_groups, C.c.allow_chunking_override)
            .select_from(C.join(R, R.c.id == C.c.repository_id))
            .where(C.c.repository_id == pipeline["repository_id"], C.c.id == pipeline["collection_id"])
        )
    ).first()
    return None if row is None else Target(list(row[0]), list(row[1]), bool(row[2]))


async def owner_principal(owners: OwnerLookup, owner: str) -> Principal | str:
    """The owner's principal now, or why the pipeline stops when there is none."""
    try:
        return await owners(owner)
    except NotFound:
        return f"stopped: its owner '{owner}' no longer exists"
    except Forbidden as exc:
        return f"stopped: its owner '{owner}' may no longer use LISA ({exc.message})"


def stop_reason(owner: Principal, pipeline: Any, target: Target) -> str | None:
    """Why the owner may no longer run the pipeline; None while they may."""
    name = owner.display_name
    who = f"its owner '{owner.username}'"
    if name not in (None, owner.username):
        who = f"its owner '{name}' ({owner.username})"
    if not owner.is_rag_admin:
        return f"stopped: {who} no longer has the RAG admin right"
    repository, collection = pipeline["repository_id"], pipeline["collection_id"]
    if not can_access(owner, target.repository_groups):
        return f"stopped: {who} is no longer in the allowed_groups of repository '{repository}'"
    if not can_access(owner, target.collection_groups):
        return f"stopped: {who} is no longer in the allowed_groups of collection '{collection}'"
    if pipeline["chunking"] and not target.allow_chunking_override:
        return f"stopped: collection '{collection}' no longer allows overriding its chunking"
    return None


async def record_stop(conn: AsyncConnection, pipeline: Any, reason: str) -> None:
    """Disables the pipeline with the reason (inside the sync's transaction); audited when it was enabled."""
    row = (
        await conn.execute(
            P.update()
            .where(P.c.id == pipeline["id"])
            .values(enabled=False, last_error=reason, last_run_at=sa.func.now(), updated_at=sa.func.now())
            .returning(P)
        )
    ).one()
    if pipeline["enabled"]:
        await audit.record(conn, None, "pipeline.stop", "pipeline", pipeline["id"], dict(pipeline), dict(row._mapping))
