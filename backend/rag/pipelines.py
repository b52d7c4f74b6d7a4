"""Automatic ingestion pipelines: a folder or an S3 prefix kept in step with a collection, on events or a schedule.

A sync lists the source, compares it with what the pipeline saw last time (``rag_pipeline_objects``) and writes
the new state together with one ingestion job (new or changed files ingested, vanished ones removed) in a single
transaction, under a transaction advisory lock on the pipeline: however many syncs race (two replicas, an event
and the schedule), each new, modified and deleted file is acted on exactly once.

Triggers: ``schedule`` pipelines run from the worker's once-a-minute tick when their cron fired since their last
run. ``event`` pipelines are watched by the processes that run the worker (``LISA_RAG_WORKER``), one watcher per
pipeline across all replicas (a session advisory lock): local folders with ``watchfiles`` plus a slow poll, S3 by
long-polling an SQS queue of bucket notifications, or by listing every ``LISA_RAG_POLL_SECONDS`` without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.audit import log as audit
from backend.auth.principal import Principal, can_access
from backend.db import tables
from backend.errors import BadRequest, Conflict, LisaError, NotFound, Unavailable, UpstreamError
from backend.paging import PageParams, read_page
from backend.rag.jobs import JobService, PlannedItem
from backend.rag.pipeline_owner import (
    OwnerLookup,
    PipelineStopped,
    owner_principal,
    record_stop,
    stop_reason,
    target_of,
)
from backend.rag.pipeline_schemas import (
    FolderSource,
    PipelineCreate,
    PipelinePage,
    PipelinePublic,
    PipelineUpdate,
)
from backend.rag.pipeline_watchers import PipelineWatchers
from backend.rag.repositories import RepositoryService, require_rag_admin
from backend.rag.schemas import Chunking, JobPublic
from backend.rag.sources import Sources, name_of
from ingestion.loaders import LOADERS

log = logging.getLogger("lisa.rag")
P, O = tables.rag_pipelines, tables.rag_pipeline_objects  # noqa: E741
SYNC_LOCK = 0x4C50_5331  # advisory lock namespace ("LPS1") + hashtext(pipeline id)


# --- pure parts of a sync --------------------------------------------------------------------------------------
def is_due(cron: str, last: datetime, now: datetime) -> bool:
    """Whether the cron had a fire time after ``last`` and no later than ``now``."""
    fire: datetime = croniter(cron, last).get_next(datetime)
    return fire <= now


def content_of(fingerprint: str) -> str:
    """What identifies the content: the sha256 of "size:mtime_ns:sha256" (a folder), or the S3 ETag itself."""
    return fingerprint.rsplit(":", 1)[-1]


def plan_sync(
    known: dict[str, str], seen: dict[str, str], auto_remove: bool
) -> tuple[list[PlannedItem], dict[str, str], list[str]]:
    """(job items, object states to write, object states to drop). A touched but unchanged file updates its
    state without being ingested again; a vanished one is removed from the collection only with auto_remove."""
    items: list[PlannedItem] = []
    writes: dict[str, str] = {}
    for key in sorted(seen):
        old, new = known.get(key), seen[key]
        if old == new:
            continue
        writes[key] = new
        if old is None or content_of(old) != content_of(new):
            items.append(PlannedItem(key, name_of(key)))
    gone = sorted(known.keys() - seen.keys())
    if auto_remove:
        items += [PlannedItem(key, name_of(key), action="remove") for key in gone]
    return items, writes, gone


def list_folder(folder: Path, known: dict[str, str]) -> dict[str, str]:
    """Fingerprints of the supported files below a folder (hidden files and folders skipped). The sha256 is only
    computed for a file whose size or mtime differ from what was seen last time."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in LOADERS:
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
                if not os.path.isfile(path):
                    continue
                quick = f"{st.st_size}:{st.st_mtime_ns}"
                old = known.get(path)
                if old is not None and old.rsplit(":", 1)[0] == quick:
                    found[path] = old
                    continue
                with open(path, "rb") as fh:
                    found[path] = f"{quick}:{hashlib.file_digest(fh, 'sha256').hexdigest()}"
            except OSError:  # gone or unreadable between the walk and the read: the next sync sees it
                continue
    return found


