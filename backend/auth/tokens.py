"""API tokens: generated once, stored only as SHA-256 hashes, looked up by hash.

A token created with another token remembers it (``parent_id``); revoking a token revokes every token created
from it, however deep. Retiring the bootstrap token at start-up is not a revocation and does not cascade.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.audit import log as audit
from backend.auth.principal import Principal
from backend.auth.users import ensure_local, is_local_name
from backend.db import tables
from backend.db.changes import publish
from backend.errors import BadRequest, Unauthorized
from backend.paging import PageParams, read_page

TOKEN_PREFIX = "lisa_"
TOPIC = "tokens"  # a token was revoked (or anything else that invalidates cached principals)
TOPIC_NEW = "tokens:new"  # a token was created: the known-token index must learn it
# Tokens stay in the known-token index this long after they expire, so their holders hear "expired", not "invalid".
INDEX_RETENTION = timedelta(days=30)
T = tables.api_tokens
U = tables.users


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
    parent_id: str | None = None
    display_name: str | None = None  # the owner's, where the query joined it


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A token with what its owner currently is: all the authenticator needs, in one query."""

    token: TokenRow
    owner_issuer: str | None  # None: no users row (treated as local)
    owner_display_name: str | None
    owner_groups: list[str]  # OIDC owners: as the provider last confirmed them
    owner_groups_confirmed_at: datetime | None
    owner_token_groups: list[str]  # the union of the owner's active tokens' groups (a local user's groups)


def _row(r: sa.Row[Any] | sa.RowMapping) -> TokenRow:
    """A token as its row holds it; ``display_name`` only where the query joined the owner."""
    m = r if isinstance(r, sa.RowMapping) else r._mapping
    return TokenRow(**{name: m[name] for name in _ROW_FIELDS if name in m})


_ROW_FIELDS = [f.name for f in fields(TokenRow)]
_COLUMNS = [c for c in T.c if c.name != "token_hash"]


def _with_owner_name() -> sa.Select[tuple[object, ...]]:
    return sa.select(*_COLUMNS, U.c.display_name).select_from(T.outerjoin(U, U.c.id == T.c.username))


_GRANT = sa.text(
    """
    SELECT t.id, t.name, t.prefix, t.username, t.groups, t.created_by, t.is_bootstrap, t.created_at, t.expires_at,
           t.revoked_at, t.parent_id, u.display_name, u.issuer AS owner_issuer, u.groups AS owner_groups,
           u.groups_confirmed_at AS owner_groups_confirmed_at,
           (SELECT coalesce(jsonb_agg(DISTINCT g.value), '[]'::jsonb)
              FROM api_tokens o CROSS JOIN LATERAL jsonb_array_elements_text(o.groups) AS g(value)
             WHERE o.username = t.username AND o.revoked_at IS NULL AND o.expires_at > now()) AS owner_token_groups
      FROM api_tokens t LEFT JOIN users u ON u.id = t.username
     WHERE t.token_hash = :token_hash
    """
).columns(groups=JSONB, owner_groups=JSONB, owner_token_groups=JSONB)

_ACTIVE_GROUPS = sa.text(
    """
    SELECT DISTINCT g.value
      FROM api_tokens t CROSS JOIN LATERAL jsonb_array_elements_text(t.groups) AS g(value)
     WHERE t.username = :username AND t.revoked_at IS NULL AND t.expires_at > now()
    """
)

