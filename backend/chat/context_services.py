"""What joins a chat besides its messages, wired once per process (``Services.context``): documents in context,
their summaries, generated images, compaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.chat.compaction import Compactor
from backend.chat.context_docs import ContextDocuments
from backend.chat.images import SessionImages
from backend.chat.prompt_context import PromptContexts
from backend.chat.store import ChatStore
from backend.chat.summarize import DocumentSummaries
from backend.config import Settings
from backend.registry.route_table import RouteTable
from backend.registry.service import ModelRegistry
from backend.serve.internal import GatewayClient
from ingestion.parser_pool import ParserPool


@dataclass
class ContextServices:
    documents: ContextDocuments
    summaries: DocumentSummaries
    images: SessionImages
    compactor: Compactor
    prompt: PromptContexts  # the chat turn's one call: documents and compaction into its messages

    @classmethod
    def build(
        cls,
        settings: Settings,
        engine: AsyncEngine,
        store: ChatStore,
        registry: ModelRegistry,
        routes: RouteTable,
        client: GatewayClient,
        parser: ParserPool,  # the RAG parser processes, shared: one pool of untrusted-file parsers per process
    ) -> ContextServices:
        window = settings.chat_default_context_window
        documents = ContextDocuments(
            engine, store, parser, max_file_bytes=settings.context_max_file_bytes,
            max_documents=settings.context_max_documents, max_chars=settings.context_max_chars, default_window=window,
        )  # fmt: skip
        summaries = DocumentSummaries(
            documents, registry, client, default_window=window, max_tokens=settings.chat_summary_max_tokens,
            max_requests=settings.chat_summary_max_requests,
        )  # fmt: skip
        images = SessionImages(engine, store, client, max_bytes=settings.chat_image_max_bytes)
        compactor = Compactor(
            engine, store, routes, client, default_window=window, threshold=settings.chat_compaction_threshold,
            target=settings.chat_compaction_target, summary_model=settings.chat_summary_model,
            summary_max_tokens=settings.chat_summary_max_tokens, max_requests=settings.chat_summary_max_requests,
        )  # fmt: skip
        prompt = PromptContexts(documents, compactor, routes, window)
        return cls(documents, summaries, images, compactor, prompt)
