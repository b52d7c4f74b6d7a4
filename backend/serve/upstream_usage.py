"""Token counts from an upstream's answer: the ``usage`` object of a JSON body or of a stream's chunk, and the
content a stream without one delivered.

A JSON body may be megabytes of embeddings: only its ``usage`` object is parsed, found from the end and cut out
whole (brace-matched, strings respected), so fields in any order and nested details objects
(``prompt_tokens_details`` before ``completion_tokens``) are read right.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_USAGE_KEY = re.compile(rb'"usage"\s*:\s*\{')
TAIL = 4096  # where a body's usage object is looked for first (it ends OpenAI answers)


def _object_from(body: bytes, start: int) -> bytes | None:
    """The JSON object starting at ``body[start]`` (a ``{``), or None when it is not closed."""
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(body)):
        byte = body[i]
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte == 0x7B:
            depth += 1
        elif byte == 0x7D:
            depth -= 1
            if depth == 0:
                return body[start : i + 1]
    return None


def counts(usage: Any) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) of a parsed ``usage`` value; None when it holds no counts."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if prompt is None and completion is None:
        return None
    return _count(prompt), _count(completion)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_body(body: bytes) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) from the last top-level-looking ``usage`` object of a JSON body."""
    matches = list(_USAGE_KEY.finditer(body, max(0, len(body) - TAIL))) or list(_USAGE_KEY.finditer(body))
    for match in reversed(matches):
        found = _object_from(body, match.end() - 1)
        if found is None:
            continue
        try:
            return counts(orjson.loads(found))
        except orjson.JSONDecodeError:
            continue
    return None


def content_deltas(chunk: dict[str, Any]) -> int:
    """Streamed chunks of OpenAI-compatible servers carry about one token per non-empty delta of each choice
    (content, reasoning, a piece of a tool call, or a text completion's ``text``)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return 0
    tokens = 0
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning") \
                    or delta.get("tool_calls") or delta.get("function_call"):  # fmt: skip
                tokens += 1
        elif choice.get("text"):
            tokens += 1
    return tokens
