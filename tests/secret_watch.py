"""Watches the whole test session for secrets that leak: every secret the tests use (API tokens, provider keys,
passwords, client secrets) is learned from the requests that carry it and from the one response that issues it,
then every other response, and every log file the session's servers wrote, must be free of it.

Installed by tests/conftest.py for the whole session (patching httpx's send, which the openai SDK and LangChain
also use); its verdict is given after every server has stopped and flushed its log.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

# Field names whose string values are secrets wherever they appear in a JSON request body.
SECRET_FIELDS = frozenset({"api_key", "password", "client_secret", "secret", "secret_key", "token", "access_token"})
MIN_LENGTH = 10  # shorter values ("x", "unused") are test filler, and would match by chance
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:\s]+:([^/@\s]+)@", re.IGNORECASE)


def _strings_at_secret_fields(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and key in SECRET_FIELDS:
                yield item
            elif isinstance(item, str) and (match := _URL_PASSWORD.match(item)):
                yield match.group(1)
            else:
                yield from _strings_at_secret_fields(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_at_secret_fields(item)


@dataclass
class SecretWatch:
    secrets: dict[str, str] = field(default_factory=dict)  # secret -> where it was learned
    leaks: list[str] = field(default_factory=list)
    ignore_test_domain: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def learn(self, secret: str, origin: str) -> None:
        if len(secret) >= MIN_LENGTH:
            with self._lock:
                self.secrets.setdefault(secret, origin)

    def _leak(self, where: str, secret: str) -> None:
        with self._lock:
            self.leaks.append(f"{where}: holds the secret learned from {self.secrets.get(secret, '?')}")

    def on_request(self, request: httpx.Request) -> None:
        if self._ignored(request):
            return
        where = f"{request.method} {urlsplit(str(request.url)).path}"
        for name in ("authorization", "api-key"):
            value = request.headers.get(name)
            if value:
                self.learn(value.removeprefix("Bearer ").strip(), f"the {name} header of {where}")
        content_type = request.headers.get("content-type", "")
        if "json" in content_type:
            try:
                body = orjson.loads(request.content)
            except (orjson.JSONDecodeError, httpx.RequestNotRead):
                return
            for secret in _strings_at_secret_fields(body):
                self.learn(secret, f"the body of {where}")

    def on_response(self, response: httpx.Response) -> None:
        request = response.request
        if self._ignored(request):
            return
        where = f"{request.method} {urlsplit(str(request.url)).path} -> {response.status_code}"
        if not hasattr(response, "_content"):
            return  # a stream not read yet: its text is not known here
        text = response.text
        issued: set[str] = set()
        if (
            request.method == "POST"
            and urlsplit(str(request.url)).path == "/api/tokens"
            and response.status_code == 201
        ):
            issued.add(str(response.json().get("token", "")))  # the one response that shows a new token's secret
        for secret in list(self.secrets):
            if secret not in issued and secret in text:
                self._leak(f"the response to {where}", secret)
        for secret in issued:
            self.learn(secret, f"the response to {where}")
        self._scan_headers(response, where)

    def _ignored(self, request: httpx.Request) -> bool:
        """Hosts under the reserved ``.test`` domain belong to the watch's own self-test and to nobody else."""
        return self.ignore_test_domain and request.url.host.endswith(".test")

    def _scan_headers(self, response: httpx.Response, where: str) -> None:
        for name, value in response.headers.items():
            for secret in list(self.secrets):
                if secret in value:
                    self._leak(f"the {name} header of the response to {where}", secret)

    def scan_files(self, root: Path, pattern: str = "*.log") -> int:
        """Every log file under ``root``; returns how many were read."""
        count = 0
        for path in sorted(root.rglob(pattern)):
            if not path.is_file():
                continue
            count += 1
            text = path.read_text(errors="replace")
            for secret in list(self.secrets):
                if secret in text:
                    self._leak(f"log {path}", secret)
        return count


def install(watch: SecretWatch) -> Any:
    """Patch httpx's clients so every request and response passes the watch; returns a function that undoes it."""
    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        watch.on_request(request)
        response = sync_send(self, request, **kwargs)
        watch.on_response(response)
        return response

    async def asend(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        watch.on_request(request)
        response = await async_send(self, request, **kwargs)
        watch.on_response(response)
        return response

    httpx.Client.send = send  # type: ignore[method-assign]
    httpx.AsyncClient.send = asend  # type: ignore[method-assign]

    def uninstall() -> None:
        httpx.Client.send = sync_send  # type: ignore[method-assign]
        httpx.AsyncClient.send = async_send  # type: ignore[method-assign]

    return uninstall
