"""RAG in ``/v1/chat/completions``: the ``rag`` extension field names repositories (and collections, top_k); the
retrieved chunks go into the prompt, and the sources come back with the answer so clients can cite them.

Request (openai SDK: ``extra_body={"rag": {...}}``)::

    "rag": {"repositories": ["docs"], "collections": ["default"], "top_k": 4}

Response: a top-level ``sources`` list; for streams, one extra chunk with empty ``choices`` and the ``sources``
(the shape of the usage chunk, which OpenAI clients already accept), after the content and before the usage chunk
and ``data: [DONE]``. The gateway adds them to the answer (``backend/serve/answer.py``). Each source cites its
page: ``title``, ``section`` (heading trail, or null), ``passage`` (a short excerpt), ``url`` (the original's download
route in the document library, relative to the server) next to the chunk's full ``text`` and its scores.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from langchain_core.documents import Document
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.auth.principal import Principal
from backend.errors import BadRequest, LisaError
from backend.rag.embedder import Embedder
from backend.rag.search import MAX_QUERY_CHARS, LisaRetriever, Reranker, SearchParams, SearchService

T = TypeVar("T")
PASSAGE_CHARS = 300  # a source's ``passage``: enough to recognise the cited text; ``text`` has all of it
RERANKER_MODEL = "rag-reranker"  # the model name usage records give the reranker (LISA_RAG_RERANKER_URL)
INSTRUCTION = (
    "Answer the question using the numbered context passages below when they are relevant, and cite them as [1], "
    "[2], ... If the context does not contain the answer, say so."
)


class RagSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repositories: list[str] = Field(min_length=1, max_length=10)
    collections: list[str] = Field(default_factory=list, max_length=50)
    top_k: int = Field(default=4, ge=1, le=50)
    hybrid_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    score_threshold: float | None = None
    tags: list[str] = Field(default_factory=list, max_length=50)


def _relevance(doc: Document) -> float:
    rerank = doc.metadata.get("rerank_score")
    return float(rerank if rerank is not None else doc.metadata["score"])


def question_of(messages: Any) -> str:
    if not isinstance(messages, list):
        raise BadRequest("'messages' must be a list")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise BadRequest("RAG needs a user message to search for")


@dataclass(frozen=True, slots=True)
class RagRequest:
    spec: RagSpec
    question: str


@dataclass(frozen=True, slots=True)
class RagCall:
    model: str
    endpoint: str  # "embeddings" or "rerank"
    tokens: int
    latency_ms: float
    status: int


@dataclass
class RagUsage:
    """What RAG spent for one chat request (estimated at four characters a token), metered to the caller."""

    calls: list[RagCall] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.calls)

    async def timed(self, model: str, endpoint: str, tokens: int, work: Awaitable[T]) -> T:
        started = time.perf_counter()
        status = 200
        try:
            return await work
        except LisaError as exc:
            status = exc.status_code
            raise
        finally:
            self.calls.append(RagCall(model, endpoint, tokens, (time.perf_counter() - started) * 1000, status))


class _MeteredEmbedder(Embedder):
    """The shared embedder, noting each call in one request's ``RagUsage`` (everything else is delegated)."""

    def __init__(self, inner: Embedder, usage: RagUsage) -> None:  # no super().__init__: it delegates
        self._inner = inner
        self._usage = usage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def embed(self, model_id: str, texts: Sequence[str]) -> list[list[float]]:
        tokens = sum(max(1, len(t) // 4) for t in texts)
        return await self._usage.timed(model_id, "embeddings", tokens, self._inner.embed(model_id, texts))


class _MeteredReranker(Reranker):
    def __init__(self, inner: Reranker, usage: RagUsage) -> None:  # no super().__init__: it delegates
        self._inner = inner
        self._usage = usage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def scores(self, query: str, texts: list[str]) -> list[float]:
        tokens = sum(max(1, (len(query) + len(t)) // 4) for t in texts)  # a cross-encoder reads each pair
        return await self._usage.timed(RERANKER_MODEL, "rerank", tokens, self._inner.scores(query, texts))


class ChatRag:
    def __init__(self, search: SearchService, max_context_chars: int) -> None:
        self.search = search
        self.max_context_chars = max_context_chars

    def parse(self, payload: dict[str, Any]) -> RagRequest:
        """Removes ``rag`` from ``payload`` and validates it (a bad field is a 400 before any limit is touched)."""
        raw = payload.pop("rag")
        try:
            spec = RagSpec.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(["rag", *(str(p) for p in first["loc"])])
            raise BadRequest(f"invalid 'rag' field at {where}: {first['msg']}") from exc
        return RagRequest(spec, question_of(payload.get("messages"))[-MAX_QUERY_CHARS:])

    def reserve_tokens(self, rag: RagRequest) -> int:
        """Tokens to hold for RAG before it runs: the context it may add to the prompt and the query embeddings."""
        query = max(1, len(rag.question) // 4)
        framing = len(INSTRUCTION) + 64 * rag.spec.top_k  # the instruction, and "[n] name" before each passage
        return (self.max_context_chars + framing) // 4 + query * len(rag.spec.repositories)

    async def augment(
        self, principal: Principal, rag: RagRequest, payload: dict[str, Any], usage: RagUsage
    ) -> list[dict[str, Any]]:
        """Puts the retrieved context into the last user message of ``payload`` and returns the sources (possibly
        empty); each embedding and rerank call is noted in ``usage``."""
        spec, question = rag.spec, rag.question
        search = copy.copy(self.search)  # this request's view: the same services, metered
        search.embedder = _MeteredEmbedder(self.search.embedder, usage)
        if self.search.reranker is not None:
            search.reranker = _MeteredReranker(self.search.reranker, usage)
        params = SearchParams(
            query=question,
            top_k=spec.top_k,
            collections=spec.collections,
            hybrid_weight=spec.hybrid_weight,
            score_threshold=spec.score_threshold,
            tags=spec.tags,
        )
        retrievers = [LisaRetriever(service=search, principal=principal, repository_id=r, params=params)
                      for r in spec.repositories]  # fmt: skip
        found = await asyncio.gather(*(r.ainvoke(question) for r in retrievers))
        ranked: list[Document] = sorted((d for docs in found for d in docs), key=_relevance, reverse=True)
        sources: list[dict[str, Any]] = []
        passages: list[str] = []
        budget = self.max_context_chars
        for n, doc in enumerate(ranked[: spec.top_k], start=1):
            text = doc.page_content[:budget]
            if not text:
                break
            budget -= len(text)
            meta = doc.metadata
            passages.append(f"[{n}] {meta['name']}\n{text}")
            sources.append(
                {
                    "index": n,
                    **{k: meta[k] for k in ("repository_id", "collection_id", "document_id", "name", "source")},
                    **{k: meta[k] for k in ("page", "part", "score", "similarity", "rerank_score")},
                    **citation(meta, doc.page_content),
                    "text": doc.page_content,
                }
            )
        if passages:
            _prepend_context(payload["messages"], INSTRUCTION + "\n\nContext:\n" + "\n\n".join(passages))
        return sources


def citation(meta: dict[str, Any], text: str) -> dict[str, Any]:
    """What a client shows for a source and opens: the page's title (its name when it has none), the section (the
    heading trail, null where the chunking records none), a short passage, and the download route of the original in
    the document library (it answers 404 to a user who may not see the repository)."""
    repository, document = quote(str(meta["repository_id"]), safe=""), quote(str(meta["document_id"]), safe="")
    return {
        "title": meta.get("title") or meta["name"],
        "section": meta.get("section") or None,
        "passage": passage(text),
        "url": f"/api/repositories/{repository}/documents/{document}/content",
    }


def passage(text: str, limit: int = PASSAGE_CHARS) -> str:
    """The chunk's text on one line, cut at a word boundary near ``limit`` characters (an ellipsis marks a cut)."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat.rfind(" ", 0, limit)
    return flat[: cut if cut > limit // 2 else limit].rstrip() + "…"


def _prepend_context(messages: list[Any], context: str) -> None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                message["content"] = [{"type": "text", "text": context + "\n\nQuestion:"}, *content]
            else:
                message["content"] = f"{context}\n\nQuestion: {content}"
            return
