"""Small raw-ASGI helpers for the gateway's hot path (no framework between the socket and the proxy)."""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from backend.errors import BadRequest, LisaError, PayloadTooLarge, RateLimited

log = logging.getLogger("lisa.serve")

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


def new_request_id() -> str:
    """The id a caller quotes and the server log is searched for."""
    return "req_" + secrets.token_hex(8)


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


class ResponseState:
    """Wraps ``send``: knows whether the response has started and ended, so that whatever goes wrong the client
    gets OpenAI's error object, or a stream that ends with an error event, and never a half-written answer."""

    __slots__ = ("_send", "ended", "started", "streaming")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.streaming = False
        self.ended = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.streaming = (b"content-type", b"text/event-stream") in message.get("headers", ())
        elif not message.get("more_body", False):
            self.ended = True
        await self._send(message)

    async def fail(self, what: str) -> None:
        """The answer to an unexpected exception (call from its ``except``): logged with its traceback under a
        request id; the client gets the id, nothing of the exception."""
        request_id = new_request_id()
        log.exception("unexpected error %s on %s", request_id, what)
        message = f"The server had an error while processing your request (request id {request_id})."
        if not self.started:
            with contextlib.suppress(Exception):
                await send_bytes(self, 500, openai_error_body(500, message, "server_error"))
        else:
            await self.end_with_error(500, message, "server_error")

    async def end_with_error(self, status: int, message: str, type_: str) -> None:
        """Ends a response that has begun: a stream with an error event; a JSON answer (its length announced) is
        cut short, which clients report as a broken response."""
        if self.ended:
            return
        event = b"data: " + openai_error_body(status, message, type_) + b"\n\n" if self.streaming else b""
        await send_body_quietly(self, event, more_body=False)
