"""What a chat turn starts from, remembered per process so that the next turn can build its prompt while the
database confirms it (backend/chat/turn.py ``ChatTurns.start``).

Measured reason (docs/chat.md "Time to first token"): reading the session and its branch was the largest step
before the upstream call (0.6-1.0 ms of the chat endpoint's 2 ms budget over ``/v1``), and building the prompt
(0.2-0.3 ms) waited for it. With a remembered context the two run side by side: the read becomes a revision check
that returns the path only when the session changed.

Why this cannot serve a stale prompt: every write to a session or to any of its messages raises the session's
``revision`` (database triggers, migration 0018: no code path can forget it), an entry is only ever made from one
read statement that returned the context and the revision together, and it is used only when the turn's own read
— the same statement, filtered by owner — finds the session at that revision. Nothing is sent upstream and
nothing written before that answer. A prompt built from a remembered context that turns out stale is dropped and
built again from what the read returned; a step that would call a model or write while the context is not yet
confirmed (compaction's summary) first waits for the confirmation (``confirm_context``).

An entry is keyed by (owner, session); the cache is per process and bounded (entries and characters), so several
workers or replicas simply miss more often: a miss costs what a turn cost before, one read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from backend.chat.turn_sql import TurnContext

MAX_ENTRIES = 1024
MAX_ENTRY_CHARS = 256 * 1024  # a longer branch is not remembered: it is read each turn, as before
MAX_TOTAL_CHARS = 32 * 1024 * 1024


class StaleContext(Exception):
    """The remembered context the prompt was being built from is no longer the session's."""


_CONFIRM: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar("lisa_chat_confirm_context", default=None)


async def confirm_context() -> None:
    """Before a prompt-building step calls a model or writes: wait until the turn's context is confirmed (raises
    ``StaleContext`` when it is not). Outside a turn that builds from a remembered context, returns at once."""
    confirm = _CONFIRM.get()
    if confirm is not None:
        await confirm()


@contextmanager
def speculating(confirm: Callable[[], Awaitable[None]]) -> Iterator[None]:
    """Within the block, ``confirm_context`` awaits ``confirm``."""
    token = _CONFIRM.set(confirm)
    try:
        yield
    finally:
        _CONFIRM.reset(token)


def _chars(context: TurnContext) -> int:
    return sum(len(str(row["content"] or "")) for row in context.path)


class RecentContexts:
    """The last context read for each (owner, session), least recently used dropped first."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_total_chars: int = MAX_TOTAL_CHARS) -> None:
        self.max_entries = max_entries
        self.max_total_chars = max_total_chars
        self._entries: OrderedDict[tuple[str, str], tuple[TurnContext, int]] = OrderedDict()
        self._total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, owner: str, session_id: str) -> TurnContext | None:
        entry = self._entries.get((owner, session_id))
        if entry is None:
            return None
        self._entries.move_to_end((owner, session_id))
        return entry[0]

    def put(self, owner: str, session_id: str, context: TurnContext) -> None:
        """Remember a context that one read returned whole (never one answered ``unchanged``)."""
        if context.unchanged:
            raise ValueError("only a whole context (its path read) can be remembered")
        self.drop(owner, session_id)
        size = _chars(context)
        if size > MAX_ENTRY_CHARS:
            return
        self._entries[(owner, session_id)] = (context, size)
        self._total += size
        while len(self._entries) > self.max_entries or self._total > self.max_total_chars:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._total -= dropped

    def drop(self, owner: str, session_id: str) -> None:
        entry = self._entries.pop((owner, session_id), None)
        if entry is not None:
            self._total -= entry[1]
