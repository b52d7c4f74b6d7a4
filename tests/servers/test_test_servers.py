"""The test servers themselves: the image server draws real PNGs, the faulty upstream really fails."""

from __future__ import annotations

import base64
import json
import signal
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Proc, start_module


@pytest.fixture(scope="module")
def image_url(image_server: Proc) -> str:
    return image_server.url


@pytest.fixture(scope="module")
def upstream_url(faulty_upstream: Proc) -> str:
    return faulty_upstream.url


def read_png(data: bytes) -> tuple[int, int, bytes]:
    """Checks the signature and every chunk's CRC; returns (width, height, decompressed pixel rows)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, width, height, idat = 8, 0, 0, b""
    kinds = []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        kinds.append(kind)
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    return width, height, zlib.decompress(idat)


@pytest.mark.parametrize(("size", "n"), [("256x256", 2), ("512x512", 1), ("1024x1024", 1)])
def test_image_server_returns_pngs_of_the_requested_size(image_url: str, size: str, n: int) -> None:
    body = {"prompt": "a red lighthouse at dusk", "n": n, "size": size}
    response = httpx.post(f"{image_url}/v1/images/generations", json=body, timeout=60)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == n
    expected = int(size.split("x")[0])
    for item in data:
        assert item["revised_prompt"] == "a red lighthouse at dusk"
        width, height, raw = read_png(base64.b64decode(item["b64_json"]))
        assert (width, height) == (expected, expected)
        assert len(raw) == height * (1 + 3 * width)
    if n > 1:
        assert data[0]["b64_json"] != data[1]["b64_json"]


def test_image_colours_follow_the_prompt(image_url: str) -> None:
    def first_pixel(prompt: str) -> bytes:
        body = {"prompt": prompt, "size": "256x256"}
        item = httpx.post(f"{image_url}/v1/images/generations", json=body, timeout=30).json()["data"][0]
        return read_png(base64.b64decode(item["b64_json"]))[2][1:4]

    assert first_pixel("a cat") == first_pixel("a cat")
    assert first_pixel("a cat") != first_pixel("a dog")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"n": 1}, "prompt"),
        ({"prompt": "x", "n": 5}, "n"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "size": "300x300"}, "size"),
        ({"prompt": "x", "response_format": "url"}, "response_format"),
    ],
)
def test_image_server_refuses_bad_requests(image_url: str, body: dict[str, object], param: str) -> None:
    response = httpx.post(f"{image_url}/v1/images/generations", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def sse_events(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line[len("data: ") :]


def test_upstream_ok_streams_chunks_then_done(upstream_url: str) -> None:
    body = {"model": "ok", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", f"{upstream_url}/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "hello world"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_upstream_ok_non_streaming_has_usage(upstream_url: str) -> None:
    body = {"model": "ok", "messages": [{"role": "user", "content": "hi"}]}
    reply = httpx.post(f"{upstream_url}/v1/chat/completions", json=body).json()
    assert reply["choices"][0]["message"]["content"] == "hello world"
    usage = reply["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize(
    ("model", "status"),
    [("error-500", 500), ("bad-request", 400), ("error-401", 401), ("error-403", 403), ("error-404", 404),
     ("error-429", 429)],
)  # fmt: skip
def test_upstream_error_models(upstream_url: str, model: str, status: int) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{upstream_url}/v1/chat/completions", json=body)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    if status == 429:
        assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_gzip_models_really_compress(upstream_url: str, stream: bool) -> None:
    body = {"model": "gzip", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    url = f"{upstream_url}/v1/chat/completions"
    asked = httpx.post(url, json=body, headers={"Accept-Encoding": "gzip"})
    assert asked.headers["content-encoding"] == "gzip" and "hello" in asked.text  # httpx decompresses
    plain = httpx.post(url, json=body, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and "hello" in plain.text
    forced = httpx.post(url, json={**body, "model": "gzip-always"}, headers={"Accept-Encoding": "identity"})
    assert forced.headers["content-encoding"] == "gzip" and "hello" in forced.text


def test_upstream_split_usage_and_no_usage(upstream_url: str) -> None:
    url = f"{upstream_url}/v1/chat/completions"
    body = {"model": "split-usage", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with httpx.stream("POST", url, json=body) as response:
        reads = list(response.iter_raw())
    usage_reads = [r for r in reads if b"tokens" in r]
    assert len(usage_reads) == 2 and b"completion_tokens" not in usage_reads[0]  # split inside the object
    events = [e for e in b"".join(reads).split(b"\n\n") if e]
    assert json.loads(events[-2][len(b"data: ") :])["usage"]["completion_tokens"] == 3
    for stream in (False, True):
        reply = httpx.post(url, json={**body, "model": "no-usage", "stream": stream})
        assert "hello" in reply.text and '"usage"' not in reply.text


def test_upstream_stall_mid_stream_stops_after_two_chunks(upstream_url: str) -> None:
    body = {"model": "stall-mid-stream", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    events: list[str] = []
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream("POST", f"{upstream_url}/v1/chat/completions", json=body, timeout=1.5) as response,
    ):
        events.extend(sse_events(response))
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events]
    assert contents == ["", "hello", " wor"]


def test_upstream_die_mid_stream_drops_the_connection_and_exits(tmp_path: Path) -> None:
    proc = start_module("tests.servers.faulty_upstream", tmp_path)  # its own process: this test kills it
    url = proc.url
    try:
        body = {"model": "die-mid-stream", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        events: list[str] = []
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=10) as response,
        ):
            events.extend(sse_events(response))
        assert "[DONE]" not in events
        contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events]
        assert contents == ["", "hello", " wor"]
        assert proc.popen.wait(timeout=10) == 1
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=2)
    finally:
        proc.stop(signal.SIGKILL)
