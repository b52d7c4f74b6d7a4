"""The pure parts of outage handling: which failures are a database outage (503) and which are not, and the
usage meter's disk spill staying within its bound while the database cannot be reached (nothing listens on the
address it is given). The behaviour through real servers: test_database_outage.py."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.engine import create_engine
from backend.db.outage import as_unavailable, outage_reason
from backend.errors import DatabaseUnavailable
from backend.usage.meter import SPILL_SUFFIX, Batch, UsageMeter, UsageRecord
from tests.support import LisaServer, free_port

NOWHERE = "postgresql://nobody@127.0.0.1:{port}/none"


def refused_connect() -> BaseException:
    async def connect() -> None:
        await asyncpg.connect(NOWHERE.format(port=free_port()), timeout=2)

    try:
        asyncio.run(connect())
    except BaseException as exc:
        return exc
    raise AssertionError("something listens on a free port")


def test_a_refused_connection_is_an_outage_and_other_errors_are_not() -> None:
    refused = refused_connect()
    assert isinstance(refused, ConnectionRefusedError)
    assert outage_reason(refused) == "the database refused the connection"
    unavailable = as_unavailable(RuntimeError("wrapped"))
    assert unavailable is None
    # The same OSError raised by anything but a database driver (a file, an upstream) stays what it is.
    assert outage_reason(ConnectionRefusedError(111, "refused")) is None
    assert outage_reason(FileNotFoundError(2, "no such file")) is None
    # Server states: starting up or shutting down is an outage; a unique violation or a cancelled query is not.
    assert outage_reason(asyncpg.exceptions.CannotConnectNowError("starting up")) == (
        "the database server is starting up"
    )
    assert outage_reason(asyncpg.exceptions.AdminShutdownError("terminating")) is not None
    assert outage_reason(asyncpg.exceptions.UniqueViolationError("duplicate")) is None
    assert outage_reason(asyncpg.exceptions.QueryCanceledError("statement timeout")) is None
    integrity = sa_exc.IntegrityError("INSERT", {}, asyncpg.exceptions.UniqueViolationError("duplicate"))
    assert outage_reason(integrity) is None
    assert outage_reason(sa_exc.TimeoutError("QueuePool limit reached")) is not None
    # Found through the cause chain, as the services raise it.
    try:
        try:
            raise refused
        except ConnectionRefusedError as inner:
            raise RuntimeError("loading the routes failed") from inner
    except RuntimeError as outer:
        error = as_unavailable(outer)
    assert isinstance(error, DatabaseUnavailable) and error.status_code == 503
    assert "refused" in error.message and error.retry_after > 0


def spilled(folder: Path) -> tuple[int, str]:
    """The spill files' total size, and their text."""
    files = list(folder.glob("*" + SPILL_SUFFIX))
    return sum(p.stat().st_size for p in files), "".join(p.read_text() for p in files)


def record(i: int) -> UsageRecord:
    return UsageRecord(datetime.now(UTC), f"user-{i}", None, "m", "chat/completions", 10, 2, 1.0, 200)


async def test_the_usage_spill_is_bounded_and_keeps_the_newest(tmp_path: Path) -> None:
    engine = create_engine(NOWHERE.format(port=free_port()), 1, connect_timeout=2)
    meter = UsageMeter(engine, 60, 2, spill_dir=tmp_path, max_buffered=4, max_spill_bytes=4000)
    try:
        for round_ in range(30):
            for i in range(10):
                meter.record(record(round_ * 10 + i))
            await meter.flush()
            assert meter.buffered <= 4
            assert spilled(tmp_path)[0] <= 4000
        size, text = spilled(tmp_path)
        assert size > 2000  # it did spill
        assert '"user-0"' not in text  # the oldest were dropped to stay within the bound
        await meter.stop()  # the database still away: what was in memory spills too
        assert meter.buffered == 0
        assert '"user-299"' in spilled(tmp_path)[1]  # the newest are kept
    finally:
        await engine.dispose()


class FailsOnce(UsageMeter):
    """A meter whose first write fails the way a connection left broken by a failover can (an error no outage check
    names), as seen in CI: the batch must be written on the retry, not set aside."""

    failures = 0

    async def _write(self, batch: Batch) -> None:
        if self.failures == 0:
            self.failures += 1
            raise sa_exc.InvalidRequestError("Can't reconnect until invalid transaction is rolled back")
        await super()._write(batch)


def files_in(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in path.iterdir()}


async def count_rows(engine: AsyncEngine, username: str) -> int:
    async with engine.connect() as conn:
        found = await conn.scalar(text("SELECT count(*) FROM usage_records WHERE username = :u"), {"u": username})
    return int(found or 0)


async def test_a_batch_failing_once_without_an_outage_is_written_on_the_retry(tmp_path: Path, lisa: LisaServer) -> None:
    engine = create_engine(lisa.database_url, 1)
    meter = FailsOnce(engine, 60, 100, spill_dir=tmp_path)
    who = f"retry-{secrets.token_hex(3)}"
    try:
        for _ in range(3):
            meter.record(UsageRecord(datetime.now(UTC), who, None, "m", "chat/completions", 10, 2, 1.0, 200))
        await meter.flush()
        assert meter.failures == 1 and meter.written == 3
        assert await count_rows(engine, who) == 3
        assert files_in(tmp_path) == {}  # nothing set aside
    finally:
        await engine.dispose()


async def test_a_batch_the_database_refuses_every_time_is_set_aside_not_lost(tmp_path: Path, lisa: LisaServer) -> None:
    engine = create_engine(lisa.database_url, 1)
    meter = UsageMeter(engine, 60, 100, spill_dir=tmp_path)
    who = f"refused-{secrets.token_hex(3)}"
    try:
        meter.record(UsageRecord(datetime.now(UTC), who, None, "m", "chat/completions", 2**40, 2, 1.0, 200))  # > int4
        await meter.flush()
        assert meter.buffered == 0 and meter.written == 0
        assert await count_rows(engine, who) == 0
        kept = [text for name, text in files_in(tmp_path).items() if name.endswith(".refused")]
        assert len(kept) == 1 and who in kept[0]
    finally:
        await engine.dispose()
