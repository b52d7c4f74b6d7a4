"""A minimal OpenAI-compatible upstream for the gateway benchmark, in two implementations.

``--impl fastapi`` (the default): a plain FastAPI app under uvicorn with every default (one worker,
httptools + uvloop, which ``uvicorn[standard]`` installs, access log on, to the benchmark's log file), the
kind of stub the issue measured its reference figures against. Measured once on the quiet 2-core machine,
plain, wrk at concurrency 16: ~6,700 req/s (the issue's reference: 4,240); returning a dict instead of the
prepared bytes ~6,200; with the access log off ~10,500.

``--impl raw``: no framework at all: one event loop (uvloop when installed) and a raw
``asyncio.Protocol`` with the ``httptools`` C parser answering canned bytes. It is many times faster
than the FastAPI stub, so measuring against it shows a gateway's own ceiling on the machine.

Both answer ``POST /v1/chat/completions`` with a fixed small ``chat.completion`` with usage; with
``"stream": true`` with a few ``chat.completion.chunk`` SSE events (plus a usage chunk when
``stream_options.include_usage`` is set, as vLLM and OpenAI do) and ``data: [DONE]``. ``GET /v1/models``
and ``GET /health`` answer too, and ``GET /_count``: the chat completion requests received so far (on
either port), per the ``model`` their body names, e.g. ``{"chat_completions": {"bench": 120}}``; the
benchmark compares it with what a gateway meters. Everything else is 404.

With ``--slow-port``, the same process also listens there (same implementation) and sends each stream's
first event at once and the rest ``--slow-delay-ms`` later, so that time to first token differs from the
stream's total time.

Run: ``python bench/upstream_stub.py --port 8101 [--slow-port 8102] [--impl fastapi|raw]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import cast

import httptools
from fastapi import FastAPI, Request  # module level: FastAPI resolves annotations here
from fastapi.responses import Response, StreamingResponse

MODEL = "bench"
CONTENT_PIECES = ["Hello", "!", " How", " can", " I", " help", "?"]
N_OUT = len(CONTENT_PIECES)
USAGE = {"prompt_tokens": 9, "completion_tokens": N_OUT, "total_tokens": 9 + N_OUT}


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _completion_body() -> bytes:
    return _json(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(CONTENT_PIECES)},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def _chunk(delta: dict[str, str], finish: str | None) -> dict[str, object]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse_events(include_usage: bool) -> list[bytes]:
    chunks = [_chunk({"role": "assistant", "content": ""}, None)]
    chunks += [_chunk({"content": piece}, None) for piece in CONTENT_PIECES]
    chunks.append(_chunk({}, "stop"))
    if include_usage:
        chunks.append({**_chunk({}, None), "choices": [], "usage": USAGE})
    return [b"data: " + _json(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response(status: bytes, content_type: bytes, body: bytes) -> bytes:
    head = b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (
        status,
        content_type,
        len(body),
    )
    return head + body


# The answers are built once; ``created`` goes stale, which no client of the benchmark reads.
JSON = b"application/json"
PLAIN_RESPONSE = _response(b"200 OK", JSON, _completion_body())
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
STREAM_PARTS = {  # (the head and the first event, the rest) with and without the usage chunk
    usage: (
        STREAM_HEAD + _http_chunk(_sse_events(usage)[0]),
        b"".join(_http_chunk(e) for e in _sse_events(usage)[1:]) + b"0\r\n\r\n",
    )
    for usage in (False, True)
}
STREAM_RESPONSE = {usage: first + rest for usage, (first, rest) in STREAM_PARTS.items()}
MODEL_ENTRY = {"id": MODEL, "object": "model", "created": 0, "owned_by": "stub"}
MODELS_RESPONSE = _response(b"200 OK", JSON, _json({"object": "list", "data": [MODEL_ENTRY]}))
HEALTH_RESPONSE = _response(b"200 OK", b"text/plain", b"ok")
NOT_FOUND = _response(b"404 Not Found", JSON, b"{}")
BAD_REQUEST = _response(b"400 Bad Request", JSON, b"{}")

# Chat completion requests received, per the model their body names ("?": no readable model), both ports.
RECEIVED: Counter[str] = Counter()


def count_request(request: object) -> None:
    model = request.get("model") if isinstance(request, dict) else None
    RECEIVED[model if isinstance(model, str) else "?"] += 1


def count_body() -> bytes:
    return _json({"chat_completions": dict(RECEIVED)})


class StubProtocol(asyncio.Protocol):
    """One connection: parse with httptools, answer each complete request from the canned bytes.

    With ``delay`` > 0, a streaming answer sends its first event at once and the rest ``delay`` seconds
    later, like a model that takes a while after the first token: a gateway that buffers the stream then
    shows it in its time to first token.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transport is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(BAD_REQUEST)
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        answer = self._answer(self.parser.get_method(), self.url.split(b"?", 1)[0])
        keep_alive = self.parser.should_keep_alive()
        if isinstance(answer, tuple):
            self.transport.write(answer[0])
            asyncio.get_running_loop().call_later(self.delay, self._finish, answer[1], keep_alive)
        else:
            self._finish(answer, keep_alive)

    def _finish(self, data: bytes, keep_alive: bool) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return
        self.transport.write(data)
        if not keep_alive:
            self.transport.close()

    def _answer(self, method: bytes, path: bytes) -> bytes | tuple[bytes, bytes]:
        if method == b"POST" and path == b"/v1/chat/completions":
            try:
                request = json.loads(b"".join(self.body))
            except ValueError:
                request = None
            count_request(request)
            if not isinstance(request, dict):
                return BAD_REQUEST
            if request.get("stream"):
                options = request.get("stream_options") or {}
                usage = bool(isinstance(options, dict) and options.get("include_usage"))
                return STREAM_PARTS[usage] if self.delay > 0 else STREAM_RESPONSE[usage]
            return PLAIN_RESPONSE
        if method == b"GET" and path == b"/v1/models":
            return MODELS_RESPONSE
        if method == b"GET" and path == b"/health":
            return HEALTH_RESPONSE
        if method == b"GET" and path == b"/_count":
            return _response(b"200 OK", JSON, count_body())
        return NOT_FOUND


