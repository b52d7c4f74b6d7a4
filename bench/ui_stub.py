"""An OpenAI-compatible streaming upstream for the browser benchmark that timestamps the tokens it sends.

Run: ``python bench/ui_stub.py --port N``. ``POST /v1/chat/completions`` (streaming) answers by the request's
``model``: ``gap-<ms>-<n>`` streams ``n`` tokens ``⟦k:<id>⟧`` (k = 0..n-1, id unique per request), ``<ms>``
milliseconds apart, each chunk flushed on its own. The wall-clock time (``time.time()``, ms) at which each token's
bytes were handed to the socket is kept: ``GET /_sent`` lists ``{"<k>:<id>": ms}`` and forgets them. A browser on
the same machine compares them with when the text appeared (``Date.now()``): one clock, no skew.
``GET /health`` answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from typing import Any

from aiohttp import web

SENT_AT: dict[str, float] = {}  # token -> wall-clock ms when written (one app per process)
COUNTER = itertools.count(1)


def chunk(model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    event = {"id": "chatcmpl-ui", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


def plan(model: str) -> tuple[float, int]:
    """(gap in seconds, tokens) from ``gap-<ms>-<n>``; anything else: 5 tokens at once."""
    parts = model.split("-")
    try:
        return float(parts[1]) / 1000, int(parts[2])
    except (IndexError, ValueError):
        return 0.0, 5


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model = str(body.get("model", ""))
    gap, count = plan(model)
    ident = f"{next(COUNTER):06d}"
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(chunk(model, {"role": "assistant", "content": ""}))
    for k in range(count):
        if gap and k:
            await asyncio.sleep(gap)
        token = f"⟦{k}:{ident}⟧ "
        await response.write(chunk(model, {"content": token}))
        SENT_AT[f"{k}:{ident}"] = time.time() * 1000
    usage = {"prompt_tokens": 10, "completion_tokens": count, "total_tokens": 10 + count}
    await response.write(chunk(model, {}, "stop"))
    await response.write(chunk(model, {}, None, usage=usage))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def sent(_request: web.Request) -> web.Response:
    data = dict(SENT_AT)
    SENT_AT.clear()
    return web.json_response(data)


async def models(_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "gap-0-5", "object": "model"}]})


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def app() -> web.Application:
    application = web.Application()
    application.router.add_post("/v1/chat/completions", completions)
    application.router.add_get("/v1/models", models)
    application.router.add_get("/_sent", sent)
    application.router.add_get("/health", health)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8111)
    args = parser.parse_args()
    web.run_app(app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
