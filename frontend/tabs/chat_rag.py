"""The chat's RAG part: which repository, collections and how many passages a turn answers from, and the sources the
answer cited (a preview of the passage and a link to the original document in the library)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from frontend import client_chat as api
from frontend.backend import Backend, shows_errors
from frontend.chat_tree import last_cited, shown_messages, source_label, source_preview, sources_of
from frontend.client import BackendError
from frontend.page_load import PageLoad
from frontend.schemas import Message

NO_RAG = ("(none)", "")


def rag_body(repository: str | None, collections: list[str] | None, top_k: float | None) -> dict[str, Any] | None:
    """The turn's ``rag`` field, or None without a repository."""
    if not repository:
        return None
    body: dict[str, Any] = {"repositories": [repository], "top_k": int(top_k or 4)}
    if collections:
        body["collections"] = list(collections)
    return body


def source_choices(sources: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(source_label(s), n) for n, s in enumerate(sources)]


class RagPart:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def build_selection(self) -> None:
        with gr.Accordion("Answer from documents (RAG)", open=False, elem_id="lisa-rag") as self.panel, gr.Row():
            self.repository = gr.Dropdown(label="Repository", choices=[NO_RAG], value="", elem_id="lisa-rag-repo")
            self.collections = gr.Dropdown(
                label="Collections (none: all)", choices=[], multiselect=True, elem_id="lisa-rag-collections"
            )
            self.top_k = gr.Slider(1, 20, value=4, step=1, label="Passages (top k)", elem_id="lisa-rag-top-k")

    def build_sources(self) -> None:
        with gr.Accordion("Sources", open=True, visible=False, elem_id="lisa-sources-panel") as self.sources_panel:
            self.sources = gr.Radio(choices=[], label="Cited sources", elem_id="lisa-sources")
            self.preview = gr.Markdown(elem_id="lisa-source-preview")
        self.cited = gr.State([])

    @property
    def turn_inputs(self) -> list[Any]:
        return [self.repository, self.collections, self.top_k]

    @property
    def source_outputs(self) -> list[Any]:
        return [self.sources_panel, self.sources, self.preview, self.cited]

    def wire(self, demo: gr.Blocks, page: PageLoad, chatbot: gr.Chatbot, shown: gr.State) -> None:
        page.add(self.on_load, [], [self.panel, self.repository, self.top_k])
        self.repository.change(self.list_collections, [self.repository], [self.collections])
        self.sources.input(self.open_source, [self.sources, self.cited], [self.preview])
        chatbot.select(self.sources_of_answer, [shown], self.source_outputs)

    @shows_errors
    async def on_load(self, request: gr.Request) -> tuple[Any, ...]:
        client = self.backend.client(request)
        config = await client.configuration()
        if not config.allows("rag_selection_available"):
            return gr.update(visible=False), gr.update(choices=[NO_RAG], value=""), gr.update()
        try:
            found = await api.repositories(client)
        except BackendError as exc:
            if exc.status != 403:
                raise
            found = []
        choices = [NO_RAG, *((r.name or r.id, r.id) for r in found)]
        return (
            gr.update(visible=bool(found)),
            gr.update(choices=choices, value=""),
            gr.update(visible=config.allows("edit_num_of_rag_document")),
        )

    @shows_errors
    async def list_collections(self, repository: str | None, request: gr.Request) -> Any:
        if not repository:
            return gr.update(choices=[], value=[])
        found = await api.collections(self.backend.client(request), repository)
        return gr.update(choices=[(c.name or c.id, c.id) for c in found], value=[])

    @staticmethod
    def show(cited: list[dict[str, Any]]) -> tuple[Any, ...]:
        """The sources panel for these sources: listed, the first opened."""
        if not cited:
            return gr.update(visible=False), gr.update(choices=[], value=None), "", []
        return (
            gr.update(visible=True),
            gr.update(choices=source_choices(cited), value=0),
            source_preview(cited[0]),
            cited,
        )

    def latest(self, messages: list[Message]) -> tuple[Any, ...]:
        return self.show(last_cited(messages))

    async def open_source(self, index: int | None, cited: list[dict[str, Any]]) -> str:
        if index is None or not 0 <= int(index) < len(cited):
            return ""
        return source_preview(cited[int(index)])

    async def sources_of_answer(self, shown: list[dict[str, Any]], event: gr.SelectData) -> tuple[Any, ...]:
        """A message clicked in the chat: the sources of that answer (nothing changes for a question)."""
        messages = shown_messages([Message.model_validate(m) for m in shown])
        index = event.index if isinstance(event.index, int) else event.index[0]
        if 0 <= index < len(messages) and messages[index].role == "assistant" and sources_of(messages[index]):
            return self.show(sources_of(messages[index]))
        return gr.update(), gr.update(), gr.update(), gr.update()
