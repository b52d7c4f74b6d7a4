"""In-process ingestion for the notebook library: the one backend module that ``ingestion/`` may import.

Layering: ``ingestion/`` (loaders, chunkers, the parser pool, ``ingest()``) is the lower layer, and the backend is
built on it. ``ingest(..., in_process=True)`` needs the platform's own services, so ``ingestion/in_process.py``
imports this module, lazily (inside the call: importing the library never imports the backend), and nothing else of
the backend; tests/test_layering.py enforces both. What crosses the line is plain data: paths, job dicts shaped like
the API's ``JobPublic``, and the library's own ``IngestError``::

    platform = LocalPlatform.from_environment(database_url)  # the platform's settings and database
    jobs = await platform.ingest(repository, collection, batches, roots=..., tags=..., chunking=...,
                                 max_file_bytes=..., on_progress=...)

Jobs are created exactly as the API creates them (``JobService.bulk`` over server paths, with the given folders as
this call's allowed roots), so they show in the API and the document library like any other, and they run through
the platform's ``IngestRunner`` under a procrastinate worker of this process serving a queue of its own: the
platform's workers serve only the shared queue and leave these jobs alone (their sweep for unqueued jobs finds these
queued).

Interrupting the call cancels its unfinished jobs, as the API's cancel does. For as long as it runs, the call holds a
session advisory lock named after its queue; should its process die, the lock goes with its connection, and the next
in-process ingestion ends that queue's jobs as cancelled: exactly, whatever anyone's heartbeat settings.

The in-process worker never prunes other workers. procrastinate deletes, when a worker starts, every worker whose
heartbeat is older than that worker's stalled timeout, and a deleted worker stops taking jobs: a notebook whose
``LISA_RAG_STALLED_SECONDS`` were shorter than the server's heartbeat would otherwise stop the server's workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.jobs import Job, Status
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.principal import Principal
from backend.config import Settings
from backend.db.engine import asyncpg_dsn, create_engine
from backend.errors import LisaError
from backend.rag.schemas import Chunking, IngestRequest
from backend.rag.worker import INGEST_TASK
from backend.registry.route_table import RouteTable
from backend.registry.secrets import SecretBox
from backend.registry.service import ModelRegistry
from backend.runtime.keys import with_keys
from backend.services import RagServices
from ingestion.results import FINAL, IngestError

LOCAL_QUEUE_PREFIX = "rag-local-"
QUEUE_LOCK = 0x4C4C_5131  # advisory lock namespace ("LLQ1") + hashtext(queue): held by the call serving that queue
POLL_SECONDS = 0.5
NEVER_PRUNE_SECONDS = 10 * 365 * 86_400.0  # procrastinate's stalled_worker_timeout: no live worker is that silent
MAX_HEARTBEAT_SECONDS = 2.0  # the platform's default: a server on default settings never prunes this worker
JobDicts = list[dict[str, Any]]


@dataclass(frozen=True)
class LocalPlatform:
    """The platform as this process finds it: its settings and its database."""

    settings: Settings
    database_url: str

    @classmethod
    def from_environment(cls, database_url: str | None = None) -> LocalPlatform:
        """The settings from the environment (``LISA_*``, ``LISA_CONFIG_FILE``, the data directory's key files) and
        the database URL: the argument, ``$LISA_DATABASE_URL``, or the one a running `lisa serve` wrote to
        DATA_DIR/runtime.json."""
        try:
            settings = with_keys(Settings(), create=False)  # the server's keys (LISA_* or its data directory's files)
        except ValidationError as exc:
            raise IngestError(f"the platform's settings (LISA_* environment) are invalid: {exc}") from exc
        url = database_url or settings.database_url
        runtime = settings.data_dir / "runtime.json"
        if not url and runtime.exists():
            url = json.loads(runtime.read_text()).get("database_url", "")
        if not url:
            raise IngestError(
                "in-process ingestion needs the platform database: pass database_url=... or set LISA_DATABASE_URL "
                f"(a running `lisa serve` writes it to {runtime})"
            )
        return cls(settings, url)

    @property
    def max_file_bytes(self) -> int:
        """The platform's limit per file (``LISA_RAG_MAX_FILE_BYTES``)."""
        return self.settings.rag_max_file_bytes

    async def ingest(
        self,
        repository: str,
        collection: str,
        batches: Sequence[Sequence[Path]],
        *,
        roots: Sequence[Path],
        tags: list[str],
        chunking: dict[str, Any] | None,
        max_file_bytes: int,
        on_progress: Callable[[JobDicts], None] | None = None,
    ) -> JobDicts:
        """Ingests each batch of files (under ``roots``, the only folders this call may read) as one job, here, and
        waits for them all; returns the jobs as the API shows them, items included. ``on_progress`` gets the jobs
        at each poll. Raises ``IngestError`` with the platform's message (and the ids of the jobs created) when the
        platform refuses; interrupted, it cancels its unfinished jobs before the interruption goes on."""
        try:
            spec = Chunking.model_validate(chunking) if chunking is not None else None
            requests = [IngestRequest(sources=[str(p) for p in batch], tags=tags, chunking=spec) for batch in batches]
        except ValidationError as exc:
            raise IngestError(f"invalid ingestion options: {exc}", status_code=422) from exc
        update = {"rag_worker": False, "rag_ingest_roots": list(roots), "rag_max_file_bytes": max_file_bytes}
        run = LocalRun(self.settings.model_copy(update={"database_url": self.database_url, **update}))
        try:
            async with run.started():
                await run.end_abandoned()
                return await run.ingest(repository, collection, requests, on_progress)
        except LisaError as exc:
            raise IngestError(exc.message, status_code=exc.status_code, job_ids=run.jobs) from exc


def local_user() -> str:
    """Who the in-process jobs and documents are recorded as created by: this process's user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database (some containers)
        return "notebook"


class LocalRun:
    """One in-process ingestion: the platform's RAG services in this process, its own queue, and the lock that
    says it is alive."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.database_url
        self.engine = create_engine(self.url, pool_size=4)
        registry = ModelRegistry(self.engine, SecretBox(settings.encryption_key.get_secret_value()))
        self.rag = RagServices.build(settings, self.url, self.engine, RouteTable(registry))  # no worker, no pipelines
        self.rag.jobs.dispatch = self._queue_here  # each job goes on this call's queue as it is created
        self.principal = Principal(local_user(), frozenset(), is_admin=True)  # whoever holds the database holds all
        self.queue = LOCAL_QUEUE_PREFIX + secrets.token_hex(6)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.elsewhere: set[str] = set()  # queued by a platform worker's sweep for unqueued jobs first: it runs them
        self._lock: asyncpg.Connection | None = None

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[None]:
        """The database checked, the services started and this call's queue locked; all released on the way out."""
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.engine.dispose)
            await _check_database(self.engine, self.url)
            await self.rag.start()  # the embedder's HTTP session and the queue's connection pool (stopped if it fails)
            stack.push_async_callback(_quietly, self.rag.stop)  # the first error is the news
            name = f"lisa-ingest-local:{os.getpid()}"
            self._lock = await asyncpg.connect(asyncpg_dsn(self.url), server_settings={"application_name": name})
            stack.push_async_callback(_quietly, self._lock.close)
            while not await self._try_lock(self.queue):  # a running call's queue hashes alike: take another name
                self.queue = LOCAL_QUEUE_PREFIX + secrets.token_hex(6)
            yield

    async def _try_lock(self, queue: str) -> bool:
        assert self._lock is not None
        return bool(await self._lock.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", QUEUE_LOCK, queue))

    async def _queue_here(self, job_id: str) -> None:
        try:
            deferrer = self.rag.worker.app.configure_task(INGEST_TASK, queue=self.queue, queueing_lock=job_id)
            await deferrer.defer_async(job_id=job_id)
        except AlreadyEnqueued:
            self.elsewhere.add(job_id)

    async def end_abandoned(self) -> None:
        """Ends as cancelled (as an interruption would have) the jobs of every in-process call whose process died,
        found by its queue's free lock: no other process can be trusted to read the files they name."""
        assert self._lock is not None
        for queue in await self.rag.worker.app.job_manager.list_queues_async(task=INGEST_TASK):
            name = queue["name"]
            if name == self.queue or not name.startswith(LOCAL_QUEUE_PREFIX) or not (queue["todo"] or queue["doing"]):
                continue
            if not await self._try_lock(name):
                continue  # its call is running
            try:
                await self._end_queue(name)
            finally:
                await self._lock.execute("SELECT pg_advisory_unlock($1, hashtext($2))", QUEUE_LOCK, name)

    async def _end_queue(self, queue: str) -> None:
        """Ends every job still queued or running on a queue no worker serves any more: cancelled."""
        manager = self.rag.worker.app.job_manager
        for job in await manager.list_jobs_async(queue=queue, task=INGEST_TASK):
            if job.status in ("todo", "doing"):
                with contextlib.suppress(Exception):  # one that cannot be ended now is left to the next call
                    await self._end(job)

    async def _end(self, job: Job) -> None:
        manager = self.rag.worker.app.job_manager
        job_id = str(job.task_kwargs.get("job_id"))
        repository = await self.rag.jobs.repository_of(job_id)
        if repository is not None:
            with contextlib.suppress(LisaError):  # it had ended already
                await self.rag.jobs.cancel(self.principal, repository, job_id)  # a pending one ends here
            await self.rag.runner.run(job_id)  # a running one stops at the flag at once: it ends as cancelled
        await manager.finish_job(job, status=Status.ABORTED, delete_job=False)
        if job.worker_id is not None:
            await manager.unregister_worker(job.worker_id)  # the dead call's worker, which nobody else prunes

    async def ingest(
        self,
        repository: str,
        collection: str,
        requests: Sequence[IngestRequest],
        on_progress: Callable[[JobDicts], None] | None,
    ) -> JobDicts:
        worker: asyncio.Task[None] | None = None
        try:
            for request in requests:
                job = await self.rag.jobs.bulk(self.principal, repository, collection, request)
                self.jobs[job.id] = job.model_dump(mode="json")
            if self.jobs:
                worker = asyncio.create_task(self._work(), name="lisa-ingest-worker")
                await self._wait(repository, worker, on_progress)
                await worker
        except BaseException:
            await self._cancel_unfinished(repository, worker)
            raise
        return [(await self.rag.jobs.get(self.principal, repository, j)).model_dump(mode="json") for j in self.jobs]

    async def _work(self) -> None:
        """A worker for this call's queue until it is empty; it never prunes another worker (see the docstring)."""
        settings = self.settings
        await self.rag.worker.app.run_worker_async(
            queues=[self.queue],
            name=f"lisa-ingest-{local_user()}",
            concurrency=settings.rag_worker_jobs,
            wait=False,  # ends once its queue is empty
            listen_notify=False,
            install_signal_handlers=False,
            update_heartbeat_interval=min(settings.rag_heartbeat_seconds, MAX_HEARTBEAT_SECONDS),
            stalled_worker_timeout=NEVER_PRUNE_SECONDS,
            fetch_job_polling_interval=POLL_SECONDS,
            delete_jobs="successful",
            shutdown_graceful_timeout=60,  # then running jobs are cancelled outright
        )

    def _unfinished(self) -> list[str]:
        return [j for j, job in self.jobs.items() if job["status"] not in FINAL]

    async def _wait(
        self, repository: str, worker: asyncio.Task[None], on_progress: Callable[[JobDicts], None] | None
    ) -> None:
        while True:
            for job_id in self._unfinished():
                job = await self.rag.jobs.get(self.principal, repository, job_id, with_items=False)
                self.jobs[job_id] = job.model_dump(mode="json")
            if on_progress is not None:
                on_progress(list(self.jobs.values()))
            if not (unfinished := self._unfinished()):
                return
            if worker.done():
                worker.result()  # the worker's own failure, if it had one
                if stuck := [j for j in unfinished if j not in self.elsewhere]:
                    raise IngestError(f"the in-process worker stopped before job(s) {', '.join(stuck)} ended")
            await asyncio.sleep(POLL_SECONDS)

    async def _cancel_unfinished(self, repository: str, worker: asyncio.Task[None] | None) -> None:
        unfinished = self._unfinished()
        for job_id in unfinished:  # first the flag, which a running runner stops at, as for the API's cancel
            with contextlib.suppress(Exception):
                await self.rag.jobs.cancel(self.principal, repository, job_id)
        if worker is not None:
            worker.cancel()  # lets its running jobs end (they are stopping), then stops
            with contextlib.suppress(BaseException):
                await worker
        with contextlib.suppress(Exception):
            await self._end_queue(self.queue)  # what the worker had not started ends now


async def _quietly(stop: Callable[[], Awaitable[object]]) -> None:
    """A clean-up whose own failure must not hide the error that ended the call."""
    with contextlib.suppress(Exception):
        await stop()


async def _check_database(engine: AsyncEngine, url: str) -> None:
    """Fails fast, with a clear reason, on an unreachable or unmigrated database (instead of a pool's timeout)."""
    where = make_url(url).render_as_string(hide_password=True)
    try:
        async with asyncio.timeout(20), engine.connect() as conn:
            await conn.execute(text("SELECT 1 FROM rag_jobs LIMIT 0"))
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        reason = (str(getattr(exc, "orig", None) or exc) or exc.__class__.__name__).splitlines()[0]
        if isinstance(exc, ProgrammingError):
            reason += " (is it LISA's database, set up by `lisa serve`?)"
        raise IngestError(f"cannot use the platform database at {where}: {reason}") from exc
