"""The Compare tab: one prompt to up to four models at once, their answers streaming side by side.

Each model answers in a session of its own (titled ``Compare · <model>: <prompt>``, so the answers stay in the
chats list to continue later), through the same chat route as the chat tab: the backend's access rules, limits and
metering apply to each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from frontend.backend import Backend, shows_errors, streams_errors
from frontend.chat_view import parse_arguments, title_from, usage_meta, with_meta
from frontend.client import BackendClient, BackendError
from frontend.page_load import PageLoad
from frontend.schemas import ChatArguments
from frontend.sse import Delta, Done, StreamError, UsageReport

MAX_MODELS = 4


def column_text(model: str, answer: str, meta: str = "") -> str:
    return with_meta(f"#### {model}\n\n{answer}", meta)


async def one_answer(
    client: BackendClient, model: str, prompt: str, arguments: ChatArguments, index: int, out: asyncio.Queue[Any]
) -> None:
    """Streams one model's answer into ``out`` as (index, text so far, finished)."""
    answer, usage = "", None
    try:
        session = await client.create_session(title_from(f"Compare · {model}: {prompt}"), model)
        async for event in client.chat(session.id, prompt, model=model, arguments=arguments):
            if isinstance(event, Delta):
                answer += event.text
                await out.put((index, column_text(model, answer), False))
            elif isinstance(event, StreamError):
                answer += f"\n\n**The answer failed:** {event.detail}"
            elif isinstance(event, UsageReport):
                usage = event
            elif isinstance(event, Done):
                break
    except BackendError as exc:
        answer += f"\n\n**Error:** {exc.detail}"
    await out.put((index, column_text(model, answer, usage_meta(model, usage) if usage else ""), True))


class CompareTab:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def build(self) -> None:
        with gr.Tab("Compare", id="compare", elem_id="lisa-compare-tab") as self.tab:
            self.models = gr.Dropdown(
                label=f"Models (up to {MAX_MODELS})",
                choices=[],
                multiselect=True,
                max_choices=MAX_MODELS,
                elem_id="lisa-compare-models",
            )
            with gr.Row():
                self.prompt = gr.Textbox(
                    placeholder="One prompt for every model (Enter sends)",
                    show_label=False,
                    scale=8,
                    elem_id="lisa-compare-input",
                )
                self.send = gr.Button("Compare", variant="primary", scale=1, elem_id="lisa-compare-send")
                self.stop = gr.Button("Stop", variant="stop", scale=1, elem_id="lisa-compare-stop")
            self.max_tokens = gr.Textbox(
                label="Max tokens (each answer)", placeholder="default", max_lines=1, elem_id="lisa-compare-max-tokens"
            )
            with gr.Row(equal_height=True):
                self.columns = [
                    gr.Markdown(visible=False, elem_id=f"lisa-compare-{i}", elem_classes=["lisa-compare-answer"])
                    for i in range(MAX_MODELS)
                ]

    def wire(self, demo: gr.Blocks, page: PageLoad) -> None:
        # Read when the tab is opened, not at page load: the chat tab's own loading goes first.
        self.tab.select(self.on_load, outputs=[self.models, self.max_tokens])
        runs = [
            trigger(self.compare, [self.prompt, self.models, self.max_tokens], self.columns, concurrency_limit=None)
            for trigger in (self.prompt.submit, self.send.click)
        ]
        self.stop.click(None, cancels=list[dict[str, Any]](runs))

    @shows_errors
    async def on_load(self, request: gr.Request) -> tuple[Any, Any]:
        client = self.backend.client(request)
        config = await client.configuration()
        models = await client.chat_models()
        return gr.update(choices=models, value=[]), gr.update(visible=config.allows("edit_kwargs"))

    @streams_errors
    async def compare(
        self, prompt: str, models: list[str] | None, max_tokens: str, request: gr.Request
    ) -> AsyncIterator[Any]:
        prompt = (prompt or "").strip()
        chosen = list(dict.fromkeys(models or []))
        if not prompt:
            raise gr.Error("Write a prompt first.")
        if not chosen:
            raise gr.Error("Pick at least one model.")
        if len(chosen) > MAX_MODELS:
            raise gr.Error(f"Compare at most {MAX_MODELS} models at once.")
        try:
            arguments = parse_arguments(max_tokens, None, None, None, None)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        client = self.backend.client(request)
        shown = [column_text(m, "…") for m in chosen]

        def view() -> list[Any]:
            return [
                gr.update(value=shown[i], visible=True) if i < len(chosen) else gr.update(value="", visible=False)
                for i in range(MAX_MODELS)
            ]

        yield view()
        out: asyncio.Queue[Any] = asyncio.Queue()
        tasks = [asyncio.create_task(one_answer(client, m, prompt, arguments, i, out)) for i, m in enumerate(chosen)]
        try:
            finished = 0
            while finished < len(tasks):
                index, text, done = await out.get()
                shown[index] = text
                finished += done
                while not out.empty():  # fold what else arrived meanwhile into one page update
                    index, text, done = out.get_nowait()
                    shown[index] = text
                    finished += done
                yield view()
        finally:  # Stop (or a closed page) cancels the streams: each backend turn keeps its partial answer
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
