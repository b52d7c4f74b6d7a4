"""Summarising a text of any length with a model whose context window is small: split, summarise each piece (map),
then summarise the summaries (reduce) until one is left. No request exceeds the window.

Used for documents (backend/chat/summarize.py) and for compacting a conversation (backend/chat/compaction.py). The
model is reached through ``ask`` (a prompt and its ``max_tokens`` -> the answer's text), which the callers make from
``GatewayClient``, so everything here is plain logic and testable without a model.

Sizes, in tokens as backend/chat/tokens.py counts them:
- a request's prompt plus its ``max_tokens`` stays within the window: each piece gets ``Budget.input_tokens`` less
  what the instruction around it takes;
- a summary is asked for at most a fifth of the window (``Budget.output_tokens``), so that two summaries, even
  counted high, fit one reduce request: each reduce round at least halves their number (a summary counted over
  half the input budget is cut to it first), and the rounds end.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from backend.chat import tokens
from backend.errors import BadRequest, UpstreamError
from ingestion.chunkers import TokenChunking

Ask = Callable[[str, int], Awaitable[str]]  # a prompt and its max_tokens -> the model's answer

SLACK_TOKENS = 8  # per request, beyond what is counted
MIN_INPUT_TOKENS = 64  # a window leaving less than this for text cannot summarise anything
PARAGRAPH = re.compile(r"\n\s*\n")


@dataclass(frozen=True, slots=True)
class Prompts:
    """The instruction of each kind of request; ``{text}`` is where the text goes. ``map`` also gets ``{part}`` and
    ``{parts}``; ``whole`` is used when the text fits one request."""

    whole: str
    map: str
    reduce: str


@dataclass(frozen=True, slots=True)
class Budget:
    window: int  # the model's context window
    output_tokens: int  # max_tokens of every request

    @property
    def input_tokens(self) -> int:
        """What a request's prompt may take."""
        return self.window - self.output_tokens - SLACK_TOKENS


def budget_for(window: int, wanted_output: int) -> Budget:
    """A summary of at most ``wanted_output`` tokens and at most a fifth of the window; 400 for a tiny window."""
    output = max(1, min(wanted_output, window // 5))
    budget = Budget(window, output)
    if budget.input_tokens < MIN_INPUT_TOKENS:
        raise BadRequest(f"a context window of {window} tokens is too small to summarise with")
    return budget


@dataclass(frozen=True, slots=True)
class Progress:
    stage: Literal["map", "reduce"]
    step: int  # 1-based, within the stage (map) or the round (reduce)
    of: int
    round: int = 0  # reduce rounds, from 1; 0 for map

    def as_dict(self) -> dict[str, object]:
        return {"stage": self.stage, "step": self.step, "of": self.of, "round": self.round}


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    requests: int


def _room(template: str, budget: Budget) -> int:
    """Tokens left for the text in a request built from ``template``."""
    framing = tokens.count_messages([{"role": "user", "content": template.replace("{text}", "")}])
    return budget.input_tokens - framing


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of ``text`` of at most ``limit`` counted tokens each, cut between paragraphs where one fits whole,
    else inside it (at token boundaries that are character boundaries)."""
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    separator = tokens.count("\n\n")
    for paragraph in (p.strip() for p in PARAGRAPH.split(text)):
        if not paragraph:
            continue
        size = tokens.count(paragraph)
        if size > limit:
            if current:
                pieces.append("\n\n".join(current))
                current, used = [], 0
            pieces.extend(_split_long(paragraph, limit))
            continue
        if current and used + separator + size > limit:
            pieces.append("\n\n".join(current))
            current, used = [], 0
        used += size + (separator if current else 0)
        current.append(paragraph)
    if current:
        pieces.append("\n\n".join(current))
    return [p for p in pieces if p.strip()]


def _split_long(paragraph: str, limit: int) -> list[str]:
    size = max(16, min(8192, int(limit / tokens.MARGIN) - 2))
    out: list[str] = []
    for piece in TokenChunking(size=size, overlap=0, encoding=tokens.ENCODING).split(paragraph):
        # Re-encoding a decoded window may count a token or two more: cut what still does not fit.
        out.append(piece if tokens.count(piece) <= limit else tokens.truncate(piece, limit))
    return out


def plan(text: str, budget: Budget, prompts: Prompts, max_requests: int) -> list[str]:
    """The pieces the map step will summarise (one: the text fits a single request); 400 when more than
    ``max_requests`` pieces would be needed, naming the sizes so a caller can pick a model with a larger window."""
    if not text.strip():
        raise BadRequest("there is no text to summarise")
    if tokens.count(text) <= _room(prompts.whole, budget):
        return [text]
    room = _room(prompts.map.replace("{part}", "999").replace("{parts}", "999"), budget)
    if room < MIN_INPUT_TOKENS:
        raise BadRequest(f"a context window of {budget.window} tokens is too small to summarise with")
    pieces = split_text(text, room)
    if len(pieces) > max_requests:
        raise BadRequest(
            f"the text is about {tokens.count(text)} tokens: with a context window of {budget.window} tokens it "
            f"needs {len(pieces)} summarising requests, over the limit of {max_requests}; use a model with a "
            "larger context window"
        )
    return pieces


async def run(pieces: list[str], budget: Budget, prompts: Prompts, ask: Ask) -> AsyncIterator[Progress | Summary]:
    """Summarises the ``plan``'s pieces: a Progress before each request, then the Summary."""
    requests = 0
    if len(pieces) == 1:
        yield Progress("map", 1, 1)
        text = await ask(prompts.whole.replace("{text}", pieces[0]), budget.output_tokens)
        yield Summary(_checked(text), 1)
        return
    partials: list[str] = []
    for i, piece in enumerate(pieces, start=1):
        yield Progress("map", i, len(pieces))
        prompt = prompts.map.replace("{part}", str(i)).replace("{parts}", str(len(pieces)))
        partials.append((await ask(prompt.replace("{text}", piece), budget.output_tokens)).strip())
        requests += 1
    room = _room(prompts.reduce, budget)
    round_ = 0
    while len(partials) > 1:
        round_ += 1
        batches = _batches(partials, room)
        merged: list[str] = []
        asked = [b for b in batches if len(b) > 1]
        step = 0
        for batch in batches:
            if len(batch) == 1:  # a leftover: carried into the next round as it is
                merged.append(batch[0])
                continue
            step += 1
            yield Progress("reduce", step, len(asked), round_)
            joined = "\n\n".join(f"Part {k}:\n{p}" for k, p in enumerate(batch, start=1))
            merged.append((await ask(prompts.reduce.replace("{text}", joined), budget.output_tokens)).strip())
            requests += 1
        partials = merged
    yield Summary(_checked(partials[0]), requests)


def _batches(partials: list[str], room: int) -> list[list[str]]:
    """Consecutive partial summaries grouped so that each group fits one request; every group but the last holds
    at least two (a summary over half the room is cut to it), so each round at least halves their number."""
    half = room // 2 - tokens.count("\n\nPart 99:\n")
    sized = []
    for partial in partials:
        size = tokens.count(partial)
        if size > half:
            partial = tokens.truncate(partial, half)
            size = tokens.count(partial)
        sized.append((partial, size + tokens.count("\n\nPart 99:\n")))
    batches: list[list[str]] = []
    used = 0
    for partial, size in sized:
        if batches and used + size <= room:
            batches[-1].append(partial)
            used += size
        else:
            batches.append([partial])
            used = size
    return batches


def _checked(text: str) -> str:
    text = text.strip()
    if not text:
        raise UpstreamError("the model answered with an empty summary")
    return text
