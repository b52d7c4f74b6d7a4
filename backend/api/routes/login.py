"""Browser sign-in for local mode: the link `lisa serve` prints sets a signed session cookie; also the API docs,
which need a principal like every other route."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from backend.api.deps import SESSION_OIDC_KEY, SESSION_TOKEN_KEY, CurrentUser, ServicesDep
from backend.auth.tokens import hash_token

router = APIRouter(include_in_schema=False)


@router.get("/login")
async def login(request: Request, services: ServicesDep, token: str) -> Response:
    """Exchange an API token (the printed login link carries the bootstrap admin token) for a session cookie."""
    await services.authenticator.authenticate(token)  # 401 with the reason when it is not valid
    request.session.clear()
    request.session[SESSION_TOKEN_KEY] = hash_token(token)
    return RedirectResponse("/docs", status_code=303)


@router.get("/logout")
async def logout(request: Request, services: ServicesDep) -> Response:
    """End the LISA session and, after an OIDC sign-in, the provider's too (RP-initiated logout)."""
    was_oidc = SESSION_OIDC_KEY in request.session
    request.session.clear()
    if was_oidc and services.authenticator.oidc is not None:
        metadata = await services.authenticator.oidc.metadata()
        if end_session := metadata.get("end_session_endpoint"):
            query = urlencode(
                {
                    "client_id": services.settings.oidc_client_id,
                    "post_logout_redirect_uri": services.settings.base_url + "/",
                }
            )
            return RedirectResponse(f"{end_session}?{query}", status_code=303)
    return RedirectResponse("/", status_code=303)


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/docs", status_code=307)


@router.get("/openapi.json")
async def openapi(request: Request, _user: CurrentUser) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def docs(_user: CurrentUser) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="LISA API")
