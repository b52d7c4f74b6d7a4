"""A small real OpenAI-compatible image generation server (gradient PNGs, no imaging library needed).

Run: ``python -m tests.servers.image_server --host 127.0.0.1 --port N``.

``POST /v1/images/generations`` renders, per requested image, a gradient PNG whose colours derive from a
hash of the prompt (and the image's index), written by hand with zlib + struct.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import struct
import time
import zlib
from typing import Any

from aiohttp import web

SIZES = {"256x256": (256, 256), "512x512": (512, 512), "1024x1024": (1024, 1024)}
DEFAULT_SIZE = "1024x1024"
MAX_N = 4
MAX_PROMPT_CHARS = 32_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def ramp(start: int, end: int, length: int) -> bytes:
    """``length`` bytes going linearly from ``start`` to ``end``."""
    span = max(1, length - 1)
    return bytes((start + (end - start) * i // span) for i in range(length))


def render_png(prompt: str, index: int, width: int, height: int) -> bytes:
    """An 8-bit RGB PNG: red runs across, green runs down, blue runs across the other way."""
    seed = hashlib.sha256(f"{index}:{prompt}".encode()).digest()
    red, green, blue = (
        ramp(seed[0], seed[1], width),
        ramp(seed[2], seed[3], height),
        ramp(seed[4], seed[5], width),
    )
    row = bytearray(3 * width)
    row[0::3], row[2::3] = red, blue
    raw = bytearray()
    for y in range(height):
        row[1::3] = bytes([green[y]]) * width
        raw += b"\x00"  # filter type: none
        raw += row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit depth, colour type 2 (RGB)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + png_chunk(b"IEND", b"")
    )


def error(status: int, message: str, param: str | None = None, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return web.json_response(body, status=status)


def validate(body: Any) -> tuple[str, int, tuple[int, int]] | web.Response:
    if not isinstance(body, dict):
        return error(400, "The request body must be a JSON object.")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return error(400, "'prompt' is required and must be a non-empty string.", "prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        return error(400, f"'prompt' may hold at most {MAX_PROMPT_CHARS} characters.", "prompt")
    n = body.get("n", 1)
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
        return error(400, f"'n' must be an integer from 1 to {MAX_N}.", "n")
    size = body.get("size") or DEFAULT_SIZE
    if size not in SIZES:
        return error(400, f"'size' must be one of {', '.join(SIZES)}.", "size")
    response_format = body.get("response_format") or "b64_json"
    if response_format != "b64_json":
        return error(400, "Only response_format 'b64_json' is supported by this server.", "response_format")
    return prompt, n, SIZES[size]


def build_app(model_id: str) -> web.Application:
    created = int(time.time())

    async def generations(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "The request body is not valid JSON.")
        checked = validate(body)
        if isinstance(checked, web.Response):
            return checked
        prompt, n, (width, height) = checked
        images = []
        for index in range(n):  # rendering is CPU work: keep it off the event loop
            png = await asyncio.to_thread(render_png, prompt, index, width, height)
            images.append({"b64_json": base64.b64encode(png).decode("ascii"), "revised_prompt": prompt})
        return web.json_response({"created": int(time.time()), "data": images})

    async def models(_: web.Request) -> web.Response:
        card = {"id": model_id, "object": "model", "created": created, "owned_by": "lisa-tests"}
        return web.json_response({"object": "list", "data": [card]})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/v1/images/generations", generations)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible image generation server (gradients).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument("--model-id", default="gradient-image", help="id reported by /v1/models")
    args = parser.parse_args(argv)
    web.run_app(build_app(args.model_id), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
