"""The background worker: procrastinate runs ingestion jobs and a once-a-minute tick (pipeline schedules, resumes).

Every backend process runs a worker (``LISA_RAG_WORKER``); procrastinate's queue lives in the platform database, so
replicas share the work and a job runs once. A job whose worker died (killed, restarted) is found by its stale
heartbeat and queued again; the runner skips what was already done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from procrastinate import App, PsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from backend.db.engine import asyncpg_dsn
from backend.rag.ingest import IngestRunner

log = logging.getLogger("lisa.rag")
QUEUE = "rag"
INGEST_TASK = "rag.ingest"
WORKER_RESTART_MAX_SECONDS = 5.0


class WorkerStopped(Exception):
    """procrastinate's worker returned although LISA did not stop it (its database connection failed)."""


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
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.app.open_async()
        if not self.run_worker:
            return
        self._tasks.append(asyncio.create_task(self._run_worker(), name="rag-worker"))
        self._tasks.append(asyncio.create_task(self._resume_after_start(), name="rag-resume"))

    async def _run_worker(self) -> None:
        """procrastinate's worker stops when the database goes away (its heartbeat, listener or job fetch fails):
        run it again, with backoff, for as long as LISA runs. Jobs it was running are found stalled and resumed."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=0.5, max=WORKER_RESTART_MAX_SECONDS),
            before_sleep=lambda state: log.warning(
                "ingestion worker stopped (%s); restarting", state.outcome.exception() if state.outcome else "?"
            ),
        )
        await retrying(self._worker_until_it_stops)

    async def _worker_until_it_stops(self) -> None:
        await self.app.run_worker_async(
            queues=[QUEUE],
            concurrency=self.concurrency,
            install_signal_handlers=False,
            update_heartbeat_interval=self.heartbeat_seconds,
            stalled_worker_timeout=self.stalled_seconds,
            fetch_job_polling_interval=2.0,
            delete_jobs="successful",
        )
        raise WorkerStopped("the worker stopped by itself")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
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

    async def _resume_after_start(self) -> None:
        # A worker killed just before this process started is "stalled" only once its heartbeat is stale.
        await asyncio.sleep(self.stalled_seconds + self.heartbeat_seconds)
        try:
            await self.resume()
        except Exception:
            log.exception("resuming stalled ingestion jobs failed")

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
