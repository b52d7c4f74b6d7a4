"""Step 3 of a chat turn (backend/chat/turn.py): stream the answer to the client and persist it.

A task of its own reads the gateway's stream (``_pump``), hands each chunk to the client's queue (``RunningTurn``)
and the text to the ``AnswerWriter`` (backend/chat/answer_writer.py), which saves it off the hot path. The MCP tool
loop wraps this step (``_tool_round``, backend/chat/tool_loop.py). ``sse`` frames the events; their order is in
backend/chat/turn.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from backend.chat.answer_writer import AnswerWriter, FinalState
from backend.chat.store import ChatStore
from backend.chat.tool_loop import ToolRound
from backend.chat.turn_plan import TurnPlan
from backend.serve.internal import GatewayCallError, GatewayClient

log = logging.getLogger("backend.chat.turn")  # the turn's one logger, as before the split


def sse(event: str | None, data: Any) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


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


class TurnStreaming:
    """The streaming steps of ``ChatTurns``, on the parts it holds."""

    store: ChatStore
    gateway: GatewayClient

    async def _remember(self, plan: TurnPlan) -> None:
        """After an answer is saved (``ChatTurns``: remembers the session for the next turn)."""

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
            if status == "complete":
                await self._remember(plan)  # before "done": the client's next turn finds it
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
