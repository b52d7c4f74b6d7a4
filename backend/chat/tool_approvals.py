"""Safe-mode tool approvals, shared by every backend process (docs/chat.md, "Tools (MCP)").

A call that waits for the user's decision is a row of ``chat_tool_approvals`` (session, call id, owner, the waiting
turn's ``wait_id``, status, created and expiry times). ``POST /api/sessions/{id}/tool-calls/{call_id}`` may reach any
process: ``decide`` changes the row from ``pending`` to ``approved`` or ``denied`` and, in the same transaction,
notifies every process over the change feed (PostgreSQL LISTEN/NOTIFY, backend/db/changes.py). The process running
the turn wakes on that notification; should it be lost (the listening connection dropped), the waiter reads the row
again every ``poll_seconds`` anyway. A wait that ends without a decision (its time limit, or the client left) marks
the row ``expired`` — atomically, so a decision and an expiry never both win.

Answers of ``decide``: 404 when the caller has no such call in that session (another user's call included); 409 when
it was already decided or is no longer waiting. Finished rows are kept a day (a late decision answers 409, not 404),
then removed when a new wait opens; a deleted session takes its rows with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db.changes import publish
from backend.db.tables import chat_tool_approvals as T
from backend.errors import Conflict, NotFound

TOPIC_PREFIX = "tool_call:"  # + session id + ":" + call id
KEEP_FINISHED: sa.ColumnElement[Any] = sa.literal_column("interval '1 day'")
POLL_SECONDS = 1.0  # the fallback when a notification does not arrive
MAX_CALL_ID = 128  # a longer id from the model is replaced by the tool round


def topic(session_id: str, call_id: str) -> str:
    return f"{TOPIC_PREFIX}{session_id}:{call_id}"


@dataclass(frozen=True)
class Wait:
    session_id: str
    call_id: str
    wait_id: str


class ToolApprovals:
    """Open a wait, wait for its decision, decide — the first two in the process running the turn, the last in any."""

    def __init__(self, engine: AsyncEngine, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self._waking: dict[tuple[str, str], asyncio.Event] = {}

    def on_change(self, changed: str) -> None:
        """The change feed's listener: wakes the wait a decision concerns (every wait when the feed was down)."""
        if changed == "*":
            for event in self._waking.values():
                event.set()
        elif changed.startswith(TOPIC_PREFIX):
            session_id, _, call_id = changed.removeprefix(TOPIC_PREFIX).partition(":")
            found = self._waking.get((session_id, call_id))
            if found is not None:
                found.set()

    async def open(self, owner: str, session_id: str, call_id: str, seconds: float) -> Wait:
        """A pending row for the call (replacing a finished one of the same id), expiring in ``seconds``."""
        wait = Wait(session_id, call_id, secrets.token_hex(12))
        values = {"owner": owner, "wait_id": wait.wait_id, "status": "pending", "created_at": sa.func.now(),
                  "expires_at": sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, float(seconds)),
                  "decided_at": None}  # fmt: skip
        insert = pg_insert(T).values(session_id=session_id, call_id=call_id, **values)
        async with self.engine.begin() as conn:
            await conn.execute(T.delete().where(T.c.expires_at < sa.func.now() - KEEP_FINISHED))
            await conn.execute(insert.on_conflict_do_update(index_elements=[T.c.session_id, T.c.call_id], set_=values))
        return wait

    async def wait(self, wait: Wait, seconds: float, cancelled: asyncio.Event) -> bool:
        """True once the call is approved; False when denied, or when ``seconds`` pass or ``cancelled`` is set first
        (the row is then marked expired)."""
        key = (wait.session_id, wait.call_id)
        woken = asyncio.Event()
        self._waking[key] = woken
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            while True:
                woken.clear()  # before reading: a decision that lands after the read still wakes the wait below
                status = await self._status(wait)
                if status != "pending":
                    return status == "approved"
                left = deadline - loop.time()
                if left <= 0 or cancelled.is_set():
                    break
                waiters = [asyncio.ensure_future(woken.wait()), asyncio.ensure_future(cancelled.wait())]
                try:
                    await asyncio.wait(
                        waiters, timeout=min(left, self.poll_seconds), return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for waiter in waiters:
                        waiter.cancel()
        except asyncio.CancelledError:  # the server is stopping: the call no longer waits (a decision is a 409)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._expire(wait))
            raise
        finally:
            if self._waking.get(key) is woken:
                del self._waking[key]
        return await self._expire(wait)

    async def _status(self, wait: Wait) -> str | None:
        """The row's status; None when another wait took the call id over (this one is then over)."""
        query = sa.select(T.c.status).where(
            T.c.session_id == wait.session_id, T.c.call_id == wait.call_id, T.c.wait_id == wait.wait_id
        )
        async with self.engine.connect() as conn:
            status = (await conn.execute(query)).scalar_one_or_none()
        return None if status is None else str(status)

    async def _expire(self, wait: Wait) -> bool:
        """Ends a wait without a decision, unless one arrived meanwhile (then it counts)."""
        mine = (T.c.session_id == wait.session_id, T.c.call_id == wait.call_id, T.c.wait_id == wait.wait_id)
        async with self.engine.begin() as conn:
            expired = await conn.execute(
                T.update().where(*mine, T.c.status == "pending").values(status="expired").returning(T.c.call_id)
            )
            if expired.first() is not None:
                return False
            status = (await conn.execute(sa.select(T.c.status).where(*mine))).scalar_one_or_none()
        return status == "approved"

    async def decide(self, owner: str, session_id: str, call_id: str, approve: bool) -> None:
        """The user's decision, from any process. 404: no such call of theirs in that session; 409: it was decided,
        or it no longer waits (timed out, or its turn ended)."""
        mine = (T.c.session_id == session_id, T.c.call_id == call_id, T.c.owner == owner)
        decision = "approved" if approve else "denied"
        async with self.engine.begin() as conn:
            decided = await conn.execute(
                T.update()
                .where(*mine, T.c.status == "pending", T.c.expires_at > sa.func.now())
                .values(status=decision, decided_at=sa.func.now())
                .returning(T.c.call_id)
            )
            if decided.first() is not None:
                await publish(conn, topic(session_id, call_id))
                return
            status = (await conn.execute(sa.select(T.c.status).where(*mine))).scalar_one_or_none()
        if status in ("approved", "denied"):
            raise Conflict(f"tool call '{call_id}' was already decided")
        if status is not None:
            raise Conflict(f"tool call '{call_id}' is no longer waiting for a decision")
        raise NotFound(f"tool call '{call_id}' not found in session '{session_id}'")
