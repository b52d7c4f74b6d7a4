"""Browser sign-in through the organisation's OIDC provider: authorization code flow with PKCE (authlib); the
identity it establishes is kept server-side (backend/sessions), the browser holding only the session id."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from authlib.integrations.starlette_client import OAuthError
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from backend.api.authentication import SESSION_COOKIE, set_session_cookie
from backend.api.deps import ServicesDep, SessionsDep
from backend.auth.oidc import claim_at
from backend.errors import NotFound, Unauthorized

router = APIRouter(prefix="/auth", include_in_schema=False)


def _client(services: ServicesDep) -> Any:
    if services.oauth is None:
        raise NotFound("single sign-on is not configured (set LISA_OIDC_ISSUER and LISA_OIDC_CLIENT_ID)")
    return services.oauth


@router.get("/login")
async def oidc_login(request: Request, services: ServicesDep) -> Response:
    client = _client(services)
    redirect_uri = services.settings.base_url + "/auth/callback"
    response: Response = await client.authorize_redirect(request, redirect_uri)
    return response


@router.get("/callback")
async def oidc_callback(request: Request, services: ServicesDep, sessions: SessionsDep) -> Response:
    client = _client(services)
    try:
        token = await client.authorize_access_token(request)
    except OAuthError as exc:
        raise Unauthorized(f"sign-in failed: {exc.error}: {exc.description or ''}".rstrip(": ")) from exc
    verifier = services.authenticator.oidc
    assert verifier is not None  # configured together with the browser client
    claims: dict[str, Any] = dict(token.get("userinfo") or {})
    if claim_at(claims, verifier.groups_claim) is None and token.get("access_token"):
        # Some providers put the groups only in the access token.
        with contextlib.suppress(Unauthorized):
            claims = {**(await verifier.verify(token["access_token"])).claims, **claims}
    identity = verifier.identity_from(claims, time.time() + services.settings.session_hours * 3600)
    # Records the user (issuer + sub) and their groups, which their API tokens follow; 403 outside the user group.
    await services.authenticator.oidc_sign_in(identity, as_of=int(time.time()))  # whole seconds, like "iat"
    request.session.clear()  # the sign-in state (authlib's) is spent
    session_id = await sessions.create(
        username=identity.username,  # the stable id, never the editable name
        identity={
            "username": identity.username,
            "display_name": identity.display_name,
            "groups": list(identity.groups),
            "exp": identity.expires_at,
        },
        expires_at=datetime.fromtimestamp(identity.expires_at, UTC),
        replacing=request.cookies.get(SESSION_COOKIE),  # a fresh session id at every sign-in
    )
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, session_id, services.settings)
    return response
