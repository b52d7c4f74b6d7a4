"""A chat turn, the Chat tab's busiest event: prepared from what triggered it (Send, Regenerate, the chatbot's retry
and edit buttons), then run as one event that streams the answer and reads the branch, the sidebar and the documents
in context back (frontend/tabs/chat.py builds and wires the tab)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from frontend import client_chat as api
from frontend.backend import streams_errors
from frontend.chat_tree import question_of, shown_messages
from frontend.chat_view import ChatHistory, parse_arguments, parse_variables, title_from, usage_meta, with_meta
from frontend.client import BackendClient, BackendError
from frontend.schemas import Message
from frontend.sse import Delta, Done, Other, StreamError, UsageReport
from frontend.tabs.chat_rag import rag_body

if TYPE_CHECKING:
    from frontend.tabs.chat import ChatTab

# A page update per delta costs the app CPU (Gradio diffs and sends the conversation each time): deltas that come
# closer together than this are shown together (a slower stream still shows each one at once).
REFRESH_S = 0.04
# What a turn does (built by send/regenerate/edit, then run): the text (None: regenerate), where it goes, and how
# many of the shown messages stay above the new ones.
Pending = dict[str, Any]


# --- a turn, prepared from what triggered it ---------------------------------------------------------------------
def prepare_send(text: str, history: ChatHistory) -> Pending | None:
    question = (text or "").strip()
    return {"content": question, "keep": len(history), "parent": "after"} if question else None


def prepare_regenerate(shown: list[dict[str, Any]]) -> Pending:
    messages = shown_messages([Message.model_validate(m) for m in shown])
    questions = [i for i, m in enumerate(messages) if m.role == "user"]
    if not questions:
        raise gr.Error("Ask something first.")
    return regenerating(messages, questions[-1])


def prepare_retry(shown: list[dict[str, Any]], event: gr.RetryData) -> Pending:
    messages = shown_messages([Message.model_validate(m) for m in shown])
    index = event.index if isinstance(event.index, int) else event.index[0]
    question = question_of(messages, index)
    if question is None:
        raise gr.Error("That message cannot be regenerated.")
    return regenerating(messages, messages.index(question))


def regenerating(messages: list[Message], index: int) -> Pending:
    return {"content": None, "keep": index + 1, "parent": messages[index].id}


def prepare_edit(shown: list[dict[str, Any]], event: gr.EditData) -> Pending:
    messages = shown_messages([Message.model_validate(m) for m in shown])
    index = event.index if isinstance(event.index, int) else event.index[0]
    text = str(event.value or "").strip()
    if not 0 <= index < len(messages) or messages[index].role != "user" or not text:
        raise gr.Error("Only a question can be edited and sent again.")
    return {"content": text, "keep": index, "parent": messages[index].parent_id}


# --- a turn, run ---------------------------------------------------------------------------------------------------
class TurnPart:
    """The turn's handlers; they read the tab's components (its inputs are one dict keyed by component)."""

    def __init__(self, tab: ChatTab) -> None:
        self.tab = tab

    @streams_errors
    async def send_turn(self, values: dict[Any, Any], request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
        pending = prepare_send(values[self.tab.text], values[self.tab.history])
        async for update in self.run_turn(pending, values, request):
            yield update

    @streams_errors
    async def regenerate_turn(self, values: dict[Any, Any], request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
        pending = prepare_regenerate(values[self.tab.shown])
        async for update in self.run_turn(pending, values, request):
            yield update

    @streams_errors
    async def retry_turn(
        self, values: dict[Any, Any], event: gr.RetryData, request: gr.Request
    ) -> AsyncIterator[tuple[Any, ...]]:
        pending = prepare_retry(values[self.tab.shown], event)
        async for update in self.run_turn(pending, values, request):
            yield update

    @streams_errors
    async def edit_turn(
        self, values: dict[Any, Any], event: gr.EditData, request: gr.Request
    ) -> AsyncIterator[tuple[Any, ...]]:
        pending = prepare_edit(values[self.tab.shown], event)
        async for update in self.run_turn(pending, values, request):
            yield update

    def streaming(
        self, history: ChatHistory, text: str | None = None, session_id: str | None = None
    ) -> tuple[Any, ...]:
        """An update while the answer streams: the conversation (the first one also empties the input and names the
        session; None leaves them); everything else is skipped, which costs the page nothing (a gr.State sent costs a
        component-tree walk there)."""
        rest = len(self.tab.turn_outputs) - 4
        input_out, session_out = (gr.skip() if v is None else v for v in (text, session_id))
        return (history, history, input_out, session_out, *(gr.skip() for _ in range(rest)))

    async def run_turn(
        self, pending: Pending | None, values: dict[Any, Any], request: gr.Request
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Streams the answer, then shows the branch as stored (a refused turn stored nothing: its message stays),
        the sidebar and the documents in context, all in this one event."""
        tab = self.tab
        history: ChatHistory = values[tab.history]
        session_id: str | None = values[tab.session_id]
        if not pending:
            yield tuple(gr.skip() for _ in tab.turn_outputs)
            return
        model: str | None = values[tab.model]
        show_meta: bool = values[tab.show_meta]
        repository, collections, top_k = (values[c] for c in tab.rag.turn_inputs)
        tools, tool_mode = (values[c] for c in tab.extras.turn_inputs)
        client = tab.backend.client(request)
        try:
            arguments = parse_arguments(
                values[tab.max_tokens], values[tab.temperature], values[tab.top_p], values[tab.stop_words],
                values[tab.seed],
            )  # fmt: skip
            variables = parse_variables(values[tab.variables])
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        content: str | None = pending["content"]
        if session_id is None:
            session_id = (await client.create_session(title_from(content or ""), model or None)).id
        history = list(history[: pending["keep"]])
        if content is not None:
            history.append({"role": "user", "content": content})
        history.append({"role": "assistant", "content": ""})
        yield self.streaming(history, "", session_id)
        parent = api.UNSET if pending["parent"] == "after" else pending["parent"]
        answer, usage, answered, shown_at = "", None, True, 0.0
        try:
            stream = api.turn(
                client, session_id, content, parent, model=model or None, arguments=arguments.body() or None,
                persona_template_id=values[tab.persona] or None,
                directive_template_ids=list(values[tab.directives] or []) or None,
                variables=variables or None, rag=rag_body(repository, collections, top_k),
                **tab.extras.turn_fields(tools, tool_mode),
            )  # fmt: skip
            async for event in stream:
                if isinstance(event, Delta):
                    answer += event.text
                    history = [*history[:-1], {"role": "assistant", "content": answer}]
                    if (now := time.monotonic()) - shown_at >= REFRESH_S:
                        shown_at = now
                        yield self.streaming(history)
                elif isinstance(event, StreamError):
                    answer += f"\n\n**The answer failed:** {event.detail}"
                elif isinstance(event, UsageReport):
                    usage = event
                elif isinstance(event, Other) and event.name == "context":
                    for notice in event.data.get("notices") or []:
                        gr.Warning(str(notice.get("message", notice)) if isinstance(notice, dict) else str(notice))
                elif isinstance(event, Done):
                    break
                elif (with_tools := tab.extras.on_event(event, history)) is not None:
                    history = with_tools
                    yield self.streaming(history)
        except BackendError as exc:
            # Refused before the answer began (a bad argument, a model one may not use, a limit): say why, here.
            gr.Warning(exc.detail)
            answer, answered = f"**Error:** {exc.detail}", False
        content_shown = with_meta(answer, usage_meta(model, usage)) if show_meta and usage is not None else answer
        history = [*history[:-1], {"role": "assistant", "content": content_shown}]
        yield self.streaming(history)
        yield await self.after_turn(client, history, session_id, model, show_meta, answered, values)

    async def after_turn(
        self, client: BackendClient, history: ChatHistory, session_id: str, model: str | None, show_meta: bool,
        answered: bool, values: dict[Any, Any],
    ) -> tuple[Any, ...]:  # fmt: skip
        """The branch as stored (the conversation itself only where it differs from what is shown), the sidebar
        and the documents in context, read at once."""
        tab = self.tab
        sidebar = tab.sidebar
        listing = sidebar.listing(client, values[sidebar.project], values[sidebar.search], session_id)
        context = tab.context.listing(client, session_id, model)
        if not answered:
            sessions, parts = await asyncio.gather(listing, context)
            unchanged = (gr.skip() for _ in tab.branch_outputs)
            return (gr.skip(), gr.skip(), gr.skip(), session_id, *unchanged, sessions, *parts)
        session, sessions, parts = await asyncio.gather(client.session(session_id), listing, context)
        stored, _, *branch = tab.show(session, show_meta)
        conversation = gr.skip() if stored == history else stored
        return (conversation, conversation, gr.skip(), session_id, *branch, sessions, *parts)
