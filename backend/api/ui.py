"""The Gradio app (frontend/) mounted at ``settings.ui_path``: one process, one port, the backend's sign-in.

- Every request under the path is authenticated by the request guard (a mounted app needs a principal: fail closed),
  so Gradio's ``auth_dependency`` only names the principal the guard found.
- A browser that opens the app without a valid session is sent to the sign-in page (``SignInRedirect``, a pure ASGI
  middleware outside the guard); the app's own API calls still get the guard's 401.
- The app calls the backend over HTTP as each user, with the user's own session cookie (frontend/backend.py):
  the backend's rules decide every call, never a credential of the app's.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.api.authentication import PRINCIPAL_STATE_KEY, authenticate
from backend.config import Settings
from backend.errors import LisaError
from backend.services import Services

WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}


def home_path(settings: Settings) -> str:
    """Where a browser lands after signing in: the app, or the API docs when the app is off."""
    return settings.ui_path + "/" if settings.ui else "/docs"


def backend_url(settings: Settings) -> str:
    if settings.ui_backend_url:
        return settings.ui_backend_url.rstrip("/")
    host = WILDCARD_HOSTS.get(settings.host, settings.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class SignInRedirect:
    """Browser navigations (GET for HTML) to the app without a valid session go to the sign-in page (303)."""

    def __init__(self, app: ASGIApp, api: FastAPI, path: str) -> None:
        self.app = app
        self.api = api
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and under(scope["path"], self.path):
            conn = HTTPConnection(scope)
            if "text/html" in conn.headers.get("accept", ""):
                services: Services = self.api.state.services
                try:
                    await authenticate(services, conn.headers, conn.cookies)
                except LisaError as exc:
                    if exc.status_code == 401:
                        await RedirectResponse("/login", status_code=303)(scope, receive, send)
                        return
        await self.app(scope, receive, send)


def principal_name(request: Request) -> str | None:
    """Gradio's ``auth_dependency``: the user the request guard authenticated (it refused everyone else)."""
    principal = request.scope.get("state", {}).get(PRINCIPAL_STATE_KEY)
    return principal.username if principal is not None else None


def mount_ui(app: FastAPI, settings: Settings) -> None:
    """Builds the app and mounts it (Gradio is imported only here: with ``LISA_UI=false`` it is never loaded)."""
    import gradio as gr

    from frontend.app import CSS, RUN_HISTORY, build_app
    from frontend.backend import Backend
    from frontend.client import shared_http

    http = shared_http(backend_url(settings))
    demo = build_app(Backend(http), concurrency=settings.ui_concurrency)
    gr.mount_gradio_app(
        app,
        demo,
        path=settings.ui_path,
        auth_dependency=principal_name,
        ssr_mode=False,
        show_error=False,  # unexpected errors read "Error", never a traceback; backend errors are shown as sent
        footer_links=[],
        css=CSS,
        run_history=RUN_HISTORY,  # no per-event recording in the browser (frontend/app.py)
    )
    app.add_middleware(SignInRedirect, api=app, path=settings.ui_path)
