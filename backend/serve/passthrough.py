"""Byte pass-through to OpenAI-compatible upstreams (vLLM, TGI, TEI, llama.cpp): no translation on the hot path."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from backend.net.egress import EgressGuard
from backend.registry.schemas import ModelRoute
from backend.serve.answer import AnswerPlan, Outcome, StreamFilter, error_event, with_sources
from backend.serve.asgi import (
    JSON_HEADERS,
    SSE_HEADERS,
    Receive,
    Send,
    new_request_id,
    send_body_quietly,
    send_bytes,
    wait_disconnect,
)
from backend.serve.sse import SseParser
from backend.serve.upstream_errors import connect_timed_out, from_status, timed_out, unreachable
from backend.serve.upstream_usage import usage_from_body

log = logging.getLogger("lisa.serve")

# An upstream event larger than this (no event boundary in sight) ends the stream with an error: a stream is
# passed on event by event, and an event is held until it is complete.
MAX_EVENT_BYTES = 64 * 1024 * 1024


class Passthrough:
    def __init__(self, connect_timeout: float, read_timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self, egress: EgressGuard) -> None:
        # Every new upstream connection passes the egress guard at connect time, after DNS (DNS rebinding, or a
        # policy tightened since the model was registered, is refused as a failed connection).
        connector = egress.connector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        # Upstreams are asked for identity encoding; one that compresses anyway is decompressed (the client gets
        # LISA's own headers, never the upstream's Content-Encoding).
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _open(self, route: ModelRoute, path: str, body: bytes) -> aiohttp.ClientResponse:
        assert self._session is not None and route.base_url is not None
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if route.api_key:
            headers["Authorization"] = "Bearer " + route.api_key
        try:
            return await self._session.post(route.base_url + path, data=body, headers=headers)
        except aiohttp.ConnectionTimeoutError as exc:
            raise connect_timed_out(route.id, self._connect_timeout) from exc
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
        self,
        route: ModelRoute,
        body: bytes,
        stream: bool,
        receive: Receive,
        send: Send,
        outcome: Outcome,
        plan: AnswerPlan,
    ) -> None:
        """Send ``body`` upstream and its answer to the client, keeping ``outcome`` up to date as it goes."""
        resp = await self._open(route, "/" + plan.endpoint, body)
        if resp.status >= 400:
            payload = await self._read(route, resp)
            raise from_status(route.id, resp.status, payload, secret=route.api_key,
                              retry_after=resp.headers.get("Retry-After"))  # fmt: skip
        if not stream or "text/event-stream" not in resp.headers.get("Content-Type", ""):
            payload = await self._read(route, resp)
            await send_bytes(send, resp.status, with_sources(payload, plan.sources), JSON_HEADERS)
            outcome.status = resp.status
            usage = usage_from_body(payload)
            if usage is not None:
                outcome.prompt_tokens, outcome.completion_tokens = usage
            else:
                outcome.prompt_tokens, outcome.estimated = outcome.prompt_estimate, True
            return
        await self._stream(route, resp, receive, send, outcome, plan)

    async def _stream(
        self,
        route: ModelRoute,
        resp: aiohttp.ClientResponse,
        receive: Receive,
        send: Send,
        outcome: Outcome,
        plan: AnswerPlan,
    ) -> None:
        # Until the upstream reports usage, count what was streamed: a stream cut off (client gone, upstream
        # dead) is settled on that, never on 0.
        outcome.prompt_tokens, outcome.estimated = outcome.prompt_estimate, True
        parser = SseParser()
        events = StreamFilter(outcome, plan)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        except BaseException:
            resp.close()
            raise  # nothing reached the client: the gateway answers
        outcome.status = 200
        watcher = asyncio.create_task(wait_disconnect(receive))

        def close_upstream(_task: asyncio.Task[None]) -> None:
            if not _task.cancelled():
                resp.close()  # stop the upstream generating for a client that left

        watcher.add_done_callback(close_upstream)
        try:
            async for chunk in resp.content.iter_any():
                out = b"".join([events.event(e) for e in parser.feed(chunk)])
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if watcher.done():
                    break
                if parser.pending > MAX_EVENT_BYTES:
                    raise _Oversized
            if watcher.done():
                outcome.status = 499
            else:
                last = parser.close()
                out = (events.event(last) if last is not None else b"") + events.tail()
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        except TimeoutError:
            outcome.status = 504
            message = f"model '{route.id}': upstream stalled: no data for {self._read_timeout:g}s"
            await send_body_quietly(send, error_event(504, message, "upstream_timeout"))
        except (aiohttp.ClientError, ConnectionError) as exc:
            if watcher.done():  # the client went away; the upstream was closed on purpose
                outcome.status = 499
            else:
                outcome.status = 502
                message = f"model '{route.id}': upstream connection lost mid-stream ({exc.__class__.__name__})"
                await send_body_quietly(send, error_event(502, message, "upstream_error"))
        except _Oversized:
            outcome.status = 502
            message = f"model '{route.id}': the upstream sent an event over {MAX_EVENT_BYTES} bytes"
            await send_body_quietly(send, error_event(502, message, "upstream_error"))
        except Exception:
            outcome.status = 500
            request_id = new_request_id()
            log.exception("unexpected error %s while streaming model=%s", request_id, route.id)
            message = f"The server had an error while streaming the answer (request id {request_id})."
            await send_body_quietly(send, error_event(500, message, "server_error"))
        finally:
            watcher.remove_done_callback(close_upstream)
            watcher.cancel()
            if outcome.status in (200, 504):
                resp.release()
            else:
                resp.close()  # no point reading the rest of what nobody will receive, or of a broken stream
            await send_body_quietly(send, b"", more_body=False)


class _Oversized(Exception):
    pass
