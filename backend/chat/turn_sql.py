"""The two statements before a chat turn's first token, in plain SQL on a small asyncpg pool of their own.

Measured reason (embedded PostgreSQL, 2 cores; docs/benchmarks.md "Chat"): reading the session and the path to
the parent took 2.5 ms through SQLAlchemy Core (two statements and their row processing), 0.5 ms as this one
statement through asyncpg; saving the question 2.0 ms and 1.1 ms; and a checkout from the engine's pool costs
0.8 ms in the server (its ``pool_pre_ping`` round trip), an asyncpg pool's acquire a few microseconds (and its
release no round trip: ``_nothing_to_reset``). All of it sits between the request and the first token, where the
chat endpoint's budget is 2 ms over ``/v1``.

The question's commit does not wait for its WAL flush (``synchronous_commit=off`` on this pool's connections):
waiting for it was the slowest part of the turn when the disk was busy (1.3-1.9 ms after the upstream's first event
had arrived, measured with timestamps in the server on 2 busy cores), and the first token waited for it. The commit
is still atomic and at once visible to every other connection; only a crash of PostgreSQL itself (or of the
machine) within about 0.6 s (three ``wal_writer_delay``) can lose it, and the answer's own first write, a
synchronous commit moments later on the store's pool, flushes the WAL up to and including the question. The read
changes nothing, so the setting affects the question alone.

Without the ping, a connection the server dropped (a restart, a failover) is found dead on use: each statement is
tried once more on a fresh connection (the read changes nothing; an insert that did get written finds its message
id taken the second time), so a turn fails only when the database is really away (503, as everywhere). Each
statement runs on its own (no BEGIN/COMMIT round trips), atomic by itself; the read and the insert take a
connection each, so the read's goes back to the pool while the prompt is built. The insert's
data-modifying WITH keeps the message and its session in step. backend/chat/search.py describes the search vector
the insert extends (the same bounds are written here).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from backend.chat.search import TEXT_CHARS, VECTOR_BYTES

CONTEXT = """
WITH RECURSIVE s AS (
    SELECT id, model, settings, active_leaf_id, context_documents, revision
    FROM chat_sessions WHERE id = $1 AND owner = $2
), path AS (
    SELECT m.id, m.parent_id, m.role, m.content, m.status,
        CASE WHEN m.metadata->>'kind' = 'summary' THEN m.metadata END AS metadata, 0 AS depth
    FROM chat_messages m, s
    WHERE m.id = (CASE WHEN $4 THEN $3 ELSE s.active_leaf_id END) AND m.session_id = s.id
        AND s.revision IS DISTINCT FROM $5
    UNION ALL
    SELECT m.id, m.parent_id, m.role, m.content, m.status,
        CASE WHEN m.metadata->>'kind' = 'summary' THEN m.metadata END, p.depth + 1
    FROM chat_messages m JOIN path p ON m.id = p.parent_id
)
SELECT s.model, s.settings, s.active_leaf_id, s.context_documents, s.revision,
    path.id, path.parent_id, path.role, path.content, path.status, path.metadata
FROM s LEFT JOIN path ON true ORDER BY path.depth DESC
"""

ADD_QUESTION = f"""
WITH added AS (
    INSERT INTO chat_messages (id, session_id, parent_id, role, content, status, created_at, updated_at)
    VALUES ($1, $2, $3, 'user', $4, 'complete', clock_timestamp(), clock_timestamp())
)
UPDATE chat_sessions SET active_leaf_id = $1, updated_at = clock_timestamp(),
    search = CASE WHEN pg_column_size(search) < {VECTOR_BYTES}
        THEN strip(search || to_tsvector('simple', left($4, {TEXT_CHARS}))) ELSE search END
