"""Typed dependencies, so route signatures read as plain English."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.auth.authenticator import credential_from_headers
from backend.auth.principal import Principal
from backend.errors import Forbidden
from backend.services import Services

SESSION_TOKEN_KEY = "token_sha256"  # a browser session holds the hash of the token it signed in with
SESSION_OIDC_KEY = "oidc"  # ... or the identity its OIDC sign-in established


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_current_user(request: Request, services: ServicesDep) -> Principal:
    credential = credential_from_headers(request.headers.get("authorization"), request.headers.get("api-key"))
    if credential is None and (session_token := request.session.get(SESSION_TOKEN_KEY)):
        return await services.authenticator.authenticate_hash(session_token)
    if credential is None and (identity := request.session.get(SESSION_OIDC_KEY)):
        return services.authenticator.identity_principal(identity["username"], identity["groups"], identity["exp"])
    return await services.authenticator.authenticate(credential)


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
