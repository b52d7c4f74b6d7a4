"""A real HTTP server that records every request it receives and answers like an OpenAI-compatible upstream.

Run: ``python -m tests.servers.capture_server --host 127.0.0.1 --port N [--dimensions 8]``.

Tests use it two ways: as a listener that must receive nothing (a client tried to point LISA at it), and as an
upstream whose received bodies and headers a test reads back.

``GET /_captured`` lists what was received (method, path, headers, body as text); ``DELETE /_captured`` forgets it.
Credentials are never echoed: the values of ``Authorization``, ``Api-Key`` and ``X-Api-Key`` are listed as
``sha256:<hex>`` of what arrived (``fingerprint``), which a test compares with the key it expects.
``GET /health`` answers and is not recorded. Every other request is recorded, then answered:
``POST .../chat/completions`` with a chat completion ("captured", streaming when asked), ``.../completions`` with a
text completion, ``.../embeddings`` with deterministic unit vectors of ``--dimensions`` numbers (derived from a hash
of each text), and anything else with ``{}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from typing import Any

from aiohttp import web

CAPTURED = web.AppKey("captured", list)
CREDENTIAL_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})


def fingerprint(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest() * (1 + dimensions // 32)
    raw = [b - 127.5 for b in digest[:dimensions]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def answer(request: web.Request, body: Any, dimensions: int) -> web.StreamResponse:
    path = request.path.rstrip("/")
    model = body.get("model", "captured") if isinstance(body, dict) else "captured"
    now = int(time.time())
    if path.endswith("/embeddings") and isinstance(body, dict):
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        data = [
            {"object": "embedding", "index": i, "embedding": vector(str(t), dimensions)} for i, t in enumerate(texts)
        ]
        tokens = sum(max(1, len(str(t).split())) for t in texts)
        return web.json_response({"object": "list", "data": data, "model": model, "usage": usage(tokens, 0)})
    if path.endswith("/chat/completions") and isinstance(body, dict):
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for delta, finish in (({"role": "assistant", "content": "captured"}, None), ({}, "stop")):
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                event = {"id": "chatcmpl-captured", "object": "chat.completion.chunk", "created": now,
                         "model": model, "choices": [choice]}  # fmt: skip
                await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        choices = [
            {"index": i, "message": {"role": "assistant", "content": "captured"}, "finish_reason": "stop"}
            for i in range(int(body.get("n") or 1))
        ]
        return web.json_response({"id": "chatcmpl-captured", "object": "chat.completion", "created": now,
                                  "model": model, "choices": choices, "usage": usage(3, len(choices))})  # fmt: skip
    if path.endswith("/completions") and isinstance(body, dict):
        choice = {"index": 0, "text": "captured", "finish_reason": "stop", "logprobs": None}
        return web.json_response({"id": "cmpl-captured", "object": "text_completion", "created": now,
                                  "model": model, "choices": [choice], "usage": usage(3, 1)})  # fmt: skip
    return web.json_response({})


def build_app(dimensions: int) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[CAPTURED] = []

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def captured(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            request.app[CAPTURED].clear()
        return web.json_response(request.app[CAPTURED])

    async def record(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        text = raw.decode("utf-8", "replace")
        request.app[CAPTURED].append(
            {
                "method": request.method,
                "path": request.path,
                "headers": {
                    k: fingerprint(v) if k.lower() in CREDENTIAL_HEADERS else v for k, v in request.headers.items()
                },
                "body": text,
            }
        )
        try:
            body = json.loads(text) if text else None
        except json.JSONDecodeError:
            body = None
        return await answer(request, body, dimensions)

    app.router.add_get("/health", health)
    app.router.add_route("GET", "/_captured", captured)
    app.router.add_route("DELETE", "/_captured", captured)
    app.router.add_route("*", "/{tail:.*}", record)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="HTTP server that records what it receives.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--dimensions", type=int, default=8, help="length of the vectors /embeddings returns")
    args = parser.parse_args(argv)
    web.run_app(build_app(args.dimensions), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
