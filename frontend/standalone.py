"""The app on its own, against a remote backend: ``python -m frontend --backend https://lisa.example.com``.

It keeps no credential of its own. Its sign-in page takes a user's API token and exchanges it at the backend
(``POST /login``) for a backend browser session, whose id it keeps in its own cookie (HttpOnly, SameSite=Lax) on
the app's address; the token itself is not kept. Every event then calls the backend with that session, as when the
app is mounted in the backend. Sign-out ends the backend session.
"""

from __future__ import annotations

import argparse
import time
from html import escape
from urllib.parse import urlsplit

import gradio as gr
import httpx
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from frontend.app import CSS, DEFAULT_CONCURRENCY, RUN_HISTORY, build_app
from frontend.backend import Backend
from frontend.client import SESSION_COOKIE, BackendClient, BackendError, Credential, shared_http, sign_in_with_token
from frontend.client import sign_out as end_session
from frontend.standalone_images import proxy_image

UI_PATH = "/ui"
CHECK_SECONDS = 30.0  # a session known good is re-checked at the backend after this long
PAGE_HEADERS = {"X-Frame-Options": "DENY", "Cache-Control": "no-store", "Referrer-Policy": "same-origin"}


class SessionCheck:
    """Who a backend session id belongs to, asked of the backend (``/api/users/me``) and remembered briefly."""

    def __init__(self, http: httpx.AsyncClient, max_entries: int = 10_000) -> None:
        self.http = http
        self.max_entries = max_entries
        self._known: dict[str, tuple[str, float]] = {}

    async def username(self, session_id: str | None) -> str | None:
        if not session_id:
            return None
        known = self._known.get(session_id)
        if known is not None and time.monotonic() - known[1] < CHECK_SECONDS:
            return known[0]
        try:
            me = await BackendClient(self.http, Credential(session_id=session_id)).me()
        except BackendError:
            self._known.pop(session_id, None)
            return None
        if len(self._known) >= self.max_entries:
            self._known.clear()
        self._known[session_id] = (me.username, time.monotonic())
        return me.username

    def forget(self, session_id: str) -> None:
        self._known.pop(session_id, None)


class SignInRedirect:
    """Browser navigations to the app without a valid session go to this app's sign-in page."""

    def __init__(self, app: ASGIApp, check: SessionCheck) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and (path + "/").startswith(UI_PATH + "/"):
            conn = HTTPConnection(scope)
            html = "text/html" in conn.headers.get("accept", "")
            if html and await self.check.username(conn.cookies.get(SESSION_COOKIE)) is None:
                await RedirectResponse("/login", status_code=303)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def sign_in_page(backend_url: str, problem: str | None = None, status: int = 200) -> HTMLResponse:
    notice = f'<p role="alert"><strong>{escape(problem)}</strong></p>' if problem else ""
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in to LISA</title></head>'
        '<body style="font-family:sans-serif;max-width:28rem;margin:4rem auto"><h1>Sign in to LISA</h1>'
        f"{notice}<p>Backend: <code>{escape(backend_url)}</code></p>"
        '<form method="post" action="/login"><p><label>API token '
        '<input type="password" name="token" autocomplete="off" required></label></p>'
        '<button type="submit">Sign in</button></form></body></html>'
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def create_app(backend_url: str, concurrency: int | None = DEFAULT_CONCURRENCY, secure_cookie: bool = False) -> FastAPI:
    http = shared_http(backend_url)
    check = SessionCheck(http)
    app = FastAPI(title="LISA app", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/")
    async def home() -> Response:
        return RedirectResponse(UI_PATH + "/", status_code=307)

    @app.get("/login")
    async def login_form() -> HTMLResponse:
        return sign_in_page(backend_url)

    @app.post("/login")
    async def login(request: Request, token: str = Form(max_length=256)) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            # Another site's form signing this browser in as someone else (login CSRF).
            return sign_in_page(backend_url, "Sign in from this page.", status=403)
        try:
            session_id = await sign_in_with_token(http, token.strip())
        except BackendError as exc:
            return sign_in_page(backend_url, exc.detail, status=exc.status if exc.status < 500 else 502)
        response = RedirectResponse(UI_PATH + "/", status_code=303)
        response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="lax", secure=secure_cookie, path="/")
        return response

    @app.get("/logout")
    async def logout_form() -> HTMLResponse:
        body = '<form method="post" action="/logout"><button type="submit">Sign out</button></form>'
        return HTMLResponse(f"<!doctype html><title>Sign out</title>{body}", headers=PAGE_HEADERS)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        if session_id := request.cookies.get(SESSION_COOKIE):
            check.forget(session_id)
            await end_session(http, session_id)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/api/sessions/{session_id}/images/{image_id}")
    async def session_image(session_id: str, image_id: str, request: Request) -> Response:
        """A generated image the chat shows (``/api/...`` as the backend serves it), fetched from the backend as the
        signed-in user; the backend decides who may see it (404 for another user's)."""
        return await proxy_image(http, request.cookies.get(SESSION_COOKIE), session_id, image_id)

    async def signed_in_user(request: Request) -> str | None:
        return await check.username(request.cookies.get(SESSION_COOKIE))

    demo = build_app(Backend(http), concurrency=concurrency)
    gr.mount_gradio_app(
        app, demo, path=UI_PATH, auth_dependency=signed_in_user, ssr_mode=False, show_error=False,
        footer_links=[], css=CSS, run_history=RUN_HISTORY,
    )  # fmt: skip
    app.add_middleware(SignInRedirect, check=check)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m frontend", description="The LISA app against a remote backend.")
    parser.add_argument("--backend", required=True, help="The backend's address, e.g. https://lisa.example.com")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="UI events at once")
    parser.add_argument("--secure-cookie", action="store_true", help="Served over HTTPS (behind a proxy)")
    args = parser.parse_args(argv)
    import uvicorn

    app = create_app(args.backend, args.concurrency, args.secure_cookie)
    print(f"LISA app at http://{args.host}:{args.port}{UI_PATH}/ (backend {args.backend})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
