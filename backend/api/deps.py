"""Typed dependencies, so route signatures read as plain English."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.api.authentication import PRINCIPAL_STATE_KEY, authenticate
from backend.auth.principal import Principal
from backend.errors import Forbidden
from backend.services import Services
from backend.sessions.store import SessionStore


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_sessions(services: ServicesDep) -> SessionStore:
    return services.sessions


SessionsDep = Annotated[SessionStore, Depends(get_sessions)]


async def get_current_user(request: Request, services: ServicesDep) -> Principal:
    """The principal the request guard (backend/api/request_guard.py) authenticated before the body was read."""
    principal: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_STATE_KEY)
    if principal is None:  # only where the guard is not in front (it always is in the app)
        principal = (await authenticate(services, request.headers, request.cookies)).principal
    return principal


CurrentUser = Annotated[Principal, Depends(get_current_user)]


async def get_admin_user(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise Forbidden("this action needs the admin group")
    return user


AdminUser = Annotated[Principal, Depends(get_admin_user)]


async def get_rag_admin_user(user: CurrentUser) -> Principal:
    if not (user.is_admin or user.is_rag_admin):
        raise Forbidden("managing repositories, collections and pipelines needs the admin or RAG admin group")
    return user


RagAdminUser = Annotated[Principal, Depends(get_rag_admin_user)]
