"""The chat tab's MCP tools and image generation: their controls (built inside the chat tab's column), their events,
and what a turn needs from them. The chat tab calls ``build`` where the controls go, ``wire`` once, passes
``turn_fields`` into each turn and lets ``on_event`` show the stream's tool events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from frontend.backend import Backend, shows_errors
from frontend.chat_view import ChatHistory, title_from
from frontend.client import BackendError
from frontend.client_tools import decide_tool_call, generate_images, image_models, mcp_tools, tool_fields
from frontend.page_load import PageLoad
from frontend.sse import ChatEvent, Other
from frontend.tools_view import apply_tool_event, decision_of, images_markdown

if TYPE_CHECKING:
    from frontend.tabs.chat import ChatTab

SIZES = ["256x256", "512x512", "1024x1024"]


class ChatTools:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # --- build ------------------------------------------------------------------------------------------------
    def build(self) -> None:
        with gr.Accordion("Tools", open=False, visible=False, elem_id="lisa-tools") as self.tools_box:
            self.tools = gr.CheckboxGroup(label="MCP tools the model may call", choices=[], elem_id="lisa-tool-pick")
            self.tool_mode = gr.Radio(
                label="Tool mode",
                choices=[("Safe: approve each call", "safe"), ("Autopilot: calls run at once", "autopilot")],
                value="safe",
                elem_id="lisa-tool-mode",
            )
        with gr.Accordion("Image generation", open=False, visible=False, elem_id="lisa-images") as self.images_box:
            with gr.Row():
                self.image_model = gr.Dropdown(label="Image model", choices=[], elem_id="lisa-image-model")
                self.image_size = gr.Dropdown(label="Size", choices=SIZES, value="512x512", elem_id="lisa-image-size")
            with gr.Row():
                self.image_prompt = gr.Textbox(
                    placeholder="Describe the image", show_label=False, scale=8, elem_id="lisa-image-prompt"
                )
                self.generate = gr.Button("Generate", scale=1, elem_id="lisa-generate")

    @property
    def turn_inputs(self) -> list[gr.components.Component]:
        return [self.tools, self.tool_mode]

    # --- wire -------------------------------------------------------------------------------------------------
    def wire(self, demo: gr.Blocks, page: PageLoad, chat: ChatTab) -> None:
        page.add(self.on_load, [], [self.tools_box, self.tools, self.images_box, self.image_model])
        # The Approve/Deny options of a waiting call (in the conversation); the running turn's stream then shows
        # the call run (or denied), so this event changes nothing on the page itself.
        chat.chatbot.option_select(self.decide, [chat.session_id], [], concurrency_limit=None)
        chat_outputs = [chat.chatbot, chat.history, chat.session_id, self.image_prompt]
        image_inputs = [self.image_prompt, self.image_model, self.image_size, chat.history, chat.session_id, chat.model]
        made = [
            trigger(self.make_images, image_inputs, chat_outputs)
            for trigger in (self.generate.click, self.image_prompt.submit)
        ]
        for event in made:
            sidebar = chat.sidebar
            event.then(sidebar.list_sessions, [sidebar.project, sidebar.search, chat.session_id], [sidebar.sessions])

    # --- for the chat turn ------------------------------------------------------------------------------------
    @staticmethod
    def turn_fields(tools: list[str] | None, mode: str | None) -> dict[str, Any]:
        return tool_fields(tools, mode)

    @staticmethod
    def on_event(event: ChatEvent, history: ChatHistory) -> ChatHistory | None:
        """The conversation after a tool event (None: not one)."""
        if isinstance(event, Other):
            return apply_tool_event(history, event.name, event.data)
        return None

    # --- handlers ---------------------------------------------------------------------------------------------
    @shows_errors
    async def on_load(self, request: gr.Request) -> tuple[Any, ...]:
        client = self.backend.client(request)
        try:
            listed = await mcp_tools(client)
            tools = [(f"{t.server_name} / {t.name}", t.selection) for t in listed.tools]
        except BackendError as exc:  # the tool list closed to this user: no tools
            if exc.status not in (403, 404):
                raise
            tools = []
        images = await image_models(client)
        return (
            gr.update(visible=bool(tools)),
            gr.update(choices=tools, value=[]),
            gr.update(visible=bool(images)),
            gr.update(choices=images, value=images[0] if images else None),
        )

    @shows_errors
    async def decide(self, session_id: str | None, selected: gr.SelectData, request: gr.Request) -> None:
        decision = decision_of(str(getattr(selected, "value", "") or ""))
        if decision is None or not session_id:
            return
        approve, call_id = decision
        try:
            await decide_tool_call(self.backend.client(request), session_id, call_id, approve)
        except BackendError as exc:
            if exc.status == 409:
                raise gr.Error("This call was already decided or is no longer waiting.") from exc
            raise

    @shows_errors
    async def make_images(
        self,
        prompt: str,
        model: str | None,
        size: str | None,
        history: ChatHistory,
        session_id: str | None,
        chat_model: str | None,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        prompt = (prompt or "").strip()
        if not prompt:
            raise gr.Error("Describe the image first.")
        if not model:
            raise gr.Error("Pick an image model.")
        client = self.backend.client(request)
        if session_id is None:
            session_id = (await client.create_session(title_from(prompt), chat_model or None)).id
        made = await generate_images(client, session_id, model, prompt, size=size or None)
        answer = images_markdown(made.images) or "*(no image came back)*"
        history = [*history, {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        return history, history, session_id, ""
