"""One chat turn: build the prompt -> call the model through the gateway -> persist, streamed to the client as SSE.

Steps, each a method of ``ChatTurns`` so what others build slots in:
1. ``plan`` builds the prompt (backend/chat/turn_plan.py): the question (new, or the one being answered again), the persona and directives
   (``resolve_system_prompt``: the one place a persona, prompt templates or an assistant stack are resolved,
   backend/chat/personas.py), the history buffer (the last N messages of the branch), the model arguments and RAG.
   ``build_messages`` joins the session's documents and compacts the history (backend/chat/prompt_context.py).
2. ``start`` persists the question and calls the gateway as the caller (``GatewayClient``: the same access checks,
   limits, request-field allowlist and metering as ``/v1``), and waits for the first event: an error before it is
   an ordinary JSON error (4xx/5xx) and the question is taken back, so a refused turn leaves nothing behind.
3. A task of its own reads the rest of the stream (``_pump``, backend/chat/turn_stream.py), hands each chunk to the client's queue and the text
   to the ``AnswerWriter`` (backend/chat/answer_writer.py), which saves it off the hot path. The MCP tool loop
   wraps this step.

The client's stream (``RunningTurn.events``), in order::

    event: user_message        {"id", "parent_id", "session_id"}
    event: assistant_message   {"id", "parent_id"}
    event: context             {"notices"}                   documents cut or left out to fit the window
    event: compaction          {"message"} or {"notice"}     the history was just summarised (or could not be)
    data: {chat.completion.chunk} ...   OpenAI's chunk deltas, as the gateway sends them
    event: sources             {"sources": [...]}            with RAG
    event: tool_approval       {"call_id", "name", "server_id", "tool", "arguments", "timeout_seconds"}  safe mode
    event: tool_call           {"id", "name", "server_id", "tool", "arguments"}   a tool call runs
    event: tool_result         {"id", "name", "result", "is_error", "approved", "duration_ms"}
    data: {chat.completion.chunk} ...   the next answer, with the results (backend/chat/tool_loop.py)
    event: tool_limit          {"detail"}                    the model asked for tools past the turn's limit
    event: error               {"detail", "status", "retry_after"?}  the call failed mid-answer (429: when to retry)
    event: usage               {"prompt_tokens", "completion_tokens", "total_tokens", "latency_ms", "ttft_ms"}
    event: done                {"assistant_message_id", "status"}
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, cast

from backend.auth.principal import Principal
from backend.chat.answer_writer import AnswerWriter
from backend.chat.personas import Personas
from backend.chat.prompt_context import PromptContexts
from backend.chat.recent_contexts import RecentContexts, StaleContext, speculating
from backend.chat.schemas import ChatTurn
from backend.chat.store import ChatStore
from backend.chat.tool_loop import ToolLoop
from backend.chat.turn_plan import DIRECTIVE_SEPARATOR, TurnPlan, TurnPlanning
from backend.chat.turn_sql import TurnContext, TurnDatabase
from backend.chat.turn_stream import Answer, RunningTurn, TurnStreaming, sse
from backend.errors import NotFound, RateLimited
from backend.serve.internal import GatewayCallError, GatewayClient

__all__ = ["DIRECTIVE_SEPARATOR", "Answer", "ChatTurns", "RunningTurn", "TurnPlan", "sse"]


@dataclass(frozen=True)
class Prefetch:
    """A revision check started early for (owner, session), with the remembered context it checks."""

    owner: str
    session_id: str
    known: TurnContext
    reading: asyncio.Task[TurnContext | None]


class ChatTurns(TurnPlanning, TurnStreaming):
    def __init__(
        self,
        store: ChatStore,
        db: TurnDatabase,
        gateway: GatewayClient,
        *,
        history_buffer: int,
        flush_seconds: float,
        default_model: Callable[[], str | None],
        context: PromptContexts,
        personas: Personas,
        tools: ToolLoop | None = None,
    ) -> None:
        self.context = context
        self.personas = personas
        self.store = store
        self.db = db
        self.gateway = gateway
        self.history_buffer = history_buffer
        self.flush_seconds = flush_seconds
        self.default_model = default_model
        self.tools = tools
        self._running: set[asyncio.Task[None]] = set()
        self.recent = RecentContexts()

    # --- 2. persist the question, call -------------------------------------------------------------------------
    def prefetch(self, owner: str, session_id: str) -> Prefetch | None:
        """The revision check of a remembered context, started before the request's body is read (the chat
        endpoint's fast path, backend/api/chat_asgi.py); ``start`` uses it for a turn on the active leaf."""
        known = self.recent.get(owner, session_id)
        if known is None:
            return None
        return Prefetch(owner, session_id, known, self.db.read(owner, session_id, None, False, known.revision))

    async def start(
        self, principal: Principal, session_id: str, turn: ChatTurn, prefetched: Prefetch | None = None
    ) -> RunningTurn:
        running = RunningTurn()
        owner = principal.username
        known: TurnContext | None = None
        if turn.has_parent:
            reading = self.db.read(owner, session_id, turn.parent_id, True)
        elif prefetched is not None and (prefetched.owner, prefetched.session_id) == (owner, session_id):
            known, reading = prefetched.known, prefetched.reading
        else:
            known = self.recent.get(owner, session_id)
            reading = self.db.read(owner, session_id, None, False, known.revision if known else None)
        await asyncio.sleep(0)  # the read's statement is sent before the prompt is built
        plan = await self._plan_ahead(principal, session_id, turn, known, reading) if known else None
        context = await reading
        if context is None:
            self.recent.drop(owner, session_id)
            raise NotFound(f"session '{session_id}' not found")
        if context.unchanged and known is not None:
            context = known
        else:  # read whole: the session changed since it was remembered (or nothing was)
            plan = None
            self.recent.drop(owner, session_id)
        if plan is None:
            plan = await self.plan(principal, session_id, turn, context.session, context.path)
        tooling, settings = None, context.session["settings"]
        if self.tools is not None and (turn.tools if turn.tools is not None else settings.get("mcp_tools")):
            tooling = await self.tools.prepare(principal, session_id, turn.tools, turn.tool_mode, settings,
                                               plan.payload)  # fmt: skip
        answer = Answer(started=time.perf_counter())
        stream = cast(  # an async generator (closed when the turn ends)
            AsyncGenerator[dict[str, Any], None],
            self.gateway.stream(principal, "chat/completions", plan.payload, running.cancelled),
        )
        saving = None
        if (q := plan.question) is not None:
            saving = asyncio.create_task(self.db.add_question(plan.session_id, q["id"], q["parent_id"], q["content"]))
        try:  # the question is written while the call goes out; both must succeed before anything is shown
            first: dict[str, Any] | None = await anext(stream, None)
            if saving is not None:
                await saving
        except BaseException as exc:
            running.cancelled.set()
            with contextlib.suppress(Exception):
                await stream.aclose()
            await self._take_back(plan, saving)
            if isinstance(exc, GatewayCallError) and exc.status_code == 429:
                raise RateLimited(exc.message, exc.retry_after or 1.0) from exc
            raise
        writer = AnswerWriter(
            self.store, plan.session_id, plan.assistant_id, plan.question_id, self.flush_seconds, running.delivered
        )
        head = sse("user_message", {"id": plan.question_id, "parent_id": self._question_parent(plan),
                                    "session_id": plan.session_id})  # fmt: skip
        head += sse("assistant_message", {"id": plan.assistant_id, "parent_id": plan.question_id})
        running.put(head + b"".join(sse(event, data) for event, data in plan.events))
        task = asyncio.create_task(self._pump(plan, stream, first, answer, writer, running, tooling))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return running

    async def _plan_ahead(
        self,
        principal: Principal,
        session_id: str,
        turn: ChatTurn,
        known: TurnContext,
        reading: asyncio.Task[TurnContext | None],
    ) -> TurnPlan | None:
        """The prompt built from the remembered context while the read confirms it (backend/chat/recent_contexts.py);
        None when it cannot be used (the read found the session changed) and the turn builds it again."""

        async def confirm() -> None:
            context = await asyncio.shield(reading)
            if context is None or not context.unchanged:
                raise StaleContext

        try:
            with speculating(confirm):
                return await self.plan(principal, session_id, turn, known.session, known.path)
        except StaleContext:
            return None
        except Exception:
            try:
                context = await asyncio.shield(reading)
            except Exception:
                return None  # the read's own failure is raised where the turn awaits it
            if context is not None and context.unchanged:
                raise  # built from the session as it is: the error is the turn's
            return None

    async def _remember(self, plan: TurnPlan) -> None:
        """After an answer is saved: the session as the next turn will find it, read whole and remembered."""
        try:
            context = await self.db.read(plan.owner, plan.session_id, None, False)
        except Exception:
            self.recent.drop(plan.owner, plan.session_id)
            return
        if context is None:
            self.recent.drop(plan.owner, plan.session_id)
        else:
            self.recent.put(plan.owner, plan.session_id, context)

    def _question_parent(self, plan: TurnPlan) -> str | None:
        return plan.question["parent_id"] if plan.question else None

    async def _take_back(self, plan: TurnPlan, saving: asyncio.Task[None] | None) -> None:
        """The call failed before it began: the question just written is removed (the turn leaves nothing)."""
        if saving is None:
            return
        try:
            await saving
        except Exception:
            return  # never written
        with contextlib.suppress(Exception):
            await self.store.remove_message(plan.session_id, plan.question_id, plan.previous_leaf)

    async def start_pool(self) -> None:
        await self.db.start()

    async def stop(self) -> None:
        """At shutdown: running turns stop and save what they have (``incomplete``); then the pool closes."""
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await self.db.stop()
