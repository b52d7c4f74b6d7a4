"""The pure parts of compaction and map-reduce summarisation: what goes, what stays, and that no request overflows."""

from __future__ import annotations

from typing import Any

import pytest

from backend.chat import map_reduce, tokens
from backend.chat.compaction import SUMMARY_PREFIX, Compacted, TokenCounts
from backend.chat.compaction_plan import SUMMARY, Turn, apply_summaries, plan_compaction
from backend.chat.prompt_context import chat_rows
from backend.errors import BadRequest, UpstreamError
from ingestion.tokens import encoding


def turns(n: int, size: int = 100) -> list[Turn]:
    """n messages alternating user/assistant, each ``size`` tokens."""
    return [Turn(f"m{i}", "user" if i % 2 == 0 else "assistant", f"text {i}", size) for i in range(n)]


def test_under_the_threshold_nothing_is_compacted() -> None:
    history = turns(6)  # 600 tokens + 100 fixed = 700 of 1000: under 75%
    assert plan_compaction(history, fixed_tokens=100, window=1000, summary_tokens=50) is None


def test_over_the_threshold_the_oldest_turns_go_down_to_the_target() -> None:
    history = turns(10)  # 1000 + 100 fixed: over 75% of 1000
    plan = plan_compaction(history, fixed_tokens=100, window=1000, summary_tokens=50)
    assert plan is not None
    # the least that brings the prompt to 50%: 100 fixed + 50 summary + kept <= 500 -> keep 3 messages at most,
    # cut before a user message -> keep the last 2 (m8, m9)
    assert [t.id for t in plan.keep] == ["m8", "m9"]
    assert plan.covers == tuple(f"m{i}" for i in range(8))
    assert plan.keep[0].role == "user"
    assert plan.prompt_tokens == 1100 and plan.expected_tokens == 100 + 50 + 200


def test_the_latest_exchange_is_never_compacted() -> None:
    history = turns(4, size=400)  # every message is huge: compact as much as allowed
    plan = plan_compaction(history, fixed_tokens=0, window=1000, summary_tokens=50, keep_last=2)
    assert plan is not None and [t.id for t in plan.keep] == ["m2", "m3"]


def test_the_cut_falls_before_a_user_message() -> None:
    history = [Turn("u0", "user", "", 300), Turn("a0", "assistant", "", 300), Turn("a0b", "assistant", "", 300),
               Turn("u1", "user", "", 10), Turn("a1", "assistant", "", 10)]  # fmt: skip
    plan = plan_compaction(history, fixed_tokens=0, window=1000, summary_tokens=20)
    assert plan is not None and plan.keep[0].id == "u1"


def test_an_earlier_summary_is_folded_into_the_new_one() -> None:
    earlier = Turn("s1", "system", "summary", 80, kind=SUMMARY, covers=("m0", "m1", "m2", "m3"))
    history = [earlier, *turns(10)[4:]]  # the summary, then m4..m9
    plan = plan_compaction(history, fixed_tokens=300, window=1000, summary_tokens=80)
    assert plan is not None
    assert plan.covers[0] == "s1" and "m4" in plan.covers  # the earlier summary is covered too


def test_nothing_to_gain_is_no_plan() -> None:
    # Only a summary and the latest exchange: compacting would summarise the summary alone.
    summary = Turn("s1", "system", "summary", 500, kind=SUMMARY, covers=("m0",))
    history = [summary, *turns(2, size=200)]
    assert plan_compaction(history, fixed_tokens=0, window=1000, summary_tokens=50) is None
    # Too short a history to cut anywhere
    assert plan_compaction(turns(2, size=600), fixed_tokens=0, window=1000, summary_tokens=50) is None


def test_apply_summaries_puts_the_summary_in_place_of_what_came_before_it() -> None:
    history = turns(6)
    summary = Turn("s1", "system", "summary", 50, kind=SUMMARY, covers=("m0", "m1", "m2", "m3"))
    shown = apply_summaries([*history[:4], summary, *history[4:]])
    assert [t.id for t in shown] == ["s1", "m4", "m5"]
    # the latest summary wins (it folded the earlier one in)
    later = Turn("s2", "system", "summary", 50, kind=SUMMARY, covers=("m0", "m1", "m2", "m3", "s1", "m4", "m5"))
    assert [t.id for t in apply_summaries([*history[:4], summary, *history[4:], later])] == ["s2"]
    # by position: a summary whose ids were renamed (an imported session) still stands for what precedes it
    renamed = Turn("x1", "system", "summary", 50, kind=SUMMARY, covers=("old-1", "old-2"))
    assert [t.id for t in apply_summaries([*history[:4], renamed, *history[4:]])] == ["x1", "m4", "m5"]
    assert apply_summaries(history) == history


