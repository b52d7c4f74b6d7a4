"""Browser sign-in for local mode: the link `lisa serve` prints sets a signed session cookie; also the API docs,
which need a principal like every other route."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from backend.api.deps import SESSION_TOKEN_KEY, CurrentUser, ServicesDep
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
async def logout(request: Request) -> Response:
    request.session.clear()
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
