"""One procrastinate worker loop on one queue of the platform database, as the RAG jobs (backend/rag/worker.py) and
the model workflows (backend/lifecycle/worker.py) each run one.

procrastinate's worker returns when the database goes away (its heartbeat, listener or job fetch fails): the loop
runs it again, with exponential backoff (0.5 s doubling to ``RESTART_MAX_SECONDS``), for as long as LISA runs; the
jobs it was running are found stalled and resumed. Once after start, when a worker killed just before this process
started has a stale heartbeat (``stalled_seconds + heartbeat_seconds``), ``resume`` is called: the owner queues again
what a dead worker left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from procrastinate import App
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

RESTART_MAX_SECONDS = 5.0


class WorkerStopped(Exception):
    """procrastinate's worker returned although LISA did not stop it (its database connection failed)."""


@dataclass
class JobWorkerLoop:
    """``what`` names the worker in its log lines ("ingestion worker"); ``name`` is procrastinate's worker name;
    ``log`` the owner's logger."""

    app: App
    queue: str
    what: str
    log: logging.Logger
    resume: Callable[[], Awaitable[None]]
    concurrency: int
    heartbeat_seconds: float
    stalled_seconds: float
    name: str = "worker"  # procrastinate's default
    resume_failed: str = "resuming after start failed"
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        """The worker loop, and the one resume after start, as tasks of the running event loop."""
        self._tasks.append(asyncio.create_task(self._run(), name=f"{self.queue}-worker"))
        self._tasks.append(asyncio.create_task(self._resume_after_start(), name=f"{self.queue}-resume"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        self._tasks.clear()

    async def _run(self) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=0.5, max=RESTART_MAX_SECONDS),
            before_sleep=lambda state: self.log.warning(
                "%s stopped (%s); restarting", self.what, state.outcome.exception() if state.outcome else "?"
            ),
        )
        await retrying(self._until_it_stops)

    async def _until_it_stops(self) -> None:
        await self.app.run_worker_async(
            queues=[self.queue],
            name=self.name,
            concurrency=self.concurrency,
            install_signal_handlers=False,
            update_heartbeat_interval=self.heartbeat_seconds,
            stalled_worker_timeout=self.stalled_seconds,
            fetch_job_polling_interval=2.0,
            delete_jobs="successful",
        )
        raise WorkerStopped(f"the {self.what} stopped by itself")

    async def _resume_after_start(self) -> None:
        # A worker killed just before this process started is "stalled" only once its heartbeat is stale.
        await asyncio.sleep(self.stalled_seconds + self.heartbeat_seconds)
        try:
            await self.resume()
        except Exception:
            self.log.exception(self.resume_failed)
