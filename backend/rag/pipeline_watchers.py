"""Watchers of event pipelines: local folders (watchfiles plus a slow poll) and S3 (SQS notifications, or listing
when there is no queue), at most one watcher per pipeline across all replicas.

The watchers know nothing of the pipeline service: they are given three narrow callables, what the event pipelines
are now, how to sync one, and an SQS client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

log = logging.getLogger("lisa.rag")
EventPipelines = Callable[[], Awaitable[dict[str, tuple[str, dict[str, Any]]]]]  # id -> (version, source)
WATCH_LOCK = 0x4C50_5732  # advisory lock namespace ("LPW2") + hashtext(pipeline id)


# --- event watchers --------------------------------------------------------------------------------------------
def is_s3_notification(body: str) -> bool:
    """An S3 event notification (or one wrapped by SNS) — anything else on the queue changes nothing."""
    try:
        message = orjson.loads(body)
        if isinstance(message, dict) and message.get("Type") == "Notification" and "Message" in message:
            message = orjson.loads(message["Message"])
    except (orjson.JSONDecodeError, TypeError):
        return False
    records = message.get("Records") if isinstance(message, dict) else None
    return isinstance(records, list) and any(isinstance(r, dict) and r.get("eventSource") == "aws:s3" for r in records)


class PipelineWatchers:
    """This process's watchers of event pipelines, reconciled with the table every poll period and on every
    change made here. A watcher first takes its pipeline's session advisory lock on this process's own
    connection; where another replica holds it, the watcher waits and retries, so each pipeline is watched once."""

    def __init__(
        self,
        dsn: str,
        poll_seconds: float,
        *,
        event_pipelines: EventPipelines,
        sync: Callable[[str], Awaitable[object]],
        sqs: Callable[[], Any],
    ) -> None:
        """``event_pipelines``: the enabled event pipelines, each with a version that changes when it is edited;
        ``sync``: syncs one (records a failure on the pipeline, and raises it); ``sqs``: a boto3 SQS client."""
        self.event_pipelines = event_pipelines
        self.sync = sync
        self.sqs = sqs
        self.dsn = dsn
        self.poll_seconds = poll_seconds
        self._watchers: dict[str, tuple[str, asyncio.Task[None], asyncio.Event]] = {}
        self._lock_conn: asyncpg.Connection | None = None
        self._lock_guard = asyncio.Lock()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._reconcile_forever(), name="rag-pipeline-watchers")

    def refresh(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop
        for pipeline_id in list(self._watchers):
            await self._stop(pipeline_id)
        if self._lock_conn is not None:
            with contextlib.suppress(Exception):
                await self._lock_conn.close()

    async def _reconcile_forever(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciling pipeline watchers failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            self._wake.clear()

    async def reconcile(self) -> None:
        wanted = await self.event_pipelines()
        if self._lock_conn is not None and self._lock_conn.is_closed():  # its locks went with it
            for pipeline_id in list(self._watchers):
                await self._stop(pipeline_id)
            self._lock_conn = None
        for pipeline_id, (signature, task, _) in list(self._watchers.items()):
            if task.done() or pipeline_id not in wanted or wanted[pipeline_id][0] != signature:
                await self._stop(pipeline_id)
        for pipeline_id, (signature, source) in wanted.items():
            if pipeline_id not in self._watchers:
                stop = asyncio.Event()
                task = asyncio.create_task(self._watch(pipeline_id, source, stop), name=f"rag-pipeline-{pipeline_id}")
                self._watchers[pipeline_id] = (signature, task, stop)

    async def _stop(self, pipeline_id: str) -> None:
        _, task, stop = self._watchers.pop(pipeline_id)
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=10)

    async def _lock(self, sql: str, pipeline_id: str) -> bool:
        async with self._lock_guard:
            if self._lock_conn is None or self._lock_conn.is_closed():
                name = f"lisa-pipeline-watch:{os.getpid()}"  # who watches what: pg_locks + pg_stat_activity
                self._lock_conn = await asyncpg.connect(self.dsn, server_settings={"application_name": name})
            return bool(await self._lock_conn.fetchval(sql, WATCH_LOCK, pipeline_id))

    async def _watch(self, pipeline_id: str, source: dict[str, Any], stop: asyncio.Event) -> None:
        while True:
            if await self._lock("SELECT pg_try_advisory_lock($1, hashtext($2))", pipeline_id):
                break
            await asyncio.sleep(self.poll_seconds)  # another process watches this pipeline
        log.info("pipeline %s: watching %s", pipeline_id, source)
        try:
            if source["type"] == "folder":
                await self._watch_folder(pipeline_id, Path(source["path"]), stop)
            elif source.get("queue_url"):
                await self._watch_queue(pipeline_id, source["queue_url"])
            else:
                while True:
                    await self._sync(pipeline_id)
                    await asyncio.sleep(self.poll_seconds)
        finally:
            with contextlib.suppress(Exception):
                await self._lock("SELECT pg_advisory_unlock($1, hashtext($2))", pipeline_id)

    async def _sync(self, pipeline_id: str) -> bool:
        try:
            await self.sync(pipeline_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            return False  # recorded on the pipeline
        return True

    async def _watch_folder(self, pipeline_id: str, folder: Path, stop: asyncio.Event) -> None:
        from watchfiles import awatch

        timeout_ms = max(100, int(self.poll_seconds * 1000))
        while not stop.is_set():
            await self._sync(pipeline_id)  # what changed while nobody watched
            try:
                # A quiet period of poll_seconds yields an empty set: the slow poll, for events that were missed.
                async for _changes in awatch(
                    folder, stop_event=stop, debounce=2000, step=300, rust_timeout=timeout_ms, yield_on_timeout=True
                ):
                    await self._sync(pipeline_id)
            except OSError as exc:  # the folder is gone or unreadable: keep syncing (it records why) and retry
                log.warning("pipeline %s: cannot watch %s: %s", pipeline_id, folder, exc)
            if not stop.is_set():
                await asyncio.sleep(self.poll_seconds)

    async def _watch_queue(self, pipeline_id: str, queue_url: str) -> None:
        """Syncs on S3 notifications; the messages are deleted only once the sync has committed."""
        sqs = await asyncio.to_thread(self.sqs)
        wait = max(1, min(20, round(self.poll_seconds)))
        await self._sync(pipeline_id)
        while True:
            try:
                received = await asyncio.to_thread(
                    sqs.receive_message, QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
                )
            except Exception as exc:
                log.warning("pipeline %s: reading %s failed: %s", pipeline_id, queue_url, exc)
                await asyncio.sleep(self.poll_seconds)
                continue
            messages = received.get("Messages", [])
            if not messages:
                continue
            if any(is_s3_notification(m.get("Body", "")) for m in messages) and not await self._sync(pipeline_id):
                await asyncio.sleep(self.poll_seconds)
                continue  # not deleted: they come back after their visibility timeout
            entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
            with contextlib.suppress(Exception):
                await asyncio.to_thread(sqs.delete_message_batch, QueueUrl=queue_url, Entries=entries)
