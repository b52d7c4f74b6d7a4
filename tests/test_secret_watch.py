"""The leak watch itself: it must see a secret that comes back, in a response or in a log."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx

from tests.secret_watch import SecretWatch, install


def _echo(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/api/tokens":
        return httpx.Response(201, json={"token": "lisa_issued-secret-0123456789"})
    if request.url.path == "/echo":
        return httpx.Response(400, text="bad key: " + request.headers.get("x-echo", ""))
    return httpx.Response(200, json={"ok": True})


def test_a_secret_sent_in_a_body_and_echoed_back_is_a_leak() -> None:
    watch = SecretWatch(ignore_test_domain=False)  # the session's own watch ignores this test's .test host
    uninstall = install(watch)
    try:
        with httpx.Client(transport=httpx.MockTransport(_echo), base_url="http://lisa.test") as client:
            client.post("/api/models", json={"id": "m", "api_key": "sk-provider-key-0123456789"})
            client.post("/api/repositories", json={"options": {"url": "postgresql://u:db-password-42@h/db"}})
            client.post("/api/tokens", json={"name": "n"})
            assert watch.leaks == []  # learning is not leaking; the token was shown by the one response that issues it
            client.get("/echo", headers={"x-echo": "sk-provider-key-0123456789"})
    finally:
        uninstall()
    assert set(watch.secrets) == {"sk-provider-key-0123456789", "db-password-42", "lisa_issued-secret-0123456789"}
    assert len(watch.leaks) == 1 and "GET /echo -> 400" in watch.leaks[0]
    tmp_path = Path(tempfile.mkdtemp())  # outside the session's temp dir, which the session's watch reads
    (tmp_path / "server.log").write_text("INFO started\nDEBUG header Authorization: lisa_issued-secret-0123456789\n")
    (tmp_path / "clean.log").write_text("INFO nothing to see\n")
    assert watch.scan_files(tmp_path) == 2
    assert len(watch.leaks) == 2 and "server.log" in watch.leaks[1]
    shutil.rmtree(tmp_path)


def test_short_filler_values_are_not_watched() -> None:
    watch = SecretWatch()
    watch.learn("x", "test")
    watch.learn("unused", "test")
    assert watch.secrets == {}
