"""Documents in a chat's context: upload (their whole text joins each prompt, cut to fit the model's context
window, with the backend's notice naming what was cut), remove, and summarise one with streamed progress."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import gradio as gr

from frontend import client_chat as api
from frontend.backend import Backend, shows_errors, streams_errors
from frontend.chat_tree import summary_progress
from frontend.chat_view import parse_arguments
from frontend.client import BackendClient
from frontend.page_load import PageLoad
from frontend.schemas_chat import ContextDocument

FILE_TYPES = [
    ".txt", ".md", ".pdf", ".docx", ".html", ".csv", ".json", ".yaml", ".yml", ".xml",
    ".py", ".js", ".ts", ".java", ".c", ".h", ".cpp", ".go", ".rs", ".sql", ".sh", ".rb", ".toml",
]  # fmt: skip
# A chat that has no session yet gets one at its first upload (the chat tab's own way of making one).
NewSession = Callable[[BackendClient], Awaitable[str]]


def document_choices(documents: list[ContextDocument]) -> list[tuple[str, str]]:
    return [(f"{d.name} ({d.tokens:,} tokens{', summarised' if d.summary else ''})", d.id) for d in documents]


def notices_text(messages: list[str]) -> str:
    return "\n".join(f"⚠️ {m}" for m in messages)


class ContextPart:
    def __init__(self, backend: Backend, new_session: NewSession) -> None:
        self.backend = backend
        self.new_session = new_session

    def build(self) -> None:
        with gr.Accordion("Context documents", open=False, elem_id="lisa-docs") as self.panel:
            self.upload = gr.File(
                label="Add documents (their text joins every question of this chat)",
                file_count="multiple",
                file_types=FILE_TYPES,
                elem_id="lisa-docs-upload",
            )
            self.documents = gr.Radio(choices=[], label="Documents", elem_id="lisa-docs-list")
            self.notices = gr.Markdown(elem_id="lisa-docs-notices")
            with gr.Row():
                self.summarize = gr.Button("Summarise", size="sm", elem_id="lisa-docs-summarize")
                self.remove = gr.Button("Remove", size="sm", variant="stop", elem_id="lisa-docs-remove")
            self.summary = gr.Markdown(elem_id="lisa-docs-summary")

    def wire(
        self, demo: gr.Blocks, page: PageLoad, session_id: gr.State, model: gr.Dropdown, max_tokens: gr.Textbox
    ) -> None:
        page.add(self.on_load, [], [self.panel, self.summarize])
        listing = [self.documents, self.notices]
        self.upload.upload(self.add, [self.upload, session_id, model], [*listing, session_id, self.upload])
        self.remove.click(self.delete, [self.documents, session_id, model], listing)
        self.summarize.click(self.summarise, [self.documents, session_id, model, max_tokens], [self.summary]).then(
            self.refresh, [session_id, model], listing
        )
        model.change(self.refresh, [session_id, model], listing)

    @shows_errors
    async def on_load(self, request: gr.Request) -> tuple[Any, ...]:
        config = await self.backend.client(request).configuration()
        return (
            gr.update(visible=config.allows("upload_context_docs")),
            gr.update(visible=config.allows("document_summarization")),
        )

    async def listing(self, client: BackendClient, session_id: str | None, model: str | None) -> tuple[Any, ...]:
        if not session_id:
            return gr.update(choices=[], value=None), ""
        documents = await api.context_documents(client, session_id)
        notes: list[str] = []
        if documents and model:
            notes = [n.message for n in (await api.context_preview(client, session_id, model)).notices]
        return gr.update(choices=document_choices(documents), value=None), notices_text(notes)

    @shows_errors
    async def refresh(self, session_id: str | None, model: str | None, request: gr.Request) -> tuple[Any, ...]:
        return await self.listing(self.backend.client(request), session_id, model)

    @shows_errors
    async def add(
        self, paths: list[str] | None, session_id: str | None, model: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        if not paths:
            return gr.update(), gr.update(), session_id, None
        client = self.backend.client(request)
        if session_id is None:
            session_id = await self.new_session(client)
        files = [(Path(p).name, await asyncio.to_thread(Path(p).read_bytes)) for p in paths]
        added = await api.upload_documents(client, session_id, files)
        gr.Info(f"Added {', '.join(d.name for d in added)}.")
        return (*await self.listing(client, session_id, model), session_id, None)

    @shows_errors
    async def delete(
        self, document_id: str | None, session_id: str | None, model: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        if not document_id or not session_id:
            raise gr.Error("Choose a document first.")
        client = self.backend.client(request)
        await api.delete_document(client, session_id, document_id)
        return await self.listing(client, session_id, model)

    @streams_errors
    async def summarise(
        self, document_id: str | None, session_id: str | None, model: str | None, max_tokens: str | None,
        request: gr.Request,
    ) -> AsyncIterator[str]:  # fmt: skip
        """The summary's length is the chat's *Max tokens* when set (else the backend's: a fifth of the window)."""
        if not document_id or not session_id:
            raise gr.Error("Choose a document first.")
        if not model:
            raise gr.Error("Choose a model first (it must be able to summarise).")
        try:
            length = parse_arguments(max_tokens, None, None, None, None).max_tokens
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        yield "Summarising…"
        client = self.backend.client(request)
        async for name, data in api.summarize(client, session_id, document_id, model, length):
            if name == "summary":
                yield f"**Summary** ({data.get('requests', 1)} request(s)):\n\n{data.get('summary', '')}"
                return
            if line := summary_progress(name, data):
                yield line
