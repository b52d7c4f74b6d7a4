"""The app's typed client of the backend: its REST API (``/api``) and the OpenAI-compatible ``/v1``, over HTTP only.

A ``BackendClient`` acts for one signed-in user with that user's own credential: the browser session the backend
issued (its cookie, forwarded) or an API token. The app holds no credential of its own, so the backend's rules
(access, feature toggles, limits) decide every call. Connections are pooled in one ``httpx.AsyncClient`` shared
by all users; it never keeps cookies, so one user's credential can never ride along on another's request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from frontend.schemas import (
    ChatArguments,
    Configuration,
    Me,
    ModelInfo,
    PromptTemplate,
    Session,
    SessionPage,
    TemplatePage,
)
from frontend.sse import ChatEvent, parse_events

SESSION_COOKIE = "lisa_session"  # the backend's browser session (backend/api/authentication.py)
# The backend's cross-site check (backend/api/same_site.py) accepts this header: a browser page of another site
# cannot add it. The app sends it because it forwards a request the backend already checked at /ui.
CSRF_HEADER = {"X-LISA-CSRF": "1"}
ResultT = TypeVar("ResultT", bound=BaseModel)
# Reads that the loaders of one page load share (frontend/page_load.py sets a fresh dict per load): who is signed
# in and the configuration, asked by most tabs, are then read once per page view. Outside a page load every call
# reads afresh, so a handler that changes something and reads it back never sees an old copy.
SHARED_READS: ContextVar[dict[str, asyncio.Future[Any]] | None] = ContextVar("lisa_shared_reads", default=None)


class BackendError(Exception):
    """A refusal or failure of the backend, with its human ``detail`` (shown to users as it is)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True, slots=True)
class Credential:
    """Who the calls are made as: a backend session id (the browser's cookie) or an API token."""

    session_id: str | None = None
    token: str | None = None

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.session_id:
            return {"Cookie": f"{SESSION_COOKIE}={self.session_id}", **CSRF_HEADER}
        return {}


def no_cookie_jar() -> CookieJar:
    """A jar that refuses every cookie: the shared connection pool must never carry one user's cookie to another.
    (Given as a ``CookieJar``: httpx copies an ``httpx.Cookies`` into a fresh jar of its own, policy lost.)"""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def shared_http(base_url: str, timeout: float = 30.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    # The read timeout is long: a chat answer may pause (tools waiting for approval, a slow first token).
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        cookies=no_cookie_jar(),
        timeout=httpx.Timeout(timeout, read=600.0),
        limits=limits,
        follow_redirects=False,
    )


def error_detail(response: httpx.Response) -> str:
    """The backend's message: ``{"detail": ...}`` on /api, ``{"error": {"message": ...}}`` on /v1."""
    try:
        payload = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:500] or f"the backend answered {response.status_code}"
    detail: Any = payload.get("detail") if isinstance(payload, dict) else None
    if detail is None and isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        detail = payload["error"].get("message")
    if isinstance(detail, list):  # a validation error: one line per field
        parts = []
        for item in detail:
            where = ".".join(str(p) for p in item.get("loc", [])[1:]) if isinstance(item, dict) else ""
            message = item.get("msg", item) if isinstance(item, dict) else item
            parts.append(f"{where}: {message}" if where else str(message))
        return "; ".join(parts)
    return str(detail) if detail else f"the backend answered {response.status_code}"


