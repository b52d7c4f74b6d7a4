"""In-process ingestion: the platform's own services in this Python process, against the platform database.

No backend needs to run. Jobs are created exactly as the API creates them (``JobService.bulk`` over server paths,
with the given folders as this call's allowed roots), so they show in the API and the document library like any
other, and they run through the platform's ``IngestRunner``, under a procrastinate worker of this process that
serves a queue of its own: the platform's workers serve only the shared queue and leave these jobs alone (and their
sweep for unqueued jobs finds these queued).

Files are parsed in worker processes of this process (``ingestion.parser_pool``, stopped when the call ends), so
a script calling this needs the ``if __name__ == "__main__":`` guard that any program starting processes needs
(a notebook does not).

Interrupting the call (Ctrl-C, a notebook's stop button) cancels its unfinished jobs, as the API's cancel does.
Should the process die instead, the next in-process ingestion finds the job by its worker's stale heartbeat and
ends it as cancelled the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ingestion.plan import MAX_BATCH_FILES, PathLike, batches, plan_files
from ingestion.results import FINAL, IngestError, IngestResult, Progress, tally

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from backend.auth.principal import Principal
    from backend.config import Settings
    from backend.services import RagServices

LOCAL_QUEUE_PREFIX = "rag-local-"
POLL_SECONDS = 0.5


def platform_settings(database_url: str | None) -> tuple[Settings, str]:
    """The platform's settings from the environment (``LISA_*``, ``LISA_CONFIG_FILE``) and its database URL: the
    argument, ``$LISA_DATABASE_URL``, or the one a running `lisa serve` wrote to DATA_DIR/runtime.json."""
    from backend.config import Settings
    from backend.runtime.keys import with_keys

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
    return settings, url


async def ingest_in_process(
    paths: PathLike | Sequence[PathLike],
    repository: str,
    collection: str,
    *,
    tags: list[str],
    chunking: dict[str, Any] | None,
    wait: bool,
    progress: bool,
    database_url: str | None,
    max_file_bytes: int | None,
    batch_files: int,
) -> IngestResult:
    from backend.auth.principal import Principal
    from backend.db.engine import create_engine
    from backend.errors import LisaError
    from backend.rag.schemas import Chunking, IngestRequest
    from backend.registry.route_table import RouteTable
    from backend.registry.secrets import SecretBox
    from backend.registry.service import ModelRegistry
    from backend.services import RagServices

    if not wait:
        raise IngestError(
            "in-process ingestion runs in this process, so it waits for its job: without waiting, send the files "
            "to a running LISA instead (in_process=False)"
        )
    settings, url = platform_settings(database_url)
    limit = max_file_bytes or settings.rag_max_file_bytes
    plan = await asyncio.to_thread(plan_files, paths, max_bytes=limit, unique_names=False)
    try:
        spec = Chunking.model_validate(chunking) if chunking is not None else None
        requests = [
            IngestRequest(sources=[str(p) for p in group], tags=tags, chunking=spec)
            for group in batches(plan.files, min(batch_files, MAX_BATCH_FILES), max_bytes=2**62)
        ]
    except ValidationError as exc:
        raise IngestError(f"invalid ingestion options: {exc}", status_code=422) from exc
    settings = settings.model_copy(
        update={"database_url": url, "rag_worker": False, "rag_ingest_roots": plan.roots, "rag_max_file_bytes": limit}
    )
    result = IngestResult(repository, collection, documents_total=plan.total, documents_skipped=len(plan.skipped))
    result.skipped += plan.skipped
    engine = create_engine(url, pool_size=4)
    registry = ModelRegistry(engine, SecretBox(settings.encryption_key.get_secret_value()))
    rag = RagServices.build(settings, url, engine, RouteTable(registry))
    rag.jobs.dispatch = None  # queued below, on this call's own queue
    principal = Principal(local_user(), frozenset(), is_admin=True)  # whoever holds the database holds it all
    jobs: dict[str, dict[str, Any]] = {}
    try:
        await _check_database(engine, url)
        await rag.start()  # the embedder's HTTP session and the queue's connection pool; no shared-queue worker
        await _end_abandoned(rag, settings)
        for request in requests:
            job = await rag.jobs.bulk(principal, repository, collection, request)
            jobs[job.id] = job.model_dump(mode="json")
        result.job_ids = list(jobs)
        if jobs:
            await _run_here(rag, settings, principal, repository, collection, jobs, progress, len(plan.files))
        for job_id in jobs:
            jobs[job_id] = (await rag.jobs.get(principal, repository, job_id)).model_dump(mode="json")
    except LisaError as exc:
        raise IngestError(exc.message, status_code=exc.status_code, job_ids=jobs) from exc
    finally:
        with contextlib.suppress(Exception):  # a failed start leaves parts unopened; the first error is the news
            await rag.stop()
        await engine.dispose()
    return tally(result, jobs.values(), {})


def local_user() -> str:
    """Who the in-process jobs and documents are recorded as created by: this process's user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database (some containers)
        return "notebook"


