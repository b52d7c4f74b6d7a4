"""The background worker: procrastinate runs ingestion jobs and a once-a-minute tick (pipeline schedules, resumes).

Every backend process runs a worker (``LISA_RAG_WORKER``); procrastinate's queue lives in the platform database, so
replicas share the work and a job runs once. A job whose worker died (killed, restarted) is found by its stale
heartbeat and queued again; the runner skips what was already done.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from procrastinate import App, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.engine import asyncpg_dsn
from backend.db.job_worker import JobWorkerLoop
from backend.rag.ingest import IngestRunner

log = logging.getLogger("lisa.rag")
QUEUE = "rag"
INGEST_TASK = "rag.ingest"


class RagWorker:
    def __init__(
        self,
        database_url: str,
        engine: AsyncEngine,
        runner: IngestRunner,
        *,
        run_worker: bool,
        concurrency: int,
        heartbeat_seconds: float,
        stalled_seconds: float,
        connect_timeout: float = 5.0,
    ) -> None:
        self.engine = engine
        self.runner = runner
        self.run_worker = run_worker
        self.concurrency = concurrency
        self.heartbeat_seconds = heartbeat_seconds
        self.stalled_seconds = stalled_seconds
        self.on_tick: list[Callable[[], Awaitable[None]]] = []  # pipelines hook their schedules here
        # procrastinate checks each pooled connection before use (a database that restarted or failed over costs no
        # request a dead connection); connecting and waiting for the pool are bounded here (503, not a hang).
        connector = PsycopgConnector(
            conninfo=asyncpg_dsn(database_url),
            timeout=connect_timeout,
            kwargs={"connect_timeout": max(1, round(connect_timeout))},
        )
        self.app = App(connector=connector)
        self._ingest = self.app.task(name=INGEST_TASK, queue=QUEUE, pass_context=False)(self._run_ingest)
        tick = self.app.task(name="rag.tick", queue=QUEUE, pass_context=False)(self._tick)
        self.app.periodic(cron="* * * * *", periodic_id="rag-tick")(tick)
        self._loop = JobWorkerLoop(
            self.app, QUEUE, "ingestion worker", log, self.resume, concurrency, heartbeat_seconds, stalled_seconds,
            resume_failed="resuming stalled ingestion jobs failed",
        )  # fmt: skip

    async def start(self) -> None:
        await self.app.open_async()
        if self.run_worker:
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        await self.app.close_async()

    async def defer(self, job_id: str) -> None:
        """Queue a job once; a pipeline's jobs run one after another (procrastinate's ``lock``), so a file that
        changes and then disappears is ingested and removed in that order."""
        async with self.engine.connect() as conn:
            pipeline_id = await conn.scalar(sa.text("SELECT pipeline_id FROM rag_jobs WHERE id = :id"), {"id": job_id})
        lock = f"rag-pipeline:{pipeline_id}" if pipeline_id else None
        with contextlib.suppress(AlreadyEnqueued):
            await self._ingest.configure(queueing_lock=job_id, lock=lock).defer_async(job_id=job_id)

    async def _run_ingest(self, job_id: str) -> None:
        await self.runner.run(job_id)

    async def _tick(self, timestamp: int) -> None:
        await self.resume()
        for hook in self.on_tick:
            try:
                await hook()
            except Exception:
                log.exception("rag tick hook failed")

    async def resume(self) -> None:
        """Queue again the jobs whose worker died, and unfinished jobs that have no queue entry at all."""
        manager = self.app.job_manager
        for job in await manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=self.stalled_seconds):
            if job.task_name == INGEST_TASK:
                log.info("resuming ingestion job %s (its worker stopped)", job.task_kwargs.get("job_id"))
                await manager.retry_job(job)
        async with self.engine.connect() as conn:
            orphans = (
                (
                    await conn.execute(
                        sa.text(
                            "SELECT id FROM rag_jobs WHERE status IN ('pending', 'in_progress') AND NOT EXISTS ("
                            "SELECT 1 FROM procrastinate_jobs p WHERE p.task_name = :task "
                            "AND p.status IN ('todo', 'doing') AND p.args->>'job_id' = rag_jobs.id)"
                        ),
                        {"task": INGEST_TASK},
                    )
                )
                .scalars()
                .all()
            )
        for job_id in orphans:
            await self.defer(job_id)
