"""Workflows as procrastinate jobs, on the app (and database queue) the RAG worker already runs.

A workflow is one job on its own queue, taken by a worker loop of its own (a deployment can take an hour: it must not
hold the slots of ingestion jobs). Jobs of one model run one at a time (procrastinate's ``lock``). After a crash, a
job whose worker's heartbeat went stale is queued again, and a running workflow that no job carries (its process
stopped before queueing it, or stopped cleanly mid-step) is queued again: the runner resumes it where it stands.
"""

from __future__ import annotations

import contextlib
import logging

from procrastinate import App
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.job_worker import JobWorkerLoop
from backend.lifecycle import store
from backend.lifecycle.runner import WorkflowRunner

log = logging.getLogger("lisa.lifecycle")
QUEUE = "lifecycle"
TASK = "lifecycle.workflow"


class LifecycleWorker:
    def __init__(
        self,
        app: App,
        engine: AsyncEngine,
        runner: WorkflowRunner,
        *,
        run_worker: bool,
        concurrency: int,
        heartbeat_seconds: float,
        stalled_seconds: float,
    ) -> None:
        self.app = app
        self.engine = engine
        self.runner = runner
        self.run_worker = run_worker
        self.concurrency = concurrency
        self.heartbeat_seconds = heartbeat_seconds
        self.stalled_seconds = stalled_seconds
        self._task = app.task(name=TASK, queue=QUEUE, pass_context=False)(self._run)
        self._loop = JobWorkerLoop(
            app, QUEUE, "lifecycle worker", log, self.resume, concurrency, heartbeat_seconds, stalled_seconds,
            name="lisa-lifecycle", resume_failed="resuming workflows failed",
        )  # fmt: skip

    async def start(self) -> None:
        """Call once the app is open (the RAG worker opens it)."""
        if self.run_worker:
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def defer(self, workflow_id: str, model_id: str) -> None:
        with contextlib.suppress(AlreadyEnqueued):
            await self._task.configure(queueing_lock=workflow_id, lock=f"lisa-model:{model_id}").defer_async(
                workflow_id=workflow_id
            )

    async def _run(self, workflow_id: str) -> None:
        await self.runner.run(workflow_id)

    async def resume(self) -> None:
        """Queue again the workflows whose worker died, and running workflows that no job carries."""
        manager = self.app.job_manager
        for job in await manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=self.stalled_seconds):
            if job.task_name == TASK:
                log.info("resuming workflow %s (its worker stopped)", job.task_kwargs.get("workflow_id"))
                await manager.retry_job(job)
        for workflow_id in await store.running_without_job(self.engine, TASK):
            workflow = await store.load(self.engine, workflow_id)
            if workflow is not None:
                log.info("resuming workflow %s (no job carried it)", workflow_id)
                await self.defer(workflow_id, str(workflow["model_id"]))
