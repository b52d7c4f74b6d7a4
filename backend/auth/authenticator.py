"""Turns request headers into a :class:`Principal`, with a per-process cache kept honest by the change feed."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from backend.auth.oidc import OIDCVerifier, looks_like_jwt
from backend.auth.principal import Principal
from backend.auth.roles import Roles
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
    """API tokens (``lisa_...``, looked up by SHA-256) and, when configured, OIDC-issued JWTs."""

    def __init__(self, store: TokenStore, roles: Roles, cache_seconds: float, oidc: OIDCVerifier | None = None) -> None:
        self._store = store
        self.roles = roles
        self.oidc = oidc
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Principal]] = {}

    def on_change(self, topic: str) -> None:
        if topic in (TOPIC, "*"):
            self._cache.clear()

    async def authenticate(self, credential: str | None) -> Principal:
        if not credential:
            raise Unauthorized(MISSING)
        if self.oidc is not None and looks_like_jwt(credential):
            return await self._authenticate_jwt(credential)
        return await self.authenticate_hash(hash_token(credential))

    async def authenticate_hash(self, key: str) -> Principal:
        """The API-token check for a token known by its hash (a browser session stores nothing more)."""
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            principal = hit[1]
        else:
            principal = await self._load(key)
            self._remember(key, now + self._ttl, principal)
        if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
            raise Unauthorized("API token expired")
        return principal

    async def _authenticate_jwt(self, token: str) -> Principal:
        assert self.oidc is not None
        key = "jwt:" + hash_token(token)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        identity = await self.oidc.verify(token)
        principal = self.identity_principal(identity.username, identity.groups, identity.expires_at)
        # Cached no longer than the token lives (a signature check costs ~0.1 ms; a dict lookup far less).
        self._remember(key, time.monotonic() + min(self._ttl, identity.expires_at - time.time()), principal)
        return principal

    def identity_principal(self, username: str, groups: tuple[str, ...] | list[str], expires_at: float) -> Principal:
        if expires_at <= time.time():
            raise Unauthorized("session or token expired: sign in again")
        return self.roles.principal(username, groups, expires_at=datetime.fromtimestamp(expires_at, UTC))

    def _remember(self, key: str, until: float, principal: Principal) -> None:
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (until, principal)

    async def _load(self, token_hash: str) -> Principal:
        row = await self._store.find_by_hash(token_hash)
        if row is None:
            raise Unauthorized("invalid API token")
        if row.revoked_at is not None:
            raise Unauthorized("API token revoked")
        return self.roles.principal(row.username, row.groups, token_id=row.id, expires_at=row.expires_at)