async def _check_database(engine: AsyncEngine, url: str) -> None:
    """Fails fast, with a clear reason, on an unreachable or unmigrated database (instead of a pool's timeout)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ProgrammingError, SQLAlchemyError

    where = make_url(url).render_as_string(hide_password=True)
    try:
        async with asyncio.timeout(20), engine.connect() as conn:
            await conn.execute(text("SELECT 1 FROM rag_jobs LIMIT 0"))
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        reason = (str(getattr(exc, "orig", None) or exc) or exc.__class__.__name__).splitlines()[0]
        if isinstance(exc, ProgrammingError):
            reason += " (is it LISA's database, set up by `lisa serve`?)"
        raise IngestError(f"cannot use the platform database at {where}: {reason}") from exc


async def _end_abandoned(rag: RagServices, settings: Settings) -> None:
    """Ends as cancelled (as an interruption would have) each job whose in-process run died with its process, found
    by its worker's stale heartbeat: no other process can be trusted to read the files it names."""
    from procrastinate.jobs import Status
    from sqlalchemy import update

    from backend.db.tables import rag_jobs
    from backend.rag.worker import INGEST_TASK

    manager = rag.worker.app.job_manager
    stalled = await manager.get_stalled_jobs(
        task_name=INGEST_TASK, seconds_since_heartbeat=settings.rag_stalled_seconds
    )
    for job in stalled:
        if not job.queue.startswith(LOCAL_QUEUE_PREFIX):
            continue  # the shared queue's: the platform's workers resume those
        job_id = str(job.task_kwargs.get("job_id"))
        with contextlib.suppress(Exception):  # another process may be ending it at the same time
            async with rag.runner.engine.begin() as conn:
                await conn.execute(update(rag_jobs).where(rag_jobs.c.id == job_id).values(cancel_requested=True))
            await rag.runner.run(job_id)  # stops at the flag at once: the job ends as cancelled
            await manager.finish_job(job, status=Status.ABORTED, delete_job=False)


async def _run_here(
    rag: RagServices,
    settings: Settings,
    principal: Principal,
    repository: str,
    collection: str,
    jobs: dict[str, dict[str, Any]],
    progress: bool,
    total: int,
) -> None:
    """Queues the jobs on a queue of this call's own and runs a worker for it until they have ended."""
    from procrastinate.exceptions import AlreadyEnqueued

    from backend.rag.worker import INGEST_TASK

    queue = LOCAL_QUEUE_PREFIX + secrets.token_hex(6)
    elsewhere: set[str] = set()  # queued by a platform worker's orphan sweep first: that worker runs it
    for job_id in jobs:
        try:
            deferrer = rag.worker.app.configure_task(INGEST_TASK, queue=queue, queueing_lock=job_id)
            await deferrer.defer_async(job_id=job_id)
        except AlreadyEnqueued:
            elsewhere.add(job_id)
    worker = asyncio.create_task(
        rag.worker.app.run_worker_async(
            queues=[queue],
            name=f"lisa-ingest-{getpass.getuser()}",
            concurrency=settings.rag_worker_jobs,
            wait=False,  # ends once its queue is empty
            listen_notify=False,
            install_signal_handlers=False,
            update_heartbeat_interval=settings.rag_heartbeat_seconds,
            stalled_worker_timeout=settings.rag_stalled_seconds,
            fetch_job_polling_interval=POLL_SECONDS,
            delete_jobs="successful",
            shutdown_graceful_timeout=60,  # then running jobs are cancelled outright
        ),
        name="lisa-ingest-worker",
    )
    bar = Progress(total, f"{repository}/{collection}", progress)
    try:
        while True:
            for job_id in [j for j in jobs if jobs[j]["status"] not in FINAL]:
                job = await rag.jobs.get(principal, repository, job_id, with_items=False)
                jobs[job_id] = job.model_dump(mode="json")
            bar.show(jobs.values())
            unfinished = [j for j in jobs if jobs[j]["status"] not in FINAL]
            if not unfinished:
                break
            if worker.done():
                worker.result()  # the worker's own failure, if it had one
                if stuck := [j for j in unfinished if j not in elsewhere]:
                    raise IngestError(f"the in-process worker stopped before job(s) {', '.join(stuck)} ended")
            await asyncio.sleep(POLL_SECONDS)
        await worker
    except BaseException:
        unfinished = [j for j in jobs if jobs[j]["status"] not in FINAL]
        for job_id in unfinished:  # first the flag, which the running runner stops at, as for the API's cancel
            with contextlib.suppress(Exception):
                await rag.jobs.cancel(principal, repository, job_id)
        worker.cancel()  # lets its running jobs end (they are stopping), then stops
        with contextlib.suppress(BaseException):
            await worker
        for job_id in unfinished:  # a job the worker had not started yet ends now
            with contextlib.suppress(Exception):
                await rag.runner.run(job_id)
        raise
    finally:
        bar.close()
