"""Summarising a document in a session's context with a model that has the ``summarization`` feature.

``POST /api/sessions/{id}/documents/{doc_id}/summary`` checks everything that can be refused before it answers
(the session and document: 404; the model: 404 when the caller may not use it, 400 when it is not a textgen model
with the ``summarization`` feature, naming the feature; a document needing more requests than allowed: 400), then
streams server-sent events while backend/chat/map_reduce.py works:

    event: plan      data: {"pieces": 4, "context_window": 1024, "max_tokens": 204, "model": "m"}
    event: progress  data: {"stage": "map", "step": 1, "of": 4, "round": 0}       (one before each request)
    event: progress  data: {"stage": "reduce", "step": 1, "of": 2, "round": 1}
    event: summary   data: {"summary": "...", "requests": 7, "document": {...}}   (kept on the document)
    event: error     data: {"status": 502, "detail": "..."}                       (instead, when a request fails)

Every request goes through the gateway (``GatewayClient``) as the caller: their access, limits and metering apply.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from backend.auth.principal import Principal
from backend.chat import map_reduce
from backend.chat.context_docs import ContextDocuments
from backend.chat.context_schemas import SummaryRequest
from backend.errors import BadRequest, LisaError
from backend.registry.schemas import Feature, ModelType
from backend.registry.service import ModelRegistry
from backend.serve.internal import GatewayClient

DOCUMENT_PROMPTS = map_reduce.Prompts(
    whole=(
        "Write a concise summary of the following document. Keep the key facts, names, numbers and conclusions.\n\n"
        "Document:\n{text}\n\nSummary:"
    ),
    map=(
        "Below is part {part} of {parts} of a longer document. Write a concise summary of this part, keeping the "
        "key facts, names and numbers.\n\nPart {part}:\n{text}\n\nSummary of part {part}:"
    ),
    reduce=(
        "Below are summaries of consecutive parts of one document. Combine them into one concise summary of the "
        "whole document, keeping the key facts, names and numbers.\n\n{text}\n\nSummary:"
    ),
)


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def answer_text(answer: dict[str, Any]) -> str:
    """The text of a chat completion's first choice ("" when it has none)."""
    choices = answer.get("choices") or []
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def gateway_asker(client: GatewayClient, principal: Principal, model: str) -> map_reduce.Ask:
    """``map_reduce.Ask`` through the gateway, as ``principal``."""

    async def ask(prompt: str, max_tokens: int) -> str:
        payload = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
        return answer_text(await client.complete(principal, "chat/completions", payload))

    return ask


@dataclass(frozen=True)
class SummaryJob:
    """A summary that passed every check: what the stream then does."""

    principal: Principal
    session_id: str
    document_id: str
    model: str
    budget: map_reduce.Budget
    pieces: list[str]


class DocumentSummaries:
    def __init__(
        self,
        documents: ContextDocuments,
        registry: ModelRegistry,
        client: GatewayClient,
        *,
        default_window: int,
        max_tokens: int,
        max_requests: int,
    ) -> None:
        self.documents = documents
        self.registry = registry
        self.client = client
        self.default_window = default_window
        self.max_tokens = max_tokens
        self.max_requests = max_requests

    async def prepare(
        self, principal: Principal, session_id: str, document_id: str, request: SummaryRequest
    ) -> SummaryJob:
        """Every check, before anything streams (404 / 400 with the reason)."""
        text = await self.documents.text_of(principal, session_id, document_id)
        model = await self.registry.get(request.model, principal)  # 404 when the caller may not use it
        if model.type != ModelType.textgen:
            raise BadRequest(f"model '{model.id}' is an {model.type} model: summaries need a textgen model", "model")
        if Feature.summarization not in model.features:
            raise BadRequest(
                f"model '{model.id}' does not have the '{Feature.summarization}' feature: choose a model that "
                "has it (an admin sets a model's features)",
                "model",
            )
        window = model.context_window or self.default_window
        budget = map_reduce.budget_for(window, request.max_tokens or self.max_tokens)
        pieces = await asyncio.to_thread(map_reduce.plan, text, budget, DOCUMENT_PROMPTS, self.max_requests)
        return SummaryJob(principal, session_id, document_id, model.id, budget, pieces)

    async def stream(self, job: SummaryJob) -> AsyncIterator[bytes]:
        """The events of a prepared summary (see the module's docstring); the summary is kept on the document."""
        yield sse(
            "plan",
            {"pieces": len(job.pieces), "context_window": job.budget.window,
             "max_tokens": job.budget.output_tokens, "model": job.model},
        )  # fmt: skip
        ask = gateway_asker(self.client, job.principal, job.model)
        try:
            async for event in map_reduce.run(job.pieces, job.budget, DOCUMENT_PROMPTS, ask):
                if isinstance(event, map_reduce.Progress):
                    yield sse("progress", event.as_dict())
                    continue
                document = await self.documents.save_summary(
                    job.principal, job.session_id, job.document_id, event.text, job.model
                )
                yield sse(
                    "summary",
                    {"summary": event.text, "requests": event.requests, "document": document.model_dump(mode="json")},
                )
        except LisaError as exc:
            yield sse("error", {"status": exc.status_code, "detail": exc.message})
