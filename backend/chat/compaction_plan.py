"""What to compact: the pure decision behind compaction (backend/chat/compaction.py does the model call and keeps
the summary).

When a conversation's prompt passes ``threshold`` (75%) of the model's context window, the oldest turns are
replaced by one summary. Enough turns go that the prompt, with the summary counted at its largest, falls to
``target`` (50%) of the window, so compaction happens once in a while rather than on every turn once the window is
nearly full. The latest turns stay as they are (``keep_last`` messages at least), and the cut falls before a user
message, so the prompt never starts with an answer whose question was summarised away. A summary made earlier
that still heads the history is compacted again with the turns after it: the new summary covers it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.75
DEFAULT_TARGET = 0.5
SUMMARY = "summary"


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of the history a prompt would carry, with the tokens it takes there (backend/chat/tokens.py)."""

    id: str
    role: str  # "user" | "assistant" | "system" (a summary is sent as a system message)
    content: str
    tokens: int
    kind: str = "message"  # or "summary"
    covers: tuple[str, ...] = ()  # a summary: the ids of the messages it stands for


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    compact: tuple[Turn, ...]  # the oldest turns, to be replaced by one summary
    keep: tuple[Turn, ...]  # the turns after them, sent as they are
    prompt_tokens: int  # the prompt as it would be without compaction
    expected_tokens: int  # the prompt after it, with the summary at ``summary_tokens``
    window: int

    @property
    def covers(self) -> tuple[str, ...]:
        """The ids of the messages the new summary stands for (an earlier summary among them stands, in turn, for
        what it covered)."""
        return tuple(turn.id for turn in self.compact)


def plan_compaction(
    history: Sequence[Turn],
    *,
    fixed_tokens: int,
    window: int,
    summary_tokens: int,
    threshold: float = DEFAULT_THRESHOLD,
    target: float = DEFAULT_TARGET,
    keep_last: int = 2,
) -> CompactionPlan | None:
    """None when the prompt is within ``threshold`` of the window, or when nothing can usefully be compacted.

    ``history``: the messages before the new one, oldest first (an earlier summary in place of what it covers);
    ``fixed_tokens``: everything else the prompt carries (system prompt, the new message, documents, RAG context).
    """
    total = fixed_tokens + sum(t.tokens for t in history)
    if total <= threshold * window:
        return None
    cuts = _cut_points(history, keep_last)
    if not cuts:
        return None
    goal = target * window
    chosen = cuts[-1]  # the most that may go, unless less reaches the goal
    for cut in cuts:
        rest = sum(t.tokens for t in history[cut:])
        if fixed_tokens + summary_tokens + rest <= goal:
            chosen = cut
            break
    compact, keep = tuple(history[:chosen]), tuple(history[chosen:])
    if not any(t.kind != SUMMARY for t in compact):
        return None  # only an earlier summary would go: nothing new to summarise
    expected = fixed_tokens + summary_tokens + sum(t.tokens for t in keep)
    if expected >= total:
        return None  # what would go is no larger than a summary: compacting would not help
    return CompactionPlan(compact, keep, total, expected, window)


def _cut_points(history: Sequence[Turn], keep_last: int) -> list[int]:
    """Indices the history may be cut at (everything before goes), smallest first: before a user message, leaving
    at least ``keep_last`` messages and compacting at least two."""
    last = len(history) - max(keep_last, 0)
    # Position len(history) is before the new message, a user message too.
    return [i for i in range(2, last + 1) if i == len(history) or history[i].role == "user"]


def apply_summaries(history: Sequence[Turn]) -> list[Turn]:
    """The history a prompt carries: the branch from its latest summary on (a summary sits in the branch just above
    the first message it did not cover, so it stands for everything before it). By position rather than by the ids
    in ``covers``, so a summary keeps working in an imported copy of the session, whose messages have new ids."""
    for index in range(len(history) - 1, -1, -1):
        if history[index].kind == SUMMARY:
            return list(history[index:])
    return list(history)
