"""The Chat tab: model picker, streamed Markdown answers with a stop button, model arguments, per-answer metadata,
regenerate and edit-and-resend with every branch reachable ("< 1/2 >"), and its parts in their own modules: the
sessions sidebar (chat_sidebar.py), RAG selection and cited sources (chat_rag.py), documents in context
(chat_context.py), and the turn that streams an answer (chat_turn.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import gradio as gr

from frontend import client_chat as api
from frontend.backend import Backend, shows_errors
from frontend.chat_tree import NEXT, PREVIOUS, branch_points, render, sibling_at
from frontend.chat_view import session_choices, template_choices
from frontend.client import BackendClient, BackendError
from frontend.page_load import PageLoad
from frontend.schemas import Message, Session
from frontend.tabs.chat_context import ContextPart
from frontend.tabs.chat_rag import RagPart
from frontend.tabs.chat_sidebar import SidebarPart
from frontend.tabs.chat_tools import ChatTools
from frontend.tabs.chat_turn import TurnPart

LATEX: list[dict[str, str | bool]] = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]


class ChatTab:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.extras = ChatTools(backend)  # MCP tools and image generation (frontend/tabs/chat_tools.py)
        self.sidebar = SidebarPart(backend)
        self.rag = RagPart(backend)
        self.context = ContextPart(backend, self.create_blank_session)
        self.turns = TurnPart(self)

    # --- build ------------------------------------------------------------------------------------------------
    def build(self) -> None:
        with gr.Tab("Chat", id="chat", elem_id="lisa-chat-tab") as self.tab, gr.Row():
            # The states live inside the tab: a block between two tabs counts in Gradio's tab order, and the tab
            # after it was then listed twice once opened (its button showed twice).
            self.session_id = gr.State(None)
            self.history = gr.State([])
            self.show_meta = gr.State(True)
            self.shown = gr.State([])  # the branch's messages (dicts), for ids and alternatives
            with gr.Column(scale=1, min_width=240):
                self.sidebar.build()
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
                self.rag.build_selection()
                self.context.build()
                self.chatbot = gr.Chatbot(
                    elem_id="lisa-chatbot",
                    show_label=False,
                    height=520,
                    buttons=["copy", "copy_all"],
                    latex_delimiters=LATEX,
                    feedback_options=None,
                    editable="user",
                    placeholder="Ask anything. Answers stream in as Markdown.",
                )
                with gr.Row(elem_id="lisa-branches"):
                    self.regenerate = gr.Button("Regenerate", size="sm", scale=1, elem_id="lisa-regenerate")
                    self.branch_at = gr.Dropdown(
                        label="Alternatives", choices=[], scale=4, elem_id="lisa-branch-at", visible=False
                    )
                    self.previous = gr.Button(PREVIOUS, size="sm", scale=0, elem_id="lisa-branch-prev", visible=False)
                    self.next = gr.Button(NEXT, size="sm", scale=0, elem_id="lisa-branch-next", visible=False)
                self.rag.build_sources()
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

    @property
    def view(self) -> list[Any]:
        """What a session's branch fills: the chat, its messages, the alternatives picker, the sources."""
        return [
            self.chatbot, self.history, self.shown, self.branch_at, self.previous, self.next, *self.rag.source_outputs
        ]  # fmt: skip

    @property
    def branch_outputs(self) -> list[Any]:
        """The parts of the view a stream does not touch: the messages' ids, alternatives and sources."""
        return self.view[2:]

    @property
    def turn_outputs(self) -> list[Any]:
        return [
            self.chatbot, self.history, self.text, self.session_id, *self.branch_outputs, self.sidebar.sessions,
            *self.part_outputs,
        ]  # fmt: skip

    @property
    def opened(self) -> list[Any]:
        return [*self.view, self.session_id, self.sidebar.title, self.model]

    @property
    def part_outputs(self) -> list[Any]:
        return [self.context.documents, self.context.notices]

    @property
    def part_refresh(self) -> Any:
        return self.context.refresh

    # --- wire -------------------------------------------------------------------------------------------------
    def wire(self, demo: gr.Blocks, page: PageLoad) -> None:
        sidebar = self.sidebar
        page.add(self.on_load, [], [self.model, sidebar.sessions, self.arguments, sidebar.delete, self.show_meta])
        self.tab.select(self.load_templates, outputs=[self.prompts, self.persona, self.directives])
        page.add(self.load_templates, [], [self.prompts, self.persona, self.directives])
        self.rag.wire(demo, page, self.chatbot, self.shown)
        self.context.wire(demo, page, self.session_id, self.model, self.max_tokens)
        sidebar.wire(demo, page, self)
        listing = [sidebar.project, sidebar.search]
        # A turn is ONE event (each event is a round trip and a pass through Gradio's queue): it prepares the turn
        # from what triggered it, streams the answer, then reads the branch back and refreshes the sidebar and the
        # documents in context. Its inputs are one dict (a set of components); light progress, no spinner. A Send
        # while the turn (or its last reads) runs is kept and runs after it ("always_last"; "once" dropped it).
        inputs = {
            self.text, self.history, self.shown, self.session_id, self.model, self.max_tokens, self.temperature,
            self.top_p, self.stop_words, self.seed, self.show_meta, self.persona, self.directives, self.variables,
            sidebar.project, sidebar.search, *self.rag.turn_inputs, *self.extras.turn_inputs,
        }  # fmt: skip
        outputs = self.turn_outputs
        runs = [
            trigger(
                handler,
                inputs,
                outputs,
                concurrency_limit=None,
                show_progress="hidden",
                trigger_mode="always_last",
                show_progress_on=self.chatbot,  # one progress target, not 15 (frontend/page_load.py)
            )
            for trigger, handler in (
                (self.text.submit, self.turns.send_turn),
                (self.send.click, self.turns.send_turn),
                (self.regenerate.click, self.turns.regenerate_turn),
                (self.chatbot.retry, self.turns.retry_turn),
                (self.chatbot.edit, self.turns.edit_turn),
            )
        ]
        # A stopped turn keeps what it showed; the messages' ids (for regenerate and alternatives) and the sidebar
        # are read back.
        self.stop.click(None, cancels=list[dict[str, Any]](runs)).then(
            self.after_stop,
            [self.session_id, self.show_meta, *listing],
            [*self.branch_outputs, sidebar.sessions],
            show_progress_on=self.chatbot,
        )
        branch = [self.branch_at, self.shown, self.session_id, self.show_meta]
        self.previous.click(self.step_back, branch, self.view, show_progress_on=self.chatbot)
        self.next.click(self.step_forward, branch, self.view, show_progress_on=self.chatbot)
        self.extras.wire(demo, page, self)

    # --- showing a session ------------------------------------------------------------------------------------
    def show(self, session: Session | None, show_meta: bool) -> tuple[Any, ...]:
        messages = session.messages if session else []
        history = render(messages, show_meta)
        points = branch_points(messages)
        picker = gr.update(choices=points, value=points[0][1] if points else None, visible=bool(points))
        arrows = gr.update(visible=bool(points))
        shown = [m.model_dump(mode="json") for m in messages]
        return (history, history, shown, picker, arrows, arrows, *self.rag.latest(messages))

    @shows_errors
    async def open_session(
        self, session_id: str | None, show_meta: bool, model: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        if not session_id:
            return (*self.show(None, show_meta), None, "", model)
        session = await self.backend.client(request).session(session_id)
        return (*self.show(session, show_meta), session.id, session.title, session.model or model)

    reopen = open_session

    @shows_errors
    async def reopen_view(self, session_id: str | None, show_meta: bool, request: gr.Request) -> tuple[Any, ...]:
        if not session_id:
            return self.show(None, show_meta)
        return self.show(await self.backend.client(request).session(session_id), show_meta)

    @shows_errors
    async def after_stop(
        self, session_id: str | None, show_meta: bool, project: str | None, query: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        """After Stop: the stored messages' ids and alternatives (the text shown stays as it is) and the sidebar."""
        client = self.backend.client(request)
        if not session_id:
            return (*(gr.skip() for _ in self.branch_outputs), gr.skip())
        session, sessions = await asyncio.gather(
            client.session(session_id), self.sidebar.listing(client, project, query, session_id)
        )
        return (*self.show(session, show_meta)[2:], sessions)

    async def new_chat(self) -> tuple[Any, ...]:
        return (*self.show(None, True), None, "", gr.update())

    async def create_blank_session(self, client: BackendClient) -> str:
        return (await client.create_session("New chat")).id

    # --- alternatives -----------------------------------------------------------------------------------------
    async def switch(
        self, message_id: str | None, shown: list[dict[str, Any]], session_id: str | None, show_meta: bool,
        step: int, request: gr.Request,
    ) -> tuple[Any, ...]:  # fmt: skip
        messages = [Message.model_validate(m) for m in shown]
        message = next((m for m in messages if m.id == message_id), None)
        if message is None or not session_id:
            raise gr.Error("Choose a message with alternatives first.")
        target = sibling_at(message, step)
        if target is None:
            raise gr.Error("There is no other alternative that way.")
        session = await api.show_branch(self.backend.client(request), session_id, target)
        view = list(self.show(session, show_meta))
        points = branch_points(session.messages)
        # Keep the picker on the same place in the conversation (now showing the other alternative).
        if any(pid == target for _, pid in points):
            view[3] = gr.update(choices=points, value=target, visible=True)
        return tuple(view)

    @shows_errors
    async def step_back(
        self, message_id: str | None, shown: list[dict[str, Any]], session_id: str | None, show_meta: bool,
        request: gr.Request,
    ) -> tuple[Any, ...]:  # fmt: skip
        return await self.switch(message_id, shown, session_id, show_meta, -1, request)

    @shows_errors
    async def step_forward(
        self, message_id: str | None, shown: list[dict[str, Any]], session_id: str | None, show_meta: bool,
        request: gr.Request,
    ) -> tuple[Any, ...]:  # fmt: skip
        return await self.switch(message_id, shown, session_id, show_meta, 1, request)

    # --- page load ----------------------------------------------------------------------------------------------
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
