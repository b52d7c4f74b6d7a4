"""The Chat tab: model picker, streamed Markdown answers with a stop button, model arguments, per-answer metadata,
and the sessions sidebar (new, search, open, rename, delete, export)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr

from frontend.backend import Backend, shows_errors, streams_errors
from frontend.chat_view import (
    ChatHistory,
    history_of,
    parse_arguments,
    parse_variables,
    session_choices,
    template_choices,
    title_from,
    usage_meta,
    with_meta,
)
from frontend.client import BackendError
from frontend.sse import Delta, Done, StreamError, UsageReport
from frontend.tabs.chat_tools import ChatTools

LATEX: list[dict[str, str | bool]] = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]
# A page update per delta costs the app CPU (Gradio diffs and sends the conversation each time): deltas that come
# closer together than this are shown together (a slower stream still shows each one at once).
REFRESH_S = 0.04


class ChatTab:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.extras = ChatTools(backend)  # MCP tools and image generation (frontend/tabs/chat_tools.py)

    # --- build ------------------------------------------------------------------------------------------------
    def build(self) -> None:
        with gr.Tab("Chat", id="chat", elem_id="lisa-chat-tab") as self.tab, gr.Row():
            with gr.Column(scale=1, min_width=240):
                self.new = gr.Button("New chat", elem_id="lisa-new-chat")
                self.search = gr.Textbox(placeholder="Search chats", show_label=False, elem_id="lisa-search")
                self.sessions = gr.Radio(choices=[], label="Chats", elem_id="lisa-sessions")
                with gr.Accordion("This chat", open=False):
                    self.title = gr.Textbox(label="Title", elem_id="lisa-title")
                    with gr.Row():
                        self.rename = gr.Button("Rename", size="sm", elem_id="lisa-rename")
                        self.delete = gr.Button("Delete", size="sm", variant="stop", elem_id="lisa-delete")
                    self.export = gr.Button("Export JSON", size="sm", elem_id="lisa-export")
                    self.export_file = gr.File(label="Export", visible=False, interactive=False)
            with gr.Column(scale=4):
                self.model = gr.Dropdown(label="Model", choices=[], elem_id="lisa-model")
                with gr.Accordion("Persona and directives", open=False, elem_id="lisa-prompts") as self.prompts:
                    with gr.Row():
                        self.persona = gr.Dropdown(label="Persona", choices=[], elem_id="lisa-persona")
                        self.directives = gr.Dropdown(
                            label="Directives", choices=[], multiselect=True, elem_id="lisa-directives"
                        )
                    self.variables = gr.Textbox(
                        label="Variables ({{name}} in the templates): one 'name = value' a line",
                        lines=2,
                        elem_id="lisa-variables",
                    )
                self.chatbot = gr.Chatbot(
                    elem_id="lisa-chatbot",
                    show_label=False,
                    height=520,
                    buttons=["copy", "copy_all"],
                    latex_delimiters=LATEX,
                    feedback_options=None,
                    placeholder="Ask anything. Answers stream in as Markdown.",
                )
                with gr.Row():
                    self.text = gr.Textbox(
                        placeholder="Message (Enter sends)", show_label=False, scale=8, elem_id="lisa-input"
                    )
                    self.send = gr.Button("Send", variant="primary", scale=1, elem_id="lisa-send")
                    self.stop = gr.Button("Stop", variant="stop", scale=1, elem_id="lisa-stop")
                with gr.Accordion("Model arguments", open=False, elem_id="lisa-arguments") as self.arguments:
                    # Text fields, not gr.Number: a blank field must mean "the model's default" (a Number sends 0).
                    with gr.Row():
                        self.max_tokens = gr.Textbox(label="Max tokens", placeholder="default")
                        self.temperature = gr.Textbox(label="Temperature (0-2)", placeholder="default")
                        self.top_p = gr.Textbox(label="Top p (0-1)", placeholder="default")
                    with gr.Row():
                        self.stop_words = gr.Textbox(label="Stop words (comma-separated, up to 4)")
                        self.seed = gr.Textbox(label="Seed", placeholder="random")
                self.extras.build()
        self.session_id = gr.State(None)
        self.history = gr.State([])
        self.show_meta = gr.State(True)

    # --- wire -------------------------------------------------------------------------------------------------
    def wire(self, demo: gr.Blocks) -> None:
        demo.load(self.on_load, outputs=[self.model, self.sessions, self.arguments, self.delete, self.show_meta])
        self.tab.select(self.load_templates, outputs=[self.prompts, self.persona, self.directives])
        demo.load(self.load_templates, outputs=[self.prompts, self.persona, self.directives])
        turn_inputs = [
            self.text, self.history, self.session_id, self.model, self.max_tokens, self.temperature, self.top_p,
            self.stop_words, self.seed, self.show_meta, self.persona, self.directives, self.variables,
            *self.extras.turn_inputs,
        ]  # fmt: skip
        turn_outputs = [self.chatbot, self.history, self.text, self.session_id]
        turns = [
            trigger(self.respond, turn_inputs, turn_outputs, concurrency_limit=None)
            for trigger in (self.text.submit, self.send.click)
        ]
        for turn in turns:
            turn.then(self.list_sessions, [self.search, self.session_id], [self.sessions])
        self.stop.click(None, cancels=list[dict[str, Any]](turns))
        opened = [self.chatbot, self.history, self.session_id, self.title, self.model]
        self.sessions.input(self.open_session, [self.sessions, self.show_meta, self.model], opened)
        self.new.click(self.new_chat, outputs=[self.chatbot, self.history, self.session_id, self.title, self.sessions])
        self.search.submit(self.list_sessions, [self.search, self.session_id], [self.sessions])
        self.rename.click(self.rename_session, [self.session_id, self.title], []).then(
            self.list_sessions, [self.search, self.session_id], [self.sessions]
        )
        self.delete.click(
            self.delete_session,
            [self.session_id],
            [self.chatbot, self.history, self.session_id, self.title, self.sessions],
        )
        self.export.click(self.export_session, [self.session_id], [self.export_file])
        self.extras.wire(demo, self)

    # --- handlers ---------------------------------------------------------------------------------------------
    @shows_errors
    async def on_load(self, request: gr.Request) -> tuple[Any, ...]:
        client = self.backend.client(request)
        config = await client.configuration()
        models = await client.chat_models()
        default = config.default_model_id if config.default_model_id in models else (models[0] if models else None)
        sessions = await client.sessions()
        return (
            gr.update(choices=models, value=default),
            gr.update(choices=session_choices(sessions.data), value=None),
            gr.update(visible=config.allows("edit_kwargs")),
            gr.update(visible=config.allows("delete_session_history")),
            config.allows("view_meta_data"),
        )

    @streams_errors
    async def respond(
        self,
        text: str,
        history: ChatHistory,
        session_id: str | None,
        model: str | None,
        max_tokens: str,
        temperature: str,
        top_p: str,
        stop_words: str,
        seed: str,
        show_meta: bool,
        persona: str | None,
        directives: list[str] | None,
        variables_text: str,
        tools: list[str] | None,
        tool_mode: str | None,
        request: gr.Request,
    ) -> AsyncIterator[tuple[Any, ...]]:
        question = (text or "").strip()
        if not question:
            yield history, history, text, session_id
            return
        client = self.backend.client(request)
        try:
            arguments = parse_arguments(max_tokens, temperature, top_p, stop_words, seed)
            variables = parse_variables(variables_text)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        if session_id is None:
            session_id = (await client.create_session(title_from(question), model or None)).id
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        yield history, history, "", session_id
        answer, usage, shown_at = "", None, 0.0
        try:
            stream = client.chat(
                session_id, question, model=model or None, arguments=arguments, persona_template_id=persona or None,
                directive_template_ids=list(directives or []), variables=variables,
                extra=self.extras.turn_fields(tools, tool_mode),
            )  # fmt: skip
            async for event in stream:
                if isinstance(event, Delta):
                    answer += event.text
                    history = [*history[:-1], {"role": "assistant", "content": answer}]
                    if (now := time.monotonic()) - shown_at >= REFRESH_S:
                        shown_at = now
                        yield history, history, "", session_id
                elif isinstance(event, StreamError):
                    answer += f"\n\n**The answer failed:** {event.detail}"
                elif isinstance(event, UsageReport):
                    usage = event
                elif isinstance(event, Done):
                    break
                elif (shown := self.extras.on_event(event, history)) is not None:
                    history = shown
                    yield history, history, "", session_id
        except BackendError as exc:
            # Refused before the answer began (a bad argument, a model one may not use, a limit): say why, here.
            gr.Warning(exc.detail)
            answer = f"**Error:** {exc.detail}"
        content = with_meta(answer, usage_meta(model, usage)) if show_meta and usage is not None else answer
        history = [*history[:-1], {"role": "assistant", "content": content}]
        yield history, history, "", session_id

    @shows_errors
    async def load_templates(self, request: gr.Request) -> tuple[Any, ...]:
        """Personas and directives one may use; the pickers are hidden when the library is closed to the user."""
        try:
            page = await self.backend.client(request).templates()
        except BackendError as exc:
            if exc.status != 403:
                raise
            return gr.update(visible=False), gr.update(choices=[]), gr.update(choices=[])
        personas = [("(none)", ""), *template_choices(page.data, "persona")]
        return (
            gr.update(visible=True),
            gr.update(choices=personas),
            gr.update(choices=template_choices(page.data, "directive")),
        )

    @shows_errors
    async def list_sessions(self, query: str | None, session_id: str | None, request: gr.Request) -> Any:
        page = await self.backend.client(request).sessions(q=(query or "").strip() or None)
        return gr.update(choices=session_choices(page.data), value=session_id)

    @shows_errors
    async def open_session(
        self, session_id: str | None, show_meta: bool, model: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        if not session_id:
            return [], [], None, "", model
        session = await self.backend.client(request).session(session_id)
        history = history_of(session.messages, show_meta)
        return history, history, session.id, session.title, session.model or model

    async def new_chat(self) -> tuple[Any, ...]:
        return [], [], None, "", gr.update(value=None)

    @shows_errors
    async def rename_session(self, session_id: str | None, title: str, request: gr.Request) -> None:
        if not session_id:
            raise gr.Error("Open a chat first.")
        await self.backend.client(request).rename_session(session_id, title.strip())
        gr.Info("Renamed.")

    @shows_errors
    async def delete_session(self, session_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        if not session_id:
            raise gr.Error("Open a chat first.")
        client = self.backend.client(request)
        await client.delete_session(session_id)
        page = await client.sessions()
        return [], [], None, "", gr.update(choices=session_choices(page.data), value=None)

    @shows_errors
    async def export_session(self, session_id: str | None, request: gr.Request) -> Any:
        if not session_id:
            raise gr.Error("Open a chat first.")
        data = await self.backend.client(request).export_session(session_id, "json")
        folder = Path(tempfile.mkdtemp(prefix="lisa-export-"))
        path = folder / f"{session_id}.json"
        path.write_bytes(data)
        return gr.update(value=str(path), visible=True)
