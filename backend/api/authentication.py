"""Who is calling /api: an API token or OIDC JWT in a header, else the browser session the cookie names.

Run once per request by the request guard (before any body is read); routes get the result through
``CurrentUser``. Principals themselves are built by the authenticator (backend/auth/authenticator.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import Response

from backend.auth.authenticator import credential_from_headers
from backend.auth.principal import Principal
from backend.config import Settings
from backend.db.outage import as_unavailable
from backend.errors import LisaError, Unauthorized
from backend.services import Services

SESSION_COOKIE = "lisa_session"  # a random session id; the session itself lives in browser_sessions
PRINCIPAL_STATE_KEY = "lisa.principal"  # where the guard leaves the principal in the request's scope["state"]


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    via_session: bool  # True: authenticated by the session cookie (so subject to the cross-site checks)


def has_header_credential(headers: Headers) -> bool:
    return "authorization" in headers or "api-key" in headers


async def authenticate(services: Services, headers: Headers, cookies: dict[str, str]) -> Caller:
    """The caller, or a LisaError (a database outage included: the guard answers it before FastAPI's handlers)."""
    credential = credential_from_headers(headers.get("authorization"), headers.get("api-key"))
    try:
        if credential is None and (session_id := cookies.get(SESSION_COOKIE)):
            return Caller(await session_principal(services, session_id), via_session=True)
        return Caller(await services.authenticator.authenticate(credential), via_session=False)
    except LisaError:
        raise
    except Exception as exc:
        if (unavailable := as_unavailable(exc)) is not None:
            raise unavailable from exc
        raise


async def session_principal(services: Services, session_id: str) -> Principal:
    session = await services.sessions.get(session_id)
    if session is None:
        raise Unauthorized("session ended or expired: sign in again")
    if session.token_hash is not None:
        # Signed in with an API token: the token's revocation or expiry ends the session too.
        return await services.authenticator.authenticate_hash(session.token_hash)
    identity = session.identity or {}
    if services.authenticator.oidc is None or not identity:
        # An OIDC identity counts only while single sign-on is configured.
        raise Unauthorized("single sign-on is not configured here: sign in again")
    return services.authenticator.identity_principal(
        identity["username"], identity["groups"], identity["exp"], display_name=identity.get("display_name")
    )


def set_session_cookie(response: Response, session_id: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=settings.session_hours * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.environment == "production" or settings.base_url.startswith("https://"),
    )
