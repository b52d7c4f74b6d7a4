"""Load generators for the gateway benchmark.

* ``run_wrk``: throughput and the latency distribution under concurrency, with ``wrk`` (one thread, N
  connections, POST bodies from a Lua script whose ``done()`` prints the figures as one JSON line).
* ``run_sequential``: one keep-alive connection, one request at a time, on a hand-written HTTP/1.1 client
  over asyncio streams. It measures each request's total latency and, for streaming, the time to first
  token (from writing the request to the first received ``data:`` line). A hand-written client keeps the
  measuring overhead small and identical for every path; the figures that matter are differences between
  paths, so what the client itself costs cancels out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CHAT_PATH = "/v1/chat/completions"


def chat_body(model: str, stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Target:
    """One path under test: where to send chat completions and with which credentials."""

    name: str
    base_url: str  # e.g. http://127.0.0.1:8101 (no /v1)
    model: str
    api_key: str | None = None

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + CHAT_PATH

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# ----------------------------------------------------------------------------------------------- wrk

WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"max_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int


def wrk_script(target: Target, stream: bool) -> str:
    body = chat_body(target.model, stream).decode()
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body}]==]"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers().items()]
    return "\n".join(lines) + "\n" + WRK_DONE


def run_wrk(target: Target, stream: bool, connections: int, seconds: float) -> WrkResult:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: apt-get update -qq && apt-get install -y -qq wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrk_script(target, stream))
    try:
        cmd = [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            script.name,
        ]
        out = subprocess.run([*cmd, target.url], capture_output=True, text=True, timeout=seconds + 30)
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        tail = f"{out.stdout[-500:]} {out.stderr[-500:]}"
        raise RuntimeError(f"wrk gave no result (rc={out.returncode}): {tail}")
    data = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(int(data[k]) for k in data if k.startswith("err_"))
    good = max(int(data["requests"]) - int(data["err_status"]), 0)
    return WrkResult(
        rps=good / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=int(data["requests"]),
        errors=errors,
    )


# --------------------------------------------------------------------------------- sequential client


@dataclass
class SequentialResult:
    latencies_ms: list[float] = field(default_factory=list)
    ttfts_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def p(self, q: float, ttft: bool = False) -> float:
        return percentile(sorted(self.ttfts_ms if ttft else self.latencies_ms), q)


class HttpError(Exception):
    pass


class Connection:
    """A keep-alive HTTP/1.1 connection that sends one prepared POST and reads the whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = b""
        self.last_body = b""

    @classmethod
    async def open(cls, target: Target) -> Connection:
        parts = urlsplit(target.base_url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def _fill(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            raise HttpError("connection closed by server")
        self.buf += data

    async def request(self, raw: bytes) -> tuple[int, float, float | None]:
        """Send ``raw``; return (status, total seconds, seconds to first ``data:`` or None)."""
        start = time.perf_counter()
        first: float | None = None
        self.writer.write(raw)
        while b"\r\n\r\n" not in self.buf:
            await self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buf) < length:
                if first is None and b"data:" in self.buf:
                    first = time.perf_counter()
                await self._fill()
            body, self.buf = self.buf[:length], self.buf[length:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:  # one HTTP chunk per turn
                while b"\r\n" not in self.buf:
                    await self._fill()
                size_line, _, rest = self.buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    await self._fill()
                    size_line, _, rest = self.buf.partition(b"\r\n")
                body += rest[:size]
                self.buf = rest[size + 2 :]
                if first is None and b"data:" in body:
                    first = time.perf_counter()
                if size == 0:
                    break
        else:
            raise HttpError("response without content-length or chunked encoding (keep-alive impossible)")
        end = time.perf_counter()
        self.last_body = body
        if first is None and b"data:" in body:
            first = end
        if headers.get("connection", "").lower() == "close":
            raise HttpError("server closed the keep-alive connection")
        return status, end - start, None if first is None else first - start


def raw_request(target: Target, stream: bool) -> bytes:
    parts = urlsplit(target.base_url)
    body = chat_body(target.model, stream)
    headers = {"Host": f"{parts.hostname}:{parts.port}", **target.headers(), "Content-Length": str(len(body))}
    head = f"POST {CHAT_PATH} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body


async def run_sequential(target: Target, stream: bool, seconds: float) -> SequentialResult:
    """Requests one after another on one keep-alive connection for ``seconds``."""
    raw = raw_request(target, stream)
    result = SequentialResult()
    conn = await Connection.open(target)
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            try:
                status, total, ttft = await conn.request(raw)
            except (HttpError, OSError, ValueError):
                result.errors += 1
                await conn.close()
                conn = await Connection.open(target)
                continue
            if status != 200 or (stream and ttft is None):
                result.errors += 1
                continue
            result.latencies_ms.append(total * 1000)
            if ttft is not None:
                result.ttfts_ms.append(ttft * 1000)
    finally:
        await conn.close()
    return result


async def check_once(target: Target, stream: bool) -> str:
    """One request, returning a short description of what went wrong or '' when it looks right."""
    conn = await Connection.open(target)
    try:
        status, _, ttft = await conn.request(raw_request(target, stream))
    except (HttpError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await conn.close()
    if status != 200:
        return f"HTTP {status}"
    if stream and ttft is None:
        return "streaming answer without any data: event"
    if b"Hello" not in conn.last_body:
        return f"the stub's answer did not come through: {conn.last_body[:200]!r}"
    return ""
