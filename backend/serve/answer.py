"""What the client receives of an upstream's answer, and what the answer cost.

Both upstream paths (byte pass-through and LiteLLM) hand their answer to this module:

* a JSON answer goes out as the upstream sent it, with RAG's ``sources`` added when the request used ``rag``;
* a streamed answer goes out event by event through ``StreamFilter``, which counts what it cost and ends the
  stream the way OpenAI does.

The end of a ``/v1/chat/completions`` or ``/v1/completions`` stream, in this order::

    ... the upstream's chunks (its own [DONE] held back)
    data: {"choices": [], "sources": [...]}            only with ``rag``
    data: {"choices": [], "usage": {...}}              only when the client asked (``stream_options.include_usage``)
    data: [DONE]

LISA always asks a streaming upstream for usage (``stream_options.include_usage``: real counts to meter). The
client gets the usage chunk exactly when it asked for one, as from OpenAI: the upstream's, or, when the upstream
sent none (llama.cpp), one built from what LISA metered (the estimate flag stays in metering). A client that did
not ask gets no usage at all: the upstream's usage chunk is dropped, a ``usage`` field on a content chunk removed.
Sources come before the usage chunk, which OpenAI's clients expect last.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from backend.serve.asgi import openai_error_body
from backend.serve.budget import GENERATING
from backend.serve.sse import DONE, SseEvent
from backend.serve.upstream_usage import content_deltas, counts

CHUNK_OBJECT = {"chat/completions": "chat.completion.chunk", "completions": "text_completion"}
DONE_EVENT = b"data: [DONE]\n\n"


@dataclass(slots=True)
class Outcome:
    """How a request ended and what it cost, kept up to date while it streams (a request cut off halfway is
    settled on what was streamed)."""

    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    prompt_estimate: int = 1  # the gateway's estimate of the prompt, for answers without usage


@dataclass(frozen=True, slots=True)
class AnswerPlan:
    """What LISA adds to one request's answer."""

    endpoint: str
    model: str  # the model id the client asked for
    client_usage: bool = False  # the client set stream_options.include_usage
    sources: list[dict[str, Any]] | None = None  # RAG's sources, when the request used rag

    @property
    def generating(self) -> bool:
        return self.endpoint in GENERATING


def client_wants_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def ask_upstream_for_usage(payload: dict[str, Any]) -> bool:
    """Sets ``stream_options.include_usage`` on a streaming request; True when the payload changed."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


def with_sources(body: bytes, sources: list[dict[str, Any]] | None) -> bytes:
    """A JSON answer with RAG's ``sources`` added at the top level (unchanged without sources)."""
    if sources is None:
        return body
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(data, dict):
        return body
    data["sources"] = sources
    return orjson.dumps(data)


def error_event(status: int, message: str, type_: str) -> bytes:
    """The event that ends a stream that failed after it started (OpenAI's error object as a data event)."""
    return b"data: " + openai_error_body(status, message, type_) + b"\n\n"


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class StreamFilter:
    """Passes an upstream's stream to the client event by event: what the client may see, in OpenAI's order, and
    the tokens it cost in ``outcome`` (the upstream's usage when it sends one, else content deltas)."""

    __slots__ = ("_head", "_usage_event", "_usage_sent", "outcome", "plan")

    def __init__(self, outcome: Outcome, plan: AnswerPlan) -> None:
        self.outcome = outcome
        self.plan = plan
        self._head: dict[str, Any] | None = None  # id, created and model of the stream's chunks
        self._usage_event: bytes | None = None  # the upstream's usage-only chunk, held until the end
        self._usage_sent = False  # a content chunk carrying usage went to a client that asked for it

    def event(self, event: SseEvent) -> bytes:
        """The bytes the client gets for one upstream event (often ``event.raw`` itself; b"" for nothing)."""
        data = event.data
        if data is None or not self.plan.generating:
            return event.raw
        if data == DONE:
            return b""  # sent by ``tail`` after what LISA adds
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return event.raw
        if not isinstance(chunk, dict):
            return event.raw
        return self.chunk(chunk, event.raw)

    def chunk(self, chunk: dict[str, Any], raw: bytes | None = None) -> bytes:
        """One parsed chunk; ``raw`` is its event as received (None: serialise ``chunk``)."""
        if self._head is None and "id" in chunk:
            self._head = {"id": chunk.get("id"), "created": chunk.get("created"), "model": chunk.get("model")}
        if self.outcome.estimated:
            self.outcome.completion_tokens += content_deltas(chunk)
        if "usage" in chunk:
            found = counts(chunk["usage"])
            if found is not None:
                self.outcome.prompt_tokens, self.outcome.completion_tokens = found
                self.outcome.estimated = False
            usage_only = not chunk.get("choices")
            if not self.plan.client_usage:
                if usage_only and found is not None:
                    return b""
                del chunk["usage"]  # OpenAI sends no usage field to a client that did not ask
                raw = None
            elif found is not None:
                if usage_only:
                    self._usage_event = raw or _event(chunk)
                    return b""
                self._usage_sent = True
        return raw if raw is not None else _event(chunk)

    def tail(self) -> bytes:
        """What ends a stream that ended well: sources, usage, ``[DONE]`` (only what the plan calls for)."""
        if not self.plan.generating:
            return b""
        parts: list[bytes] = []
        if self.plan.sources is not None:
            parts.append(_event({**self._base(), "choices": [], "sources": self.plan.sources}))
        if self.plan.client_usage and not self._usage_sent:
            parts.append(self._usage_event or _event({**self._base(), "choices": [], "usage": self._usage()}))
        parts.append(DONE_EVENT)
        return b"".join(parts)

    def _base(self) -> dict[str, Any]:
        head = self._head or {}
        prefix = "chatcmpl-" if self.plan.endpoint == "chat/completions" else "cmpl-"
        return {
            "id": head.get("id") or prefix + secrets.token_hex(12),
            "object": CHUNK_OBJECT[self.plan.endpoint],
            "created": head.get("created") or int(time.time()),
            "model": head.get("model") or self.plan.model,
        }

    def _usage(self) -> dict[str, int]:
        prompt, completion = self.outcome.prompt_tokens, self.outcome.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
