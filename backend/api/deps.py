"""Typed dependencies, so route signatures read as plain English."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError

from backend.api.authentication import PRINCIPAL_STATE_KEY, authenticate
from backend.auth.principal import Principal
from backend.configuration.features import Feature
from backend.errors import Forbidden
from backend.paging import DEFAULT_LIMIT, MAX_LIMIT, PageParams
from backend.services import Services
from backend.sessions.store import SessionStore
from backend.text import refuse_unstorable


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


def requires(feature: Feature) -> Any:
    """A dependency refusing (403, naming the toggle) callers the feature toggle ``feature`` turns away; admins are
    exempt (backend/configuration/features.py). It yields the caller, so it serves both ways::

        @router.post("/...", dependencies=[requires(Feature.upload_rag_docs)])
        async def route(user: Annotated[Principal, requires(Feature.upload_rag_docs)], ...) -> ...
    """

    async def feature_allowed(user: CurrentUser, services: ServicesDep) -> Principal:
        await services.configuration.require(feature, user)
        return user

    feature_allowed.__name__ = f"requires_{feature.value}"
    return Depends(feature_allowed)


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=1024, description="The next_cursor of the previous page; none for the first.")
    ] = None,
) -> PageParams:
    params = PageParams(limit=limit, cursor=cursor)
    _ = params.after  # a cursor this server did not make: 400 before any work
    return params


Paging = Annotated[PageParams, Depends(page_params)]


async def refuse_unstorable_parameters(request: Request) -> None:
    """Path and query values follow the ``Text`` rule of every body field (backend/text.py): 422 naming the
    parameter. Applied to every /api route (backend/main.py), so no parameter can be left out."""
    problems: list[dict[str, object]] = []
    for where, items in (("path", request.path_params.items()), ("query", request.query_params.multi_items())):
        for name, value in items:
            try:
                refuse_unstorable(str(value))
            except ValueError as exc:
                problems.append({"type": "value_error", "loc": (where, name), "msg": str(exc)})
    if problems:
        raise RequestValidationError(problems)
