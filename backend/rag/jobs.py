"""Ingestion jobs: created from uploads, server paths, S3 URIs or pipelines; listed, inspected and cancelled.

A job and its items are written in one transaction (uploads with their originals), then handed to the worker
queue. Everything a request can check is checked before anything is written: a refused request leaves nothing.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.auth.principal import Principal
from backend.db import tables
from backend.errors import BadRequest, Conflict, NotFound
from backend.paging import PageParams, read_page
from backend.rag import blobs
from backend.rag.blobs import StagedFile
from backend.rag.repositories import RepositoryService, require_rag_admin
from backend.rag.schemas import (
    FINAL_STATUSES,
    Chunking,
    CollectionPublic,
    IngestRequest,
    JobPage,
    JobPublic,
    JobStatus,
)
from backend.rag.sources import Sources, check_name, check_supported, name_of
from backend.rag.uploads import Allowance

J, I, B, D = tables.rag_jobs, tables.rag_job_items, tables.rag_blobs, tables.rag_documents  # noqa: E741
QUOTA_LOCK = 0x4C495351  # advisory lock namespace: one user's uploads check their quota one at a time


def upload_source(username: str, name: str) -> str:
    """An upload's source names its uploader, so two people's files of one name are two documents."""
    return f"upload://{quote(username, safe='@+')}/{name}"


@dataclass(frozen=True)
class PlannedItem:
    source: str
    name: str
    blob_sha256: str | None = None
    action: str = "ingest"


def job_public(m: Any, items: Sequence[Any] | None = None) -> JobPublic:
    return JobPublic.model_validate({**m, "items": None if items is None else [i._mapping for i in items]})


class JobService:
    def __init__(
        self, engine: AsyncEngine, repositories: RepositoryService, sources: Sources, quota_bytes: int = 0
    ) -> None:
        self.engine = engine
        self.repositories = repositories
        self.sources = sources
        self.quota_bytes = quota_bytes  # originals each user may own, in bytes; 0: no quota
        self.dispatch: Callable[[str], Awaitable[None]] | None = None  # set by the worker: queue a job

    async def _collection_for_write(
        self, principal: Principal, repository_id: str, collection_id: str, chunking: Chunking | None
    ) -> CollectionPublic:
        collection = await self.repositories.collection(repository_id, collection_id, principal)
        if chunking is not None and not collection.allow_chunking_override:
            raise BadRequest(f"collection '{collection_id}' does not allow overriding its chunking")
        return collection

    async def check_upload_target(self, principal: Principal, repository_id: str, collection_id: str) -> None:
        """404 for a repository or collection the uploader cannot see: checked before the body is read."""
        await self.repositories.collection(repository_id, collection_id, principal)

    async def allowance(self, principal: Principal, repository_id: str, collection_id: str) -> Allowance | None:
        """What the uploader's storage quota leaves room for (None: no quota)."""
        if not self.quota_bytes:
            return None
        async with self.engine.connect() as conn:
            return await self._allowance(conn, principal.username, repository_id, collection_id)

    async def _allowance(
        self, conn: AsyncConnection, username: str, repository_id: str, collection_id: str
    ) -> Allowance:
        """Bytes of the originals the user owns (their documents, and their uploads not yet ingested); a file
        they upload again replaces their own copy, whose size is credited back."""
        owned = sa.select(sa.func.coalesce(sa.func.sum(D.c.size), 0)).where(D.c.ingested_by == username)
        pending = (
            sa.select(sa.func.coalesce(sa.func.sum(B.c.size), 0))
            .select_from(I.join(J, J.c.id == I.c.job_id).join(B, B.c.sha256 == I.c.blob_sha256))
            .where(J.c.created_by == username, I.c.status == "pending")
        )
        used = int(await conn.scalar(owned) or 0) + int(await conn.scalar(pending) or 0)
        mine = await conn.execute(
            sa.select(D.c.name, D.c.size).where(
                D.c.repository_id == repository_id,
                D.c.collection_id == collection_id,
                D.c.ingested_by == username,
                D.c.source.startswith(upload_source(username, ""), autoescape=True),
            )
        )
        return Allowance(self.quota_bytes, used, {row.name: int(row.size) for row in mine})

    async def upload(
        self,
        principal: Principal,
        repository_id: str,
        collection_id: str,
        files: Sequence[StagedFile],
        tags: list[str],
        chunking: Chunking | None,
    ) -> JobPublic:
        """A job for files received to local disk; their originals are stored with the job, in one transaction."""
        await self._collection_for_write(principal, repository_id, collection_id, chunking)
        if not files:
            raise BadRequest("no files: send one or more 'files' parts")
        seen: set[str] = set()
        for f in files:
            check_name(f.name)
            check_supported(f.name)
            if f.name in seen:
                raise BadRequest(f"{f.name}: the same file name appears twice in one upload")
            seen.add(f.name)
        items = [PlannedItem(upload_source(principal.username, f.name), f.name, f.sha256) for f in files]

        async def within_quota(conn: AsyncConnection) -> None:
            if not self.quota_bytes:
                return
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(:user))"),
                {"ns": QUOTA_LOCK, "user": principal.username},
            )
            allowance = await self._allowance(conn, principal.username, repository_id, collection_id)
            allowance.check({f.name: f.size for f in files})

        return await self._create(
            principal, repository_id, collection_id, "upload", items, tags, chunking, files, check=within_quota
        )

    async def bulk(
        self, principal: Principal, repository_id: str, collection_id: str, request: IngestRequest
    ) -> JobPublic:
        require_rag_admin(principal)  # reads the server's disks and buckets with the platform's credentials
        await self._collection_for_write(principal, repository_id, collection_id, request.chunking)
        items: list[PlannedItem] = []
        for source in request.sources:
            if source.startswith("s3://"):
                items += [PlannedItem(uri, name_of(uri)) for uri in await self.sources.expand_s3(source)]
            elif "://" in source:
                raise BadRequest(f"{source}: only server paths and s3:// URIs can be ingested by reference")
            else:
                items += [PlannedItem(str(p), p.name) for p in self.sources.expand_local(source)]
        unique = list({i.source: i for i in items}.values())
        if not unique:
            raise BadRequest("the sources hold no supported files")
        return await self._create(
            principal, repository_id, collection_id, "bulk", unique, request.tags, request.chunking
        )

    async def for_pipeline(
        self,
        pipeline_id: str,
        created_by: str,
        repository_id: str,
        collection_id: str,
        items: list[PlannedItem],
        tags: list[str],
        chunking: dict[str, Any] | None,
        conn: AsyncConnection | None = None,
    ) -> str:
        """With ``conn``, the job is written in the caller's transaction and the caller dispatches it after commit."""
        actor = Principal(created_by, frozenset(), is_admin=True)
        spec = Chunking.model_validate(chunking) if chunking else None
        job = await self._create(
            actor, repository_id, collection_id, "pipeline", items, tags, spec, pipeline_id=pipeline_id, conn=conn
        )
        return job.id

    async def _create(
        self,
        principal: Principal,
        repository_id: str,
        collection_id: str,
        kind: str,
        items: Sequence[PlannedItem],
        tags: list[str],
        chunking: Chunking | None,
        staged: Sequence[StagedFile] = (),
        pipeline_id: str | None = None,
        conn: AsyncConnection | None = None,
        check: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> JobPublic:
        job_id = "job-" + secrets.token_hex(8)
        outer = conn
        async with _transaction(self.engine, outer) as conn:
            if check is not None:
                await check(conn)
            for file in staged:
                await blobs.store(conn, file)
            row = (
                await conn.execute(
                    J.insert()
                    .values(
                        id=job_id,
                        repository_id=repository_id,
                        collection_id=collection_id,
                        kind=kind,
                        status=JobStatus.pending.value,
                        chunking=chunking.model_dump(mode="json") if chunking else None,
                        tags=list(tags),
                        documents_total=len(items),
                        pipeline_id=pipeline_id,
                        created_by=principal.username,
                    )
                    .returning(J)
                )
            ).one()
            await conn.execute(
                I.insert(),
                [
                    {
                        "job_id": job_id,
                        "seq": n,
                        "action": item.action,
                        "source": item.source,
                        "name": item.name,
                        "blob_sha256": item.blob_sha256,
                        "status": "pending",
                    }
                    for n, item in enumerate(items, start=1)
                ],
            )
        if self.dispatch is not None and outer is None:  # in a caller's transaction, the caller queues it
            await self.dispatch(job_id)
        return job_public(row._mapping)

    async def get(self, principal: Principal, repository_id: str, job_id: str, with_items: bool = True) -> JobPublic:
        await self.repositories.get(repository_id, principal)
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(J).where(J.c.id == job_id, J.c.repository_id == repository_id))).first()
            if row is None:
                raise NotFound(f"job '{job_id}' not found")
            await self.repositories.collection(repository_id, row.collection_id, principal)
            items = None
            if with_items:
                items = (
                    await conn.execute(sa.select(I).where(I.c.job_id == job_id).order_by(I.c.seq).limit(1000))
                ).all()
        return job_public(row._mapping, items)

    async def repository_of(self, job_id: str) -> str | None:
        """The repository a job belongs to (None: no such job), for callers that know the job only by its id."""
        async with self.engine.connect() as conn:
            repository: str | None = await conn.scalar(sa.select(J.c.repository_id).where(J.c.id == job_id))
        return repository

    async def page(
        self, principal: Principal, repository_id: str, params: PageParams, *, collection_id: str | None = None
    ) -> JobPage:
        """Newest first."""
        visible = [c.id for c in await self.repositories.collections(repository_id, principal)]
        query = sa.select(J).where(J.c.repository_id == repository_id, J.c.collection_id.in_(visible))
        if collection_id is not None:
            query = query.where(J.c.collection_id == collection_id)
        rows, next_cursor = await read_page(self.engine, query, J.c.id, params, descending=True)
        return JobPage(data=[job_public(m) for m in rows], next_cursor=next_cursor)

    async def cancel(self, principal: Principal, repository_id: str, job_id: str) -> JobPublic:
        job = await self.get(principal, repository_id, job_id, with_items=False)
        if job.created_by != principal.username and not (principal.is_admin or principal.is_rag_admin):
            raise NotFound(f"job '{job_id}' not found")
        if job.status in FINAL_STATUSES:
            raise Conflict(f"job '{job_id}' has already ended ({job.status.value})")
        async with self.engine.begin() as conn:
            await conn.execute(J.update().where(J.c.id == job_id).values(cancel_requested=True))
            # A job no worker has started ends now; a running one stops at its next batch.
            await conn.execute(
                J.update()
                .where(J.c.id == job_id, J.c.status == JobStatus.pending.value)
                .values(status=JobStatus.cancelled.value, error="cancelled on request", finished_at=sa.func.now())
            )
            ended = sa.exists().where(J.c.id == job_id, J.c.status == JobStatus.cancelled.value)
            await conn.execute(
                I.update().where(I.c.job_id == job_id, I.c.status == "pending", ended).values(status="cancelled")
            )
        return await self.get(principal, repository_id, job_id)


@contextlib.asynccontextmanager
async def _transaction(engine: AsyncEngine, conn: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
    """The caller's transaction when given one, else a new one committed on exit."""
    if conn is not None:
        yield conn
        return
    async with engine.begin() as own:
        yield own
