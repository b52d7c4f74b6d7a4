"""Turns request headers into a :class:`Principal`, with a per-process cache kept honest by the change feed."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from backend.auth.principal import Principal
from backend.auth.tokens import TOPIC, TokenStore, hash_token
from backend.errors import Unauthorized

MISSING = "missing credentials: send 'Authorization: Bearer <token>' or 'Api-Key: <token>'"
_MAX_CACHED = 50_000


def credential_from_headers(authorization: str | None, api_key: str | None) -> str | None:
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized("unsupported Authorization scheme: use 'Bearer <token>'")
    if api_key and api_key.strip():
        return api_key.strip()
    return None


class Authenticator:
    def __init__(self, store: TokenStore, admin_group: str, cache_seconds: float) -> None:
        self._store = store
        self._admin_group = admin_group
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Principal]] = {}

    def on_change(self, topic: str) -> None:
        if topic in (TOPIC, "*"):
            self._cache.clear()

    def principal_for(self, username: str, groups: list[str], token_id: str | None = None) -> Principal:
        return Principal(
            username=username,
            groups=frozenset(groups),
            is_admin=self._admin_group in groups,
            token_id=token_id,
        )

    async def authenticate(self, credential: str | None) -> Principal:
        if not credential:
            raise Unauthorized(MISSING)
        return await self.authenticate_hash(hash_token(credential))

    async def authenticate_hash(self, key: str) -> Principal:
        """The same check for a token known only by its hash (a browser session stores nothing more)."""
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            principal = hit[1]
        else:
            principal = await self._load(key)
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = (now + self._ttl, principal)
        if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
            raise Unauthorized("API token expired")
        return principal

    async def _load(self, token_hash: str) -> Principal:
        row = await self._store.find_by_hash(token_hash)
        if row is None:
            raise Unauthorized("invalid API token")
        if row.revoked_at is not None:
            raise Unauthorized("API token revoked")
        return Principal(
            username=row.username,
            groups=frozenset(row.groups),
            is_admin=self._admin_group in row.groups,
            token_id=row.id,
            expires_at=row.expires_at,
        )