WHERE id = $2
"""

PATH_COLUMNS = ("id", "parent_id", "role", "content", "status", "metadata")


DEAD = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, ConnectionError)


@dataclass(frozen=True)
class TurnContext:
    """What a turn starts from: the session (model, settings, active_leaf_id, context_documents), the path to the
    turn's leaf (first message first) and the session's revision when read. ``unchanged``: the read was asked
    whether the session was still at a known revision and it was, so ``path`` was not read (it is empty)."""

    session: dict[str, Any]
    path: list[dict[str, Any]]
    revision: int
    unchanged: bool = False


class TurnDatabase:
    """The pool (``size`` connections at most, opened on use) and the turn's two statements."""

    def __init__(self, dsn: str, size: int, connect_timeout: float) -> None:
        self.dsn = dsn
        self.size = size
        self.connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=0,
            max_size=self.size,
            timeout=self.connect_timeout,
            command_timeout=30,
            reset=_nothing_to_reset,
            server_settings={"synchronous_commit": "off"},  # see the module's docstring: the question's commit
        )

    async def stop(self) -> None:
        if self._pool is not None:
            await asyncio.wait_for(self._pool.close(), 10)
            self._pool = None

    def read(
        self, owner: str, session_id: str, leaf_id: str | None, explicit: bool, known_revision: int | None = None
    ) -> asyncio.Task[TurnContext | None]:
        """The read of what a turn starts from, as a running task: the context — the path to ``leaf_id``
        (``explicit``) or to the active leaf — or None where the owner has no such session. With
        ``known_revision``, a session still at that revision is answered ``unchanged`` without its path (the caller
        holds it). The caller plans (or reads the request's body) while it runs; its connection goes back to the
        pool as soon as the rows are in, and a read nobody awaits ends on its own."""
        task = asyncio.create_task(self._read(owner, session_id, leaf_id, explicit, known_revision))
        task.add_done_callback(_retrieve)
        return task

    async def _read(
        self, owner: str, session_id: str, leaf_id: str | None, explicit: bool, known_revision: int | None
    ) -> TurnContext | None:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the chat database pool is not started")
        for attempt in (1, 2):
            conn = await pool.acquire(timeout=self.connect_timeout)
            try:
                rows = await conn.fetch(CONTEXT, session_id, owner, leaf_id, explicit, known_revision)
            except DEAD:
                if attempt == 2:
                    raise
                continue
            finally:
                await pool.release(conn)  # a broken connection is closed, not pooled again
            return _context(rows, known_revision)
        raise AssertionError("unreachable")

    async def add_question(self, session_id: str, message_id: str, parent_id: str | None, text: str) -> None:
        """The question, as the session's active leaf, its words added to the session's search."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("the chat database pool is not started")
        for attempt in (1, 2):
            try:
                async with pool.acquire(timeout=self.connect_timeout) as conn:
                    await conn.execute(ADD_QUESTION, message_id, session_id, parent_id, text)
                return
            except DEAD:  # found dead on use; had it been written, the second try finds its id taken
                if attempt == 2:
                    raise
            except asyncpg.UniqueViolationError:
                if attempt == 1:
                    raise
                return


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A read whose turn went away before awaiting it (a refused body, a changed plan) is not logged as lost."""
    if not task.cancelled():
        task.exception()


async def _nothing_to_reset(_conn: asyncpg.Connection) -> None:
    """A released connection is pooled again as it is. asyncpg's default reset (advisory unlocks, ``CLOSE ALL``,
    ``UNLISTEN *``, ``RESET ALL``) is a round trip, and it sat before the first token (0.3-0.5 ms, measured): this
    pool's two statements leave no session state behind (no SET, cursor, lock, LISTEN or open transaction; asyncpg
    still rolls back an open transaction itself)."""


def _context(rows: list[Any], known_revision: int | None) -> TurnContext | None:
    if not rows:
        return None
    first = rows[0]
    settings = first["settings"]
    session = {
        "model": first["model"],
        "settings": orjson.loads(settings) if isinstance(settings, str | bytes) else settings,
        "active_leaf_id": first["active_leaf_id"],
        "context_documents": first["context_documents"],  # 0: the prompt step does not look for documents
    }
    revision = int(first["revision"])
    if known_revision is not None and revision == known_revision:
        return TurnContext(session, [], revision, unchanged=True)
    path = [{k: r[i + 5] for i, k in enumerate(PATH_COLUMNS)} for r in rows if r[5] is not None]
    for row in path:  # only a compaction summary's metadata is read (the rest stay None: nothing to decode)
        if isinstance(row["metadata"], str | bytes):
            row["metadata"] = orjson.loads(row["metadata"])
    return TurnContext(session, path, revision)
