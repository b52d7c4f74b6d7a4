"""The document library: list, inspect, download the original, delete (with every chunk)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit import log as audit
from backend.auth.principal import Principal
from backend.db import tables
from backend.errors import Forbidden, NotFound
from backend.paging import PageParams, read_page
from backend.rag import blobs
from backend.rag.repositories import RepositoryService, _delete_orphan_blobs, collection_ref
from backend.rag.schemas import DocumentPage, DocumentPublic

D = tables.rag_documents


class DocumentService:
    def __init__(self, engine: AsyncEngine, repositories: RepositoryService) -> None:
        self.engine = engine
        self.repositories = repositories

    async def page(
        self,
        principal: Principal,
        repository_id: str,
        params: PageParams,
        *,
        collection_id: str | None = None,
        source: str | None = None,
    ) -> DocumentPage:
        visible = [c.id for c in await self.repositories.collections(repository_id, principal)]
        if collection_id is not None:
            if collection_id not in visible:
                raise NotFound(f"collection '{collection_id}' not found in repository '{repository_id}'")
            visible = [collection_id]
        query = sa.select(D).where(D.c.repository_id == repository_id, D.c.collection_id.in_(visible))
        if source is not None:
            query = query.where(D.c.source == source)
        rows, next_cursor = await read_page(self.engine, query, D.c.id, params)
        return DocumentPage(data=[DocumentPublic.model_validate(m) for m in rows], next_cursor=next_cursor)

    async def _row(self, principal: Principal, repository_id: str, document_id: str) -> Any:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(D).where(D.c.id == document_id, D.c.repository_id == repository_id))
            ).first()
        if row is None:
            raise NotFound(f"document '{document_id}' not found")
        await self.repositories.collection(repository_id, row.collection_id, principal)  # 404 when not visible
        return row._mapping

    async def get(self, principal: Principal, repository_id: str, document_id: str) -> DocumentPublic:
        return DocumentPublic.model_validate(await self._row(principal, repository_id, document_id))

    async def original(
        self, principal: Principal, repository_id: str, document_id: str
    ) -> tuple[DocumentPublic, int, AsyncIterator[bytes]]:
        """The document, its original's size, and the original as a stream of parts."""
        m = await self._row(principal, repository_id, document_id)
        size = await blobs.size_of(self.engine, m["sha256"])
        if size is None:
            raise NotFound(f"the original of document '{document_id}' is no longer stored")
        return DocumentPublic.model_validate(m), size, blobs.parts(self.engine, m["sha256"])

    async def delete(self, principal: Principal, repository_id: str, document_id: str) -> None:
        m = await self._row(principal, repository_id, document_id)
        if m["ingested_by"] != principal.username and not (principal.is_admin or principal.is_rag_admin):
            raise Forbidden("only the person who ingested a document, or a RAG admin, may delete it")
        collection = await self.repositories.collection(repository_id, m["collection_id"], principal)
        store = await self.repositories.store(repository_id)
        await store.delete_document(collection_ref(collection), document_id)
        async with self.engine.begin() as conn:
            await conn.execute(D.delete().where(D.c.id == document_id))
            await _delete_orphan_blobs(conn)
            await audit.record(
                conn,
                principal,
                "document.delete",
                "document",
                f"{repository_id}/{document_id}",
                before={k: m[k] for k in ("name", "source", "collection_id", "sha256", "chunk_count")},
            )
