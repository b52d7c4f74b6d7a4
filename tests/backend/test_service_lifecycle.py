"""Service start and stop (backend/services.py): a start that fails at a late step stops whatever had started, so
nothing is left running — no task, no database connection, no process — in `lisa serve` and in the service graph.

The real late failure: a reranker (``LISA_RAG_RERANKER_URL``) at an address the egress guard refuses, checked once
the change feed, the gateway's session, the usage meter, the embedder, the ingestion worker and the pipeline
watchers have started. Each test runs on a database of its own in the session's PostgreSQL, so that every
connection on it is LISA's: ``pg_stat_activity`` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from sqlalchemy.engine import make_url

from backend.config import Settings
from backend.db import migrate
from backend.db.engine import asyncpg_dsn
from backend.errors import BadRequest
from backend.services import Services
from tests.support import LISA, ROOT, LisaServer, free_port

REFUSED_RERANKER = "http://10.255.0.1:8080"  # a private address; the default egress policy allows loopback only
REASON = "LISA_RAG_RERANKER_URL: 10.255.0.1 is private; not allowed"


async def execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def fetchval(url: str, sql: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


@pytest.fixture
def database(lisa: LisaServer) -> Iterator[str]:
    """A migrated database of this test's own on the session's PostgreSQL."""
    name = "lisa_lifecycle_" + secrets.token_hex(4)
    asyncio.run(execute(lisa.database_url, f'CREATE DATABASE "{name}"'))
    url = make_url(lisa.database_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url, keys=migrate.MigrationKeys(os.environ["LISA_ENCRYPTION_KEY"]))
    yield url
    asyncio.run(execute(lisa.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def connections(url: str, settle_s: float = 5.0) -> int:
    """LISA's connections to this database (not counting the one asking), once closing ones have gone."""
    name = make_url(url).database
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    deadline = time.monotonic() + settle_s
    count = await fetchval(url, sql)
    while count and time.monotonic() < deadline:  # a closed connection's server process takes a moment to leave
        await asyncio.sleep(0.1)
        count = await fetchval(url, sql)
    return count


async def registered_workers(url: str) -> int:
    return await fetchval(url, "SELECT count(*) FROM procrastinate_workers")


def test_lisa_serve_with_a_refused_reranker_exits_and_leaves_nothing_running(database: str, tmp_path: Path) -> None:
    argv = [LISA, "serve", "--no-local-models", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")]
    env = {**os.environ, "LISA_DATABASE_URL": database, "LISA_RAG_RERANKER_URL": REFUSED_RERANKER}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env
        )
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while popen.poll() is None:
            assert time.monotonic() < deadline, f"`lisa serve` did not exit:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(psutil.NoSuchProcess):
                children |= {c.pid for c in psutil.Process(popen.pid).children(recursive=True)}
            time.sleep(0.1)
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
    output = log.read_text()
    assert popen.returncode == 3, output[-3000:]  # uvicorn's "startup failed"
    assert REASON in output and "Application startup failed" in output
    for leak in ("Unclosed", "Task was destroyed", "never awaited"):
        assert leak not in output, output[-3000:]
    alive = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert alive == []
    assert asyncio.run(connections(database)) == 0
    assert asyncio.run(registered_workers(database)) == 0  # its ingestion worker had started, and said goodbye


def build(database: str, data_dir: Path, reranker: str = "") -> Services:
    return Services.build(Settings(database_url=database, data_dir=data_dir, rag_reranker_url=reranker), database)


def new_processes(before: set[int]) -> list[int]:
    """This process's descendants that are not, and do not descend from, one of ``before`` (the session's servers
    keep starting processes of their own: PostgreSQL a backend per connection)."""
    me = psutil.Process()
    found = []
    for child in me.children(recursive=True):
        try:
            chain = {p.pid for p in child.parents()}
            if child.pid not in before and not chain & before and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


class Before:
    """What ran before the start: this event loop's tasks and this process's children (the session's servers)."""

    def __init__(self) -> None:
        self.tasks = asyncio.all_tasks()
        self.children = {p.pid for p in psutil.Process().children(recursive=True)}

    async def assert_nothing_left(self, services: Services, database: str) -> None:
        await asyncio.sleep(0)
        new = asyncio.all_tasks() - self.tasks - {asyncio.current_task()}
        assert {t.get_name() for t in new if not t.done()} == set()
        assert await connections(database) == 0
        assert await registered_workers(database) == 0
        assert new_processes(self.children) == []  # parsers, had any started
        for session in (services.passthrough._session, services.rag.embedder._session):
            assert session is None or session.closed


async def test_a_late_failed_start_stops_everything_that_had_started(database: str, tmp_path: Path) -> None:
    services = build(database, tmp_path, reranker=REFUSED_RERANKER)
    before = Before()
    with pytest.raises(BadRequest, match=REASON):
        await services.start()
    await before.assert_nothing_left(services, database)
    await services.stop()  # as a caller's cleanup would: nothing more to do, and no error


async def test_a_part_failing_halfway_through_its_start_is_stopped_too(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = build(database, tmp_path)
    real_start = services.rag.pipelines.start

    async def start_then_fail() -> None:
        await real_start()  # the watchers' task is running...
        raise RuntimeError("the pipeline watchers failed to start")  # ...when the start fails

    monkeypatch.setattr(services.rag.pipelines, "start", start_then_fail)
    before = Before()
    with pytest.raises(RuntimeError, match="pipeline watchers failed"):
        await services.start()
    await before.assert_nothing_left(services, database)


async def test_a_started_graph_stops_everything(database: str, tmp_path: Path) -> None:
    services = build(database, tmp_path)
    before = Before()
    await services.start()
    deadline = time.monotonic() + 10
    while await registered_workers(database) == 0:  # the worker registers from its own task
        assert time.monotonic() < deadline, "the ingestion worker never registered"
        await asyncio.sleep(0.1)
    assert await connections(database, settle_s=0) > 0
    await services.stop()
    await before.assert_nothing_left(services, database)