# The tokens given and everything created from them, however deep.
_TREE = sa.text(
    """
    WITH RECURSIVE tree(id) AS (
        SELECT id FROM api_tokens WHERE id = ANY(:roots)
        UNION SELECT c.id FROM api_tokens c JOIN tree ON c.parent_id = tree.id
    )
    SELECT id FROM tree
    """
).bindparams(sa.bindparam("roots", type_=ARRAY(sa.String)))


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
        parent_id: str | None = None,
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
            "parent_id": parent_id,
        }
        async with self.engine.begin() as conn:
            if parent_id is not None:
                # Shared lock: a concurrent revocation of the parent waits for us, then revokes this token too.
                parent = (
                    await conn.execute(
                        sa.select(T.c.revoked_at, T.c.expires_at).where(T.c.id == parent_id).with_for_update(read=True)
                    )
                ).first()
                if parent is None or parent.revoked_at is not None:
                    raise Unauthorized("API token revoked")
                if expires_at > parent.expires_at:
                    raise BadRequest("a token may not outlive the token that creates it")
            if is_local_name(username):
                await ensure_local(conn, username)
            await conn.execute(T.insert().values(**values))
            row = _row((await conn.execute(_with_owner_name().where(T.c.id == values["id"]))).one())
            await audit.record(conn, actor, "token.create", "token", row.id, after=asdict(row))
            await publish(conn, TOPIC_NEW)
        self._on_commit(TOPIC_NEW)
        return row, secret

    async def get(self, token_id: str) -> TokenRow | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(_with_owner_name().where(T.c.id == token_id))).first()
        return _row(r) if r else None

    async def find_by_hash(self, token_hash: str) -> TokenGrant | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(_GRANT, {"token_hash": token_hash})).first()
        if r is None:
            return None
        m = r._mapping
        return TokenGrant(
            token=_row(r),
            owner_issuer=m["owner_issuer"],
            owner_display_name=m["display_name"],
            owner_groups=list(m["owner_groups"] or []),
            owner_groups_confirmed_at=m["owner_groups_confirmed_at"],
            owner_token_groups=list(m["owner_token_groups"] or []),
        )

    async def active_groups(self, username: str) -> list[str]:
        """The union of the groups of a user's valid tokens: what a local user currently has."""
        async with self.engine.connect() as conn:
            return sorted((await conn.execute(_ACTIVE_GROUPS, {"username": username})).scalars())

    async def known_hashes(self, since: datetime | None) -> tuple[list[str], datetime]:
        """Hashes of tokens worth a database lookup (created at or after ``since``), and the database's clock."""
        query = sa.select(T.c.token_hash, sa.func.now()).where(T.c.expires_at > sa.func.now() - INDEX_RETENTION)
        if since is not None:
            query = query.where(T.c.created_at >= since)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            clock = rows[0][1] if rows else (await conn.execute(sa.select(sa.func.now()))).scalar_one()
        return [r[0] for r in rows], clock

    async def page(self, params: PageParams, *, username: str | None) -> tuple[list[TokenRow], str | None]:
        """A page of tokens (of one user, or of everyone), and the next page's cursor."""
        query = _with_owner_name()
        if username is not None:
            query = query.where(T.c.username == username)
        rows, next_cursor = await read_page(self.engine, query, T.c.id, params)
        return [_row(m) for m in rows], next_cursor

    async def revoke(self, token_id: str, *, actor: Principal | None = None) -> int:
        """Revoke a token and every token created from it; the number of tokens this revoked."""
        return await self._revoke_trees(T.c.id == token_id, actor)

    async def revoke_user(self, username: str, *, actor: Principal | None = None) -> int:
        """Revoke all of a user's tokens (and every token created from them); how many this revoked."""
        return await self._revoke_trees(T.c.username == username, actor)

    async def _revoke_trees(self, roots: sa.ColumnElement[bool], actor: Principal | None) -> int:
        now = datetime.now(UTC)
        revoked = 0
        async with self.engine.begin() as conn:
            # Locking the roots first waits out tokens being created from them right now (they hold a share lock).
            ids = list((await conn.execute(sa.select(T.c.id).where(roots).with_for_update())).scalars())
            if ids:
                # A token created from a descendant while we walk the tree is caught by the next pass (each pass
                # sees what committed before it; tokens under rows we already revoked wait for our commit).
                while n := await self._revoke_pass(conn, ids, now, actor):
                    revoked += n
            await publish(conn, TOPIC)
        self._on_commit(TOPIC)
        return revoked

    async def _revoke_pass(
        self, conn: AsyncConnection, roots: list[str], now: datetime, actor: Principal | None
    ) -> int:
        tree = list((await conn.execute(_TREE, {"roots": roots})).scalars())
        result = await conn.execute(
            T.update().where(T.c.id.in_(tree), T.c.revoked_at.is_(None)).values(revoked_at=now).returning(*_COLUMNS)
        )
        rows = [_row(r) for r in result.all()]
        for row in rows:
            after = asdict(row)
            await audit.record(
                conn, actor, "token.revoke", "token", row.id, before={**after, "revoked_at": None}, after=after
            )
        return len(rows)

    async def rotate_bootstrap(self, username: str, groups: list[str], expires_at: datetime) -> str:
        """Issue a new bootstrap token, then retire the earlier ones (each `lisa serve` start prints a fresh link).
        In that order, so the bootstrap admin never lacks a valid token in between (their pipelines run with the
        groups of their valid tokens).

        Retiring is not revoking: tokens an admin created with an earlier bootstrap token keep working (revoke
        that token through the API to revoke them too)."""
        row, secret = await self.create(
            name="bootstrap admin",
            username=username,
            groups=groups,
            created_by="lisa serve",
            expires_at=expires_at,
            is_bootstrap=True,
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                T.update()
                .where(T.c.is_bootstrap.is_(True), T.c.revoked_at.is_(None), T.c.id != row.id)
                .values(revoked_at=datetime.now(UTC))
            )
            await publish(conn, TOPIC)
        self._on_commit(TOPIC)
        return secret