# --- the service -----------------------------------------------------------------------------------------------
class PipelineService:
    def __init__(
        self,
        engine: AsyncEngine,
        dsn: str,
        repositories: RepositoryService,
        jobs: JobService,
        sources: Sources,
        *,
        run_watchers: bool,
        poll_seconds: float,
        owners: OwnerLookup | None = None,
    ) -> None:
        self.engine = engine
        self.repositories = repositories
        self.jobs = jobs
        self.sources = sources
        self.owners = owners  # None: this process cannot run pipelines (in-process ingestion from a notebook)
        self.watchers = None
        if run_watchers:
            self.watchers = PipelineWatchers(
                dsn, poll_seconds, event_pipelines=self.event_pipelines, sync=self.sync, sqs=sources.sqs
            )

    async def start(self) -> None:
        if self.watchers is not None:
            await self.watchers.start()

    async def stop(self) -> None:
        if self.watchers is not None:
            await self.watchers.stop()

    # --- management ------------------------------------------------------------------------------------------
    async def _checked(
        self, principal: Principal, repository_id: str, collection_id: str, source: Any, chunking: Chunking | None
    ) -> dict[str, Any] | None:
        """Raises for what the caller may not do; returns the source as stored (a folder's path resolved)."""
        collection = await self.repositories.collection(repository_id, collection_id, principal)
        if chunking is not None and not collection.allow_chunking_override:
            raise BadRequest(f"collection '{collection_id}' does not allow overriding its chunking")
        if source is None:
            return None
        stored: dict[str, Any] = source.model_dump(mode="json", exclude_none=True)
        if isinstance(source, FolderSource):
            folder = self.sources.local_path(source.path)
            if not folder.is_dir():
                raise BadRequest(f"{source.path}: not a folder")
            stored["path"] = str(folder)
        else:  # the bucket must be allowed (and is checked again on every sync); so must the queue's address
            self.sources.egress.check_bucket(source.bucket, f"pipeline source s3://{source.bucket}")
            if source.queue_url is not None:
                await self.sources.egress.check_url(str(source.queue_url), "pipeline source queue_url")
        return stored

    async def _hidden_collections(self, principal: Principal, repository_id: str) -> set[str]:
        """Collections of a visible repository this principal may not see. A pipeline whose collection was deleted
        stays visible, so that it can be deleted too (its syncs fail, saying why)."""
        await self.repositories.get(repository_id, principal)
        C = tables.rag_collections
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(C.c.id, C.c.allowed_groups).where(C.c.repository_id == repository_id))
            ).all()
        return {r.id for r in rows if not can_access(principal, r.allowed_groups)}

    async def _row(self, principal: Principal, repository_id: str, pipeline_id: str) -> Any:
        require_rag_admin(principal)
        hidden = await self._hidden_collections(principal, repository_id)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(P).where(P.c.id == pipeline_id, P.c.repository_id == repository_id))
            ).first()
        if row is None or row.collection_id in hidden:
            raise NotFound(f"pipeline '{pipeline_id}' not found")
        return row._mapping

    async def create(self, principal: Principal, repository_id: str, data: PipelineCreate) -> PipelinePublic:
        require_rag_admin(principal)
        source = await self._checked(principal, repository_id, data.collection_id, data.source, data.chunking)
        values = {
            "id": "pl-" + secrets.token_hex(8),
            "repository_id": repository_id,
            "collection_id": data.collection_id,
            "name": data.name,
            "source": source,
            "trigger": data.trigger.model_dump(mode="json"),
            "chunking": data.chunking.model_dump(mode="json") if data.chunking else None,
            "tags": list(data.tags),
            "auto_remove": data.auto_remove,
            "enabled": data.enabled,
            "created_by": principal.username,
        }
        async with self.engine.begin() as conn:
            row = (await conn.execute(P.insert().values(**values).returning(P))).one()._mapping
            await audit.record(conn, principal, "pipeline.create", "pipeline", row["id"], after=dict(row))
        self._refresh()
        return PipelinePublic.model_validate(row)

    async def page(self, principal: Principal, repository_id: str, params: PageParams) -> PipelinePage:
        require_rag_admin(principal)
        hidden = await self._hidden_collections(principal, repository_id)
        query = sa.select(P).where(P.c.repository_id == repository_id, P.c.collection_id.not_in(sorted(hidden)))
        rows, next_cursor = await read_page(self.engine, query, P.c.id, params)
        return PipelinePage(data=[PipelinePublic.model_validate(m) for m in rows], next_cursor=next_cursor)

    async def get(self, principal: Principal, repository_id: str, pipeline_id: str) -> PipelinePublic:
        return PipelinePublic.model_validate(await self._row(principal, repository_id, pipeline_id))

    async def update(
        self, principal: Principal, repository_id: str, pipeline_id: str, data: PipelineUpdate
    ) -> PipelinePublic:
        current = await self._row(principal, repository_id, pipeline_id)
        changes = data.model_dump(mode="json", exclude_unset=True)
        for key in ("name", "source", "trigger", "tags", "auto_remove", "enabled"):
            if key in changes and changes[key] is None:
                raise BadRequest(f"'{key}' cannot be null")
        chunking = data.chunking
        if changes.get("enabled") is True:
            # Enabling is running it as oneself: the caller becomes the owner, and its chunking must still be allowed.
            changes["created_by"] = principal.username
            if not current["enabled"]:
                changes["last_error"] = None  # why it stopped: history now (the audit log keeps it)
            if "chunking" not in changes and current["chunking"]:
                chunking = Chunking.model_validate(current["chunking"])
        source = await self._checked(principal, repository_id, current["collection_id"], data.source, chunking)
        if source is not None:
            changes["source"] = source
        changes["updated_at"] = datetime.now(UTC)
        async with self.engine.begin() as conn:
            # The sync lock: a running sync finishes against the pipeline as it was.
            await _sync_lock(conn, pipeline_id)
            before = (await conn.execute(sa.select(P).where(P.c.id == pipeline_id))).first()
            if before is None:
                raise NotFound(f"pipeline '{pipeline_id}' not found")
            row = (await conn.execute(P.update().where(P.c.id == pipeline_id).values(**changes).returning(P))).one()
            await audit.record(
                conn, principal, "pipeline.update", "pipeline", pipeline_id, dict(before._mapping), dict(row._mapping)
            )
        self._refresh()
        return PipelinePublic.model_validate(row._mapping)

    async def delete(self, principal: Principal, repository_id: str, pipeline_id: str) -> None:
        """The pipeline and what it saw go; the documents it ingested stay in their collection."""
        await self._row(principal, repository_id, pipeline_id)
        async with self.engine.begin() as conn:
            await _sync_lock(conn, pipeline_id)
            gone = (await conn.execute(P.delete().where(P.c.id == pipeline_id).returning(P))).first()
            if gone is None:
                raise NotFound(f"pipeline '{pipeline_id}' not found")
            await conn.execute(O.delete().where(O.c.pipeline_id == pipeline_id))
            await audit.record(conn, principal, "pipeline.delete", "pipeline", pipeline_id, before=dict(gone._mapping))
        self._refresh()

    async def run(self, principal: Principal, repository_id: str, pipeline_id: str) -> JobPublic | None:
        """Syncs now; the job it queued, or None when nothing changed."""
        await self._row(principal, repository_id, pipeline_id)
        job_id = await self.sync(pipeline_id, principal)
        return None if job_id is None else await self.jobs.get(principal, repository_id, job_id)

    async def event_pipelines(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """The enabled event pipelines (what the watchers watch): id -> (version, source)."""
        query = sa.select(P.c.id, P.c.source, P.c.updated_at).where(P.c.enabled, P.c.trigger["type"].astext == "event")
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r.id: (r.updated_at.isoformat(), dict(r.source)) for r in rows}

    def _refresh(self) -> None:
        if self.watchers is not None:
            self.watchers.refresh()

    # --- syncing ---------------------------------------------------------------------------------------------
    async def sync(self, pipeline_id: str, actor: Principal | None = None) -> str | None:
        """Acts on what changed at the source since the last sync; the id of the job it queued, if any.
        A failure is recorded on the pipeline (``last_error``) and raised."""
        try:
            job_id = await self._sync(pipeline_id, actor)
        except PipelineStopped as exc:  # recorded on the pipeline by the sync itself
            log.warning("pipeline %s: %s", pipeline_id, exc.message)
            raise
        except Exception as exc:
            message = getattr(exc, "message", None) or f"{exc.__class__.__name__}: {exc}"
            log.warning("pipeline %s: sync failed: %s", pipeline_id, message)
            with contextlib.suppress(Exception):
                async with self.engine.begin() as conn:
                    await conn.execute(
                        P.update()
                        .where(P.c.id == pipeline_id)
                        .values(last_run_at=sa.func.now(), last_error=message[:4000])
                    )
            raise
        if job_id is not None and self.jobs.dispatch is not None:
            await self.jobs.dispatch(job_id)
        return job_id

    async def _sync(self, pipeline_id: str, actor: Principal | None) -> str | None:
        if self.owners is None:
            raise Unavailable("pipelines run only in LISA's server processes (`lisa serve`)")
        for _ in range(3):
            async with self.engine.connect() as conn:
                owner_id = await conn.scalar(sa.select(P.c.created_by).where(P.c.id == pipeline_id))
            if owner_id is None:
                return None
            # Looked up before the lock's transaction, so that a sync never holds two pooled connections at once.
            owner = await owner_principal(self.owners, owner_id)
            async with self.engine.begin() as conn:
                await _sync_lock(conn, pipeline_id)
                row = (await conn.execute(sa.select(P).where(P.c.id == pipeline_id))).first()
                if row is None:
                    return None
                pipeline = row._mapping
                if pipeline["created_by"] != owner_id:
                    continue  # taken over meanwhile: look the new owner up
                target = await target_of(conn, pipeline)
                if target is None:
                    raise NotFound(f"collection '{pipeline['collection_id']}' of pipeline '{pipeline_id}' is gone")
                if isinstance(owner, str):
                    stopped = owner
                else:
                    reason = stop_reason(owner, pipeline, target)  # checked before the source is read
                    if reason is None:
                        return await self._act(conn, pipeline, owner, actor)
                    stopped = reason
                await record_stop(conn, pipeline, stopped)
            self._refresh()
            raise PipelineStopped(f"pipeline '{pipeline_id}' {stopped}")
        raise Conflict(f"pipeline '{pipeline_id}' changed owner while syncing: run it again")

    async def _act(self, conn: AsyncConnection, pipeline: Any, owner: Principal, actor: Principal | None) -> str | None:
        """Lists the source, writes what it saw and queues the job for what changed, as ``owner``."""
        pipeline_id = pipeline["id"]
        state = await conn.execute(sa.select(O.c.key, O.c.fingerprint).where(O.c.pipeline_id == pipeline_id))
        known: dict[str, str] = dict(state.tuples().all())
        seen = await self._list(pipeline["source"], known)
        items, writes, gone = plan_sync(known, seen, pipeline["auto_remove"])
        if writes:
            upsert = insert(O)
            await conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[O.c.pipeline_id, O.c.key],
                    set_={"fingerprint": upsert.excluded.fingerprint, "seen_at": sa.func.now()},
                ),
                [{"pipeline_id": pipeline_id, "key": k, "fingerprint": f} for k, f in writes.items()],
            )
        if gone:
            await conn.execute(O.delete().where(O.c.pipeline_id == pipeline_id, O.c.key.in_(gone)))
        job_id = None
        if items:
            job_id = await self.jobs.for_pipeline(
                pipeline_id,
                owner.username,  # the job and its documents are the owner's
                pipeline["repository_id"],
                pipeline["collection_id"],
                items,
                list(pipeline["tags"]),
                pipeline["chunking"],
                conn=conn,
            )
            log.info("pipeline %s: job %s for %d changes, as %s", pipeline_id, job_id, len(items), owner.username)
        await conn.execute(P.update().where(P.c.id == pipeline_id).values(last_run_at=sa.func.now(), last_error=None))
        if actor is not None:
            removes = sum(i.action == "remove" for i in items)
            after = {"job_id": job_id, "ingest": len(items) - removes, "remove": removes}
            await audit.record(conn, actor, "pipeline.run", "pipeline", pipeline_id, after=after)
        return job_id

    async def _list(self, source: dict[str, Any], known: dict[str, str]) -> dict[str, str]:
        if source["type"] == "folder":
            folder = self.sources.local_path(source["path"])  # the roots may have changed since
            if not folder.is_dir():
                raise BadRequest(f"{source['path']}: not a folder")
            return await asyncio.to_thread(list_folder, folder, known)
        uri = f"s3://{source['bucket']}/{source.get('prefix', '')}"
        try:
            return dict(await asyncio.to_thread(self.sources.list_s3, uri))
        except LisaError:
            raise
        except Exception as exc:  # botocore's errors: no bucket, no access, no connection
            raise UpstreamError(f"listing {uri} failed: {exc}") from exc

    async def run_due_schedules(self) -> None:
        """The worker's tick: every enabled schedule pipeline whose cron fired since its last run."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(P.c.id, P.c.trigger, P.c.last_run_at, P.c.created_at).where(
                        P.c.enabled, P.c.trigger["type"].astext == "schedule"
                    )
                )
            ).all()
        now = datetime.now(UTC)
        for row in rows:
            if is_due(row.trigger["cron"], row.last_run_at or row.created_at, now):
                with contextlib.suppress(Exception):  # recorded on the pipeline; the others still run
                    await self.sync(row.id)


async def _sync_lock(conn: AsyncConnection, pipeline_id: str) -> None:
    """Held until the transaction ends: syncs, updates and deletes of one pipeline take turns."""
    await conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(:id))"), {"ns": SYNC_LOCK, "id": pipeline_id}
    )
