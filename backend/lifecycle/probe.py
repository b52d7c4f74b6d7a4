"""Asking a model server what it is: whether it answers (``GET {base_url}/models``) and its context window (llama.cpp's
``GET /props`` ``n_ctx``; the ``/v1/models`` entry's ``max_model_len`` (vLLM) or ``meta.n_ctx_train`` (llama.cpp)).

Every connection passes the egress guard; every call is bounded by the probe's timeout."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from backend.net.egress import EgressGuard, EgressUnresolved

log = logging.getLogger("lisa.lifecycle.probe")
MAX_CONTEXT = 100_000_000  # the registry's bound on context_window
MAX_BODY = 1024 * 1024  # bytes of /props or /v1/models read
UNREACHABLE = object()  # no answer at all (not even an error status)


def _positive(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = int(value)
    return number if 0 < number <= MAX_CONTEXT else None


def origin(base_url: str) -> str:
    """``http://host:8000/v1`` -> ``http://host:8000`` (llama.cpp's /props and /health live at the root)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class Probe:
    def __init__(self, egress: EgressGuard, timeout: float) -> None:
        self.timeout = timeout
        self._egress = egress
        self._http: httpx.AsyncClient | None = None  # made at the first probe, in the loop that uses it

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                transport=self._egress.httpx_transport(), timeout=httpx.Timeout(self.timeout), follow_redirects=False
            )
        return self._http

    async def check_endpoint(self, url: str, what: str) -> str | None:
        """The egress guard's registration check of an endpoint a deployment reports (``EgressRefused`` naming the
        address and why). A name that does not resolve yet (a new load balancer's) passes with the reason returned:
        every connection to it is still checked when it is made."""
        try:
            await self._egress.check_url(url, what)
        except EgressUnresolved as exc:
            return exc.message
        return None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def not_answering(self, base_url: str) -> str | None:
        """None when the server answers ``GET {base_url}/models`` (any status under 500: it is up, whatever it
        thinks of the request); else why not, for people to read."""
        url = base_url.rstrip("/") + "/models"
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.get(url)
        except TimeoutError:
            return f"no answer from {url} within {self.timeout:g} s"
        except httpx.HTTPError as exc:
            return f"{url}: {type(exc).__name__}: {exc or 'failed'}"
        if response.status_code >= 500:
            return f"{url} answered HTTP {response.status_code}"
        return None

    async def context_window(self, base_url: str, served_name: str | None) -> int | None:
        """What the server says its context window is; None when it does not say (or does not answer: then after
        one timeout at most, not one per question)."""
        props = await self._json(origin(base_url) + "/props")
        if props is UNREACHABLE:
            return None
        if isinstance(props, dict):
            settings = props.get("default_generation_settings")
            found = _positive(props.get("n_ctx")) or (
                _positive(settings.get("n_ctx")) if isinstance(settings, dict) else None
            )
            if found:
                return found
        listing = await self._json(base_url.rstrip("/") + "/models")
        entries = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(entries, list):
            return None
        models = [e for e in entries if isinstance(e, dict)]
        chosen = [e for e in models if served_name and e.get("id") == served_name] or models[:1]
        for entry in chosen:
            meta = entry.get("meta")
            found = _positive(entry.get("max_model_len")) or (
                _positive(meta.get("n_ctx_train")) if isinstance(meta, dict) else None
            )
            if found:
                return found
        return None

    async def _json(self, url: str) -> Any:
        """The JSON at ``url`` (at most MAX_BODY bytes); UNREACHABLE when no answer came; None for anything else."""
        try:
            async with asyncio.timeout(self.timeout), self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    return None
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY:
                        return None
                return json.loads(body)
        except (httpx.TransportError, TimeoutError):
            return UNREACHABLE
        except (httpx.HTTPError, ValueError):
            return None
        except Exception as exc:
            # cancels a connect in progress (anyio's socket already gone); a registration must not fail on it
            log.warning("context-window probe of %s failed: %r", url, exc)
            return UNREACHABLE
