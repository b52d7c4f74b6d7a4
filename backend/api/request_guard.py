"""The gate every /api request passes before FastAPI reads a byte of its body (a pure ASGI middleware).

In order:
1. Authentication: a route that needs a principal (its dependencies include ``CurrentUser``), and any request
   with a body that no public route takes, is authenticated from the headers or the session cookie; failing that
   it is answered 401 at once, its body unread. The principal is left in ``scope["state"]`` for ``CurrentUser``.
2. Cross-site check: an unsafe request not authenticated by a header (so one a browser may send by itself with
   the session cookie, sign-in included) must come from this site (backend/api/same_site.py), else 403.
3. Content type: a route that takes a JSON body gets ``application/json`` (or ``+json``), else 415.
4. Size: the body is capped before parsing, 413: a declared Content-Length over the cap is refused unread; a
   streamed (chunked) body is counted as it arrives (Starlette's RequestBodyLimitMiddleware). The cap is
   ``max_json_bytes``, or ``rag_max_upload_bytes`` for an authenticated multipart/form-data request.
``/v1`` never comes here: the gateway does all of this itself (backend/main.py routes it first).

A route given a fast path (``fast``: its endpoint -> a factory of a raw-ASGI handler, backend/api/chat_asgi.py) is
then answered by that handler, with the cap, in place of FastAPI (the chat endpoint's time to first token).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.api.authentication import PRINCIPAL_STATE_KEY, authenticate, has_header_credential
from backend.api.deps import get_current_user
from backend.api.same_site import SAFE_METHODS, cross_site_problem
from backend.errors import LisaError
from backend.services import Services

FastHandler = Callable[[Scope, Receive, Send, int], Awaitable[None]]  # (scope, receive, send, body cap)
FastFactory = Callable[[FastAPI, APIRoute], FastHandler | None]  # None: FastAPI serves the route after all


@dataclass(frozen=True, slots=True)
class RouteNeeds:
    matched: bool  # a route takes this method and path
    principal: bool  # ... and needs a signed-in caller
    json_body: bool  # ... and takes a JSON body
    fast: FastHandler | None = None  # ... and is answered by this raw-ASGI handler, not by FastAPI


UNMATCHED = RouteNeeds(matched=False, principal=False, json_body=False)


def depends_on(dependant: Dependant, target: object) -> bool:
    return any(d.call is target or depends_on(d, target) for d in dependant.dependencies)


def needs_of(route: APIRoute, fast: FastHandler | None = None) -> RouteNeeds:
    body = route.body_field
    return RouteNeeds(
        matched=True,
        principal=depends_on(route.dependant, get_current_user),
        json_body=body is not None and not isinstance(body.field_info, params.Form),
        fast=fast,
    )


def flat_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The app's routes, with FastAPI's included routers opened up (their APIRoutes carry their full path)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from flat_routes(inner.routes)
        else:
            yield route


class RouteNeedsTable:
    """What each route needs, looked up by method and path before FastAPI routes the request (first match wins,
    as in routing). Anything that is not an APIRoute (a mounted app) needs a principal: fail closed."""

    def __init__(self, routes: Iterable[BaseRoute], fast: Mapping[Any, FastHandler | None] | None = None) -> None:
        """``fast``: endpoint function -> its raw-ASGI handler (None: none)."""
        self._api: list[tuple[re.Pattern[str], frozenset[str], RouteNeeds]] = []
        self._other: list[BaseRoute] = []
        fast = fast or {}
        for route in flat_routes(routes):
            if isinstance(route, APIRoute):
                needs = needs_of(route, fast.get(route.endpoint))
                self._api.append((route.path_regex, frozenset(route.methods or ()), needs))
            else:
                self._other.append(route)

    def __len__(self) -> int:
        return len(self._api) + len(self._other)

    def find(self, scope: Scope) -> RouteNeeds:
        path, method = scope["path"], scope["method"]
        for regex, methods, needs in self._api:
            if (method in methods or (method == "HEAD" and "GET" in methods)) and regex.match(path):
                return needs
        for route in self._other:
            if route.matches(scope)[0] is Match.FULL:
                return RouteNeeds(matched=True, principal=True, json_body=False)
        return UNMATCHED


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _refuse(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


class RequestGuard:
    def __init__(self, app: ASGIApp, api: FastAPI, fast: Mapping[Any, FastFactory] | None = None) -> None:
        self.app = app
        self.api = api
        self.fast = dict(fast or {})
        self._table: RouteNeedsTable | None = None
        self._limited: dict[int, ASGIApp] = {}

    @property
    def table(self) -> RouteNeedsTable:
        if self._table is None:  # built at the first request, when every route is in place
            handlers = {
                route.endpoint: factory(self.api, route)
                for route in flat_routes(self.api.routes)
                if isinstance(route, APIRoute) and (factory := self.fast.get(route.endpoint)) is not None
            }
            self._table = RouteNeedsTable(self.api.routes, handlers)
        return self._table

    def _limit(self, cap: int) -> ASGIApp:
        limited = self._limited.get(cap)
        if limited is None:
            limited = self._limited[cap] = RequestBodyLimitMiddleware(self.app, max_body_size=cap)
        return limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services: Services = self.api.state.services
        settings = services.settings
        conn = HTTPConnection(scope)
        headers = conn.headers
        needs = self.table.find(scope)
        length_header = headers.get("content-length")
        has_body = "transfer-encoding" in headers or (length_header is not None and length_header.strip() != "0")
        authenticated = False
        if needs.principal or (has_body and not needs.matched):
            try:
                caller = await authenticate(services, headers, conn.cookies)
            except LisaError as exc:
                await _refuse(exc.status_code, exc.message)(scope, receive, send)
                return
            scope.setdefault("state", {})[PRINCIPAL_STATE_KEY] = caller.principal
            authenticated = True
        browser_may_send = scope["method"] not in SAFE_METHODS and not has_header_credential(headers)
        if needs.matched and browser_may_send and (problem := cross_site_problem(headers, settings.base_url)):
            await _refuse(403, problem)(scope, receive, send)
            return
        content_type = headers.get("content-type", "")
        if needs.json_body and has_body and not _is_json(content_type):
            message = f"send the body as JSON with 'Content-Type: application/json' (not {content_type or 'none'!r})"
            await _refuse(415, message)(scope, receive, send)
            return
        multipart = content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"
        cap = settings.rag_max_upload_bytes if authenticated and multipart else settings.max_json_bytes
        if length_header is not None:
            try:
                length = int(length_header)
            except ValueError:
                await _refuse(400, "invalid Content-Length header")(scope, receive, send)
                return
            if length > cap:
                message = f"the request body is {length} bytes; the limit for this request is {cap} bytes"
                await _refuse(413, message)(scope, receive, send)
                return
        if needs.fast is not None:
            await needs.fast(scope, receive, send, cap)
            return
        await self._limit(cap)(scope, receive, send)
