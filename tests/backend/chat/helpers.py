"""Chat test helpers: plain users, and the chat endpoint's server-sent events read back."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support import LisaServer


def new_user(admin: httpx.Client, lisa: LisaServer, prefix: str, groups: list[str] | None = None) -> httpx.Client:
    """A plain user's client (a fresh username each call)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    resp = admin.post("/api/tokens", json={"name": name, "username": name, "groups": groups or []})
    assert resp.status_code == 201, resp.text
    return lisa.client(resp.json()["token"])


@dataclass
class Event:
    name: str | None  # None: an OpenAI chunk (data only)
    data: Any


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    name: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield Event(name, json.loads("\n".join(data)))
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


@dataclass
class Turn:
    status: int
    events: list[Event]
    body: Any = None  # the JSON error, when the turn was refused before it streamed

    def named(self, name: str) -> list[Any]:
        return [e.data for e in self.events if e.name == name]

    def one(self, name: str) -> Any:
        found = self.named(name)
        assert len(found) == 1, (name, self.events)
        return found[0]

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.name is None]

    @property
    def text(self) -> str:
        return "".join(
            (c["choices"][0].get("delta") or {}).get("content") or "" for c in self.chunks if c.get("choices")
        )


def send(client: httpx.Client, session_id: str, body: dict[str, Any]) -> Turn:
    with client.stream("POST", f"/api/sessions/{session_id}/messages", json=body) as resp:
        if resp.status_code != 200:
            resp.read()
            return Turn(resp.status_code, [], resp.json())
        assert resp.headers["content-type"].startswith("text/event-stream")
        return Turn(200, list(parse_sse(resp.iter_lines())))


def new_session(client: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = client.post("/api/sessions", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def wait_for(check: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextmanager
def streaming(client: httpx.Client, session_id: str, body: dict[str, Any]) -> Iterator[Iterator[Event]]:
    """The turn's events as they arrive; leaving the block closes the connection (a client that went away)."""
    with client.stream("POST", f"/api/sessions/{session_id}/messages", json=body) as resp:
        assert resp.status_code == 200, resp.read()
        yield parse_sse(resp.iter_lines())
