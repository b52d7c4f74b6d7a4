"""Runs one ingestion job: every pending item parsed, chunked, embedded and written, several documents at once.

Safe to run again after a crash (a resumed job): finished items are not redone, a document's id and its chunks'
ids are derived from what they are, and a document's chunks are replaced as a whole, so nothing is duplicated.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.principal import Principal
from backend.db import tables
from backend.errors import LisaError
from backend.rag import blobs
from backend.rag.embedder import Embedder
from backend.rag.repositories import RepositoryService, collection_ref
from backend.rag.schemas import CollectionPublic, JobStatus
from backend.rag.sources import Sources
from backend.rag.vectorstores import ChunkRecord, VectorStore
from ingestion.document import IngestionError
from ingestion.parser_pool import ParserPool

log = logging.getLogger("lisa.rag")
SYSTEM = Principal("system", frozenset(), is_admin=True)
J, I, D = tables.rag_jobs, tables.rag_job_items, tables.rag_documents  # noqa: E741
EMBED_GROUP = 256  # texts embedded between two looks at the cancel flag


def document_id(repository_id: str, collection_id: str, source: str) -> str:
    return hashlib.sha256(f"{repository_id}\x00{collection_id}\x00{source}".encode()).hexdigest()[:32]


def content_type(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class Cancelled(Exception):
    pass


class IngestRunner:
    def __init__(
        self,
        engine: AsyncEngine,
        repositories: RepositoryService,
        embedder: Embedder,
        sources: Sources,
        documents_parallel: int,
        max_bytes: int,
        parser: ParserPool | None = None,
    ) -> None:
        self.engine = engine
        self.repositories = repositories
        self.embedder = embedder
        self.sources = sources
        self.documents_parallel = documents_parallel
        self.max_bytes = max_bytes
        self.parser = parser or ParserPool()  # untrusted files are parsed in other processes, under a time limit

    async def close(self) -> None:
        """Stops the parser processes (they start again on the next use)."""
        await asyncio.to_thread(self.parser.close)

    async def run(self, job_id: str) -> None:
        async with self.engine.connect() as conn:
            job = (await conn.execute(sa.select(J).where(J.c.id == job_id))).first()
        if job is None or job.status in (JobStatus.completed, JobStatus.failed, JobStatus.cancelled):
            return
        try:
            collection = await self.repositories.collection(job.repository_id, job.collection_id, SYSTEM)
            store = await self.repositories.store(job.repository_id)
        except LisaError as exc:
            await self._finish(job_id, JobStatus.failed, f"the collection is gone: {exc.message}")
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                J.update()
                .where(J.c.id == job_id)
                .values(status=JobStatus.in_progress.value, started_at=sa.func.coalesce(J.c.started_at, sa.func.now()))
            )
            items = (
                await conn.execute(sa.select(I).where(I.c.job_id == job_id, I.c.status == "pending").order_by(I.c.seq))
            ).all()
        chunking = job.chunking or collection.chunking.model_dump(mode="json")
        gate = asyncio.Semaphore(self.documents_parallel)
        stop = asyncio.Event()

        async def one(item: Any) -> None:
            async with gate:
                if stop.is_set() or await self._cancel_requested(job_id):
                    stop.set()
                    return
                try:
                    await self._item(job, collection, store, chunking, item, stop)
                except Cancelled:
                    stop.set()
                except (IngestionError, LisaError) as exc:
                    await self._item_done(job_id, item.seq, "failed", error=str(getattr(exc, "message", exc)))
                except Exception as exc:  # a bug or an outage: record it on the item and go on with the rest
                    log.exception("ingestion job %s item %s failed", job_id, item.seq)
                    await self._item_done(job_id, item.seq, "failed", error=f"{exc.__class__.__name__}: {exc}")

        await asyncio.gather(*(one(item) for item in items))
        if stop.is_set() or await self._cancel_requested(job_id):
            await self._finish(job_id, JobStatus.cancelled, "cancelled on request")
            return
        async with self.engine.connect() as conn:
            counts = (await conn.execute(sa.select(J).where(J.c.id == job_id))).one()
        total, failed = counts.documents_total, counts.documents_failed
        if total and failed == total:
            await self._finish(job_id, JobStatus.failed, "every document failed; see the items for the reasons")
        else:
            error = f"{failed} of {total} documents failed; see the items" if failed else None
            await self._finish(job_id, JobStatus.completed, error)

    async def _item(
        self,
        job: Any,
        collection: CollectionPublic,
        store: VectorStore,
        chunking: dict[str, Any],
        item: Any,
        stop: asyncio.Event,
    ) -> None:
        if item.action == "remove":
            doc_id = document_id(job.repository_id, job.collection_id, item.source)
            ref = collection_ref(collection)
            removed = await store.delete_document(ref, doc_id)
            async with self.engine.begin() as conn:
                await conn.execute(D.delete().where(D.c.id == doc_id))
                await self._item_done(job.id, item.seq, "completed", conn=conn, document_id=doc_id, chunks=removed)
            return
        fd, name = tempfile.mkstemp(prefix="lisa-ingest-", suffix=Path(item.name).suffix[:16])
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as file:
                await self._stage(item, file)
            size, sha = await asyncio.to_thread(blobs.hash_file, path)
            await self._ingest_staged(
                job, collection, store, chunking, item, stop, blobs.StagedFile(item.name, path, size, sha)
            )
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def _ingest_staged(
        self,
        job: Any,
        collection: CollectionPublic,
        store: VectorStore,
        chunking: dict[str, Any],
        item: Any,
        stop: asyncio.Event,
        staged: blobs.StagedFile,
    ) -> None:
        doc_id = document_id(job.repository_id, job.collection_id, item.source)
        ref = collection_ref(collection)
        async with self.engine.connect() as conn:
            owner = await conn.scalar(sa.select(D.c.ingested_by).where(D.c.id == doc_id))
            same = (
                await conn.execute(
                    sa.select(D.c.id, D.c.source, D.c.chunking, D.c.ingested_by).where(
                        D.c.repository_id == job.repository_id,
                        D.c.collection_id == job.collection_id,
                        D.c.sha256 == staged.sha256,
                    )
                )
            ).all()
        if owner is not None and owner != job.created_by and job.kind == "upload":
            # Upload sources name their uploader, so only a document from before that rule can get here.
            raise IngestionError(
                f"{item.name}: the document {item.source} belongs to {owner}; only they may replace it"
            )
        for other in same:
            if other.id == doc_id and other.chunking == chunking:
                await self._item_done(
                    job.id, item.seq, "skipped", error="unchanged since the last ingestion", document_id=doc_id
                )
                return
            if other.id != doc_id and other.ingested_by == job.created_by:  # never someone else's document
                note = f"identical content is already ingested as {other.source}"
                await self._item_done(job.id, item.seq, "skipped", error=note, document_id=other.id)
                return
        metadata = {
            "document_id": doc_id,
            "source": item.source,
            "name": item.name,
            "collection": job.collection_id,
            "tags": list(job.tags or []),
        }
        chunks = await self.parser.parse(str(staged.path), item.name, chunking, metadata, self.max_bytes)
        texts = [c.text for c in chunks]
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_GROUP):
            if stop.is_set() or await self._cancel_requested(job.id):
                raise Cancelled
            vectors += await self.embedder.embed(collection.embedding_model, texts[start : start + EMBED_GROUP])
        records = [ChunkRecord(c.text, v, c.metadata) for c, v in zip(chunks, vectors, strict=True)]
        await store.replace_document(ref, doc_id, records)
        now = datetime.now(UTC)
        row = {
            "id": doc_id,
            "repository_id": job.repository_id,
            "collection_id": job.collection_id,
            "name": item.name,
            "source": item.source,
            "sha256": staged.sha256,
            "size": staged.size,
            "content_type": content_type(item.name),
            "chunk_count": len(records),
            "chunking": chunking,
            "tags": list(job.tags or []),
            "ingested_by": job.created_by,
            "job_id": job.id,
            "updated_at": now,
        }
        async with self.engine.begin() as conn:
            if item.blob_sha256 is None:
                await blobs.store(conn, staged)
            upsert = insert(D).values(**row)
            await conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[D.c.id], set_={k: upsert.excluded[k] for k in row if k != "id"}
                )
            )
            await self._item_done(job.id, item.seq, "completed", conn=conn, document_id=doc_id, chunks=len(records))

    async def _stage(self, item: Any, file: BinaryIO) -> None:
        """The item's content into ``file``: an upload's stored original, or the file or object it names."""
        if item.blob_sha256 is None:
            await self.sources.copy(item.source, file)
            return
        expected = await blobs.size_of(self.engine, item.blob_sha256)
        if expected is None or await blobs.copy_to(self.engine, item.blob_sha256, file) != expected:
            raise IngestionError(f"{item.name}: the uploaded original is missing")

    async def _cancel_requested(self, job_id: str) -> bool:
        async with self.engine.connect() as conn:
            return bool(await conn.scalar(sa.select(J.c.cancel_requested).where(J.c.id == job_id)))

    async def _item_done(
        self,
        job_id: str,
        seq: int,
        status: str,
        *,
        conn: Any = None,
        error: str | None = None,
        document_id: str | None = None,
        chunks: int | None = None,
    ) -> None:
        if conn is None:
            async with self.engine.begin() as own:
                await self._item_done(
                    job_id, seq, status, conn=own, error=error, document_id=document_id, chunks=chunks
                )
            return
        changed = await conn.execute(
            I.update()
            .where(I.c.job_id == job_id, I.c.seq == seq, I.c.status == "pending")
            .values(status=status, error=error, document_id=document_id, chunks=chunks)
        )
        if not changed.rowcount:
            return  # already recorded (a resumed job)
        counter = {"completed": J.c.documents_done, "skipped": J.c.documents_skipped, "failed": J.c.documents_failed}[
            status
        ]
        values: dict[str, Any] = {counter.name: counter + 1}
        if status == "completed" and chunks:
            values["chunks_done"] = J.c.chunks_done + chunks
        await conn.execute(J.update().where(J.c.id == job_id).values(**values))

    async def _finish(self, job_id: str, status: JobStatus, error: str | None) -> None:
        async with self.engine.begin() as conn:
            if status == JobStatus.cancelled:
                await conn.execute(
                    I.update().where(I.c.job_id == job_id, I.c.status == "pending").values(status="cancelled")
                )
            await conn.execute(
                J.update().where(J.c.id == job_id).values(status=status.value, error=error, finished_at=sa.func.now())
            )
