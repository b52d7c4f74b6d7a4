"""Token accounting for limits: what a request may cost before it runs, and the ``max_tokens`` it may be given.

A request's demand is its prompt (estimated here from the text it carries), the completion each choice may
generate (the caller's ``max_tokens``, else what the model's context leaves, else a configured default), and the
number of choices (``n``, or ``best_of`` for text completions). The limiter turns the demand into a grant that
fits what every bucket has left, atomically; the gateway then caps ``max_tokens`` to the grant when the grant is
the binding limit, so a budget is never exceeded by what the model generates.
"""

from __future__ import annotations

from typing import Any

from backend.limits.limiter import Demand
from backend.registry.schemas import ModelRoute

# OpenAI's own count for chat: each message costs its text plus about three tokens of framing, and the reply is
# primed with three more. Other servers' templates differ a little; the real count settles the difference.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3
CHARS_PER_TOKEN = 4
GENERATING = ("chat/completions", "completions")


def _text_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(len(p) if isinstance(p, str) else len(p.get("text", "")) if isinstance(p, dict) else 0
                   for p in value)  # fmt: skip
    return 0


def estimate_prompt_tokens(payload: dict[str, Any]) -> int:
    """About four characters a token over the text the request carries (messages, prompt or input)."""
    chars = 0
    framing = 0
    messages = payload.get("messages")
    if isinstance(messages, list):
        framing = REPLY_PRIMING + TOKENS_PER_MESSAGE * len(messages)
        for message in messages:
            if isinstance(message, dict):
                chars += _text_chars(message.get("content"))
    chars += _text_chars(payload.get("prompt")) + _text_chars(payload.get("input"))
    return max(1, chars // CHARS_PER_TOKEN + framing)


def requested_max_tokens(payload: dict[str, Any]) -> int | None:
    value = payload.get("max_completion_tokens")
    if value is None:
        value = payload.get("max_tokens")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def choices(endpoint: str, payload: dict[str, Any]) -> int:
    counts = [payload.get("n"), payload.get("best_of") if endpoint == "completions" else None]
    return max([1, *(c for c in counts if isinstance(c, int) and not isinstance(c, bool))])


def demand(
    endpoint: str, payload: dict[str, Any], route: ModelRoute, default_max_tokens: int, extra: int = 0
) -> Demand:
    """The demand of a request; ``extra`` adds prompt tokens LISA itself will add (RAG context, query embedding)."""
    prompt = estimate_prompt_tokens(payload) + extra
    if endpoint not in GENERATING:
        return Demand(prompt, 0)
    asked = requested_max_tokens(payload)
    context_left = max(1, route.context_window - prompt) if route.context_window else None
    bounds = [b for b in (asked, context_left) if b is not None]
    completion = min(bounds) if bounds else default_max_tokens
    return Demand(prompt, completion, choices(endpoint, payload))


def cap_to_grant(payload: dict[str, Any], route: ModelRoute, wanted: Demand, granted: int | None) -> bool:
    """Set ``max_tokens`` to the grant where the grant is what binds; True when the payload changed.

    Without a caller's ``max_tokens``, a model whose context window is known stops there by itself: the field is
    set only when the limits leave less (setting it to the estimated context room could overshoot the real one).
    On a model of unknown context the grant is always set: nothing else bounds the generation.
    """
    if granted is None or wanted.completion is None:
        return False
    asked = requested_max_tokens(payload)
    if asked is not None and granted >= asked:
        return False
    if asked is None and route.context_window and granted >= wanted.completion:
        return False
    keys = [k for k in ("max_completion_tokens", "max_tokens") if k in payload] or ["max_tokens"]
    for key in keys:
        payload[key] = granted
    return True
