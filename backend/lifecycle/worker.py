"""Workflows as procrastinate jobs, on the app (and database queue) the RAG worker already runs.

A workflow is one job on its own queue, taken by a worker loop of its own (a deployment can take an hour: it must not
hold the slots of ingestion jobs). Jobs of one model run one at a time (procrastinate's ``lock``). After a crash, a
job whose worker's heartbeat went stale is queued again, and a running workflow that no job carries (its process
stopped before queueing it, or stopped cleanly mid-step) is queued again: the runner resumes it where it stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from procrastinate import App
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from backend.lifecycle import store
from backend.lifecycle.runner import WorkflowRunner

log = logging.getLogger("lisa.lifecycle")
QUEUE = "lifecycle"
TASK = "lifecycle.workflow"
RESTART_MAX_SECONDS = 5.0


class WorkerStopped(Exception):
    """procrastinate's worker returned although LISA did not stop it."""


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
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Call once the app is open (the RAG worker opens it)."""
        if not self.run_worker:
            return
        self._tasks.append(asyncio.create_task(self._run_worker(), name="lifecycle-worker"))
        self._tasks.append(asyncio.create_task(self._resume_after_start(), name="lifecycle-resume"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        self._tasks.clear()

    async def defer(self, workflow_id: str, model_id: str) -> None:
        with contextlib.suppress(AlreadyEnqueued):
            await self._task.configure(queueing_lock=workflow_id, lock=f"lisa-model:{model_id}").defer_async(
                workflow_id=workflow_id
            )

    async def _run(self, workflow_id: str) -> None:
        await self.runner.run(workflow_id)

    async def _run_worker(self) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=0.5, max=RESTART_MAX_SECONDS),
            before_sleep=lambda state: log.warning(
                "lifecycle worker stopped (%s); restarting", state.outcome.exception() if state.outcome else "?"
            ),
        )
        await retrying(self._worker_until_it_stops)

    async def _worker_until_it_stops(self) -> None:
        await self.app.run_worker_async(
            queues=[QUEUE],
            name="lisa-lifecycle",
            concurrency=self.concurrency,
            install_signal_handlers=False,
            update_heartbeat_interval=self.heartbeat_seconds,
            stalled_worker_timeout=self.stalled_seconds,
            fetch_job_polling_interval=2.0,
            delete_jobs="successful",
        )
        raise WorkerStopped("the lifecycle worker stopped by itself")

    async def _resume_after_start(self) -> None:
        # A worker killed just before this process started is "stalled" only once its heartbeat is stale.
        await asyncio.sleep(self.stalled_seconds + self.heartbeat_seconds)
        try:
            await self.resume()
        except Exception:
            log.exception("resuming workflows failed")

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
