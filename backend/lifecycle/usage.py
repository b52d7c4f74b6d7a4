"""Who uses a model: a model still used cannot be deleted (409 naming its users)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db import tables
from backend.errors import Conflict

R, C, P, A = tables.rag_repositories, tables.rag_collections, tables.rag_pipelines, tables.assistants
SHOWN = 5  # users named per kind in the refusal


async def users_of(conn: AsyncConnection, model_id: str) -> list[str]:
    """Repositories and collections embedding with the model, pipelines feeding such a collection, and assistants
    answering with it; each as "kind 'id'"."""
    found: list[str] = []
    repositories = await conn.execute(sa.select(R.c.id).where(R.c.embedding_model == model_id).order_by(R.c.id))
    found += [f"repository '{r}'" for r in repositories.scalars().all()]
    in_collections = sa.and_(C.c.embedding_model == model_id)
    collections = await conn.execute(
        sa.select(C.c.repository_id, C.c.id).where(in_collections).order_by(C.c.repository_id, C.c.id)
    )
    found += [f"collection '{repo}/{coll}'" for repo, coll in collections.all()]
    pipelines = await conn.execute(
        sa.select(P.c.id, P.c.repository_id, P.c.collection_id)
        .join(C, sa.and_(C.c.repository_id == P.c.repository_id, C.c.id == P.c.collection_id))
        .where(in_collections)
        .order_by(P.c.id)
    )
    found += [f"pipeline '{pid}' (into {repo}/{coll})" for pid, repo, coll in pipelines.all()]
    assistants = await conn.execute(sa.select(A.c.id, A.c.name).where(A.c.model_id == model_id).order_by(A.c.name))
    found += [f"assistant '{name}' ({aid})" for aid, name in assistants.all()]
    return found


async def refuse_if_used(conn: AsyncConnection, model_id: str) -> None:
    users = await users_of(conn, model_id)
    if users:
        kinds: dict[str, list[str]] = {}
        for user in users:
            kinds.setdefault(user.split(" ", 1)[0], []).append(user)
        shown = [u for group in kinds.values() for u in group[:SHOWN]]
        more = len(users) - len(shown)
        raise Conflict(
            f"model '{model_id}' is in use by {', '.join(shown)}{f' and {more} more' if more else ''}: "
            "change or delete them first"
        )
