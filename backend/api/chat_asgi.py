"""``POST /api/sessions/{id}/messages`` served as raw ASGI: the chat endpoint's hot path, past FastAPI's routing,
dependency solving and ``StreamingResponse``, as ``/v1`` is served past FastAPI (backend/serve/gateway.py).

Measured reason (docs/chat.md "Time to first token"): FastAPI's handling of the request up to the route took
1.0-1.4 ms and Starlette's ``StreamingResponse`` 0.3-0.5 ms, of a budget of 2 ms over ``/v1``.

The request guard (backend/api/request_guard.py) has already done its part (authentication, cross-site check,
content type, declared size), exactly as for every route, and hands over here when the route it matched first is
the chat route. What FastAPI did next is done here in the same order, with the same code where it is cheap:

1. The body is read (a chunked body over the guard's cap: 413 ``Content Too Large``; the client gone: 400) and
   parsed as FastAPI parses it (``json.loads`` for a JSON content type: 400 on invalid JSON).
2. The app's dependencies: ``refuse_unstorable_parameters`` itself (422 for a NUL in a path or query value); the
   principal is the guard's.
3. The body is validated by FastAPI's own function against the route's declared body field (422, same detail).
4. The route's own steps (backend/api/routes/chat.py ``serve_turn``): feature toggles (403), then the turn.
5. The answer: the same status, headers and events as the route's ``EventStream``; a client that leaves stops it.

Errors go through the app's own exception handlers (backend/api/errors.py), so their status, headers and JSON are
the same; anything else propagates to Starlette's ServerErrorMiddleware (500), as it did. The FastAPI route stays
declared: it documents the endpoint in ``/openapi.json``. If the route ever declares a dependency this module does
not know (a ``requires(...)``), ``for_route`` declines and FastAPI serves the route: slower, never different.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.utils import request_body_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic_core import PydanticUndefined
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from backend.api.authentication import PRINCIPAL_STATE_KEY
from backend.api.deps import get_current_user, get_services, refuse_unstorable_parameters
from backend.api.routes.chat import STREAM_HEADERS, EventStream, serve_turn
from backend.auth.principal import Principal
from backend.services import Services

log = logging.getLogger(__name__)

# The dependencies the chat route declares today, each done here (step 2; the guard's principal for the user).
KNOWN_DEPENDENCIES = frozenset({refuse_unstorable_parameters, get_current_user, get_services})
BODY_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's words (fastapi/routing.py)


@lru_cache(maxsize=64)
def _is_json_media(content_type: str) -> bool:
    """FastAPI's test of a body's content type (``email.message`` parsing), cached per header value."""
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


class ChatFastPath:
    """One route's raw-ASGI handler; the request guard calls it with the body cap it applies."""

    def __init__(self, api: FastAPI, route: APIRoute) -> None:
        self.api = api
        self.route = route
        self.body_fields = route.dependant.body_params
        self.embed_body_fields: bool = route._embed_body_fields
        strict = route.strict_content_type
        self.strict_content_type = bool(getattr(strict, "value", strict))
        self.raw_headers = EventStream(_nothing(), headers=STREAM_HEADERS).raw_headers

    @classmethod
    def for_route(cls, api: FastAPI, route: APIRoute) -> ChatFastPath | None:
        """The handler, or None where the route has changed beyond what this module reproduces."""
        calls = {d.call for d in route.dependant.dependencies}
        if not calls <= KNOWN_DEPENDENCIES or len(route.dependant.body_params) != 1:
            log.warning("%s %s is served by FastAPI: its dependencies changed", route.methods, route.path)
            return None
        return cls(api, route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        try:
            await self._serve(scope, receive, send, cap)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise  # ServerErrorMiddleware: 500, as before
            response = handler(Request(scope, receive), exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Callable[..., Any] | None:
        """The app's exception handler for ``exc``, looked up as Starlette's ExceptionMiddleware looks it up."""
        handlers = self.api.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers and cls is not Exception:
                return handlers[cls]
        return None

    async def _serve(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        match = self.route.path_regex.match(scope["path"])
        assert match is not None  # the guard matched this route
        session_id = match.group("session_id")
        principal: Principal = scope["state"][PRINCIPAL_STATE_KEY]
        services: Services = self.api.state.services
        # the check of what the caller's last turn in this session left behind runs while the body is read
        prefetched = services.chat_turns.prefetch(principal.username, session_id)
        # 1. the body
        body_bytes = await _read_body(receive, cap)
        body: Any = PydanticUndefined  # no body, as FastAPI marks it ("Field required")
        if body_bytes:
            content_type = Headers(scope=scope).get("content-type")
            is_json = _is_json_media(content_type) if content_type else not self.strict_content_type
            if not is_json:
                body = body_bytes
            else:
                try:
                    body = json.loads(body_bytes)
                except json.JSONDecodeError as exc:
                    error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                             "input": {}, "ctx": {"error": exc.msg}}  # fmt: skip
                    raise RequestValidationError([error], body=exc.doc) from exc
                except Exception as exc:
                    raise HTTPException(status_code=400, detail=BODY_PARSE_ERROR) from exc
        # 2. the app's dependencies
        scope["path_params"] = {"session_id": session_id}
        await refuse_unstorable_parameters(Request(scope, receive))
        # 3. the body's schema
        values, errors = await request_body_to_args(self.body_fields, body, self.embed_body_fields)
        if errors:
            raise RequestValidationError(errors, body=body)
        turn = values[self.body_fields[0].name]
        # 4. the route
        running = await serve_turn(services, principal, session_id, turn, prefetched)
        # 5. the answer
        await _stream(running.events(), self.raw_headers, receive, send)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing (for the response's headers)


async def _read_body(receive: Receive, cap: int) -> bytes:
    """The whole body, as Starlette's ``Request.body`` reads it behind its RequestBodyLimitMiddleware (the cap on
    what a chunked body adds up to; the declared length the guard has checked)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPException(status_code=400, detail=BODY_PARSE_ERROR)  # Starlette's ClientDisconnect, in FastAPI
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise HTTPException(status_code=413, detail="Content Too Large")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _stream(events: AsyncIterator[bytes], raw_headers: list[tuple[bytes, bytes]], receive: Receive,
                  send: Send) -> None:  # fmt: skip
    """The events as a streamed 200, each as its own body message, as Starlette's StreamingResponse sends them (ASGI
    spec 2.3 servers: a disconnect stops the writing, and the turn's generator learns the client left)."""
    writer = asyncio.ensure_future(_write(events, raw_headers, send))
    listener = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait((writer, listener), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (writer, listener):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        try:
            await writer
        except asyncio.CancelledError:
            if not listener.done() or listener.cancelled():
                raise  # cancelled from outside (the server stopping), not by the client leaving


async def _write(events: AsyncIterator[bytes], raw_headers: list[tuple[bytes, bytes]], send: Send) -> None:
    try:
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        async for chunk in events:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:  # at once, not when the generator is collected: the turn stops its upstream call
            await aclose()


async def _wait_disconnect(receive: Receive) -> Message:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return message
