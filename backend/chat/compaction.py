"""Compaction: the step the chat runs before each turn, so a long conversation keeps its older turns as a summary
instead of losing them (or overflowing the context window).

``Compactor.compact`` takes the branch the prompt will carry and, when the prompt would pass 75% of the model's
context window (backend/chat/compaction_plan.py decides what goes), has the oldest turns summarised — by the chat's
own model, or ``chat_summary_model`` when the caller may use it — through the gateway as the caller
(backend/chat/map_reduce.py: a long history is summarised in pieces, no request over the summarising model's
window). The summary is kept as a message of the session (role ``system``, metadata ``{"kind": "summary",
"covers": [ids], ...}``) inserted into the branch just above the first turn kept, so the branch shows it where it
took effect and later turns' paths carry it; nothing is deleted, and a branch that leaves the conversation before
that point (editing an older question) is not affected. Later prompts use the summary in place of what it covers.

Most turns cost nothing here: a bound from the text's byte length (a token is at least a byte) settles that a
prompt is well within the window without counting any tokens.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.principal import Principal, can_access
from backend.chat import map_reduce, tokens
from backend.chat.compaction_plan import SUMMARY, CompactionPlan, Turn, apply_summaries, plan_compaction
from backend.chat.context_docs import context_window
from backend.chat.context_schemas import CompactionResult
from backend.chat.recent_contexts import confirm_context
from backend.chat.store import ChatStore, new_id
from backend.chat.summarize import gateway_asker
from backend.db import tables
from backend.errors import BadRequest, LisaError, NotFound
from backend.registry.route_table import RouteTable
from backend.registry.schemas import ModelRoute, ModelType
from backend.serve.internal import GatewayClient

M = tables.chat_messages
SUMMARY_PREFIX = "Summary of the earlier conversation (its older messages were summarised to fit the context window):\n"
KEEP_LAST = 2  # messages before the new question never compacted: the latest exchange
CONVERSATION_PROMPTS = map_reduce.Prompts(
    whole=(
        "Summarise the conversation below so that it can be continued from the summary alone. Keep the facts, "
        "names, numbers, decisions, what the user asked for and any open questions.\n\nConversation:\n{text}\n\n"
        "Summary:"
    ),
    map=(
        "Below is part {part} of {parts} of a conversation. Summarise it so that the conversation can be continued "
        "from the summary: keep the facts, names, numbers, decisions and requests.\n\n{text}\n\nSummary:"
    ),
    reduce=(
        "Below are summaries of consecutive parts of one conversation. Combine them into one summary from which "
        "the conversation can be continued.\n\n{text}\n\nSummary:"
    ),
)


@dataclass(frozen=True)
class Compacted:
    """What the prompt carries of the branch: ``summary`` (if any) standing for the older turns, then ``kept``."""

    kept: Sequence[Mapping[Any, Any]]  # the branch's messages sent as they are, oldest first (rows as given)
    summary: str | None = None  # the text standing for the older turns
    summary_message: dict[str, Any] | None = None  # the summary made by this call (for the stream), else None
    notice: str | None = None  # why an older part could not be summarised (the turn still goes ahead)
    prompt_tokens: int | None = field(default=None)  # counted, when counting was needed

    def messages(self) -> list[dict[str, Any]]:
        """role/content messages for a chat request: the summary goes at the head of the first kept message (a
        user message), so chat templates that drop system messages or need alternating roles still carry it."""
        out = [{"role": str(m["role"]), "content": str(m["content"])} for m in self.kept]
        if self.summary:
            head = SUMMARY_PREFIX + self.summary + "\n\n---\n\n"
            if out and out[0]["role"] == "user":
                out[0]["content"] = head + out[0]["content"]
            else:
                out.insert(0, {"role": "user", "content": SUMMARY_PREFIX + self.summary})
        return out


def is_summary(row: Mapping[Any, Any]) -> bool:
    meta = row.get("metadata")
    return isinstance(meta, Mapping) and meta.get("kind") == SUMMARY


def from_last_summary(path: Sequence[Mapping[Any, Any]]) -> Sequence[Mapping[Any, Any]]:
    """``apply_summaries`` on rows: the branch from its latest summary on (all of it without one)."""
    for index in range(len(path) - 1, -1, -1):
        if is_summary(path[index]):
            return path[index:]
    return path


def as_turn(row: Mapping[Any, Any], counted: int) -> Turn:
    meta = row.get("metadata") or {}
    kind = SUMMARY if isinstance(meta, Mapping) and meta.get("kind") == SUMMARY else "message"
    covers = tuple(str(c) for c in meta.get("covers", ())) if kind == SUMMARY else ()
    return Turn(str(row["id"]), str(row["role"]), str(row["content"]), counted, kind, covers)


def transcript(turns: Sequence[Turn]) -> str:
    lines = []
    for turn in turns:
        who = "Summary of what came before" if turn.kind == SUMMARY else turn.role.capitalize()
        lines.append(f"{who}: {turn.content}")
    return "\n\n".join(lines)


class TokenCounts:
    """Token counts of messages counted before, so a long conversation's turn counts only its new messages. A
    message's text does not change once written, except an answer's while it streams: the key holds its length."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._known: OrderedDict[tuple[str, int], int] = OrderedDict()

    async def of(self, turns: Sequence[Turn]) -> list[int]:
        keys = [(t.id, len(t.content)) for t in turns]
        missing = {key: turn.content for key, turn in zip(keys, turns, strict=True) if key not in self._known}
        if missing:
            chars = sum(len(text) for text in missing.values())

            def count() -> dict[tuple[str, int], int]:
                return {key: tokens.count_message({"content": text}) for key, text in missing.items()}

            found = await asyncio.to_thread(count) if chars > tokens.OFF_LOOP_CHARS else count()
            self._known.update(found)
        for key in keys:
            self._known.move_to_end(key)
        counts = [self._known[key] for key in keys]
        while len(self._known) > self.size:  # the least recently used go
            self._known.popitem(last=False)
        return counts


