"""Byte pass-through to OpenAI-compatible upstreams (vLLM, TGI, TEI, llama.cpp): no translation on the hot path."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from backend.net.egress import EgressGuard
from backend.registry.schemas import ModelRoute
from backend.serve.asgi import (
    JSON_HEADERS,
    SSE_HEADERS,
    Receive,
    Send,
    openai_error_body,
    send_body_quietly,
    send_bytes,
    wait_disconnect,
)
from backend.serve.upstream_errors import from_status, timed_out, unreachable
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
            raise timed_out(route.id, self._read_timeout) from exc
        except aiohttp.ClientError as exc:
            raise unreachable(route.id, exc, route.api_key) from exc

    async def _read(self, route: ModelRoute, resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await resp.read()
        except TimeoutError as exc:
            raise timed_out(route.id, self._read_timeout, "finish") from exc
        except aiohttp.ClientError as exc:
            raise unreachable(route.id, exc, route.api_key) from exc
        finally:
            resp.release()

    async def forward(
        self, route: ModelRoute, path: str, body: bytes, stream: bool, receive: Receive, send: Send, outcome: Outcome
    ) -> None:
        """Send ``body`` upstream and its answer to the client, keeping ``outcome`` up to date as it goes (a
        request cut off halfway is settled on what was streamed)."""
        resp = await self._open(route, path, body)
        if resp.status >= 400:
            payload = await self._read(route, resp)
            raise from_status(route.id, resp.status, payload, secret=route.api_key,
                              retry_after=resp.headers.get("Retry-After"))  # fmt: skip
        if not stream or "text/event-stream" not in resp.headers.get("Content-Type", ""):
            payload = await self._read(route, resp)
            await send_bytes(send, resp.status, payload, JSON_HEADERS)
            outcome.status = resp.status
            usage = usage_from_body(payload)
            outcome.prompt_tokens, outcome.completion_tokens = usage or (0, 0)
            return
        await self._stream(route, resp, body, receive, send, outcome)

    async def _stream(
        self,
        route: ModelRoute,
        resp: aiohttp.ClientResponse,
        request_body: bytes,
        receive: Receive,
        send: Send,
        outcome: Outcome,
    ) -> None:
        outcome.status = 200
        # Until the upstream reports usage, count what was streamed: a stream cut off (client gone, upstream
        # dead) is settled on that, never on 0.
        outcome.prompt_tokens, outcome.estimated = estimate_prompt_tokens(request_body), True
        usage: tuple[int, int] | None = None
        tail = b""
        watcher = asyncio.create_task(wait_disconnect(receive))

        def close_upstream(_task: asyncio.Task[None]) -> None:
            if not _task.cancelled():
                resp.close()  # stop the upstream generating for a client that left

        watcher.add_done_callback(close_upstream)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        try:
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                outcome.completion_tokens += count_content_deltas(chunk)
                if b'"usage"' in chunk or b'"usage"' in tail + chunk[:16]:
                    usage = usage_from_body(tail + chunk) or usage
                tail = chunk[-16:]
                if watcher.done():
                    break
            if watcher.done():
                outcome.status = 499
        except TimeoutError:
            outcome.status = 504
            message = f"model '{route.id}': upstream stalled: no data for {self._read_timeout:g}s"
            await send_body_quietly(send, _stream_error_event(message, "upstream_timeout", 504))
        except (aiohttp.ClientError, ConnectionError) as exc:
            if watcher.done():  # the client went away; the upstream was closed on purpose
                outcome.status = 499
            else:
                outcome.status = 502
                message = f"model '{route.id}': upstream connection lost mid-stream ({exc.__class__.__name__})"
                await send_body_quietly(send, _stream_error_event(message, "upstream_error", 502))
        finally:
            watcher.remove_done_callback(close_upstream)
            watcher.cancel()
            if outcome.status == 499:
                resp.close()  # no point reading the rest of what nobody will receive
            else:
                resp.release()
            await send_body_quietly(send, b"", more_body=False)
        if usage is not None and outcome.status == 200:
            outcome.prompt_tokens, outcome.completion_tokens = usage
            outcome.estimated = False