class BackendClient:
    def __init__(self, http: httpx.AsyncClient, credential: Credential) -> None:
        self.http = http
        self.credential = credential

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.credential.headers(), **kwargs.pop("headers", {})}
        try:
            response = await self.http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise BackendError(503, f"the backend cannot be reached ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise BackendError(response.status_code, error_detail(response))
        return response

    async def _get(self, model: type[ResultT], path: str, **params: Any) -> ResultT:
        response = await self._request("GET", path, params={k: v for k, v in params.items() if v is not None})
        return model.model_validate(response.json())

    # --- who, what, how -------------------------------------------------------------------------------------
    async def _shared_get(self, model: type[ResultT], path: str) -> ResultT:
        shared = SHARED_READS.get()
        if shared is None:
            return await self._get(model, path)
        # Keyed by the caller too: a page load acts for one user, and a read must never be shared across users.
        key = f"{path} {self.credential.session_id} {self.credential.token}"
        if key not in shared:
            shared[key] = asyncio.ensure_future(self._get(model, path))
        result: ResultT = await asyncio.shield(shared[key])  # one loader cancelled does not cancel the others' read
        return result

    async def me(self) -> Me:
        return await self._shared_get(Me, "/api/users/me")

    async def configuration(self) -> Configuration:
        return await self._shared_get(Configuration, "/api/configuration")

    async def registry_models(self) -> list[ModelInfo]:
        """The model library (``/api/models``; the ``model_library`` toggle may refuse it, 403), every page."""
        models: list[ModelInfo] = []
        cursor: str | None = None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = (await self._request("GET", "/api/models", params=params)).json()
            models += [ModelInfo.model_validate(m) for m in page["data"]]
            if not (cursor := page.get("next_cursor")):
                return models

    async def v1_models(self) -> list[ModelInfo]:
        """The models this user may call (``/v1/models``; it takes a token, never the browser session)."""
        payload = (await self._request("GET", "/v1/models")).json()
        return [ModelInfo.model_validate(m) for m in payload["data"]]

    async def chat_models(self) -> list[str]:
        """Ids of the text models one can chat with: the registry's in service, else ``/v1/models``."""
        try:
            models = await self.registry_models()
            return [m.id for m in models if m.type == "textgen" and m.status == "InService"]
        except BackendError as exc:
            if exc.status != 403 or not self.credential.token:
                raise
        return [m.id for m in await self.v1_models() if m.type == "textgen"]

    # --- sessions ---------------------------------------------------------------------------------------------
    async def sessions(self, q: str | None = None, limit: int = 50, cursor: str | None = None) -> SessionPage:
        return await self._get(SessionPage, "/api/sessions", q=q or None, limit=limit, cursor=cursor)

    async def create_session(self, title: str = "New chat", model: str | None = None) -> Session:
        body: dict[str, Any] = {"title": title, **({"model": model} if model else {})}
        return Session.model_validate((await self._request("POST", "/api/sessions", json=body)).json())

    async def session(self, session_id: str) -> Session:
        return await self._get(Session, f"/api/sessions/{session_id}")

    async def rename_session(self, session_id: str, title: str) -> Session:
        response = await self._request("PATCH", f"/api/sessions/{session_id}", json={"title": title})
        return Session.model_validate(response.json())

    async def delete_session(self, session_id: str) -> None:
        await self._request("DELETE", f"/api/sessions/{session_id}")

    async def export_session(self, session_id: str, format: Literal["json", "markdown"] = "json") -> bytes:
        response = await self._request("GET", f"/api/sessions/{session_id}/export", params={"format": format})
        return response.content

    # --- a chat turn ------------------------------------------------------------------------------------------
    async def chat(
        self,
        session_id: str,
        content: str | None,
        *,
        model: str | None = None,
        arguments: ChatArguments | None = None,
        parent_id: str | None = None,
        regenerate: bool = False,
        persona_template_id: str | None = None,
        directive_template_ids: list[str] | None = None,
        variables: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> AsyncIterator[ChatEvent]:
        """One turn, its events as they arrive. Closing the iterator (``aclose``, or cancelling the task reading
        it) is the stop button: the connection closes, the backend ends the turn and keeps what arrived."""
        body: dict[str, Any] = {}
        if content is not None:
            body["content"] = content
        if parent_id is not None or regenerate:
            body["parent_id"] = parent_id
        if model:
            body["model"] = model
        if arguments is not None and (args := arguments.body()):
            body["arguments"] = args
        if persona_template_id:
            body["persona_template_id"] = persona_template_id
        if directive_template_ids:
            body["directive_template_ids"] = directive_template_ids
        if variables:
            body["variables"] = variables
        body.update(extra or {})  # fields other modules add (tools: frontend/client_tools.py)
        headers = {**self.credential.headers(), "Accept": "text/event-stream"}
        try:
            async with self.http.stream(
                "POST", f"/api/sessions/{session_id}/messages", json=body, headers=headers
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise BackendError(response.status_code, error_detail(response))
                async for event in parse_events(response.aiter_lines()):
                    yield event
        except httpx.TransportError as exc:
            raise BackendError(503, f"the answer stream broke off ({type(exc).__name__})") from exc

    def regenerate(self, session_id: str, question_id: str, **kwargs: Any) -> AsyncIterator[ChatEvent]:
        """A new answer to an earlier question (a sibling of the earlier answers)."""
        return self.chat(session_id, None, parent_id=question_id, regenerate=True, **kwargs)

    @staticmethod
    async def stop(stream: AsyncIterator[ChatEvent]) -> None:
        """Stops a turn's stream (the backend keeps the partial answer, marked incomplete)."""
        closer = getattr(stream, "aclose", None)
        if closer is not None:
            with contextlib.suppress(RuntimeError):
                await closer()

    # --- prompt library ---------------------------------------------------------------------------------------
    async def templates(self, kind: str | None = None, q: str | None = None, limit: int = 100) -> TemplatePage:
        return await self._get(TemplatePage, "/api/prompt-templates", kind=kind, q=q or None, limit=limit)

    async def template(self, template_id: str) -> PromptTemplate:
        return await self._get(PromptTemplate, f"/api/prompt-templates/{template_id}")

    async def create_template(self, title: str, body: str, kind: str, sharing: str = "private") -> PromptTemplate:
        payload = {"title": title, "body": body, "kind": kind, "sharing": sharing}
        return PromptTemplate.model_validate(
            (await self._request("POST", "/api/prompt-templates", json=payload)).json()
        )

    async def update_template(self, template_id: str, **fields: Any) -> PromptTemplate:
        response = await self._request("PATCH", f"/api/prompt-templates/{template_id}", json=fields)
        return PromptTemplate.model_validate(response.json())

    async def delete_template(self, template_id: str) -> None:
        await self._request("DELETE", f"/api/prompt-templates/{template_id}")


async def sign_in_with_token(http: httpx.AsyncClient, token: str) -> str:
    """Exchanges an API token for a backend browser session (``POST /login``); its id. The token is not kept."""
    try:
        response = await http.post("/login", data={"token": token}, headers=CSRF_HEADER)
    except httpx.TransportError as exc:
        raise BackendError(503, f"the backend cannot be reached ({type(exc).__name__})") from exc
    if response.status_code >= 400:
        raise BackendError(response.status_code, error_detail(response))
    session_id = next(
        (c.split("=", 1)[1].split(";", 1)[0] for c in response.headers.get_list("set-cookie")
         if c.startswith(SESSION_COOKIE + "=")),
        None,
    )  # fmt: skip
    if not session_id:
        raise BackendError(502, "the backend did not start a session")
    return session_id


async def sign_out(http: httpx.AsyncClient, session_id: str) -> None:
    """Ends the backend session (``POST /logout``)."""
    with contextlib.suppress(httpx.TransportError):
        await http.post("/logout", headers=Credential(session_id=session_id).headers())