class Compactor:
    def __init__(
        self,
        engine: AsyncEngine,
        store: ChatStore,
        routes: RouteTable,
        client: GatewayClient,
        *,
        default_window: int,
        threshold: float,
        target: float,
        summary_model: str,
        summary_max_tokens: int,
        max_requests: int,
    ) -> None:
        self.engine = engine
        self.store = store
        self.routes = routes
        self.client = client
        self.default_window = default_window
        self.threshold = threshold
        self.target = target
        self.summary_model = summary_model
        self.summary_max_tokens = summary_max_tokens
        self.max_requests = max_requests
        self._counts = TokenCounts()

    async def compact(
        self,
        principal: Principal,
        route: ModelRoute,
        session_id: str,
        path: Sequence[Mapping[Any, Any]],
        fixed_tokens: int,
        *,
        force: bool = False,
    ) -> Compacted:
        """The branch's history for the prompt (``path``: chat_messages rows, oldest first, without the new
        question), compacting it first when it nears the window. ``fixed_tokens``: the rest of the prompt (system
        prompt, documents, the question). ``force`` compacts down to the target even below the threshold."""
        window = context_window(route, self.default_window)
        threshold = 0.0 if force else self.threshold
        bound = fixed_tokens + sum(
            math.ceil(len(str(r["content"]).encode("utf-8", "replace")) * tokens.MARGIN) + tokens.MESSAGE_FRAMING
            for r in path
        )
        if bound <= threshold * window:  # far from the window (most turns): the rows as they are, nothing counted
            shown = from_last_summary(path)
            summary = str(shown[0]["content"]) if shown and is_summary(shown[0]) else None
            return Compacted(kept=[r for r in shown if not is_summary(r)], summary=summary)
        by_id = {str(row["id"]): row for row in path}
        visible = apply_summaries([as_turn(r, 0) for r in path])
        counts = await self._counts.of(visible)
        history = [Turn(t.id, t.role, t.content, n, t.kind, t.covers) for t, n in zip(visible, counts, strict=True)]
        summarizer = await self._summarizer(principal, route)
        total = fixed_tokens + sum(counts)
        try:
            budget = map_reduce.budget_for(context_window(summarizer, self.default_window), self.summary_max_tokens)
        except BadRequest as exc:  # a window too small to summarise with: the turn goes ahead as it is
            return _as_is(history, by_id, total, exc.message)
        summary_tokens = math.ceil(budget.output_tokens * tokens.MARGIN * 1.25) + tokens.count(SUMMARY_PREFIX)
        plan = plan_compaction(
            history, fixed_tokens=fixed_tokens, window=window, summary_tokens=summary_tokens,
            threshold=threshold, target=self.target, keep_last=KEEP_LAST,
        )  # fmt: skip
        if plan is None:
            return _as_is(history, by_id, total)
        await confirm_context()  # a turn building from a remembered context: confirmed before a model call or a write
        try:
            text, requests = await self._summarise(principal, summarizer.id, plan, budget)
            message = await self._keep(session_id, plan, text, summarizer.id, requests)
        except LisaError as exc:  # the turn goes ahead uncompacted; the reason is told
            return _as_is(history, by_id, total, exc.message)
        return Compacted(
            kept=[by_id[t.id] for t in plan.keep], summary=text, summary_message=message,
            prompt_tokens=plan.expected_tokens,
        )  # fmt: skip

    async def compact_session(
        self, principal: Principal, session_id: str, model: str | None, *, force: bool = False
    ) -> CompactionResult:
        """Compaction of a session's active branch on request (``POST /api/sessions/{id}/compact``), as a turn
        would run it; the system prompt counts as the rest of the prompt."""
        session, path = await self.store.turn_context(principal.username, session_id, None, explicit=False)
        model_id = model or session["model"]
        if not model_id:
            raise BadRequest("name a model: the session has no model of its own", "model")
        route = await self.routes.get(model_id)
        if route is None or not can_access(principal, route.allowed_groups):
            raise NotFound(f"model '{model_id}' not found")
        if route.type != ModelType.textgen:
            raise BadRequest(f"model '{model_id}' is an {route.type} model: compaction needs a textgen model", "model")
        system_prompt = (session["settings"] or {}).get("system_prompt") or ""
        fixed = tokens.REPLY_PRIMING + (tokens.count_message({"content": system_prompt}) if system_prompt else 0)
        done = await self.compact(principal, route, session_id, path, fixed, force=force)
        made = done.summary_message
        return CompactionResult(
            compacted=made is not None, message_id=made["id"] if made else None,
            covers=made["metadata"]["covers"] if made else [], summary=done.summary,
            prompt_tokens=done.prompt_tokens, notice=done.notice,
        )  # fmt: skip

    async def _summarizer(self, principal: Principal, route: ModelRoute) -> ModelRoute:
        """The configured summarising model where the caller may use it (and it is a running textgen model), else
        the chat's own."""
        if self.summary_model and self.summary_model != route.id:
            other = await self.routes.get(self.summary_model)
            if (
                other is not None
                and other.type == ModelType.textgen
                and other.serving
                and can_access(principal, other.allowed_groups)
            ):
                return other
        return route

    async def _summarise(
        self, principal: Principal, model: str, plan: CompactionPlan, budget: map_reduce.Budget
    ) -> tuple[str, int]:
        text = transcript(plan.compact)
        pieces = await asyncio.to_thread(map_reduce.plan, text, budget, CONVERSATION_PROMPTS, self.max_requests)
        ask = gateway_asker(self.client, principal, model)
        async for event in map_reduce.run(pieces, budget, CONVERSATION_PROMPTS, ask):
            if isinstance(event, map_reduce.Summary):
                return event.text, event.requests
        raise AssertionError("map_reduce.run ends with a Summary")

    async def _keep(
        self, session_id: str, plan: CompactionPlan, text: str, model: str, requests: int
    ) -> dict[str, Any]:
        """Inserts the summary into the branch just above the first kept message, in one transaction. Its
        ``created_at`` is a microsecond before that message's, so ordering a session's messages by time still puts
        every parent before its children (exports rely on it); when it was made is ``metadata.compacted_at``."""
        first_kept = plan.keep[0].id
        now = datetime.now(UTC)
        summary_id = new_id("msg")
        metadata = {"kind": SUMMARY, "covers": list(plan.covers), "model": model, "requests": requests,
                    "tokens_before": plan.prompt_tokens, "tokens_after": plan.expected_tokens,
                    "compacted_at": now.isoformat()}  # fmt: skip
        async with self.engine.begin() as conn:
            query = sa.select(M.c.parent_id, M.c.created_at).where(M.c.id == first_kept, M.c.session_id == session_id)
            kept = (await conn.execute(query)).one()
            created = kept.created_at - timedelta(microseconds=1)
            values = {"id": summary_id, "session_id": session_id, "parent_id": kept.parent_id, "role": "system",
                      "content": text, "metadata": metadata, "created_at": created, "updated_at": now}  # fmt: skip
            await conn.execute(M.insert().values(**values))
            await conn.execute(M.update().where(M.c.id == first_kept).values(parent_id=summary_id))
        return {**values, "created_at": created.isoformat(), "updated_at": now.isoformat()}


def _as_is(
    history: Sequence[Turn], by_id: Mapping[str, Mapping[Any, Any]], counted: int | None, failure: str | None = None
) -> Compacted:
    """The history uncompacted (an earlier summary heading it still in place of what it covers)."""
    return Compacted(
        kept=[by_id[t.id] for t in history if t.kind != SUMMARY], summary=_summary_of(history),
        notice=f"the older part of the conversation could not be summarised: {failure}" if failure else None,
        prompt_tokens=counted,
    )  # fmt: skip


def _summary_of(history: Sequence[Turn]) -> str | None:
    """The text of the summary heading a history (one made earlier), if any."""
    return history[0].content if history and history[0].kind == SUMMARY else None
