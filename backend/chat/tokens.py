"""Token counts for what a chat prompt carries: tiktoken's ``o200k_base`` with a safety margin, decided by measurement.

Compaction, documents in context and map-reduce summarisation decide what fits a model's context window. Three ways
to count were measured against llama-cpp-python's own tokenizer for gemma3-270m (``bench/chat_token_estimate.py``,
figures in docs/chat-context.md):

- the upstream's tokenizer (``POST /tokenize`` on vLLM and llama.cpp's server, ``/extras/tokenize`` on
  llama-cpp-python, nothing on most providers) is exact, but it is not an OpenAI path: asking it would go around
  the gateway (access, egress guard, metering), it costs a round trip per count (6 ms p50 for 4,000 characters
  here, on every turn) and each server names it differently;
- the gateway's estimate (backend/serve/budget.py, four characters a token) was 0.37x to 1.28x the real count:
  it under-counts markdown, TOML and non-Latin text by up to 2.7 times, so a prompt it says fits may not;
- tiktoken ``o200k_base`` was 0.85x to 1.21x the real count, locally, in 0.7 ms for 4,000 characters.

So counts here are ``o200k_base`` tokens times ``MARGIN`` (1.2): at or over the real count on every text measured,
from 1.02x (TOML) to 1.45x (Chinese). Counting too high compacts or cuts a little early; counting too low would
overflow the window, which the 75% threshold alone would not cover for Chinese with the four-characters estimate.
Without tiktoken's encoding files, UTF-8 bytes are counted instead (a BPE token is at least one byte): safe, coarse.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from typing import Any

import tiktoken

from ingestion.document import IngestionError
from ingestion.tokens import encoding

ENCODING = "o200k_base"
MARGIN = 1.2
MESSAGE_FRAMING = 4  # role and turn markers around each message's text (OpenAI counts 3; chat templates vary)
REPLY_PRIMING = 3
OFF_LOOP_CHARS = 50_000  # longer texts are counted in a thread, off the event loop (about 10 ms of work)


def _encoding() -> tiktoken.Encoding | None:
    try:
        return encoding(ENCODING)
    except IngestionError:
        return None


def count(text: str) -> int:
    """The tokens ``text`` may take in a prompt (an upper estimate, see the module's docstring)."""
    if not text:
        return 0
    enc = _encoding()
    if enc is None:
        return len(text.encode("utf-8", "replace"))
    return math.ceil(len(enc.encode_ordinary(text)) * MARGIN)


async def count_async(text: str) -> int:
    """``count``, in a thread for a long text."""
    if len(text) > OFF_LOOP_CHARS:
        return await asyncio.to_thread(count, text)
    return count(text)


def content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def count_message(message: Mapping[str, Any]) -> int:
    return count(content_text(message.get("content"))) + MESSAGE_FRAMING


def count_messages(messages: Iterable[Mapping[str, Any]]) -> int:
    """The tokens a chat request's messages may take, the reply's priming included."""
    return REPLY_PRIMING + sum(count_message(m) for m in messages)


def truncate(text: str, tokens: int) -> str:
    """The longest start of ``text`` that ``count`` puts at no more than ``tokens`` (cut at a character boundary)."""
    if tokens <= 0:
        return ""
    if count(text) <= tokens:
        return text
    enc = _encoding()
    raw = int(tokens / MARGIN)
    if enc is None:
        return text.encode("utf-8")[:tokens].decode("utf-8", "ignore")
    ids = enc.encode_ordinary(text)[:raw]
    # A token may end inside a multi-byte character: drop the partial character rather than emit U+FFFD.
    return enc.decode_bytes(ids).decode("utf-8", "ignore")


async def truncate_async(text: str, tokens: int) -> str:
    if len(text) > OFF_LOOP_CHARS:
        return await asyncio.to_thread(truncate, text, tokens)
    return truncate(text, tokens)
