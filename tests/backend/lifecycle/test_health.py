"""Health checks of internal models against real upstream processes stopped and started again, and the context
window detected at create from what the server says."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend.lifecycle.lifecycle_server import LifecycleLisa, events, wait_for
from tests.support import Proc, free_port, start_process

pytestmark = pytest.mark.timeout(600)
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


class Upstream:
    """tests/servers/faulty_upstream.py on a port of its own, stopped and started again on that port."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.args = args
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Upstream:
        argv = [sys.executable, "-m", "tests.servers.faulty_upstream", "--host", "127.0.0.1", "--port", str(self.port),
                *self.args]  # fmt: skip
        self.proc = start_process(argv, port=self.port, log=self.tmp / f"upstream-{self.port}.log")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(signal.SIGKILL)
            self.proc = None


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[list[Upstream]]:
    started: list[Upstream] = []
    yield started
    for upstream in started:
        upstream.stop()


def upstream(started: list[Upstream], tmp: Path, *args: str) -> Upstream:
    made = Upstream(tmp, *args).start()
    started.append(made)
    return made


def register(api: httpx.Client, model_id: str, base_url: str, **extra: Any) -> dict[str, Any]:
    api.delete(f"/api/models/{model_id}")
    body = {"id": model_id, "type": "textgen", "hosting": "internal", "base_url": base_url, "upstream_model": "ok",
            **extra}  # fmt: skip
    resp = api.post("/api/models", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def health_is(api: httpx.Client, model_id: str, health: str, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = api.get(f"/api/models/{model_id}").json()
        return body if body["health"] == health else None

    found: dict[str, Any] = wait_for(f"{model_id} {health}", check, timeout)
    return found


def test_the_context_window_is_what_the_server_says_else_the_given_one(
    lifecycle_lisa: LifecycleLisa, upstreams: list[Upstream], tmp_path: Path, faulty_upstream: Proc
) -> None:
    llama = upstream(upstreams, tmp_path, "--n-ctx", "8192")  # GET /props, as llama.cpp's server
    vllm = upstream(upstreams, tmp_path, "--max-model-len", "4096")  # max_model_len in /v1/models, as vLLM
    with lifecycle_lisa.client() as api:
        assert register(api, "hl-llama", llama.url, context_window=1000)["context_window"] == 8192
        assert register(api, "hl-vllm", vllm.url)["context_window"] == 4096
        assert register(api, "hl-silent", faulty_upstream.url + "/v1", context_window=1000)["context_window"] == 1000
        assert register(api, "hl-none", faulty_upstream.url + "/v1")["context_window"] is None
        # A server that is down at create: the given value.
        assert (
            register(api, "hl-down", f"http://127.0.0.1:{free_port()}/v1", context_window=512)["context_window"] == 512
        )
        for model_id in ("hl-llama", "hl-vllm", "hl-silent", "hl-none", "hl-down"):
            assert api.delete(f"/api/models/{model_id}").status_code == 204


def test_a_model_that_stops_answering_is_marked_answered_503_at_once_and_recovers(
    lifecycle_lisa: LifecycleLisa, upstreams: list[Upstream], tmp_path: Path
) -> None:
    server = upstream(upstreams, tmp_path)
    with lifecycle_lisa.client() as api:
        register(api, "hl-flaky", server.url)
        health_is(api, "hl-flaky", "ok")
        assert api.post("/v1/chat/completions", json={"model": "hl-flaky", **CHAT}).status_code == 200

        server.stop()
        stopped_at = time.time()
        model = health_is(api, "hl-flaky", "unreachable")
        assert model["status"] == "InService"  # health is no lifecycle state
        assert model["unreachable_since"] is not None and f"127.0.0.1:{server.port}/v1/models" in model["health_reason"]
        started = time.monotonic()
        chat = api.post("/v1/chat/completions", json={"model": "hl-flaky", **CHAT})
        assert chat.status_code == 503 and time.monotonic() - started < 1.0
        assert "model 'hl-flaky' is not answering (unreachable since" in chat.json()["error"]["message"]
        assert chat.json()["error"]["type"] == "service_unavailable"
        marked = [e for e in events(api, "hl-flaky") if e["kind"] == "health"]
        assert len(marked) == 1 and marked[0]["message"].startswith("unreachable since")
        assert time.time() - stopped_at < 30

        server.start()  # the same port again
        model = health_is(api, "hl-flaky", "ok")
        assert model["unreachable_since"] is None and model["health_reason"] is None
        assert api.post("/v1/chat/completions", json={"model": "hl-flaky", **CHAT}).status_code == 200
        health = [e["message"] for e in events(api, "hl-flaky") if e["kind"] == "health"]
        assert len(health) == 2 and health[1].startswith("answering again (unreachable since")
        audit = api.get("/api/audit", params={"resource_id": "hl-flaky", "action": "model.health"}).json()["data"]
        assert [a["after"]["health"] for a in reversed(audit)] == ["unreachable", "ok"]
        assert api.delete("/api/models/hl-flaky").status_code == 204


def test_enabling_a_model_that_does_not_answer_restores_it_only_once_it_does(
    lifecycle_lisa: LifecycleLisa, upstreams: list[Upstream], tmp_path: Path
) -> None:
    server = upstream(upstreams, tmp_path)
    with lifecycle_lisa.client() as api:
        register(api, "hl-enable", server.url)
        assert api.post("/api/models/hl-enable/disable").json()["health"] == "unknown"
        server.stop()
        time.sleep(2.5)  # stopped models are not checked: nothing is recorded meanwhile
        assert api.get("/api/models/hl-enable").json()["health"] == "unknown"
        enabled = api.post("/api/models/hl-enable/enable")
        assert enabled.status_code == 200
        assert enabled.json()["status"] == "InService" and enabled.json()["health"] == "unreachable"
        assert api.post("/v1/chat/completions", json={"model": "hl-enable", **CHAT}).status_code == 503
        server.start()
        health_is(api, "hl-enable", "ok")
        assert api.post("/v1/chat/completions", json={"model": "hl-enable", **CHAT}).status_code == 200
        # A new address: what the checks found about the old one is forgotten, and the new one is checked.
        server.stop()
        health_is(api, "hl-enable", "unreachable")
        moved = upstream(upstreams, tmp_path)
        patched = api.patch("/api/models/hl-enable", json={"base_url": moved.url})
        assert patched.json()["health"] == "unknown" and patched.json()["unreachable_since"] is None
        health_is(api, "hl-enable", "ok")
        assert api.delete("/api/models/hl-enable").status_code == 204