async def serve_raw(host: str, port: int, slow_port: int, delay_ms: float) -> None:
    loop = asyncio.get_running_loop()
    if slow_port:
        slow = await loop.create_server(
            lambda: StubProtocol(delay_ms / 1000), host, slow_port, backlog=2048, reuse_address=True
        )
        await slow.start_serving()
    server = await loop.create_server(StubProtocol, host, port, backlog=2048, reuse_address=True)
    async with server:
        await server.serve_forever()


def fastapi_app(slow_port: int = 0, delay_ms: float = 0.0) -> FastAPI:
    """The same answers from an ordinary FastAPI app; requests that came in on ``slow_port`` pause."""
    app = FastAPI()
    plain = _completion_body()
    events = {usage: _sse_events(usage) for usage in (False, True)}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        count_request(body)
        if not isinstance(body, dict):
            return Response(b"{}", status_code=400, media_type="application/json")
        if not body.get("stream"):
            return Response(plain, media_type="application/json")
        chunks = events[bool((body.get("stream_options") or {}).get("include_usage"))]
        server = request.scope.get("server") or ("", 0)
        pause = delay_ms / 1000 if slow_port and server[1] == slow_port else 0.0

        async def gen() -> AsyncIterator[bytes]:
            yield chunks[0]
            if pause:
                await asyncio.sleep(pause)
            for chunk in chunks[1:]:
                yield chunk

        return StreamingResponse(gen(), media_type="text/event-stream")

    @app.get("/v1/models")
    async def models() -> Response:
        return Response(MODELS_RESPONSE.partition(b"\r\n\r\n")[2], media_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        return Response(b"ok", media_type="text/plain")

    @app.get("/_count")
    async def count() -> Response:
        return Response(count_body(), media_type="application/json")

    return app


def run_fastapi(host: str, port: int, slow_port: int, delay_ms: float) -> None:
    """uvicorn with its defaults, serving one app on one or two listening sockets in one process."""
    import uvicorn

    config = uvicorn.Config(fastapi_app(slow_port, delay_ms), host=host, port=port)
    sockets = []
    for p in [port, slow_port] if slow_port else [port]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, p))
        sock.set_inheritable(True)
        sockets.append(sock)
    uvicorn.Server(config).run(sockets=sockets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--impl", choices=["fastapi", "raw"], default="fastapi")
    parser.add_argument("--slow-port", type=int, default=0, help="also serve streams with a pause here")
    parser.add_argument("--slow-delay-ms", type=float, default=10.0, help="the pause after the first event")
    args = parser.parse_args()
    print(f"{args.impl} stub listening on http://{args.host}:{args.port}/v1", flush=True)
    if args.slow_port:
        slow_url = f"http://{args.host}:{args.slow_port}/v1"
        print(f"slow stub ({args.slow_delay_ms:g} ms after the first event) on {slow_url}", flush=True)
    if args.impl == "fastapi":
        run_fastapi(args.host, args.port, args.slow_port, args.slow_delay_ms)
        return
    try:
        import uvloop

        uvloop.install()  # uvicorn[standard] ships it; without it the stub runs on asyncio's loop
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_raw(args.host, args.port, args.slow_port, args.slow_delay_ms))


if __name__ == "__main__":
    main()
