"""The chat turn's server-sent events, parsed into typed events (docs/chat.md, "The stream").

OpenAI chunk deltas come as ``data:`` lines without an event name; LISA's own events carry a name. Events the app
does not use yet (tools, compaction, context) arrive as ``Other`` so that no event is silently lost.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class UserMessage:
    id: str


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    id: str


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the answer's text (one OpenAI chunk)."""

    text: str


@dataclass(frozen=True, slots=True)
class Sources:
    sources: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class StreamError:
    """The upstream failed mid-answer; what arrived before it is kept by the backend."""

    detail: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float | None = None
    ttft_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Done:
    assistant_message_id: str | None
    status: str


@dataclass(frozen=True, slots=True)
class Other:
    name: str
    data: dict[str, Any] = field(default_factory=dict)


ChatEvent = UserMessage | AssistantMessage | Delta | Sources | StreamError | UsageReport | Done | Other


def to_event(name: str, data: str) -> ChatEvent | None:
    """One SSE frame as a typed event; None for a frame that carries nothing (an empty delta, a keep-alive)."""
    if not data:
        return None
    payload: Any = json.loads(data)
    if not isinstance(payload, dict):
        return Other(name or "message", {"value": payload})
    if not name or name == "message":
        choices = payload.get("choices") or []
        text = "".join(str((c.get("delta") or {}).get("content") or "") for c in choices if isinstance(c, dict))
        return Delta(text) if text else None
    match name:
        case "user_message":
            return UserMessage(str(payload.get("id", "")))
        case "assistant_message":
            return AssistantMessage(str(payload.get("id", "")))
        case "sources":
            return Sources(list(payload.get("sources") or []))
        case "error":
            return StreamError(str(payload.get("detail") or "the model failed mid-answer"))
        case "usage":
            return UsageReport(
                prompt_tokens=int(payload.get("prompt_tokens") or 0),
                completion_tokens=int(payload.get("completion_tokens") or 0),
                latency_ms=payload.get("latency_ms"),
                ttft_ms=payload.get("ttft_ms"),
            )
        case "done":
            return Done(payload.get("assistant_message_id"), str(payload.get("status", "complete")))
    return Other(name, payload)


async def parse_events(lines: AsyncIterator[str]) -> AsyncIterator[ChatEvent]:
    """Frames are separated by blank lines; ``event:`` names one, ``data:`` lines are joined by newlines."""
    name = ""
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data and (event := to_event(name, "\n".join(data))) is not None:
                yield event
            name, data = "", []
        elif line.startswith(":"):
            continue  # a comment (keep-alive)
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
    if data and (event := to_event(name, "\n".join(data))) is not None:
        yield event
