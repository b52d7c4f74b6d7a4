"""A real OpenAI-compatible upstream whose behaviour is chosen by the request's ``model`` field.

Run: ``python -m tests.servers.faulty_upstream --host 127.0.0.1 --port N``.

Models of ``POST /v1/chat/completions``:
  ok               normal answer "hello world", non-streaming or streaming (SSE)
  slow             sleeps 30 s, then answers like "ok" (timeout tests)
  die-mid-stream   streams two content chunks, then the process dies with ``os._exit(1)``
  stall-mid-stream streams two content chunks, then sleeps forever
  error-500        500 with an OpenAI error body
  bad-request      400 with an OpenAI error body
  long             generates LONG_TOKENS tokens per choice ("tok0 tok1 ..."), or max_tokens/max_completion_tokens
                   when smaller, for each of ``n`` choices; streams one token a chunk, STREAM_DELAY apart
  leaky-500/-400/-401  fail with text full of internal detail (LEAKS: addresses, host names, a key)
  leaky-echo       500 whose text quotes the request's Authorization header (the model's stored key)
``POST /v1/completions`` knows "ok" only. ``GET /v1/models``, ``GET /health``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from typing import Any

from aiohttp import web

CHAT_MODELS = ["ok", "slow", "die-mid-stream", "stall-mid-stream", "error-500", "bad-request", "long",
               "leaky-500", "leaky-400", "leaky-401", "leaky-echo"]  # fmt: skip
LONG_TOKENS = 2000
STREAM_DELAY = 0.01
LEAKS = ["10.9.8.7", "gpu-node-7.internal", "sk-upstream-leak-123456"]
LEAKY_TEXT = (
    "worker failed: POST http://10.9.8.7:8000/generate on gpu-node-7.internal refused (api_key=sk-upstream-leak-123456)"
)
PIECES = ["hello", " wor", "ld"]
ANSWER = "".join(PIECES)


def error(status: int, message: str, type_: str, param: str | None = None, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.json_response(body, status=status)


def usage_of(prompt: str) -> dict[str, int]:
    prompt_tokens = max(1, len(prompt.split()))
    return {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": prompt_tokens + 2}


def chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


async def open_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive"}
    )
    await response.prepare(request)
    return response


async def send(response: web.StreamResponse, payload: dict[str, Any] | str) -> None:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    await response.write(f"data: {data}\n\n".encode())


async def read_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, "The request body is not valid JSON.", "invalid_request_error")
    if not isinstance(body, dict):
        return error(400, "The request body must be a JSON object.", "invalid_request_error")
    return body


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_body(request)
    if isinstance(body, web.Response):
        return body
    model = body.get("model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error(400, "'messages' must be a non-empty list.", "invalid_request_error", "messages")
    if model == "error-500":
        return error(500, "The upstream failed on purpose (error-500).", "server_error")
    if model == "bad-request":
        return error(400, "The upstream rejected the request on purpose (bad-request).", "invalid_request_error")
    if model == "leaky-500":
        return web.Response(status=500, text=LEAKY_TEXT)
    if model == "leaky-400":
        return error(400, "prompt too long for the context window; " + LEAKY_TEXT, "invalid_request_error", "messages")
    if model == "leaky-401":
        return error(401, "Incorrect API key for " + LEAKY_TEXT, "authentication_error")
    if model == "leaky-echo":
        return web.Response(status=500, text=f"rejected {request.headers.get('Authorization')} from {LEAKY_TEXT}")
    if model == "long":
        return await long_answer(request, body)
    if model not in CHAT_MODELS:
        return error(404, f"The model '{model}' does not exist.", "invalid_request_error", "model", "model_not_found")
    if model == "slow":
        await asyncio.sleep(30)
    prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    if not body.get("stream"):
        message = {"role": "assistant", "content": ANSWER}
        return web.json_response(
            {
                "id": cid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
                "usage": usage_of(prompt),
            }
        )
    response = await open_sse(request)
    await send(response, chunk(cid, model, {"role": "assistant", "content": ""}))
    for i, piece in enumerate(PIECES):
        if i == 2 and model == "die-mid-stream":
            await asyncio.sleep(0.05)  # let the kernel put the two chunks on the wire first
            os._exit(1)
        if i == 2 and model == "stall-mid-stream":
            await asyncio.Event().wait()  # nobody sets it: stall until the client gives up
        await send(response, chunk(cid, model, {"content": piece}))
    await send(response, chunk(cid, model, {}, "stop"))
    options = body.get("stream_options") or {}
    if isinstance(options, dict) and options.get("include_usage"):
        final = chunk(cid, model, {}) | {"choices": [], "usage": usage_of(prompt)}
        await send(response, final)
    await send(response, "[DONE]")
    await response.write_eof()
    return response


async def long_answer(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    tokens = min(LONG_TOKENS, limit) if isinstance(limit, int) and limit > 0 else LONG_TOKENS
    n = body["n"] if isinstance(body.get("n"), int) else 1
    prompt = " ".join(str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
    prompt_tokens = max(1, len(prompt.split()))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": tokens * n,
        "total_tokens": prompt_tokens + tokens * n,
    }
    cid, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", "long"
    finish = "length" if tokens < LONG_TOKENS else "stop"
    if not body.get("stream"):
        text = " ".join(f"tok{i}" for i in range(tokens))
        choices = [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                    "finish_reason": finish} for i in range(n)]  # fmt: skip
        return web.json_response({"id": cid, "object": "chat.completion", "created": int(time.time()),
                                  "model": model, "choices": choices, "usage": usage})  # fmt: skip
    response = await open_sse(request)
    for t in range(tokens):
        for i in range(n):
            event = chunk(cid, model, {"content": f" tok{t}"})
            event["choices"][0]["index"] = i
            await send(response, event)
        await asyncio.sleep(STREAM_DELAY)
    await send(response, chunk(cid, model, {}, finish))
    options = body.get("stream_options") or {}
    if isinstance(options, dict) and options.get("include_usage"):
        await send(response, chunk(cid, model, {}) | {"choices": [], "usage": usage})
    await send(response, "[DONE]")
    await response.write_eof()
    return response


async def completions(request: web.Request) -> web.StreamResponse:
    body = await read_body(request)
    if isinstance(body, web.Response):
        return body
    model, prompt = body.get("model"), body.get("prompt")
    if model != "ok":
        return error(404, f"The model '{model}' does not exist.", "invalid_request_error", "model", "model_not_found")
    if not isinstance(prompt, str | list):
        return error(400, "'prompt' is required.", "invalid_request_error", "prompt")
    cid = f"cmpl-{uuid.uuid4().hex[:24]}"

    def text_chunk(text: str, finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return {
            "id": cid,
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
        }

    if not body.get("stream"):
        return web.json_response(text_chunk(ANSWER, "stop") | {"usage": usage_of(str(prompt))})
    response = await open_sse(request)
    for piece in PIECES:
        await send(response, text_chunk(piece, None))
    await send(response, text_chunk("", "stop"))
    await send(response, "[DONE]")
    await response.write_eof()
    return response


async def models(_: web.Request) -> web.Response:
    created = int(time.time())
    data = [{"id": m, "object": "model", "created": created, "owned_by": "faulty"} for m in CHAT_MODELS]
    return web.json_response({"object": "list", "data": data})


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible upstream that fails on request.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    web.run_app(build_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
