"""Usage metering off the request path: records are buffered in memory and written in batches.

A home-made buffer rather than a job queue: each record is ~100 bytes and one INSERT of 500 rows costs about
what one row costs, so batching in-process keeps the gateway's hot path free of database round trips.

While the database is unreachable the records wait: in memory up to ``max_buffered`` records, then the oldest
batches spill to files in ``spill_dir`` (at most ``max_spill_bytes``; past that the oldest spilled batch is dropped,
with an error in the log). At shutdown whatever is still unwritten spills too. Spilled batches are written first
once the database answers again, by whichever process of this data directory gets there first.

Each batch has an id, written in the same transaction as its rows (table ``usage_batches``): a batch whose commit
went through but whose acknowledgement was lost, or a spill file replayed again after a crash, is recognised and
not written twice. So every record is written exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import deque
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from pathlib import Path

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db import tables
from backend.db.outage import outage_reason

log = logging.getLogger(__name__)
SPILL_SUFFIX = ".usage.json"
KEEP_BATCH_IDS = "30 days"  # a batch is retried within moments, a spill file replayed at the latest on the next start
FORGET_EVERY = 3600.0  # seconds between prunings of old batch ids
WARN_EVERY = 30.0  # seconds between warnings while the database stays unreachable
REFUSED_ATTEMPTS = 3  # tries of a batch failing with something other than an outage before it is set aside
REFUSED_RETRY_SECONDS = 0.25  # the wait before the second try (then twice that)


@dataclass(slots=True)
class UsageRecord:
    created_at: datetime
    username: str
    token_id: str | None
    model: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    status: int
    estimated: bool = False


COLUMNS = [f.name for f in fields(UsageRecord)]


@dataclass(slots=True)
class Batch:
    id: str
    records: list[UsageRecord]


def _encode(batch: Batch) -> bytes:
    return orjson.dumps({"id": batch.id, "records": [astuple(r) for r in batch.records]})


def _decode(data: bytes) -> Batch:
    raw = orjson.loads(data)
    records = []
    for row in raw["records"]:
        rec = UsageRecord(*row)
        rec.created_at = datetime.fromisoformat(row[0])
        records.append(rec)
    return Batch(str(raw["id"]), records)


class UsageMeter:
    def __init__(
        self,
        engine: AsyncEngine,
        flush_seconds: float,
        batch_size: int,
        *,
        spill_dir: Path | None = None,
        max_buffered: int = 50_000,
        max_spill_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self._engine = engine
        self._flush_seconds = flush_seconds
        self._batch_size = batch_size
        self._spill_dir = spill_dir
        self._max_buffered = max_buffered
        self._max_spill_bytes = max_spill_bytes
        self._open: list[UsageRecord] = []  # recorded, not yet in a batch
        self._pending: deque[Batch] = deque()  # sealed batches waiting to be written, oldest first
        self._pending_records = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self._outage: str | None = None  # why the last write failed, while the database is unreachable
        self._warned_at = float("-inf")
        self.written = 0  # records written by this process (tests and logs)

    def record(self, rec: UsageRecord) -> None:
        self._open.append(rec)
        if len(self._open) >= self._batch_size:
            self._wake.set()

    @property
    def buffered(self) -> int:
        """Records in memory not yet written."""
        return len(self._open) + self._pending_records

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lisa-usage-meter")

    async def _run(self) -> None:
        forgotten_at = float("-inf")
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._flush_seconds)
            self._wake.clear()
            try:
                await self.flush()
                if self._outage is None and time.monotonic() - forgotten_at > FORGET_EVERY:
                    forgotten_at = time.monotonic()
                    await self._forget_old_batch_ids()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the meter stop: the next round tries again
                log.exception("usage flush failed")

    def _seal(self) -> None:
        size = self._batch_size * 4
        while self._open:
            records, self._open = self._open[:size], self._open[size:]
            self._pending.append(Batch(uuid.uuid4().hex, records))
            self._pending_records += len(records)

    async def flush(self) -> None:
        """Write what is spilled, then what is in memory; stop at the first sign of an outage."""
        async with self._flushing:
            self._seal()
            try:
                await self._replay_spill()
                while self._pending:
                    batch = self._pending[0]
                    await self._write_or_set_aside(batch)
                    self._pending.popleft()
                    self._pending_records -= len(batch.records)
            except _Outage as outage:
                self._note_outage(outage.reason)
                self._bound_memory()
                return
            if self._outage is not None:
                log.warning("the database is back: usage records buffered during the outage are written")
                self._outage = None

    async def _write_or_set_aside(self, batch: Batch) -> None:
        """Write ``batch``; an outage is raised (the batch waits), any other failure is retried on a fresh connection
        (a failover can leave a pooled connection broken in ways no outage check names: the batch id makes a retry
        safe) and only a batch refused every time is set aside."""
        for attempt in range(1, REFUSED_ATTEMPTS + 1):
            try:
                await self._write(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if (reason := outage_reason(exc)) is not None:
                    raise _Outage(reason) from exc
                if attempt < REFUSED_ATTEMPTS:
                    log.warning("usage batch %s failed (%s: %s); trying again", batch.id, type(exc).__name__, exc)
                    await asyncio.sleep(REFUSED_RETRY_SECONDS * attempt)
                    continue
                # Rows the database refuses would block every later batch: keep them aside for an operator.
                log.error("usage batch %s (%d records) refused by the database (%s): %s", batch.id,
                          len(batch.records), type(exc).__name__, exc)  # fmt: skip
                self._spill(batch, suffix=".refused")

    async def _write(self, batch: Batch) -> None:
        """The batch's rows and its id in one transaction; nothing if the id is already there (written before).

        COPY through asyncpg: a few hundred microseconds for thousands of rows, where an ORM executemany would
        hold the event loop (and so the gateway) for milliseconds."""
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            async with driver.transaction():
                new = await driver.fetchval(
                    f"INSERT INTO {tables.usage_batches.name} (id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1",
                    batch.id,
                )
                if new is None:
                    log.info("usage batch %s was written before; not again", batch.id)
                    return
                await driver.copy_records_to_table(
                    tables.usage_records.name, records=[astuple(r) for r in batch.records], columns=COLUMNS
                )
        self.written += len(batch.records)

    async def _forget_old_batch_ids(self) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    text(f"DELETE FROM usage_batches WHERE written_at < now() - interval '{KEEP_BATCH_IDS}'")
                )
        except Exception as exc:
            log.warning("could not prune old usage batch ids (next hour, then): %s", exc)

    def _note_outage(self, reason: str) -> None:
        now = time.monotonic()
        if self._outage is None or now - self._warned_at >= WARN_EVERY:
            log.warning("usage records wait for the database (%s): %d in memory", reason, self.buffered)
            self._warned_at = now
        self._outage = reason

    # The disk spill.

    def _spill_files(self) -> list[Path]:
        if self._spill_dir is None or not self._spill_dir.is_dir():
            return []
        files = [p for p in self._spill_dir.iterdir() if p.name.endswith(SPILL_SUFFIX)]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns if p.exists() else 0, p.name))

    def _spill(self, batch: Batch, suffix: str = SPILL_SUFFIX) -> bool:
        """Write ``batch`` to its own file (atomically: a reader sees all of it or nothing)."""
        if self._spill_dir is None:
            return False
        self._spill_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self._spill_dir / f"{batch.id}{suffix}"
        partial = self._spill_dir / f".{batch.id}.partial"
        with partial.open("wb") as fh:
            fh.write(_encode(batch))
            fh.flush()
            os.fsync(fh.fileno())
        partial.replace(final)
        return True

    def _bound_memory(self) -> None:
        """Keep at most ``max_buffered`` records in memory: the oldest batches go to disk, within its bound."""
        while self._pending and self._pending_records > self._max_buffered:
            batch = self._pending.popleft()
            self._pending_records -= len(batch.records)
            if not self._spill(batch):
                log.error("usage buffer full and no spill directory: dropped %d records", len(batch.records))
        self._bound_spill()

    def _bound_spill(self) -> None:
        files = self._spill_files()
        sizes = {p: p.stat().st_size for p in files if p.exists()}
        total = sum(sizes.values())
        for path in files:  # oldest first
            if total <= self._max_spill_bytes:
                break
            total -= sizes.get(path, 0)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                log.error("usage spill over %d bytes: dropped the oldest spilled batch %s", self._max_spill_bytes,
                          path.name)  # fmt: skip

    async def _replay_spill(self) -> None:
        for path in self._spill_files():
            try:
                batch = _decode(path.read_bytes())
            except FileNotFoundError:
                continue  # replayed by another process meanwhile
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                log.error("unreadable usage spill file %s (%s): kept as .unreadable", path.name, exc)
                with contextlib.suppress(OSError):
                    path.rename(path.with_name(path.name + ".unreadable"))
                continue
            await self._write_or_set_aside(batch)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        if self._pending:  # the database is still away: nothing is lost, the next start writes them
            left = self._pending_records
            while self._pending:
                if not self._spill(self._pending.popleft()):
                    log.error("stopping with the database unreachable and no spill directory: %d records lost", left)
                    break
            self._pending_records = 0


class _Outage(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
