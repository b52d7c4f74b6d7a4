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
  error-401/-403/-404  that status with an OpenAI error body (a bad stored key, an unknown upstream model)
  error-429        429 with ``Retry-After: 7`` (RETRY_AFTER)
  no-usage         like "ok", but never reports usage (llama.cpp's server in a stream, and here in JSON too)
  split-usage      like "ok", but its usage object has ``prompt_tokens_details`` before ``completion_tokens``
                   (SPLIT_USAGE) and, streamed, arrives in two writes split inside the object
  gzip             like "ok", gzip-compressed when the request's Accept-Encoding allows it
  gzip-always      like "ok", gzip-compressed whatever the request says (a misbehaving upstream)
``POST /v1/completions`` knows "ok" and "no-usage". ``GET /v1/models``, ``GET /health``; with ``--n-ctx N``
``GET /props`` says ``n_ctx`` N (llama.cpp), with ``--max-model-len N`` each model entry says it (vLLM).
``GET /_aborted`` lists the "long" streams a client left: ``{"tokens_sent": n}`` each, in order.
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
from aiohttp.web import ContentCoding

CHAT_MODELS = ["ok", "slow", "die-mid-stream", "stall-mid-stream", "error-500", "bad-request", "long",
               "leaky-500", "leaky-400", "leaky-401", "leaky-echo", "error-401", "error-403", "error-404",
               "error-429", "no-usage", "split-usage", "gzip", "gzip-always"]  # fmt: skip
RETRY_AFTER = 7
SPLIT_USAGE = {"prompt_tokens": 11, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens": 3,
               "completion_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14}  # fmt: skip
ABORTED = web.AppKey("aborted", list)
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


def usage_of(prompt: str, model: str = "ok") -> dict[str, Any]:
    if model == "split-usage":
        return SPLIT_USAGE
    prompt_tokens = max(1, len(prompt.split()))
    return {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": prompt_tokens + 2}


def compress(response: web.StreamResponse, model: object) -> None:
    if model == "gzip":
        response.enable_compression()  # as the request's Accept-Encoding allows
    elif model == "gzip-always":
        response.enable_compression(force=ContentCoding.gzip)


def chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


async def open_sse(request: web.Request, model: object = None) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive"}
    )
    compress(response, model)
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
    if model in ("error-401", "error-403", "error-404"):
        status = int(str(model)[-3:])
        return error(status, f"The upstream answered {status} on purpose.", "invalid_request_error")
    if model == "error-429":
        limited = error(429, "Rate limit reached for requests.", "requests", code="rate_limit_exceeded")
        limited.headers["Retry-After"] = str(RETRY_AFTER)
        return limited
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
        answer: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        }
        if model != "no-usage":
            answer["usage"] = usage_of(prompt, str(model))
        reply = web.json_response(answer)
        compress(reply, model)
        return reply
    response = await open_sse(request, model)
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
    if isinstance(options, dict) and options.get("include_usage") and model != "no-usage":
        final = chunk(cid, model, {}) | {"choices": [], "usage": usage_of(prompt, str(model))}
        if model == "split-usage":  # two writes, split inside the usage object
            event = f"data: {json.dumps(final, separators=(',', ':'))}\n\n".encode()
            cut = event.index(b'"prompt_tokens_details"') + 10
            await response.write(event[:cut])
            await asyncio.sleep(0.05)
            await response.write(event[cut:])
        else:
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
    sent = 0
    try:
        for t in range(tokens):
            for i in range(n):
                event = chunk(cid, model, {"content": f" tok{t}"})
                event["choices"][0]["index"] = i
                await send(response, event)
                sent += 1
            await asyncio.sleep(STREAM_DELAY)
    except (ConnectionError, asyncio.CancelledError):
        request.app[ABORTED].append({"tokens_sent": sent})  # the client (LISA) closed the connection
        raise
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
    if model not in ("ok", "no-usage"):
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
        usage = {} if model == "no-usage" else {"usage": usage_of(str(prompt))}
        return web.json_response(text_chunk(ANSWER, "stop") | usage)
    response = await open_sse(request)
    for piece in PIECES:
        await send(response, text_chunk(piece, None))
    await send(response, text_chunk("", "stop"))
    await send(response, "[DONE]")
    await response.write_eof()
    return response


MAX_MODEL_LEN = web.AppKey("max_model_len", int)
N_CTX = web.AppKey("n_ctx", int)


async def models(request: web.Request) -> web.Response:
    created = int(time.time())
    data: list[dict[str, Any]] = [
        {"id": m, "object": "model", "created": created, "owned_by": "faulty"} for m in CHAT_MODELS
    ]
    if request.app[MAX_MODEL_LEN]:  # as vLLM says it
        for entry in data:
            entry["max_model_len"] = request.app[MAX_MODEL_LEN]
    return web.json_response({"object": "list", "data": data})


async def props(request: web.Request) -> web.Response:
    """llama.cpp's server properties, with the context window it runs (``--n-ctx``); 404 without one."""
    if not request.app[N_CTX]:
        raise web.HTTPNotFound()
    return web.json_response(
        {"n_ctx": request.app[N_CTX], "default_generation_settings": {"n_ctx": request.app[N_CTX]}}
    )


async def aborted(request: web.Request) -> web.Response:
    return web.json_response(request.app[ABORTED])


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(n_ctx: int = 0, max_model_len: int = 0) -> web.Application:
    app = web.Application()
    app[ABORTED] = []
    app[N_CTX] = n_ctx
    app[MAX_MODEL_LEN] = max_model_len
    app.router.add_get("/_aborted", aborted)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/props", props)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible upstream that fails on request.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--n-ctx", type=int, default=0, help="serve GET /props with this n_ctx (as llama.cpp)")
    parser.add_argument("--max-model-len", type=int, default=0, help="max_model_len of each /v1/models entry (vLLM)")
    args = parser.parse_args(argv)
    app = build_app(args.n_ctx, args.max_model_len)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
