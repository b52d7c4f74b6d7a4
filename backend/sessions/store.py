"""SQL for ``browser_sessions`` and ``sign_in_codes``, in one place.

The browser holds only a random session id (256 bits); the server keeps its SHA-256 with who signed in, until
when, and whether the session was ended. Logging out ends it here, so a copied cookie stops working at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.auth.tokens import hash_token
from backend.db import tables

S = tables.browser_sessions
C = tables.sign_in_codes
_MAX_ID_CHARS = 128  # a longer cookie or code is not one of ours: not even hashed
_KEEP_ENDED = timedelta(days=1)  # ended sessions and codes are deleted this long after they expire


@dataclass(frozen=True, slots=True)
class BrowserSession:
    kind: str  # "token" | "oidc"
    username: str
    token_hash: str | None
    identity: dict[str, Any] | None
    expires_at: datetime


def _hash(value: str) -> str | None:
    return hash_token(value) if value and len(value) <= _MAX_ID_CHARS else None


class SessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(
        self,
        *,
        username: str,
        expires_at: datetime,
        token_hash: str | None = None,
        identity: dict[str, Any] | None = None,
        replacing: str | None = None,
    ) -> str:
        """A new session (its id is the cookie value); ``replacing`` (the caller's previous session) ends."""
        if (token_hash is None) == (identity is None):
            raise ValueError("a session comes from either an API token or an OIDC identity")
        session_id = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            if replacing and (old := _hash(replacing)):
                await _end(conn, old)
            await conn.execute(
                S.insert().values(
                    id_hash=hash_token(session_id),
                    kind="token" if token_hash else "oidc",
                    username=username,
                    token_hash=token_hash,
                    identity=identity,
                    expires_at=expires_at,
                )
            )
            await conn.execute(S.delete().where(S.c.expires_at < datetime.now(UTC) - _KEEP_ENDED))
        return session_id

    async def get(self, session_id: str) -> BrowserSession | None:
        """The live session with this id: None when unknown, ended or expired."""
        key = _hash(session_id)
        if key is None:
            return None
        query = sa.select(S).where(S.c.id_hash == key, S.c.revoked_at.is_(None), S.c.expires_at > sa.func.now())
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        m = row._mapping
        return BrowserSession(m["kind"], m["username"], m["token_hash"], m["identity"], m["expires_at"])

    async def end(self, session_id: str) -> None:
        if key := _hash(session_id):
            async with self.engine.begin() as conn:
                await _end(conn, key)

    async def create_code(self, token_hash: str, expires_at: datetime) -> str:
        """A one-time sign-in code for the API token with this hash (the printed link carries it)."""
        code = secrets.token_urlsafe(24)
        async with self.engine.begin() as conn:
            await conn.execute(C.delete().where(C.c.expires_at < datetime.now(UTC) - _KEEP_ENDED))
            await conn.execute(
                C.insert().values(code_hash=hash_token(code), token_hash=token_hash, expires_at=expires_at)
            )
        return code

    async def consume_code(self, code: str) -> str | None:
        """The token hash behind a live, unused code, which this call uses up; None for any other code."""
        key = _hash(code)
        if key is None:
            return None
        async with self.engine.begin() as conn:
            used = await conn.execute(
                C.update()
                .where(C.c.code_hash == key, C.c.used_at.is_(None), C.c.expires_at > sa.func.now())
                .values(used_at=sa.func.now())
                .returning(C.c.token_hash)
            )
            token_hash: str | None = used.scalar_one_or_none()
        return token_hash


async def _end(conn: AsyncConnection, key: str) -> None:
    await conn.execute(S.update().where(S.c.id_hash == key, S.c.revoked_at.is_(None)).values(revoked_at=sa.func.now()))
