"""One chat turn: build the prompt -> call the model through the gateway -> persist, streamed to the client as SSE.

Steps, each a method so what others build slots in:
1. ``plan`` builds the prompt: the question (new, or the one being answered again), the persona and directives
   (``resolve_system_prompt``: the one place a persona, prompt templates or an assistant stack are resolved,
   backend/chat/personas.py), the history buffer (the last N messages of the branch), the model arguments and RAG.
   ``build_messages`` joins the session's documents and compacts the history (backend/chat/prompt_context.py).
2. ``start`` persists the question and calls the gateway as the caller (``GatewayClient``: the same access checks,
   limits, request-field allowlist and metering as ``/v1``), and waits for the first event: an error before it is
   an ordinary JSON error (4xx/5xx) and the question is taken back, so a refused turn leaves nothing behind.
3. A task of its own reads the rest of the stream (``_pump``), hands each chunk to the client's queue and the text
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
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from backend.auth.principal import Principal
from backend.chat.answer_writer import AnswerWriter, FinalState
from backend.chat.personas import Personas
from backend.chat.prompt_context import PromptContext, PromptContexts
from backend.chat.schemas import ChatTurn
from backend.chat.store import ChatStore, new_id
from backend.chat.tool_loop import ToolLoop, ToolRound
from backend.chat.turn_sql import TurnDatabase, add_question
from backend.errors import BadRequest, NotFound, RateLimited
from backend.serve.internal import GatewayCallError, GatewayClient

log = logging.getLogger(__name__)
DIRECTIVE_SEPARATOR = "\n\n"  # between the question and each directive added to it


def sse(event: str | None, data: Any) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


@dataclass
class TurnPlan:
    """What one turn sends and saves."""

    session_id: str
    question_id: str
    question: dict[str, Any] | None  # the new user message's values; None: regenerating an answer to question_id
    previous_leaf: str | None
    assistant_id: str
    payload: dict[str, Any]
    metadata: dict[str, Any]  # of the answer: model, arguments, rag (usage, latency and sources added at the end)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # SSE before the answer (context notices)


@dataclass
class Answer:
    """What arrived of the answer, beyond its text."""

    started: float
    ttft_ms: float | None = None
    usage: dict[str, int] | None = None
    sources: list[Any] | None = None
    finish_reason: str | None = None
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    chunks: int = 0
    round_text: list[str] = field(default_factory=list)  # this model call's text (the tool loop sends it back)


class RunningTurn:
    """The client's side of a running turn: a queue of SSE bytes, the switch a disconnect flips, and the signal
    that the first token went out (the answer's first write waits for it, so that it never delays the token)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.cancelled = asyncio.Event()  # given to the gateway: set, it closes the upstream call
        self.left = False  # the client went away before the end
        self.delivered = asyncio.Event()  # the first token was handed to the server to send (or never will be)
        self._queued = 0
        self._token_item: int | None = None  # which item of the queue holds the first token

    def put(self, item: bytes | None, *, token: bool = False) -> None:
        if token and self._token_item is None:
            self._token_item = self._queued
        self._queued += 1
        self.queue.put_nowait(item)

    async def events(self) -> AsyncIterator[bytes]:
        item: bytes | None = b""
        sent = 0
        try:
            while (item := await self.queue.get()) is not None:
                yield item  # resumed once the server has taken it: then the first token is out
                if self._token_item is not None and sent >= self._token_item:
                    self.delivered.set()
                sent += 1
        finally:  # reached without the end: the client left; the turn stops and saves what it has, on its own task
            self.delivered.set()
            if item is not None:
                self.left = True
                self.cancelled.set()


class ChatTurns:
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

    # --- 1. build the prompt -----------------------------------------------------------------------------------
    async def resolve_system_prompt(
        self, principal: Principal, settings: Mapping[Any, Any], turn: ChatTurn
    ) -> tuple[str | None, list[str]]:
        """The persona of this turn (the turn's own template or system prompt, else the session's, an assistant's
        among them) and the directive texts added to the question (backend/chat/personas.py)."""
        return await self.personas.resolve(principal, settings, turn)

    async def build_messages(
        self,
        principal: Principal,
        session: Mapping[Any, Any],
        model: str,
        system_prompt: str | None,
        earlier: list[dict[str, Any]],
        question: str,
        buffer: int,
    ) -> PromptContext:
        """The messages sent to the model: the persona, the history (compacted near the context window), the
        session's documents and the question (a session without documents costs no query)."""
        return await self.context.prepare(principal, session, model, system_prompt, earlier, question, buffer)

    async def plan(
        self,
        principal: Principal,
        session_id: str,
        turn: ChatTurn,
        session: Mapping[Any, Any],
        path: list[dict[str, Any]],
    ) -> TurnPlan:
        """The turn's prompt and what it saves, from the session and the path to where the turn goes."""
        settings = session["settings"]
        parent_id = turn.parent_id if turn.has_parent else session["active_leaf_id"]
        if parent_id is not None and not path:
            raise NotFound(f"message '{parent_id}' not found in session '{session_id}'")
        if turn.content is None:  # regenerate the answer to parent_id
            if path[-1]["role"] != "user":
                raise BadRequest("to regenerate, 'parent_id' must name a user message (the question)", "parent_id")
            question_id, question, text, earlier = str(path[-1]["id"]), None, str(path[-1]["content"]), path[:-1]
        else:
            question_id, text, earlier = new_id("msg"), turn.content, path
            question = {"id": question_id, "parent_id": parent_id, "role": "user", "content": text}
        model = turn.model or session["model"] or self.default_model()
        if not model:
            raise BadRequest("no model: name one in the message or the session", "model")
        arguments = {
            **settings.get("arguments", {}),
            **(turn.arguments.model_dump(exclude_none=True) if turn.arguments else {}),
        }
        buffer = next(
            b for b in (turn.history_buffer, settings.get("history_buffer"), self.history_buffer) if b is not None
        )
        system_prompt, directives = await self.resolve_system_prompt(principal, settings, turn)
        asked = DIRECTIVE_SEPARATOR.join([text, *directives])
        ctx = await self.build_messages(principal, {**session, "id": session_id}, model, system_prompt, earlier,
                                        asked, buffer)  # fmt: skip
        payload: dict[str, Any] = {"model": model, "messages": ctx.messages, **arguments}
        payload["stream_options"] = {"include_usage": True}
        rag = turn.rag.model_dump(exclude_none=True) if turn.rag else settings.get("rag")
        if rag:
            payload["rag"] = rag
        metadata: dict[str, Any] = {"model": model, "arguments": arguments}
        if rag:
            metadata["rag"] = rag
        metadata.update(ctx.metadata)
        return TurnPlan(session_id, question_id, question, session["active_leaf_id"], new_id("msg"), payload, metadata,
                        ctx.events)  # fmt: skip

    # --- 2. persist the question, call -------------------------------------------------------------------------
    async def start(self, principal: Principal, session_id: str, turn: ChatTurn) -> RunningTurn:
        running = RunningTurn()
        where = self.db.context(principal.username, session_id, turn.parent_id, turn.has_parent)
        async with where as (db, context):  # one connection: the context, then the question
            if context is None:
                raise NotFound(f"session '{session_id}' not found")
            plan = await self.plan(principal, session_id, turn, *context)
            tooling, settings = None, context[0]["settings"]
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
                saving = asyncio.create_task(add_question(db, plan.session_id, q["id"], q["parent_id"], q["content"]))
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

    # --- 3. stream and persist ---------------------------------------------------------------------------------
    async def _pump(
        self,
        plan: TurnPlan,
        stream: AsyncGenerator[dict[str, Any], None],
        first: dict[str, Any] | None,
        answer: Answer,
        writer: AnswerWriter,
        running: RunningTurn,
        tooling: ToolRound | None = None,
    ) -> None:
        status, error = "complete", None
        put = running.put
        try:
            while True:  # one model call a round; a round that ends with tool calls (and tools) leads to the next
                if first is not None:
                    self._take(first, answer, writer, plan, running)
                async for chunk in stream:
                    self._take(chunk, answer, writer, plan, running)
                    if running.left:
                        break
                if running.left or tooling is None or answer.finish_reason != "tool_calls" or not answer.tool_calls:
                    break
                if tooling.capped:  # asked for tools again after the cap: stopped
                    put(sse("tool_limit", {"detail": "the model kept asking for tools past the limit of a turn"}))
                    break
                stream, first = await self._tool_round(plan, tooling, stream, answer, running), None
            if running.left:
                status = "incomplete"
        except GatewayCallError as exc:
            status, error = "error", exc.message
            detail: dict[str, Any] = {"detail": exc.message, "status": exc.status_code}
            if exc.retry_after is not None:
                detail["retry_after"] = max(1, math.ceil(exc.retry_after))
            put(sse("error", detail))
        except asyncio.CancelledError:  # the server is stopping
            status = "incomplete"
            raise
        except Exception as exc:
            log.exception("chat turn %s failed", plan.assistant_id)
            status, error = "error", f"the answer failed: {type(exc).__name__}"
            put(sse("error", {"detail": error}))
        finally:
            running.cancelled.set()
            with contextlib.suppress(Exception):
                await asyncio.shield(stream.aclose())
            final = self._final(plan, answer, writer, status, error)
            if tooling is not None and tooling.records:
                final.metadata["tool_calls"] = tooling.records
            writer.finish(final)
            await writer.wait()
            usage = {"prompt_tokens": final.prompt_tokens, "completion_tokens": final.completion_tokens,
                     "total_tokens": final.prompt_tokens + final.completion_tokens,
                     "latency_ms": final.metadata["latency_ms"], "ttft_ms": final.metadata.get("ttft_ms")}  # fmt: skip
            put(sse("usage", usage) + sse("done", {"assistant_message_id": plan.assistant_id, "status": status}))
            put(None)

    async def _tool_round(
        self,
        plan: TurnPlan,
        tooling: ToolRound,
        stream: AsyncGenerator[dict[str, Any], None],
        answer: Answer,
        running: RunningTurn,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Runs the answer's tool calls (backend/chat/tool_loop.py) and calls the model again with their results."""
        with contextlib.suppress(Exception):
            await stream.aclose()  # which sets the call's ``cancelled``: the next call gets its own
        running.cancelled = asyncio.Event()
        if running.left:
            running.cancelled.set()
        calls = [answer.tool_calls[i] for i in sorted(answer.tool_calls)]
        text = "".join(answer.round_text)
        answer.tool_calls, answer.finish_reason, answer.round_text = {}, None, []
        messages = await tooling.run(calls, text, lambda name, data: running.put(sse(name, data)), running.cancelled)
        plan.payload["messages"] = [*plan.payload["messages"], *messages]
        if tooling.capped:
            plan.payload.pop("tools", None)
        if running.left:  # the user went away while a call waited or ran: no new model call
            return stream
        return cast(
            AsyncGenerator[dict[str, Any], None],
            self.gateway.stream(tooling.principal, "chat/completions", plan.payload, running.cancelled),
        )

    def _take(
        self,
        chunk: dict[str, Any],
        answer: Answer,
        writer: AnswerWriter,
        plan: TurnPlan,
        running: RunningTurn,
    ) -> None:
        """One chunk of the gateway's stream: to the client, and its text to the writer."""
        choices = chunk.get("choices")
        if "sources" in chunk and not choices:
            answer.sources = chunk["sources"]
            running.put(sse("sources", {"sources": chunk["sources"]}))
            return
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
            earlier = answer.usage or {}  # the tool loop's model calls add up
            answer.usage = {
                k: earlier.get(k, 0) + int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")
            }
        running.put(sse(None, chunk), token=bool(choices))
        if choices:
            if answer.ttft_ms is None:
                answer.ttft_ms = (time.perf_counter() - answer.started) * 1000
                writer.begin(plan.metadata)
            answer.chunks += 1
            choice = choices[0]
            delta = choice.get("delta") or {}
            if content := delta.get("content"):
                writer.add(content)
                answer.round_text.append(content)
            for call in delta.get("tool_calls") or []:
                _merge_tool_call(answer.tool_calls, call)
            if choice.get("finish_reason"):
                answer.finish_reason = choice["finish_reason"]

    def _final(
        self, plan: TurnPlan, answer: Answer, writer: AnswerWriter, status: str, error: str | None
    ) -> FinalState:
        metadata = {**plan.metadata, "latency_ms": round((time.perf_counter() - answer.started) * 1000, 3)}
        if answer.ttft_ms is not None:
            metadata["ttft_ms"] = round(answer.ttft_ms, 3)
        if answer.sources is not None:
            metadata["sources"] = answer.sources
        if answer.finish_reason:
            metadata["finish_reason"] = answer.finish_reason
        if answer.tool_calls:
            metadata["tool_calls"] = [answer.tool_calls[i] for i in sorted(answer.tool_calls)]
        if answer.usage is not None:
            prompt, completion = answer.usage["prompt_tokens"], answer.usage["completion_tokens"]
            metadata["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion}
        else:  # cut off before the usage chunk: estimated (the gateway meters its own estimate likewise)
            prompt = sum(len(str(m.get("content", ""))) for m in plan.payload["messages"]) // 4 + 1
            completion = answer.chunks
            metadata["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion, "estimated": True}
        return FinalState(status, error, metadata, prompt, completion)

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


def _merge_tool_call(calls: dict[int, dict[str, Any]], delta: Any) -> None:
    """Tool calls arrive in pieces (OpenAI's deltas by ``index``): one whole call each."""
    if not isinstance(delta, dict):
        return
    call = calls.setdefault(int(delta.get("index") or 0), {"id": None, "type": "function",
                                                           "function": {"name": "", "arguments": ""}})  # fmt: skip
    if delta.get("id"):
        call["id"] = delta["id"]
    function = delta.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""
