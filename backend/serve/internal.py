"""Calls into the gateway from inside the backend (the chat endpoint, summarisation, compaction, images).

A call runs the very code a `/v1` request from outside runs — access checks, limits, the request-field allowlist,
the request-shape checks, metering, RAG — as the principal already authenticated by the caller's own route. Only
the transport differs: the request is an ASGI scope built here, the answer is read off the ASGI messages the
gateway sends. The principal travels in a scope key that only in-process code can set (an HTTP client controls
headers, never the scope), so no credential is minted or re-checked.

    client = GatewayClient(services.gateway)
    answer = await client.complete(principal, "chat/completions", {"model": "m", "messages": [...]})
    async for event in client.stream(principal, "chat/completions", {..., "stream": True}, cancelled):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from backend.auth.principal import Principal
from backend.errors import LisaError
from backend.serve.asgi import Message, Receive, Scope, Send
from backend.serve.sse import DONE, SseParser

PRINCIPAL_SCOPE_KEY = "lisa.internal_principal"  # set only by GatewayClient; the gateway reads it before headers


class Asgi(Protocol):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class GatewayCallError(LisaError):
    """The gateway answered an error (an OpenAI error object, or an error event in the middle of a stream)."""

    def __init__(
        self,
        status_code: int,
        message: str,
        openai_type: str,
        *,
        started: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.openai_type = openai_type
        self.started = started  # True: raised after some of the answer had arrived
        # The gateway's Retry-After (seconds) on a 429 or 503; /api answers carry it on (backend/api/errors.py).
        self.retry_after = retry_after


def _scope(principal: Principal, endpoint: str, body: bytes) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/v1/{endpoint}",
        "raw_path": f"/v1/{endpoint}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        PRINCIPAL_SCOPE_KEY: principal,
    }


def _error_from(status: int, body: bytes, retry_after: float | None = None) -> GatewayCallError:
    try:
        error = orjson.loads(body)["error"]
        message, kind = str(error["message"]), str(error.get("type") or "api_error")
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message, kind = body.decode("utf-8", "replace")[:500] or f"HTTP {status}", "api_error"
    return GatewayCallError(status, message, kind, retry_after=retry_after)


def _retry_after(message: Message) -> float | None:
    """The ``Retry-After`` of a response start (the gateway writes whole seconds), when it has one."""
    for name, value in message.get("headers") or ():
        if bytes(name).lower() == b"retry-after":
            with contextlib.suppress(ValueError):
                return max(1.0, float(bytes(value).decode("latin-1")))
    return None


class GatewayClient:
    def __init__(self, gateway: Asgi) -> None:
        self.gateway = gateway

    async def complete(self, principal: Principal, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A non-streaming call: the answer's JSON object, or GatewayCallError with the gateway's status."""
        body = orjson.dumps({**payload, "stream": False} if endpoint != "images/generations" else payload)
        status = 500
        retry_after: float | None = None
        chunks: list[bytes] = []
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # nobody disconnects a non-streaming call: it ends when the answer does
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            nonlocal status, retry_after
            if message["type"] == "http.response.start":
                status = int(message["status"])
                retry_after = _retry_after(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.gateway(_scope(principal, endpoint, body), receive, send)
        data = b"".join(chunks)
        if status >= 400:
            raise _error_from(status, data, retry_after)
        answer: dict[str, Any] = orjson.loads(data)
        return answer

    async def stream(
        self,
        principal: Principal,
        endpoint: str,
        payload: dict[str, Any],
        cancelled: asyncio.Event | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """A streaming call: each `data:` event's JSON object as it arrives (`[DONE]` ends the iteration).

        Setting ``cancelled`` (or closing the iterator) is what a client disconnecting is to the gateway: the upstream
        request is closed and what was used is metered. An error before the first event raises GatewayCallError;
        an error event mid-stream raises it with ``started=True``."""
        body = orjson.dumps({**payload, "stream": True})
        cancelled = cancelled or asyncio.Event()
        queue: asyncio.Queue[Message | None] = asyncio.Queue()
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await cancelled.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            await queue.put(message)

        async def run() -> None:
            try:
                await self.gateway(_scope(principal, endpoint, body), receive, send)
            finally:
                await queue.put(None)

        task = asyncio.create_task(run())
        status = 500
        retry_after: float | None = None
        parser = SseParser()
        error_body: list[bytes] = []
        started = False
        try:
            while (message := await queue.get()) is not None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    retry_after = _retry_after(message)
                    continue
                if message["type"] != "http.response.body":
                    continue
                chunk = message.get("body", b"")
                if status >= 400:
                    error_body.append(chunk)
                    continue
                for sse in parser.feed(chunk):
                    if sse.data is None:
                        continue
                    if sse.data == DONE:
                        return
                    event = orjson.loads(sse.data)
                    if isinstance(event, dict) and "error" in event and "choices" not in event:
                        error = event["error"] or {}
                        code = error.get("code")
                        raise GatewayCallError(
                            code if isinstance(code, int) and 400 <= code < 600 else 502,
                            str(error.get("message") or "the answer ended with an error"),
                            str(error.get("type") or "api_error"),
                            started=started,
                        )
                    started = True
                    yield event
            if status >= 400:
                raise _error_from(status, b"".join(error_body), retry_after)
        finally:
            cancelled.set()
            if not task.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), 10)
            if task.done() and not task.cancelled():
                task.exception()  # the gateway answers its own errors; nothing is left unretrieved
