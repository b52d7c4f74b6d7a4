"""Browser sign-in and sign-out, and the API docs (behind authentication like every other route).

``GET /login`` only shows a form; ``POST /login`` signs in with the one-time code of the link `lisa serve` prints
or with an API token in the form body (never in a URL), and starts a fresh server-side session.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from swagger_ui_bundle import swagger_ui_path

from backend.api.authentication import SESSION_COOKIE, set_session_cookie
from backend.api.deps import CurrentUser, ServicesDep, SessionsDep
from backend.api.login_page import sign_in_page, sign_out_page
from backend.api.ui import home_path
from backend.auth.tokens import hash_token
from backend.errors import BadRequest, NotFound, Unauthorized
from backend.text import Text

router = APIRouter(include_in_schema=False)

# Swagger UI served from the swagger-ui-bundle-v2 wheel (the swagger-ui-dist release files), never from a CDN.
DOCS_ASSETS = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}
ASSETS_DIR = Path(str(swagger_ui_path))


@router.get("/login")
async def login_page(request: Request, code: str | None = None) -> HTMLResponse:
    """Shows the sign-in form (for the printed link's code, or for an API token); changes nothing."""
    notice = None
    if "token" in request.query_params:
        notice = (
            "Tokens in links are not accepted: paste the token below (and consider revoking it, as it was in a URL)."
        )
    return sign_in_page(code, notice)


@router.post("/login")
async def login(
    request: Request,
    services: ServicesDep,
    sessions: SessionsDep,
    code: Annotated[Text | None, Form(max_length=256)] = None,
    token: Annotated[Text | None, Form(max_length=256)] = None,
) -> Response:
    """Exchange the one-time code of the printed link, or an API token, for a new session."""
    if bool(code) == bool(token):
        raise BadRequest("send either the one-time code of the sign-in link or an API token (form field code or token)")
    if code:
        token_hash = await sessions.consume_code(code)
        if token_hash is None:
            raise Unauthorized("this sign-in link is invalid, already used or expired: use the admin token instead")
    else:
        assert token is not None
        token_hash = hash_token(token)
    principal = await services.authenticator.authenticate_hash(token_hash)  # 401 with the reason when not valid
    session_id = await sessions.create(
        username=principal.username,
        token_hash=token_hash,
        expires_at=datetime.now(UTC) + timedelta(hours=services.settings.session_hours),
        replacing=request.cookies.get(SESSION_COOKIE),  # never keep a session id from before the sign-in
    )
    response = RedirectResponse(home_path(services.settings), status_code=303)
    set_session_cookie(response, session_id, services.settings)
    return response


@router.get("/logout")
async def logout_page() -> HTMLResponse:
    """Shows the sign-out button; changes nothing."""
    return sign_out_page()


@router.post("/logout")
async def logout(request: Request, services: ServicesDep, sessions: SessionsDep) -> Response:
    """End the LISA session server-side and, after an OIDC sign-in, the provider's too (RP-initiated logout)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    session = await sessions.get(session_id) if session_id else None
    if session_id:
        await sessions.end(session_id)
    request.session.clear()
    response: Response = RedirectResponse("/login", status_code=303)
    if session is not None and session.kind == "oidc" and services.authenticator.oidc is not None:
        metadata = await services.authenticator.oidc.metadata()
        if end_session := metadata.get("end_session_endpoint"):
            query = urlencode(
                {
                    "client_id": services.settings.oidc_client_id,
                    "post_logout_redirect_uri": services.settings.base_url + "/",
                }
            )
            response = RedirectResponse(f"{end_session}?{query}", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
async def home(services: ServicesDep) -> Response:
    """The app (or the API docs when the app is off)."""
    return RedirectResponse(home_path(services.settings), status_code=307)


@router.get("/openapi.json")
async def openapi(request: Request, _user: CurrentUser) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def docs(_user: CurrentUser) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="LISA API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon-32x32.png",
    )


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    """Swagger UI's files (public: the released swagger-ui-dist files, nothing of LISA's)."""
    if name not in DOCS_ASSETS:
        raise NotFound(f"no docs asset {name!r}")
    return FileResponse(ASSETS_DIR / name, headers={"Cache-Control": "public, max-age=86400"})
