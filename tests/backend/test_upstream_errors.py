"""Upstream error text (internal addresses, host names, keys) never reaches a non-admin; admins and the log get it,
with secrets masked, under a request id the caller can quote."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers.faulty_upstream import LEAKS
from tests.support import LisaServer, Proc, free_port

STORED_KEY = "sk-stored-model-key-8c1e77d2"
MESSAGES = [{"role": "user", "content": "hi"}]
DOWN_PORT = free_port()


@pytest.fixture(scope="module")
def leaky_models(admin: httpx.Client, faulty_upstream: Proc) -> None:
    faulty = faulty_upstream.url + "/v1"
    bodies: list[dict[str, Any]] = [
        *[{"id": f"err-{b}", "hosting": "internal", "base_url": faulty, "upstream_model": b}
          for b in ("leaky-500", "leaky-400", "leaky-401", "leaky-echo")],
        *[{"id": f"err-tp-{b}", "hosting": "third_party", "provider_model": f"openai/{b}", "base_url": faulty}
          for b in ("leaky-500", "leaky-echo", "leaky-401")],
        {"id": "err-down", "hosting": "internal", "base_url": f"http://127.0.0.1:{DOWN_PORT}/v1"},
    ]  # fmt: skip
    for body in bodies:
        admin.delete(f"/api/models/{body['id']}")
        resp = admin.post("/api/models", json={"type": "textgen", "api_key": STORED_KEY, **body})
        assert resp.status_code == 201, resp.text


@pytest.fixture(scope="module")
def user(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    token = admin.post("/api/tokens", json={"name": "errs", "username": "errors-user", "groups": []}).json()
    with lisa.client(token["token"]) as client:
        yield client


def error_of(client: httpx.Client, model: str, stream: bool = False) -> tuple[int, dict]:
    resp = client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES, "stream": stream})
    body = resp.json()
    assert set(body) == {"error"}, body
    return resp.status_code, body["error"]


def assert_nothing_internal(error: dict) -> None:
    text = str(error)
    for leak in [*LEAKS, STORED_KEY, str(DOWN_PORT), "127.0.0.1", "http://"]:
        assert leak not in text, (leak, text)
    assert re.search(r"request id req_[0-9a-f]{16}", error["message"]), error


CASES = [
    ("err-leaky-500", 502, "failed with status 500"),
    ("err-leaky-401", 502, "rejected the stored credentials"),
    ("err-leaky-echo", 502, "failed with status 500"),
    ("err-down", 502, "unreachable"),
    ("err-tp-leaky-500", 502, "InternalServerError"),
    ("err-tp-leaky-echo", 502, "InternalServerError"),
    ("err-tp-leaky-401", 502, "rejected the stored credentials"),
]


@pytest.mark.parametrize(("model", "status", "words"), CASES)
def test_a_user_sees_lisas_words_only(
    user: httpx.Client, leaky_models: None, model: str, status: int, words: str
) -> None:
    for stream in (False, True):
        got, error = error_of(user, model, stream)
        assert got == status and words in error["message"] and model in error["message"], error
        assert_nothing_internal(error)


def test_an_openai_shaped_400_keeps_its_message_without_addresses(user: httpx.Client, leaky_models: None) -> None:
    status, error = error_of(user, "err-leaky-400")
    assert status == 400 and error["param"] == "messages" and error["type"] == "invalid_request_error"
    assert "prompt too long for the context window" in error["message"]  # what the caller needs to fix it
    assert_nothing_internal(error)


def test_an_admin_sees_the_upstream_text_with_secrets_masked(
    admin: httpx.Client, lisa: LisaServer, leaky_models: None
) -> None:
    for model in ("err-leaky-500", "err-leaky-echo", "err-tp-leaky-500", "err-tp-leaky-echo"):
        status, error = error_of(admin, model)
        assert status == 502 and "upstream said:" in error["message"], error
        assert "10.9.8.7" in error["message"] and "gpu-node-7.internal" in error["message"], error
        assert "sk-upstream-leak-123456" not in error["message"] and STORED_KEY not in error["message"], error
    status, error = error_of(admin, "err-down")
    assert status == 502 and str(DOWN_PORT) in error["message"]


def test_the_log_has_the_story_under_the_request_id_and_no_secret(
    user: httpx.Client, lisa: LisaServer, leaky_models: None
) -> None:
    _, error = error_of(user, "err-leaky-echo")
    request_id = re.search(r"req_[0-9a-f]{16}", error["message"])
    assert request_id
    log = lisa.proc.log.read_text(errors="replace")
    [line] = [line for line in log.splitlines() if request_id.group(0) in line]
    assert "err-leaky-echo" in line and "10.9.8.7" in line
    assert STORED_KEY not in log and "sk-upstream-leak-123456" not in log
