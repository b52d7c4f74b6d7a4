"""OIDC: the provider's JWTs as bearer credentials, and the browser sign-in's OAuth client.

Bearer JWTs: RS256 (or another asymmetric algorithm) against the provider's JWKS, found through discovery; issuer,
audience, expiry and not-before checked; keys refetched when the provider rotates them (an unknown ``kid``), at most
once per ``min_refresh_seconds``. The browser sign-in (the authorization code flow of ``api/routes/oidc_login.py``)
uses authlib's client, built here by ``oauth_client`` so that the service graph never imports a router.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.starlette_client import OAuth
from joserfc import jws, jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from backend.auth.users import oidc_user_id
from backend.errors import Unauthorized, UpstreamError

ALLOWED_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]


@dataclass(frozen=True, slots=True)
class Identity:
    username: str  # stable: derived from issuer + sub (backend/auth/users.py), never from an editable claim
    groups: tuple[str, ...]
    expires_at: float
    claims: dict[str, Any]
    issuer: str = ""
    subject: str = ""
    display_name: str = ""  # the first of the configured name claims present: for people to read, nothing more


def claim_at(claims: dict[str, Any], path: str) -> Any:
    """A claim by dot-separated path (``realm_access.roles``); a literal key wins (``cognito:groups``, ``a.b``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def groups_from(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(g for g in value.replace(",", " ").split() if g)
    if isinstance(value, list | tuple):
        return tuple(str(g) for g in value if isinstance(g, str | int))
    return ()


def oauth_client(issuer: str, client_id: str, client_secret: str, scopes: str) -> Any:
    """authlib's client for the browser sign-in: discovery from the issuer, the code flow with PKCE (S256); a public
    client when there is no secret."""
    oauth = OAuth()
    oauth.register(
        "lisa",
        client_id=client_id,
        client_secret=client_secret or None,
        server_metadata_url=issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": scopes, "code_challenge_method": "S256"},
    )
    return oauth.lisa


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and credential.startswith("ey")


class OIDCVerifier:
    def __init__(
        self,
        issuer: str,
        audience: str,
        groups_claim: str,
        username_claims: list[str],
        *,
        min_refresh_seconds: float = 30.0,
        leeway_seconds: int = 30,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.groups_claim = groups_claim
        self.username_claims = username_claims
        self._min_refresh = min_refresh_seconds
        self._leeway = leeway_seconds
        self._http = http or httpx.AsyncClient(timeout=10)
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_at = 0.0
        self._lock = asyncio.Lock()

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.issuer + "/.well-known/openid-configuration"
            try:
                resp = await self._http.get(url)
                resp.raise_for_status()
            except httpx.HTTPError as exc:
                raise UpstreamError(f"identity provider discovery failed ({url}): {exc}") from exc
            data = resp.json()
            if data.get("issuer", "").rstrip("/") != self.issuer:
                raise UpstreamError(f"identity provider says its issuer is {data.get('issuer')!r}, not {self.issuer!r}")
            self._metadata = data
        return self._metadata

    async def _key_set(self, refresh: bool) -> KeySet:
        async with self._lock:
            stale = refresh and time.monotonic() - self._keys_at >= self._min_refresh
            if self._keys is None or stale:
                jwks_uri = (await self.metadata())["jwks_uri"]
                try:
                    resp = await self._http.get(jwks_uri)
                    resp.raise_for_status()
                except httpx.HTTPError as exc:
                    raise UpstreamError(f"could not fetch the identity provider's keys: {exc}") from exc
                self._keys = KeySet.import_key_set(resp.json())
                self._keys_at = time.monotonic()
            return self._keys

    async def verify(self, token: str) -> Identity:
        try:
            header = jws.extract_compact(token.encode()).protected
        except (JoseError, ValueError) as exc:
            raise Unauthorized("malformed bearer token") from exc
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise Unauthorized(f"token algorithm {header.get('alg')!r} is not accepted")
        try:
            try:
                decoded = jwt.decode(token, await self._key_set(refresh=False), algorithms=ALLOWED_ALGORITHMS)
            except InvalidKeyIdError:
                decoded = jwt.decode(token, await self._key_set(refresh=True), algorithms=ALLOWED_ALGORITHMS)
            jwt.JWTClaimsRegistry(
                leeway=self._leeway,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience},
                exp={"essential": True},
            ).validate(decoded.claims)
        except InvalidKeyIdError as exc:
            raise Unauthorized("token signed with an unknown key") from exc
        except JoseError as exc:
            raise Unauthorized(
                f"invalid token: {exc.error}{': ' + exc.description if exc.description else ''}"
            ) from exc
        return self.identity_from(decoded.claims, float(decoded.claims["exp"]))

    def identity_from(self, claims: dict[str, Any], expires_at: float) -> Identity:
        """Who this is (issuer + ``sub``), the display name (the first configured name claim present, else
        ``sub``) and the groups (by claim path), from verified claims."""
        subject = claims.get("sub")
        if not isinstance(subject, str | int) or str(subject) == "":
            raise Unauthorized("the provider's token carries no 'sub' claim, so it names nobody")
        subject = str(subject)
        display = next((str(claims[c]) for c in self.username_claims if claims.get(c)), subject)
        return Identity(
            username=oidc_user_id(self.issuer, subject),
            groups=groups_from(claim_at(claims, self.groups_claim)),
            expires_at=expires_at,
            claims=claims,
            issuer=self.issuer,
            subject=subject,
            display_name=display,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
