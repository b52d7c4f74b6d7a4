"""Byte pass-through to OpenAI-compatible upstreams (vLLM, TGI, TEI, llama.cpp): no translation on the hot path."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import aiohttp

from backend.errors import UpstreamError, UpstreamTimeout
from backend.net.egress import EgressGuard
from backend.registry.schemas import ModelRoute
from backend.serve.asgi import JSON_HEADERS, SSE_HEADERS, Receive, Send, openai_error_body, send_bytes
from backend.serve.usage_scan import count_content_deltas, estimate_prompt_tokens, usage_from_body


@dataclass(slots=True)
class Outcome:
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False


def _stream_error_event(message: str, type_: str, code: int) -> bytes:
    return b"data: " + openai_error_body(code, message, type_) + b"\n\n"


class Passthrough:
    def __init__(self, connect_timeout: float, read_timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self._read_timeout = read_timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self, egress: EgressGuard) -> None:
        # Every new upstream connection passes the egress guard at connect time, after DNS (DNS rebinding, or a
        # policy tightened since the model was registered, is refused as a failed connection).
        connector = egress.connector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _open(self, route: ModelRoute, path: str, body: bytes) -> aiohttp.ClientResponse:
        assert self._session is not None and route.base_url is not None
        headers = {"Content-Type": "application/json"}
        if route.api_key:
            headers["Authorization"] = "Bearer " + route.api_key
        try:
            return await self._session.post(route.base_url + path, data=body, headers=headers)
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"model '{route.id}': upstream did not answer within {self._read_timeout:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"model '{route.id}': upstream unreachable ({exc.__class__.__name__}: {exc})") from exc

    async def _read(self, route: ModelRoute, resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await resp.read()
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"model '{route.id}': upstream did not finish within {self._read_timeout:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"model '{route.id}': upstream connection failed: {exc}") from exc
        finally:
            resp.release()

    async def forward(
        self, route: ModelRoute, path: str, body: bytes, stream: bool, receive: Receive, send: Send
    ) -> Outcome:
        resp = await self._open(route, path, body)
        if resp.status >= 400 or not stream or "text/event-stream" not in resp.headers.get("Content-Type", ""):
            payload = await self._read(route, resp)
            return await self._finish_plain(route, resp.status, payload, send)
        return await self._stream(route, resp, body, receive, send)

    async def _finish_plain(self, route: ModelRoute, status: int, payload: bytes, send: Send) -> Outcome:
        if status >= 500:
            snippet = payload[:500].decode("utf-8", "replace")
            raise UpstreamError(f"model '{route.id}': upstream failed with status {status}: {snippet}")
        if status >= 400 and not payload.lstrip().startswith(b"{"):
            payload = openai_error_body(status, payload[:500].decode("utf-8", "replace"), "invalid_request_error")
        await send_bytes(send, status, payload, JSON_HEADERS)
        usage = usage_from_body(payload) if status < 400 else None
        return Outcome(status, *(usage or (0, 0)))

    async def _stream(
        self,
        route: ModelRoute,
        resp: aiohttp.ClientResponse,
        request_body: bytes,
        receive: Receive,
        send: Send,
    ) -> Outcome:
        outcome = Outcome(200)
        deltas = 0
        usage: tuple[int, int] | None = None
        tail = b""
        watcher = asyncio.create_task(_wait_disconnect(receive))

        def close_upstream(_task: asyncio.Task[None]) -> None:
            if not _task.cancelled():
                resp.close()  # stop the upstream generating for a client that left

        watcher.add_done_callback(close_upstream)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        try:
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                deltas += count_content_deltas(chunk)
                if b'"usage"' in chunk or b'"usage"' in tail + chunk[:16]:
                    usage = usage_from_body(tail + chunk) or usage
                tail = chunk[-16:]
            if watcher.done():
                outcome.status = 499
        except TimeoutError:
            outcome.status = 504
            message = f"model '{route.id}': upstream stalled: no data for {self._read_timeout:g}s"
            await _try_send(send, _stream_error_event(message, "upstream_timeout", 504))
        except (aiohttp.ClientError, ConnectionError) as exc:
            if watcher.done():  # the client went away; the upstream was closed on purpose
                outcome.status = 499
            else:
                outcome.status = 502
                message = f"model '{route.id}': upstream connection lost mid-stream ({exc.__class__.__name__})"
                await _try_send(send, _stream_error_event(message, "upstream_error", 502))
        finally:
            watcher.remove_done_callback(close_upstream)
            watcher.cancel()
            resp.release()
            await _try_send(send, b"", more_body=False)
        if usage is not None:
            outcome.prompt_tokens, outcome.completion_tokens = usage
        else:
            outcome.prompt_tokens = estimate_prompt_tokens(request_body)
            outcome.completion_tokens = deltas
            outcome.estimated = True
        return outcome


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _try_send(send: Send, body: bytes, more_body: bool = True) -> None:
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": body, "more_body": more_body})