def test_compacted_messages_carry_the_summary_in_the_first_user_message() -> None:
    kept = [{"id": "m4", "role": "user", "content": "Q"}, {"id": "m5", "role": "assistant", "content": "A"}]
    messages = Compacted(kept=kept, summary="earlier: the user is called Ada").messages()
    assert messages[0]["role"] == "user" and messages[0]["content"].startswith(SUMMARY_PREFIX)
    assert "the user is called Ada" in messages[0]["content"] and messages[0]["content"].endswith("Q")
    assert messages[1] == {"role": "assistant", "content": "A"}
    assert Compacted(kept=kept).messages() == [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    assert Compacted(kept=[], summary="s").messages() == [{"role": "user", "content": SUMMARY_PREFIX + "s"}]


def test_the_prompts_history_keeps_the_buffer_and_a_summary() -> None:
    rows: list[dict[str, Any]] = [{"id": f"m{i}", "role": "user" if i % 2 == 0 else "assistant", "content": f"t{i}", "metadata": {},
             "status": "complete"} for i in range(8)]  # fmt: skip
    summary: dict[str, Any] = {"id": "s", "role": "system", "content": "sum", "metadata": {"kind": SUMMARY, "covers": ["m0"]},
               "status": "complete"}  # fmt: skip
    failed: dict[str, Any] = {"id": "e", "role": "assistant", "content": "", "metadata": {}, "status": "error"}
    path = [*rows[:4], summary, *rows[4:], failed]
    assert [r["id"] for r in chat_rows(path, 2)] == ["s", "m6", "m7"]
    assert [r["id"] for r in chat_rows(path, 0)] == ["s"]
    assert [r["id"] for r in chat_rows(rows, 3)] == ["m5", "m6", "m7"]


# --- tokens -----------------------------------------------------------------------------------------------------


def test_counts_are_conservative_and_truncation_fits() -> None:
    text = "Compaction keeps the conversation within the context window. " * 50
    raw = len(encoding(tokens.ENCODING).encode_ordinary(text))
    assert tokens.count(text) >= raw * tokens.MARGIN
    cut = tokens.truncate(text, 100)
    assert tokens.count(cut) <= 100 and text.startswith(cut) and len(cut) > 100
    assert tokens.truncate("short", 100) == "short" and tokens.truncate("x", 0) == ""
    # a cut never splits a character
    assert "\ufffd" not in tokens.truncate("当对话接近模型的上下文窗口时" * 40, 37)


# --- map-reduce ---------------------------------------------------------------------------------------------------

PROMPTS = map_reduce.Prompts(whole="Summarise:\n{text}", map="Summarise part {part} of {parts}:\n{text}",
                             reduce="Combine:\n{text}")  # fmt: skip


def long_text(paragraphs: int) -> str:
    return "\n\n".join(f"Paragraph {i}: " + "the quick brown fox jumps over the lazy dog. " * 12
                       for i in range(paragraphs))  # fmt: skip


async def test_map_reduce_never_overflows_the_window_and_ends_with_one_summary() -> None:
    budget = map_reduce.budget_for(512, 200)
    assert budget.output_tokens == 102  # a fifth of the window at most
    text = long_text(40)
    pieces = map_reduce.plan(text, budget, PROMPTS, max_requests=100)
    assert len(pieces) > 3
    assert "".join(pieces).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")
    asked: list[tuple[str, int]] = []

    async def ask(prompt: str, max_tokens: int) -> str:
        asked.append((prompt, max_tokens))
        assert tokens.count_messages([{"role": "user", "content": prompt}]) + max_tokens <= budget.window
        return "a summary " * 60  # as long as allowed, counted high: the reduce must still converge

    events = [e async for e in map_reduce.run(pieces, budget, PROMPTS, ask)]
    progress = [e for e in events if isinstance(e, map_reduce.Progress)]
    assert [(p.step, p.of) for p in progress if p.stage == "map"] == [
        (i, len(pieces)) for i in range(1, len(pieces) + 1)
    ]
    assert any(p.stage == "reduce" for p in progress)
    final = events[-1]
    assert isinstance(final, map_reduce.Summary) and final.requests == len(asked)
    assert len(asked) < 2 * len(pieces)


async def test_a_short_text_is_one_request() -> None:
    budget = map_reduce.budget_for(4096, 256)
    pieces = map_reduce.plan("A short note.", budget, PROMPTS, max_requests=5)
    assert pieces == ["A short note."]

    async def ask(prompt: str, max_tokens: int) -> str:
        assert prompt == "Summarise:\nA short note." and max_tokens == 256
        return " Short. "

    events = [e async for e in map_reduce.run(pieces, budget, PROMPTS, ask)]
    assert events[-1] == map_reduce.Summary("Short.", 1)


async def test_an_empty_summary_is_an_upstream_error() -> None:
    budget = map_reduce.budget_for(4096, 256)

    async def ask(prompt: str, max_tokens: int) -> str:
        return "  "

    with pytest.raises(UpstreamError, match="empty summary"):
        _ = [e async for e in map_reduce.run(["text"], budget, PROMPTS, ask)]


def test_limits_are_refused_with_the_reason() -> None:
    with pytest.raises(BadRequest, match="too small"):
        map_reduce.budget_for(60, 10)
    with pytest.raises(BadRequest, match="over the limit of 2"):
        map_reduce.plan(long_text(40), map_reduce.budget_for(512, 100), PROMPTS, max_requests=2)
    with pytest.raises(BadRequest, match="no text"):
        map_reduce.plan("  \n ", map_reduce.budget_for(512, 100), PROMPTS, max_requests=2)


async def test_token_counts_are_remembered_per_message() -> None:
    counts = TokenCounts(size=2)
    a, b = Turn("a", "user", "hello there", 0), Turn("b", "assistant", "general kenobi", 0)
    first = await counts.of([a, b])
    assert first == [tokens.count_message({"content": a.content}), tokens.count_message({"content": b.content})]
    assert await counts.of([a, b]) == first
    grown = Turn("b", "assistant", "general kenobi, you are a bold one", 0)  # an answer still streaming grows
    assert (await counts.of([grown]))[0] > first[1]
    assert len(counts._known) == 2  # bounded
