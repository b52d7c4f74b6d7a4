"""The backend application: FastAPI for /api, the raw-ASGI Serve gateway for /v1, one process-wide service graph."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.middleware.sessions import SessionMiddleware

from backend.api.chat_asgi import ChatFastPath
from backend.api.deps import refuse_unstorable_parameters
from backend.api.errors import install_error_handlers
from backend.api.request_guard import RequestGuard
from backend.api.routes import (
    assistants,
    audit,
    chat,
    configuration,
    documents,
    health,
    limits,
    login,
    mcp,
    model_schedules,
    models,
    oidc_login,
    pipelines,
    projects,
    prompt_templates,
    repositories,
    session_context,
    session_documents,
    session_images,
    sessions,
    shared,
    tokens,
    usage,
    users,
)
from backend.config import Settings, get_settings
from backend.runtime.keys import with_keys
from backend.serve.asgi import Receive, Scope, Send
from backend.services import Services

log = logging.getLogger("lisa")


def create_api(settings: Settings, database_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings, database_url)
        await services.start()
        app.state.services = services
        # Everything allocated so far lives as long as the process: keep it out of the cyclic collector, whose
        # full passes over ~100k start-up objects otherwise stall the gateway for 50+ ms under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="LISA",
        version="0.1.0",
        summary="Self-hostable LLM platform. /v1 is the OpenAI wire format; /api is LISA's own REST API.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by routes/login.py, behind authentication
        dependencies=[Depends(refuse_unstorable_parameters)],  # no NUL in any path or query value (422)
    )
    # Only the OIDC sign-in's own state (authlib: state, nonce, PKCE verifier) lives in this signed cookie, for the
    # minutes a sign-in takes; browser sessions are server-side (backend/sessions, cookie "lisa_session").
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key.get_secret_value(),
        session_cookie="lisa_oidc_state",
        max_age=600,
        same_site="lax",
        https_only=settings.environment == "production",
    )
    # outermost: nothing reads a body before it has had its say; the chat turn is answered by its raw-ASGI fast path
    app.add_middleware(RequestGuard, api=app, fast={chat.send_message: ChatFastPath.for_route})
    install_error_handlers(app)
    # model_schedules before models: its /api/models/{id}/schedule paths would match models' /{model_id:path}.
    routers = (health, login, oidc_login, model_schedules, models, tokens, usage, limits, audit, repositories,
               documents, pipelines)  # fmt: skip
    for module in routers:
        app.include_router(module.router)
    app.include_router(users.router)
    app.include_router(configuration.router)
    app.include_router(prompt_templates.router)
    app.include_router(assistants.router)
    app.include_router(mcp.router)
    for module in (sessions, chat, projects, shared):
        app.include_router(module.router)
    for module in (session_documents, session_images, session_context):  # chat context (backend/chat)
        app.include_router(module.router)
    if settings.ui:
        from backend.api.ui import mount_ui

        mount_ui(app, settings)  # the Gradio app at /ui, outside the request guard's redirect (docs/frontend.md)
    return app


class LisaApp:
    """Routes ``/v1/*`` straight to the gateway (no framework on the hot path) and the rest to FastAPI."""

    def __init__(self, api: FastAPI) -> None:
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            services: Services = self.api.state.services
            await services.gateway(scope, receive, send)
            return
        await self.api(scope, receive, send)


def create_app(settings: Settings | None = None, database_url: str | None = None) -> LisaApp:
    settings = with_keys(settings or get_settings())
    url = database_url or settings.database_url or os.environ.get("LISA_DATABASE_URL", "")
    if not url:
        raise RuntimeError("no database: set LISA_DATABASE_URL or start through `lisa serve`")
    return LisaApp(create_api(settings, url))
