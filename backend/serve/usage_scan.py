"""Token counts read from upstream bytes without parsing whole bodies (they may be megabytes of embeddings)."""

from __future__ import annotations

import re

_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_PROMPT = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
_CONTENT_DELTA = re.compile(rb'"(?:content|text|reasoning_content)"\s*:\s*"(?!")')


def usage_from_body(body: bytes) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) from the last ``usage`` object in ``body``, if any."""
    matches = list(_USAGE.finditer(body, max(0, len(body) - 4096))) or list(_USAGE.finditer(body))
    if not matches:
        return None
    match = matches[-1]
    end = body.find(b"}", match.end())
    window = body[match.end() : end if end > 0 else None]
    prompt = _PROMPT.search(window)
    completion = _COMPLETION.search(window)
    return (int(prompt.group(1)) if prompt else 0, int(completion.group(1)) if completion else 0)


def count_content_deltas(chunk: bytes) -> int:
    """Streamed chunks from OpenAI-compatible servers carry about one token per non-empty content delta."""
    return len(_CONTENT_DELTA.findall(chunk))


def estimate_prompt_tokens(body: bytes) -> int:
    """A cheap estimate (4 bytes a token) when the upstream reports no usage for a stream."""
    return max(1, len(body) // 4)
