"""How an event handler reaches the backend as the signed-in user, and how backend errors reach that user.

Every handler takes ``request: gr.Request`` and calls ``backend.client(request)``: a ``BackendClient`` carrying the
browser's own credential (the backend session cookie, which the browser sends to /ui as to every path of the site).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import gradio as gr
import httpx

from frontend.client import SESSION_COOKIE, BackendClient, BackendError, Credential

log = logging.getLogger("lisa.ui")
P = ParamSpec("P")
R = TypeVar("R")


class SignedOut(BackendError):
    def __init__(self) -> None:
        super().__init__(401, "You are signed out: reload the page to sign in again.")


@dataclass
class Backend:
    """The backend as the app's handlers see it: one shared connection pool, one client per caller."""

    http: httpx.AsyncClient

    def client(self, request: gr.Request | None) -> BackendClient:
        cookies: dict[str, str] = dict(getattr(request, "cookies", None) or {}) if request is not None else {}
        session_id = cookies.get(SESSION_COOKIE)
        if not session_id:
            raise SignedOut()
        return BackendClient(self.http, Credential(session_id=session_id))


def readable(exc: BaseException) -> gr.Error:
    """What a user reads: the backend's own message, never a traceback."""
    if isinstance(exc, BackendError):
        return gr.Error(exc.detail, title=f"The server said no ({exc.status})" if exc.status < 500 else "Error")
    log.exception("ui handler failed", exc_info=exc)
    return gr.Error("Something went wrong in the app; the server log has the details.")


def shows_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A handler whose failures appear as readable messages (a Gradio error toast)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise readable(exc) from exc

    return wrapper


def streams_errors(fn: Callable[P, AsyncIterator[Any]]) -> Callable[P, AsyncIterator[Any]]:
    """The same for a streaming (generator) handler."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[Any]:
        try:
            async for item in fn(*args, **kwargs):
                yield item
        except gr.Error:
            raise
        except Exception as exc:
            raise readable(exc) from exc

    return wrapper
