"""Model server processes seen from outside: alive or not, whose they are, ended; and the ports they listen on."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import time

import httpx

from backend.lifecycle.deployers.local_spec import HOST
from backend.runtime.local_models import free_port


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rpartition(b")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


def runs(pid: int, model_id: str, port: int) -> bool:
    """Whether ``pid`` is the model's server on ``port``, read from its command line: a recorded pid that the system
    has since given to another process is never signalled."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    pairs = set(itertools.pairwise(argv))
    named = ("--model_alias", model_id) in pairs or ("--model-id", model_id) in pairs
    return named and ("--port", str(port)) in pairs


def terminate(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns once it is gone (or after a further grace)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for sig in (signal.SIGKILL, None):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.1)
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (as uvicorn binds: SO_REUSEADDR, past TIME_WAIT)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def new_port(taken: set[int]) -> int:
    """A free port no other model has recorded (a stopped model keeps its port)."""
    for _ in range(100):
        port = free_port()
        if port not in taken:
            return port
    raise RuntimeError("no free port found")


async def answers(client: httpx.AsyncClient, port: int, model_id: str) -> bool:
    """Whether the server on ``port`` serves: its /v1/models answers and names the model (so a stranger that took
    the port does not pass for it)."""
    try:
        resp = await client.get(f"http://{HOST}:{port}/v1/models", timeout=2.0)
        if resp.status_code != 200:
            return False
        return any(item.get("id") == model_id for item in resp.json().get("data", []))
    except (httpx.HTTPError, ValueError, AttributeError):
        return False
