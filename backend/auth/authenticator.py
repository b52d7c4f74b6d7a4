"""Turns request headers into a :class:`Principal`, with a per-process cache kept honest by the change feed.

A token acts for its owner with the token's own groups ∩ the owner's current groups. Local users (named by an
admin) have the groups of their valid tokens. OIDC users have the groups their provider last confirmed, at a
browser sign-in or with a verified provider JWT; groups not re-confirmed within ``group_refresh_hours`` stop
counting for the user's API tokens. Limits follow the owner's groups, however a token narrows them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from backend.auth.known_tokens import KnownTokens
from backend.auth.oidc import Identity, OIDCVerifier, looks_like_jwt
from backend.auth.principal import Principal
from backend.auth.roles import Roles
from backend.auth.tokens import TOPIC, TOPIC_NEW, TokenStore, hash_token
from backend.auth.users import LOCAL_ISSUER, UserStore
from backend.auth.users import TOPIC as USERS_TOPIC
from backend.db.outage import OutageGate, outage_reason
from backend.errors import DatabaseUnavailable, Forbidden, NotFound, Unauthorized

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

    def __init__(
        self,
        store: TokenStore,
        roles: Roles,
        cache_seconds: float,
        oidc: OIDCVerifier | None = None,
        users: UserStore | None = None,
        group_refresh_hours: float = 24.0,
    ) -> None:
        self._store = store
        self.roles = roles
        self.oidc = oidc
        self.users = users or UserStore(store.engine)
        self._ttl = cache_seconds
        self._group_refresh = timedelta(hours=group_refresh_hours)
        self._cache: dict[str, tuple[float, Principal]] = {}
        # Principals no longer trusted (the feed was interrupted), served only while the database is unreachable.
        self._fallback: dict[str, Principal] = {}
        self._gate = OutageGate("API token principals")
        self.known = KnownTokens(store.known_hashes)

    def on_change(self, topic: str) -> None:
        if topic == TOPIC_NEW:
            self.known.invalidate()
        elif topic in (TOPIC, USERS_TOPIC):
            self._cache.clear()
            self._fallback.clear()
        elif topic == "*":  # the feed was interrupted: anything may have changed meanwhile
            if len(self._fallback) + len(self._cache) > _MAX_CACHED:
                self._fallback.clear()
            self._fallback.update((key, hit[1]) for key, hit in self._cache.items())
            self._cache.clear()
            self.known.invalidate(full=True)

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
            # While the database is unreachable the principal as last loaded serves (nothing can change meanwhile).
            stale = hit[1] if hit is not None else self._fallback.get(key)
            if stale is not None and self._gate.closed():
                principal = stale
            else:
                try:
                    principal, ttl = await self._gate.load(lambda: self._lookup(key))
                except DatabaseUnavailable:
                    if stale is None:
                        raise
                    principal = stale
                else:
                    self._remember(key, now + ttl, principal)
        if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
            raise Unauthorized("API token expired")
        return principal

    async def _lookup(self, key: str) -> tuple[Principal, float]:
        if not await self.known.may_exist(key):
            raise Unauthorized("invalid API token")
        return await self._load(key)

    async def _authenticate_jwt(self, token: str) -> Principal:
        assert self.oidc is not None
        key = "jwt:" + hash_token(token)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        identity = await self.oidc.verify(token)
        issued_at = identity.claims.get("iat")
        try:
            principal = await self.oidc_sign_in(identity, issued_at if isinstance(issued_at, int | float) else None)
        except Exception as exc:
            if outage_reason(exc) is None:
                raise
            # The provider vouched for it; only recording the groups it states has to wait for the database.
            principal = self.identity_principal(
                identity.username, identity.groups, identity.expires_at, display_name=identity.display_name
            )
        # Cached no longer than the token lives (a signature check costs ~0.1 ms; a dict lookup far less).
        self._remember(key, time.monotonic() + min(self._ttl, identity.expires_at - time.time()), principal)
        return principal

    async def oidc_sign_in(self, identity: Identity, as_of: float | None) -> Principal:
        """The provider vouched for ``identity`` (a browser sign-in now, or a verified JWT issued at ``as_of``):
        record the user and the groups it states (their API tokens follow at once), then the principal (403 outside
        the user group)."""
        when = datetime.fromtimestamp(as_of, UTC) if as_of is not None else None
        await self.users.confirm(identity.issuer, identity.subject, identity.display_name, identity.groups, when)
        return self.identity_principal(
            identity.username, identity.groups, identity.expires_at, display_name=identity.display_name
        )

    def identity_principal(
        self,
        username: str,
        groups: tuple[str, ...] | list[str],
        expires_at: float,
        display_name: str | None = None,
    ) -> Principal:
        if expires_at <= time.time():
            raise Unauthorized("session or token expired: sign in again")
        return self.roles.principal(
            username, groups, expires_at=datetime.fromtimestamp(expires_at, UTC), display_name=display_name
        )

    async def principal_for_user(self, user_id: str) -> Principal:
        """What ``user_id`` may do now, for work done in their name while they are not calling (a pipeline's runs).

        The rules their own credentials follow, without a token's narrowing: a local user has the groups of their
        valid (unrevoked, unexpired) tokens; an OIDC user the groups their provider last confirmed, and none once
        that is older than ``group_refresh_hours``. Read from the database on every call, never cached. NotFound for
        an unknown user; Forbidden for one outside the group that may use LISA."""
        user = await self.users.get(user_id)
        if user is None:
            raise NotFound(f"user '{user_id}' not found")
        if user.is_local:
            groups = await self._store.active_groups(user.id)
        else:
            confirmed = user.groups_confirmed_at
            fresh = confirmed is not None and confirmed + self._group_refresh > datetime.now(UTC)
            groups = user.groups if fresh else []
        return self.roles.principal(user.id, groups, display_name=user.display_name)

    def _remember(self, key: str, until: float, principal: Principal) -> None:
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (until, principal)
        self._fallback.pop(key, None)

    async def _load(self, token_hash: str) -> tuple[Principal, float]:
        """The principal for a token, and how long it may be cached."""
        grant = await self._store.find_by_hash(token_hash)
        if grant is None:
            raise Unauthorized("invalid API token")
        token = grant.token
        if token.revoked_at is not None:
            raise Unauthorized("API token revoked")
        ttl = self._ttl
        stale_note = ""
        if grant.owner_issuer in (None, LOCAL_ISSUER):
            groups, owner_groups = set(token.groups), grant.owner_token_groups
        else:
            confirmed = grant.owner_groups_confirmed_at
            fresh_until = confirmed + self._group_refresh if confirmed is not None else None
            now = datetime.now(UTC)
            if fresh_until is not None and fresh_until > now:
                groups = set(token.groups) & set(grant.owner_groups)
                ttl = min(ttl, (fresh_until - now).total_seconds())
            else:
                groups = set()
                stale_note = (
                    f" (the identity provider has not confirmed this user's groups in the last "
                    f"{self._group_refresh.total_seconds() / 3600:g} hours: sign in again)"
                )
            owner_groups = grant.owner_groups
        try:
            principal = self.roles.principal(
                token.username, groups, token_id=token.id, expires_at=token.expires_at,
                display_name=grant.owner_display_name, owner_groups=owner_groups,
            )  # fmt: skip
        except Forbidden as exc:
            raise Forbidden(exc.message + stale_note) from exc
        return principal, ttl
