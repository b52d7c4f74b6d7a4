"""People, keyed on the identity provider's issuer and ``sub``, never on a claim they can edit.

``users.id`` is the stable username every other table refers to (token owners, limits, usage, audit, RAG
ownership). Local users (issuer ``local``: the bootstrap admin, and the users admins issue tokens for) are named by
an admin, so their id is that name; OIDC users get ``oidc:`` + a digest of issuer and ``sub``, which no claim can
steer, and their editable name (``preferred_username``, ...) is only the display name. Local names may not contain
``:``, so the two kinds never collide.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.db import tables
from backend.db.changes import publish
from backend.paging import PageParams, read_page

LOCAL_ISSUER = "local"
OIDC_PREFIX = "oidc:"
TOPIC = "users"  # a user's confirmed groups changed: cached token principals must be rebuilt
LOCAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
U = tables.users


def oidc_user_id(issuer: str, subject: str) -> str:
    return OIDC_PREFIX + hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:32]


def is_local_name(name: str) -> bool:
    return LOCAL_NAME.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class UserRow:
    id: str
    issuer: str
    subject: str
    display_name: str
    groups: list[str]
    groups_confirmed_at: datetime | None
    created_at: datetime
    last_seen_at: datetime

    @property
    def is_local(self) -> bool:
        return self.issuer == LOCAL_ISSUER


def _row(r: sa.Row[Any] | sa.RowMapping) -> UserRow:
    m = r if isinstance(r, sa.RowMapping) else r._mapping
    return UserRow(**{name: m[name] for name in _ROW_FIELDS})


_ROW_FIELDS = [f.name for f in fields(UserRow)]


async def ensure_local(conn: AsyncConnection, name: str) -> None:
    """The local user ``name`` exists (inside the caller's transaction)."""
    await conn.execute(
        insert(U)
        .values(id=name, issuer=LOCAL_ISSUER, subject=name, display_name=name)
        .on_conflict_do_nothing(index_elements=[U.c.id])
    )


class UserStore:
    """SQL for the ``users`` table, in one place."""

    def __init__(self, engine: AsyncEngine, on_commit: Callable[[str], None] = lambda _t: None) -> None:
        self.engine = engine
        self._on_commit = on_commit

    async def confirm(
        self, issuer: str, subject: str, display_name: str, groups: Iterable[str], as_of: datetime | None
    ) -> UserRow:
        """The identity provider vouched for this person (a sign-in, or a verified JWT issued at ``as_of``): record
        who they are and, unless LISA already holds newer evidence, their groups and when they held them. Evidence
        never moves backwards, so a JWT issued before a sign-in cannot restore a group the sign-in took away; without
        ``as_of`` (a JWT with no ``iat``) the groups are left as they were. A change of groups reaches every
        process's cached tokens at once."""
        user_id = oidc_user_id(issuer, subject)
        current = sorted(set(groups))
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            before = (
                await conn.execute(
                    sa.select(U.c.groups, U.c.groups_confirmed_at).where(U.c.id == user_id).with_for_update()
                )
            ).first()
            newer = as_of is not None and (before is None or before[1] is None or as_of >= before[1])
            values: dict[str, object] = {"display_name": display_name[:256], "last_seen_at": now}
            if newer:
                values |= {"groups": current, "groups_confirmed_at": as_of}
            stmt = insert(U).values(id=user_id, issuer=issuer, subject=subject, **values)
            stmt = stmt.on_conflict_do_update(index_elements=[U.c.id], set_=values)
            row = _row((await conn.execute(stmt.returning(U))).one())
            changed = newer and before is not None and sorted(before[0]) != current
            if changed:
                await publish(conn, TOPIC)
        if changed:
            self._on_commit(TOPIC)
        return row

    async def get(self, user_id: str) -> UserRow | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(U).where(U.c.id == user_id))).first()
        return _row(r) if r else None

    async def page(self, params: PageParams, *, name: str | None = None) -> tuple[list[UserRow], str | None]:
        """A page of users (with this display name, if given), and the next page's cursor."""
        query = sa.select(U)
        if name:
            query = query.where(U.c.display_name == name)
        rows, next_cursor = await read_page(self.engine, query, U.c.id, params)
        return [_row(m) for m in rows], next_cursor
