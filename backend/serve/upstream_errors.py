"""What a caller learns when an upstream fails: LISA's own words, never the upstream's raw text.

An upstream's error text can carry internal URLs, host names and, in LiteLLM's messages, pieces of provider
requests. Every upstream failure becomes an ``UpstreamProblem``: a message in LISA's words (what happened, the
model id) plus the upstream's text as ``detail``. ``present`` turns it into the error the client sees: a request id
to quote, and the detail (secrets masked, truncated) for admins only; the full text, secrets masked, goes to the
server log under the same request id.

One exception, on purpose: when an OpenAI-compatible upstream (vLLM, TGI, llama.cpp) answers 400, 413 or 422 with
an OpenAI error object, the request itself was at fault (the classic case: prompt plus max_tokens over the
model's context length) and the caller needs that message to fix it. Its ``message`` (truncated, URLs and IP
addresses masked) and ``param`` reach the caller; nothing else of the upstream's body does.
"""

from __future__ import annotations

import email.utils
import logging
import re
from datetime import UTC, datetime

import orjson

from backend.errors import LisaError
from backend.serve.asgi import new_request_id

log = logging.getLogger("lisa.upstream")

DETAIL_CHARS = 500
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_IP = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\[[0-9a-fA-F:]+\](?::\d+)?")
# Host names with a suffix seen on networks (best effort: a "3.5" or "body.messages" in a message stays readable).
_HOST = re.compile(
    r"\b(?:[A-Za-z0-9-]+\.)+(?:internal|local|localdomain|lan|corp|intranet|svc|cluster|com|net|org|io|ai|dev|cloud)"
    r"(?::\d+)?\b|\blocalhost(?::\d+)?\b",
    re.IGNORECASE,
)
_SECRET = re.compile(
    r"(?i)(bearer\s+|api[-_]?key[\"']?\s*[:=]\s*[\"']?|x-api-key[\"']?\s*[:=]\s*[\"']?|\bsk-)[A-Za-z0-9._~+/=-]{4,}"
)


class UpstreamProblem(LisaError):
    """An upstream failed or refused; ``message`` is LISA's, ``detail`` the upstream's own text."""

    def __init__(
        self,
        status: int,
        openai_type: str,
        message: str,
        *,
        detail: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        secret: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status
        self.openai_type = openai_type
        self.detail = detail
        self.param = param
        self.retry_after = retry_after
        self.secret = secret
        self.presented = False


def mask_secrets(text: str, secret: str | None = None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return _SECRET.sub(lambda m: m.group(1) + "***", text)


def mask_addresses(text: str) -> str:
    return _HOST.sub("<host>", _IP.sub("<address>", _URL.sub("<url>", text)))


def present(problem: UpstreamProblem, model_id: str, reveal: bool) -> UpstreamProblem:
    """Log the whole story under a fresh request id; give the caller LISA's message (and admins the detail)."""
    if problem.presented:
        return problem
    request_id = new_request_id()
    detail = mask_secrets(problem.detail, problem.secret) if problem.detail else None
    log.warning(
        "upstream error %s: model=%s status=%s message=%r detail=%r",
        request_id, model_id, problem.status_code, problem.message, detail,
    )  # fmt: skip
    message = f"{problem.message} (request id {request_id})"
    if reveal and detail:
        message += f"; upstream said: {detail[:DETAIL_CHARS]}"
    problem.message = message
    problem.args = (message,)
    problem.presented = True
    return problem


def openai_error_fields(body: bytes) -> tuple[str, str | None] | None:
    """(message, param) from an OpenAI-shaped error body (``{"error": {...}}`` or vLLM's flat ``{"message"}``)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error", data)
    if isinstance(error, str):
        return error, None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    param = error.get("param")
    return error["message"], param if isinstance(param, str) else None


def from_status(
    model_id: str, status: int, body: bytes, *, secret: str | None = None, retry_after: str | None = None
) -> UpstreamProblem:
    """The problem for an upstream HTTP error answer (pass-through upstreams)."""
    text = body[: DETAIL_CHARS * 4].decode("utf-8", "replace")
    what = f"model '{model_id}'"
    if status in (400, 413, 422):
        fields = openai_error_fields(body)
        if fields is not None:
            message, param = fields
            safe = mask_addresses(mask_secrets(message, secret))[:1000]
            return UpstreamProblem(status, "invalid_request_error", f"{what}: {safe}", detail=text, param=param,
                                   secret=secret)  # fmt: skip
        return UpstreamProblem(status, "invalid_request_error", f"{what}: the upstream rejected the request "
                               f"(status {status})", detail=text, secret=secret)  # fmt: skip
    if status in (401, 403):
        return UpstreamProblem(502, "upstream_error", f"{what}: the upstream rejected the stored credentials "
                               f"(status {status})", detail=text, secret=secret)  # fmt: skip
    if status == 429:
        return UpstreamProblem(429, "rate_limit_exceeded", f"{what}: the upstream is rate limiting requests",
                               detail=text, retry_after=retry_after_seconds(retry_after), secret=secret)  # fmt: skip
    return UpstreamProblem(502, "upstream_error", f"{what}: the upstream failed with status {status}",
                           detail=text, secret=secret)  # fmt: skip


def retry_after_seconds(value: str | None) -> float:
    """An upstream's ``Retry-After`` (seconds, or an HTTP date) in seconds, within 1 s to an hour; 1 s without one."""
    if not value:
        return 1.0
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return 1.0
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return 1.0
    return min(max(seconds, 1.0), 3600.0)


def unreachable(model_id: str, exc: BaseException, secret: str | None = None) -> UpstreamProblem:
    return UpstreamProblem(502, "upstream_error", f"model '{model_id}': the upstream is unreachable "
                           f"({exc.__class__.__name__})", detail=str(exc), secret=secret)  # fmt: skip


def connect_timed_out(model_id: str, seconds: float) -> UpstreamProblem:
    return UpstreamProblem(504, "upstream_timeout", f"model '{model_id}': connecting to the upstream timed out after "
                           f"{seconds:g}s (connect timeout)")  # fmt: skip


def timed_out(model_id: str, seconds: float, what: str = "answer") -> UpstreamProblem:
    return UpstreamProblem(504, "upstream_timeout", f"model '{model_id}': the upstream did not {what} within "
                           f"{seconds:g}s")  # fmt: skip
