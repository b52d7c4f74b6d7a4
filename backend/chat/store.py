"""The SQL of chat: projects, sessions and messages. Every read and write names the owner, so one user's rows are
never touched by another's request (a row of someone else is "not found")."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.chat import search as fts
from backend.db import tables
from backend.errors import BadRequest, NotFound
from backend.paging import PageParams, encode_cursor

P = tables.chat_projects
S = tables.chat_sessions
M = tables.chat_messages
D = tables.chat_context_documents
SESSION = [c for c in S.c if c.name != "search"]  # the search vector stays in the database
SEARCH_MAX = 200  # characters of a search term


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def session_cursor(row: RowMapping) -> str:
    return encode_cursor(f"{row['updated_at'].isoformat()}|{row['id']}")


def _after_session(params: PageParams) -> sa.ColumnElement[bool] | None:
    after = params.after
    if after is None:
        return None
    try:
        stamp, _, last_id = after.partition("|")
        at = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise BadRequest("invalid cursor: pass the next_cursor of the previous page unchanged") from exc
    return sa.tuple_(S.c.updated_at, S.c.id) < sa.tuple_(sa.literal(at, S.c.updated_at.type), sa.literal(last_id))


class ChatStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.fast = engine.execution_options(isolation_level="AUTOCOMMIT")

    # --- sessions --------------------------------------------------------------------------------------------
    async def create_session(self, owner: str, values: dict[str, Any]) -> RowMapping:
        async with self.engine.begin() as conn:
            if values.get("project_id") is not None:
                await self._check_project(conn, owner, values["project_id"])
            search = sa.func.strip(fts.words_of(values["title"]))
            insert = S.insert().values(id=new_id("ses"), owner=owner, search=search, **values).returning(*SESSION)
            row = (await conn.execute(insert)).one()
        return row._mapping

    async def session(self, owner: str, session_id: str, conn: AsyncConnection | None = None) -> RowMapping:
        query = sa.select(*SESSION).where(S.c.id == session_id, S.c.owner == owner)
        if conn is not None:
            row = (await conn.execute(query)).first()
        else:
            async with self.engine.connect() as own:
                row = (await own.execute(query)).first()
        if row is None:
            raise NotFound(f"session '{session_id}' not found")
        return row._mapping

    async def session_by_share(self, token_hash: str) -> RowMapping | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(*SESSION).where(S.c.share_token_hash == token_hash))).first()
        return row._mapping if row else None

    async def page(
        self, owner: str, params: PageParams, search: str | None = None, project_id: str | None = None
    ) -> tuple[list[RowMapping], str | None]:
        """A page of the owner's sessions, most recently active first; ``search`` matches words of the title or of
        any message, or a part of the title (backend/chat/search.py)."""
        query = sa.select(*SESSION).where(S.c.owner == owner)
        if project_id is not None:
            query = query.where(S.c.project_id == project_id)
        if search:
            query = query.where(fts.matches(search))
        if (after := _after_session(params)) is not None:
            query = query.where(after)
        query = query.order_by(S.c.updated_at.desc(), S.c.id.desc()).limit(params.limit + 1)
        async with self.engine.connect() as conn:
            rows = [r._mapping for r in (await conn.execute(query)).all()]
        if len(rows) <= params.limit:
            return rows, None
        rows = rows[: params.limit]
        return rows, session_cursor(rows[-1])

    async def update_session(self, owner: str, session_id: str, changes: dict[str, Any]) -> RowMapping:
        values = dict(changes)
        if "title" in changes:
            values["search"] = fts.rebuilt(S.c.id, changes["title"])
        async with self.engine.begin() as conn:
            if changes.get("project_id") is not None:
                await self._check_project(conn, owner, changes["project_id"])
            row = (
                await conn.execute(
                    S.update()
                    .where(S.c.id == session_id, S.c.owner == owner)
                    .values(**values, updated_at=datetime.now(UTC))
                    .returning(*SESSION)
                )
            ).first()
        if row is None:
            raise NotFound(f"session '{session_id}' not found")
        return row._mapping

    async def delete_session(self, owner: str, session_id: str) -> None:
        async with self.engine.begin() as conn:
            gone = (await conn.execute(S.delete().where(S.c.id == session_id, S.c.owner == owner))).rowcount
        if not gone:
            raise NotFound(f"session '{session_id}' not found")

    async def delete_all(self, owner: str) -> int:
        async with self.engine.begin() as conn:
            return int((await conn.execute(S.delete().where(S.c.owner == owner))).rowcount)

    async def import_session(
        self,
        owner: str,
        values: dict[str, Any],
        messages: list[dict[str, Any]],
        documents: list[dict[str, Any]] | None = None,
    ) -> str:
        """A whole session, its messages (parents before children) and its documents in context in one
        transaction: all or nothing."""
        session_id = new_id("ses")
        async with self.engine.begin() as conn:
            if values.get("project_id") is not None:
                await self._check_project(conn, owner, values["project_id"])
            await conn.execute(S.insert().values(id=session_id, owner=owner, **values))
            for start in range(0, len(messages), 500):
                batch = [{**m, "session_id": session_id} for m in messages[start : start + 500]]
                await conn.execute(M.insert(), batch)
            if documents:
                await conn.execute(D.insert(), [{**d, "session_id": session_id} for d in documents])
            await conn.execute(S.update().where(S.c.id == session_id).values(search=fts.rebuilt(S.c.id)))
        return session_id

    async def set_share(self, owner: str, session_id: str, token_hash: str | None) -> RowMapping:
        shared_at = datetime.now(UTC) if token_hash else None
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    S.update()
                    .where(S.c.id == session_id, S.c.owner == owner)
                    .values(share_token_hash=token_hash, shared_at=shared_at)
                    .returning(*SESSION)
                )
            ).first()
        if row is None:
            raise NotFound(f"session '{session_id}' not found")
        return row._mapping

    # --- messages --------------------------------------------------------------------------------------------
    async def turn_context(
        self, owner: str, session_id: str, parent_id: str | None, *, explicit: bool
    ) -> tuple[RowMapping, list[RowMapping]]:
        """The session and the path from its first message down to ``parent_id`` (``explicit``) or to its active
        leaf, first first (empty: no such message). Off the chat turn's hot path (compaction on request); the turn
        itself reads the same through backend/chat/turn_sql.py."""
        async with self.fast.connect() as conn:
            session = await self.session(owner, session_id, conn)
            leaf = parent_id if explicit else session["active_leaf_id"]
            if leaf is None:
                return session, []
            top = sa.select(M).where(M.c.id == leaf, M.c.session_id == session_id).cte("path", recursive=True)
            path = top.union_all(sa.select(M).join(top, M.c.id == top.c.parent_id))
            rows = [r._mapping for r in (await conn.execute(sa.select(path))).all()]
        return session, rows[::-1]

    async def messages(self, session_id: str) -> list[RowMapping]:
        """Every message of a session (every branch), oldest first."""
        query = sa.select(M).where(M.c.session_id == session_id).order_by(M.c.created_at, M.c.id)
        async with self.engine.connect() as conn:
            return [r._mapping for r in (await conn.execute(query)).all()]

    # Writes during a turn are single statements without a transaction around them (``fast``: autocommit, one
    # round trip each; a data-modifying WITH keeps the message and its session in step).
    async def add_message(self, session_id: str, values: dict[str, Any], *, searchable: bool = True) -> None:
        """Inserts a message (``values`` holds its id) as the session's active leaf; a ``searchable`` one's words
        join the session's search vector (an answer's join when it is finished)."""
        now = datetime.now(UTC)
        session: dict[str, Any] = {"active_leaf_id": values["id"], "updated_at": now}
        if searchable:
            session["search"] = fts.appended(values["content"])
        insert = M.insert().values(session_id=session_id, created_at=now, updated_at=now, **values).cte("added")
        async with self.fast.connect() as conn:
            await conn.execute(S.update().where(S.c.id == session_id).values(**session).add_cte(insert))

    async def update_message(self, message_id: str, values: dict[str, Any]) -> None:
        async with self.fast.connect() as conn:
            await conn.execute(M.update().where(M.c.id == message_id).values(updated_at=datetime.now(UTC), **values))

    async def finish_message(
        self, session_id: str, message_id: str, values: dict[str, Any], prompt_tokens: int, completion_tokens: int
    ) -> None:
        """The answer's last write: its content, status and metadata, and the session's token sums, in one go."""
        now = datetime.now(UTC)
        message = M.update().where(M.c.id == message_id).values(updated_at=now, **values).cte("finished")
        session = (
            S.update()
            .where(S.c.id == session_id)
            .values(
                prompt_tokens=S.c.prompt_tokens + prompt_tokens,
                completion_tokens=S.c.completion_tokens + completion_tokens,
                search=fts.appended(values["content"]),
                updated_at=now,
            )
        )
        async with self.fast.connect() as conn:
            await conn.execute(session.add_cte(message))

    async def remove_message(self, session_id: str, message_id: str, restore_leaf: str | None) -> None:
        """Takes back a message no answer followed (the call failed before it began); the previous leaf returns."""
        async with self.engine.begin() as conn:
            await conn.execute(M.delete().where(M.c.id == message_id, M.c.session_id == session_id))
            leaf = sa.case((S.c.active_leaf_id == message_id, restore_leaf), else_=S.c.active_leaf_id)
            await conn.execute(
                S.update().where(S.c.id == session_id).values(active_leaf_id=leaf, search=fts.rebuilt(S.c.id))
            )

    # --- projects --------------------------------------------------------------------------------------------
    async def _check_project(self, conn: AsyncConnection, owner: str, project_id: str) -> None:
        found = (await conn.execute(sa.select(P.c.id).where(P.c.id == project_id, P.c.owner == owner))).first()
        if found is None:
            raise NotFound(f"project '{project_id}' not found")

    async def create_project(self, owner: str, name: str) -> RowMapping:
        async with self.engine.begin() as conn:
            row = (await conn.execute(P.insert().values(id=new_id("prj"), owner=owner, name=name).returning(P))).one()
        return row._mapping

    async def project(self, owner: str, project_id: str) -> RowMapping:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(P).where(P.c.id == project_id, P.c.owner == owner))).first()
        if row is None:
            raise NotFound(f"project '{project_id}' not found")
        return row._mapping

    def projects_query(self, owner: str) -> sa.Select[Any]:
        return sa.select(P).where(P.c.owner == owner)

    async def rename_project(self, owner: str, project_id: str, name: str) -> RowMapping:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    P.update()
                    .where(P.c.id == project_id, P.c.owner == owner)
                    .values(name=name, updated_at=datetime.now(UTC))
                    .returning(P)
                )
            ).first()
        if row is None:
            raise NotFound(f"project '{project_id}' not found")
        return row._mapping

    async def delete_project(self, owner: str, project_id: str, *, with_sessions: bool) -> None:
        """Deletes a project; its sessions are deleted with it, or (the default) kept outside any project."""
        async with self.engine.begin() as conn:
            await self._check_project(conn, owner, project_id)
            if with_sessions:
                await conn.execute(S.delete().where(S.c.project_id == project_id, S.c.owner == owner))
            await conn.execute(P.delete().where(P.c.id == project_id, P.c.owner == owner))
