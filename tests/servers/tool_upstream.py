"""A scripted OpenAI-compatible upstream that asks for tool calls, for the chat tool loop's tests.

Run: ``python -m tests.servers.tool_upstream --host 127.0.0.1 --port N``. ``POST .../chat/completions`` (streaming)
answers by the request's ``model``, ``<behaviour>-<tool>``:

- ``once-<tool>``: while the last message is not a ``tool`` message, one call of the function in ``tools`` whose
  name ends with ``__<tool>`` (streamed ``tool_calls`` deltas in pieces, finish_reason ``tool_calls``); after it, the
  text ``tool said: <the tool messages' contents joined by ' | '>``.
- ``always-<tool>``: a call every time (of ``missing_tool`` when the request carries no tools).

Every request body is kept: ``GET /_captured`` lists them. ``GET /health`` answers 200.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from aiohttp import web

CAPTURED = web.AppKey("captured", list)
ARGUMENTS = {"add": {"a": 2, "b": 3}, "echo": {"text": "hello tools"}, "fail": {"message": "boom"}}


def chunk(model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    event = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def plan(body: dict[str, Any]) -> tuple[str | None, str]:
    """(the function to call, or None) and the text to say."""
    behaviour, _, tool = str(body.get("model", "")).partition("-")
    messages = body.get("messages") or []
    results: list[str] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.insert(0, str(message.get("content")))
    if behaviour == "once" and results:
        return None, "tool said: " + " | ".join(results)
    names = [t["function"]["name"] for t in body.get("tools") or []]
    return next((n for n in names if f"__{tool}" in n), "missing_tool"), ""


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[CAPTURED].append(body)
    model = str(body.get("model"))
    function, text = plan(body)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(chunk(model, {"role": "assistant", "content": "" if function else text}))
    if function:
        arguments = json.dumps(ARGUMENTS.get(str(body.get("model", "")).partition("-")[2], {}))
        call_id = f"call_{len(request.app[CAPTURED])}"
        first = {"index": 0, "id": call_id, "type": "function", "function": {"name": function, "arguments": ""}}
        await response.write(chunk(model, {"tool_calls": [first]}))
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            await response.write(chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    await response.write(chunk(model, {}, "tool_calls" if function else "stop"))
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    event = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
             "choices": [], "usage": usage}  # fmt: skip
    await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def build_app() -> web.Application:
    app = web.Application()
    app[CAPTURED] = []

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def captured(request: web.Request) -> web.Response:
        return web.json_response(request.app[CAPTURED])

    app.router.add_get("/health", health)
    app.router.add_get("/_captured", captured)
    app.router.add_post("/{tail:.*}/chat/completions", completions)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scripted upstream that asks for tool calls.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8094)
    args = parser.parse_args(argv)
    web.run_app(build_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
