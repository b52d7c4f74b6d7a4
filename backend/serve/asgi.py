"""Small raw-ASGI helpers for the gateway's hot path (no framework between the socket and the proxy)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from backend.errors import BadRequest, LisaError, PayloadTooLarge, RateLimited

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit} bytes")
        except ValueError as exc:
            raise BadRequest("invalid Content-Length header") from exc
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected while sending the body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def openai_error_body(status: int, message: str, type_: str, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": status}})


def error_body_for(exc: LisaError) -> bytes:
    return openai_error_body(exc.status_code, exc.message, exc.openai_type, getattr(exc, "param", None))


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [*(headers or JSON_HEADERS), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: LisaError) -> None:
    headers = list(JSON_HEADERS)
    if exc.status_code == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    retry_after = exc.retry_after if isinstance(exc, RateLimited) else getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
    await send_bytes(send, exc.status_code, error_body_for(exc), headers)


async def wait_disconnect(receive: Receive) -> None:
    """Returns when the client has gone (run as a task beside a stream, to stop the upstream for nobody)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def send_body_quietly(send: Send, body: bytes, more_body: bool = True) -> None:
    """A body message to a client that may have left already (its absence is not an error here)."""
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": body, "more_body": more_body})
