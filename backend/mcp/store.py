"""MCP server registrations in the database: the SQL, the sealing of header and environment values, and who sees
which row. Every write is audited (sealed values masked) and announced on the change feed as ``mcp:<id>``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit import log as audit
from backend.auth.principal import Principal, access_filter, can_access
from backend.db import tables
from backend.db.changes import publish
from backend.errors import NotFound
from backend.paging import PageParams, read_page
from backend.registry.secrets import SecretBox

T = tables.mcp_servers
TOPIC_PREFIX = "mcp:"
SEALED = ("headers_encrypted", "env_encrypted")


def topic(server_id: str) -> str:
    return TOPIC_PREFIX + server_id


def new_id() -> str:
    return "mcp_" + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How to reach one server, secrets opened: it never leaves the process."""

    id: str
    name: str
    transport: str
    url: str | None
    headers: dict[str, str]
    command: str | None
    args: tuple[str, ...]
    env: dict[str, str]

    @property
    def process_key(self) -> tuple[Any, ...]:
        """What a hosted process is started from: a change of any of it needs a new process."""
        return (self.command, self.args, tuple(sorted(self.env.items())))


def usable(principal: Principal, row: RowMapping, include_personal: bool = True) -> bool:
    """Whether the principal may use this server's tools: an enabled global server its groups allow, or an enabled
    personal server of its own (when personal servers are allowed at all)."""
    if not row["enabled"]:
        return False
    if row["owner"] is None:
        return can_access(principal, row["allowed_groups"])
    return include_personal and row["owner"] == principal.username


def visible(principal: Principal, row: RowMapping) -> bool:
    """Whether the principal may see this registration: admins every one; users the global servers they may use
    and their own personal servers (enabled or not)."""
    if principal.is_admin or row["owner"] == principal.username:
        return True
    return row["owner"] is None and usable(principal, row)


def visible_filter(principal: Principal, all_users: bool = False) -> sa.ColumnElement[bool]:
    """``visible`` as SQL; admins see other users' personal servers only when asking for all users."""
    own = T.c.owner == principal.username
    if principal.is_admin:
        return sa.true() if all_users else sa.or_(T.c.owner.is_(None), own)
    shared = sa.and_(T.c.owner.is_(None), T.c.enabled.is_(True), access_filter(principal, T.c.allowed_groups))
    return sa.or_(shared, own)


def usable_filter(principal: Principal, include_personal: bool = True) -> sa.ColumnElement[bool]:
    shared = sa.and_(T.c.owner.is_(None), access_filter(principal, T.c.allowed_groups))
    own = sa.and_(T.c.owner == principal.username, sa.true() if include_personal else sa.false())
    return sa.and_(T.c.enabled.is_(True), sa.or_(shared, own))


def _audit_view(row: RowMapping | dict[str, Any]) -> dict[str, Any]:
    return {k: (audit.MASK if k in SEALED and v is not None else v) for k, v in dict(row).items()}


class McpServerStore:
    def __init__(self, engine: AsyncEngine, box: SecretBox, on_commit: Callable[[str], None] = lambda _t: None) -> None:
        self.engine = engine
        self.box = box
        self._on_commit = on_commit  # this process sees its own writes at once; others via the change feed

    # --- sealing --------------------------------------------------------------------------------------------------
    def seal(self, values: dict[str, str] | None) -> tuple[str | None, list[str]]:
        """The sealed form of a name -> value mapping and its names (None and [] for none)."""
        if not values:
            return None, []
        return self.box.seal(json.dumps(values)), sorted(values)

    def _open(self, sealed: str | None, what: str) -> dict[str, str]:
        if sealed is None:
            return {}
        opened: dict[str, str] = json.loads(self.box.open(sealed, what))
        return opened

    def config(self, row: RowMapping) -> ServerConfig:
        return ServerConfig(
            id=row["id"],
            name=row["name"],
            transport=row["transport"],
            url=row["url"],
            headers=self._open(row["headers_encrypted"], f"the headers of MCP server {row['id']!r}"),
            command=row["command"],
            args=tuple(row["args"]),
            env=self._open(row["env_encrypted"], f"the environment of MCP server {row['id']!r}"),
        )

    # --- reads ----------------------------------------------------------------------------------------------------
    async def get(self, server_id: str) -> RowMapping | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(T).where(T.c.id == server_id))).first()
        return row._mapping if row else None

    async def page(self, condition: sa.ColumnElement[bool], params: PageParams) -> tuple[list[RowMapping], str | None]:
        return await read_page(self.engine, sa.select(T).where(condition), T.c.id, params)

    async def rows(self, condition: sa.ColumnElement[bool]) -> list[RowMapping]:
        async with self.engine.connect() as conn:
            return [r._mapping for r in (await conn.execute(sa.select(T).where(condition).order_by(T.c.id))).all()]

    # --- writes ---------------------------------------------------------------------------------------------------
    async def insert(self, values: dict[str, Any], actor: Principal) -> RowMapping:
        async with self.engine.begin() as conn:
            row = (await conn.execute(T.insert().values(**values).returning(T))).one()._mapping
            await audit.record(conn, actor, "mcp_server.create", "mcp_server", row["id"], after=_audit_view(row))
            await publish(conn, topic(row["id"]))
        self._on_commit(topic(row["id"]))
        return row

    async def update(
        self, server_id: str, changes: Callable[[RowMapping], dict[str, Any]], actor: Principal
    ) -> RowMapping:
        """Applies ``changes(current_row)`` (which may raise to refuse, writing nothing) under a row lock."""
        async with self.engine.begin() as conn:
            found = (await conn.execute(sa.select(T).where(T.c.id == server_id).with_for_update())).first()
            if found is None:
                raise NotFound(f"MCP server '{server_id}' not found")
            current = found._mapping
            values = {**changes(current), "updated_at": datetime.now(UTC)}
            row = (await conn.execute(T.update().where(T.c.id == server_id).values(**values).returning(T))).one()
            await audit.record(
                conn,
                actor,
                "mcp_server.update",
                "mcp_server",
                server_id,
                before=_audit_view(current),
                after=_audit_view(row._mapping),
            )
            await publish(conn, topic(server_id))
        self._on_commit(topic(server_id))
        return row._mapping

    async def delete(self, server_id: str, actor: Principal) -> None:
        async with self.engine.begin() as conn:
            gone = (await conn.execute(T.delete().where(T.c.id == server_id).returning(T))).first()
            if gone is None:
                raise NotFound(f"MCP server '{server_id}' not found")
            await audit.record(
                conn, actor, "mcp_server.delete", "mcp_server", server_id, before=_audit_view(gone._mapping)
            )
            await publish(conn, topic(server_id))
        self._on_commit(topic(server_id))
