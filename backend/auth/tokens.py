"""API tokens: generated once, stored only as SHA-256 hashes, looked up by hash."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit import log as audit
from backend.auth.principal import Principal
from backend.db import tables
from backend.db.changes import publish

TOKEN_PREFIX = "lisa_"
TOPIC = "tokens"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    name: str
    prefix: str
    username: str
    groups: list[str]
    created_by: str
    is_bootstrap: bool
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


def _row(r: sa.Row) -> TokenRow:
    m = r._mapping
    return TokenRow(
        id=m["id"],
        name=m["name"],
        prefix=m["prefix"],
        username=m["username"],
        groups=list(m["groups"]),
        created_by=m["created_by"],
        is_bootstrap=m["is_bootstrap"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
    )


_COLUMNS = [c for c in tables.api_tokens.c if c.name != "token_hash"]


class TokenStore:
    """SQL for the ``api_tokens`` table, in one place."""

    def __init__(self, engine: AsyncEngine, on_commit: Callable[[str], None] = lambda _t: None) -> None:
        self.engine = engine
        self._on_commit = on_commit

    async def create(
        self,
        *,
        name: str,
        username: str,
        groups: list[str],
        created_by: str,
        expires_at: datetime,
        is_bootstrap: bool = False,
        actor: Principal | None = None,
    ) -> tuple[TokenRow, str]:
        secret = new_secret()
        values = {
            "id": new_token_id(),
            "name": name,
            "token_hash": hash_token(secret),
            "prefix": secret[: len(TOKEN_PREFIX) + 6],
            "username": username,
            "groups": sorted(set(groups)),
            "created_by": created_by,
            "is_bootstrap": is_bootstrap,
            "expires_at": expires_at,
        }
        async with self.engine.begin() as conn:
            result = await conn.execute(tables.api_tokens.insert().values(**values).returning(*_COLUMNS))
            row = _row(result.one())
            await audit.record(conn, actor, "token.create", "token", row.id, after=asdict(row))
        return row, secret

    async def get(self, token_id: str) -> TokenRow | None:
        async with self.engine.connect() as conn:
            result = await conn.execute(sa.select(*_COLUMNS).where(tables.api_tokens.c.id == token_id))
            r = result.first()
        return _row(r) if r else None

    async def find_by_hash(self, token_hash: str) -> TokenRow | None:
        async with self.engine.connect() as conn:
            result = await conn.execute(sa.select(*_COLUMNS).where(tables.api_tokens.c.token_hash == token_hash))
            r = result.first()
        return _row(r) if r else None

    async def page(self, *, username: str | None, after_id: str | None, limit: int) -> list[TokenRow]:
        t = tables.api_tokens
        query = sa.select(*_COLUMNS).order_by(t.c.id).limit(limit)
        if username is not None:
            query = query.where(t.c.username == username)
        if after_id:
            query = query.where(t.c.id > after_id)
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(query)).all()]

    async def revoke(self, token_id: str, *, actor: Principal | None = None) -> None:
        t = tables.api_tokens
        async with self.engine.begin() as conn:
            revoked = await conn.execute(
                t.update()
                .where(t.c.id == token_id, t.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
                .returning(*_COLUMNS)
            )
            row = revoked.first()
            if row is not None:
                after = asdict(_row(row))
                await audit.record(
                    conn, actor, "token.revoke", "token", token_id, before={**after, "revoked_at": None}, after=after
                )
            await publish(conn, TOPIC)
        self._on_commit(TOPIC)

    async def rotate_bootstrap(self, username: str, groups: list[str], expires_at: datetime) -> str:
        """Revoke earlier bootstrap tokens and issue a new one (each `lisa serve` start prints a fresh link)."""
        t = tables.api_tokens
        async with self.engine.begin() as conn:
            await conn.execute(
                t.update()
                .where(t.c.is_bootstrap.is_(True), t.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            await publish(conn, TOPIC)
        self._on_commit(TOPIC)
        _, secret = await self.create(
            name="bootstrap admin",
            username=username,
            groups=groups,
            created_by="lisa serve",
            expires_at=expires_at,
            is_bootstrap=True,
        )
        return secret
