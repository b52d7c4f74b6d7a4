"""Search over a repository's collections: embed the query once per embedding model, ask the store (vector,
full-text or both), optionally rerank with a cross-encoder served by a TEI-compatible ``/rerank`` endpoint, rank by page
(:mod:`backend.rag.ranking`: a page's best chunk gains a share of its next one's score, at most a few chunks a page),
and drop what falls under the score threshold."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
import orjson
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from backend.auth.principal import Principal
from backend.errors import BadRequest, LisaError, UpstreamError
from backend.net.egress import EgressGuard, EgressRefused
from backend.rag.embedder import Embedder
from backend.rag.ranking import PageFusion, diversify, fuse_pages, with_length_penalty, with_page_prior
from backend.rag.repositories import RepositoryService, collection_ref
from backend.rag.schemas import CollectionPublic, SearchHit, SearchResult
from backend.rag.vectorstores import Hit, PageMatch, SearchQuery, VectorStore

log = logging.getLogger("lisa.rag")
T = TypeVar("T")
MAX_QUERY_CHARS = 4000
PAGE_POOL_FACTOR = 3  # chunks fetched per chunk asked for when ranking by page


@dataclass
class SearchParams:
    query: str
    top_k: int = 5
    collections: list[str] = field(default_factory=list)  # empty: every collection the caller may see
    hybrid_weight: float | None = None
    score_threshold: float | None = None
    tags: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    rerank: bool | None = None  # None: rerank when a reranker is configured
    pages: bool = True  # page-level fusion and the per-page cap (False: chunks ranked alone, as before)


class Reranker:
    """A TEI-compatible reranker: POST {url}/rerank {"query", "texts"} -> [{"index", "score"}, ...]. Its
    connections pass the egress guard (LISA_RAG_RERANKER_URL is the operator's, but the guard is one for all)."""

    def __init__(self, url: str, egress: EgressGuard, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.egress = egress
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def check(self) -> None:
        """Refuses an address the egress guard refuses: a configuration error, said at start rather than at the first
        search. A reranker that is down, or a name that does not resolve yet, is not one: the guard checks every
        connection anyway, and searches that rerank answer 502 until the reranker is back."""
        try:
            await self.egress.check_url(self.url, "LISA_RAG_RERANKER_URL")
        except EgressRefused as exc:
            if not isinstance(exc.__cause__, OSError | TimeoutError):
                raise
            log.warning("%s; searches that rerank fail until it does", exc.message)

    async def scores(self, query: str, texts: list[str]) -> list[float]:
        body = orjson.dumps({"query": query, "texts": texts, "truncate": True})
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout, connector=self.egress.connector()) as session,
                session.post(f"{self.url}/rerank", data=body, headers={"Content-Type": "application/json"}) as resp,
            ):
                payload = await resp.read()
                if resp.status >= 400:
                    raise UpstreamError(f"reranker failed with status {resp.status}: {payload[:200]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"reranker unreachable: {exc}") from exc
        scores = [0.0] * len(texts)
        for item in orjson.loads(payload):
            scores[int(item["index"])] = float(item["score"])
        return scores


class SearchService:
    def __init__(
        self,
        repositories: RepositoryService,
        embedder: Embedder,
        reranker: Reranker | None,
        default_hybrid_weight: float,
        rerank_candidates: int,
        page_fusion: PageFusion | None = None,
    ) -> None:
        self.repositories = repositories
        self.embedder = embedder
        self.reranker = reranker
        self.default_hybrid_weight = default_hybrid_weight
        self.rerank_candidates = rerank_candidates
        self.page_fusion = page_fusion or PageFusion()

    async def start(self) -> None:
        if self.reranker is not None:
            await self.reranker.check()

    async def search(self, principal: Principal, repository_id: str, params: SearchParams) -> SearchResult:
        started = time.perf_counter()
        query = params.query.strip()
        if not query:
            raise BadRequest("'query' must not be empty")
        if len(query) > MAX_QUERY_CHARS:
            raise BadRequest(f"'query' is over {MAX_QUERY_CHARS} characters")
        visible = await self.repositories.collections(repository_id, principal)
        if params.collections:
            known = {c.id: c for c in visible}
            missing = [c for c in params.collections if c not in known]
            if missing:
                raise BadRequest(f"unknown collection(s) in repository '{repository_id}': {', '.join(missing)}")
            visible = [known[c] for c in params.collections]
        rerank = self.reranker is not None if params.rerank is None else params.rerank
        if rerank and self.reranker is None:
            raise BadRequest("reranking was asked for, but no reranker is configured (LISA_RAG_RERANKER_URL)")
        weight = self.default_hybrid_weight if params.hybrid_weight is None else params.hybrid_weight
        pool = max(params.top_k, self.rerank_candidates) if rerank else params.top_k
        if params.pages:  # page fusion sees a page's next chunk, and the cap leaves room for other pages
            pool = max(pool, params.top_k * PAGE_POOL_FACTOR)
        store = await self.repositories.store(repository_id)
        models = sorted({c.embedding_model for c in visible})
        t0 = time.perf_counter()
        vectors = dict(zip(models, await asyncio.gather(*(self._embed(m, query, weight) for m in models)), strict=True))
        t1 = time.perf_counter()
        per_collection = await _guarded(
            *(
                store.search(
                    collection_ref(c),
                    SearchQuery(
                        vector=vectors[c.embedding_model],
                        text=query,
                        top_k=pool,
                        hybrid_weight=weight,
                        tags=params.tags,
                        sources=params.sources,
                    ),
                )
                for c in visible
            )
        )
        t2 = time.perf_counter()
        hits: list[Hit] = sorted((h for hs in per_collection for h in hs), key=lambda h: h.score, reverse=True)[:pool]
        rerank_scores: list[float | None] = [None] * len(hits)
        if rerank and hits and self.reranker is not None:
            scores = await self.reranker.scores(query, [h.text for h in hits])
            order = sorted(range(len(hits)), key=lambda i: scores[i], reverse=True)
            hits = [hits[i] for i in order]
            rerank_scores = [scores[i] for i in order]
        t_reranked = time.perf_counter()
        if params.pages:
            page_scores = (
                await self._page_scores(store, visible, vectors, hits)
                if not rerank
                and (self.page_fusion.page_vector > 0 or self.page_fusion.page_length > 0)
                and weight < 1.0
                else {}
            )
            hits, rerank_scores = self._by_page(hits, rerank_scores, page_scores, reranked=rerank)
        t3 = time.perf_counter()
        results: list[SearchHit] = []
        for hit, rerank_score in zip(hits, rerank_scores, strict=True):
            if params.score_threshold is not None and not _passes(hit, params.score_threshold, weight):
                continue
            results.append(to_search_hit(hit, rerank_score))
            if len(results) == params.top_k:
                break
        return SearchResult(
            query=query,
            repository_id=repository_id,
            collections=[c.id for c in visible],
            results=results,
            timings_ms={
                "embed": round((t1 - t0) * 1000, 2),
                "search": round((t2 - t1) * 1000, 2),
                "rerank": round((t_reranked - t2) * 1000, 2),
                "pages": round((t3 - t_reranked) * 1000, 2),
                "total": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    async def _page_scores(
        self, store: VectorStore, visible: list[CollectionPublic], vectors: dict[str, list[float]], hits: list[Hit]
    ) -> dict[str, PageMatch]:
        """Each candidate page's similarity to the query (its page vector's cosine) and chunk count, from the
        collection where it is most similar."""
        wanted: dict[str, dict[str, str]] = {}  # collection -> document id -> page
        for hit in hits:
            document_id = hit.metadata.get("document_id")
            if document_id:
                wanted.setdefault(str(hit.metadata.get("collection") or ""), {})[str(document_id)] = page_key(hit)
        asked = [c for c in visible if wanted.get(c.id)]
        found = await _guarded(
            *(store.page_similarity(collection_ref(c), vectors[c.embedding_model], list(wanted[c.id])) for c in asked)
        )
        scores: dict[str, PageMatch] = {}
        for collection, matches in zip(asked, found, strict=True):
            for document_id, match in matches.items():
                page = wanted[collection.id].get(document_id)
                if page is not None and (page not in scores or match.similarity > scores[page].similarity):
                    scores[page] = match
        return scores

    def _by_page(
        self,
        hits: list[Hit],
        rerank_scores: list[float | None],
        page_scores: dict[str, PageMatch],
        *,
        reranked: bool,
    ) -> tuple[list[Hit], list[float | None]]:
        """Page-level order: fused page scores, with the page-vector prior and the length penalty when
        ``page_scores`` has any (not after a reranker, whose scores are its own: there only the cap), then at most
        ``per_page`` chunks of a page. A page is its source (the same file in two collections is one)."""
        keyed = [(i, page_key(h), h.score) for i, h in enumerate(hits)]
        if reranked:
            order = diversify(keyed, self.page_fusion.per_page)
        else:
            fusion = self.page_fusion
            similar = {page: match.similarity for page, match in page_scores.items()}
            lengths = {page: match.chunks for page, match in page_scores.items()}
            priored = with_length_penalty(
                with_page_prior(keyed, similar, fusion.page_vector), lengths, fusion.page_length
            )
            order = fuse_pages(priored, fusion)
        out = [Hit(hits[i].id, hits[i].text, score, hits[i].metadata, hits[i].similarity) for i, _, score in order]
        return out, [rerank_scores[i] for i, _, _ in order]

    async def _embed(self, model: str, query: str, weight: float) -> list[float]:
        if weight >= 1.0:
            return []  # full-text only: no vector needed
        [vector] = await self.embedder.embed(model, [query])
        return vector


async def _guarded(*searches: Awaitable[T]) -> list[T]:
    """Store failures (an unreachable domain, a missing k-NN plugin) reach the caller as 502 with the reason."""
    try:
        return list(await asyncio.gather(*searches))
    except LisaError:
        raise
    except Exception as exc:
        raise UpstreamError(f"the vector store failed: {exc.__class__.__name__}: {exc}") from exc


def page_key(hit: Hit) -> str:
    return str(hit.metadata.get("source") or hit.metadata.get("document_id") or hit.id)


def _passes(hit: Hit, threshold: float, weight: float) -> bool:
    """The threshold is a minimum cosine similarity (blended scores are relative, so they cannot carry one);
    for full-text-only search it applies to the text rank."""
    if weight >= 1.0:
        return hit.score >= threshold
    return hit.similarity is not None and hit.similarity >= threshold


def to_search_hit(hit: Hit, rerank_score: float | None = None) -> SearchHit:
    meta = hit.metadata
    page = meta.get("page")
    return SearchHit(
        id=hit.id,
        text=hit.text,
        score=hit.score,
        similarity=hit.similarity,
        document_id=str(meta.get("document_id", "")),
        source=str(meta.get("source", "")),
        name=str(meta.get("name", "")),
        collection_id=str(meta.get("collection", "")),
        part=int(meta.get("part") or 0),
        page=int(page) if page is not None else None,
        tags=list(meta.get("tags") or []),
        metadata={
            k: v
            for k, v in meta.items()
            if k not in ("document_id", "source", "name", "collection", "part", "page", "tags")
        },
        rerank_score=rerank_score,
    )


class LisaRetriever(BaseRetriever):
    """A LangChain retriever over a repository, searching as ``principal`` (used for RAG in chat)."""

    service: SearchService
    principal: Principal
    repository_id: str
    params: SearchParams

    model_config = {"arbitrary_types_allowed": True}

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        raise NotImplementedError("LisaRetriever is async: use ainvoke")

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        params = SearchParams(**{**self.params.__dict__, "query": query})
        result = await self.service.search(self.principal, self.repository_id, params)
        return [
            Document(
                page_content=hit.text,
                id=hit.id,
                metadata={
                    **hit.model_dump(exclude={"text", "metadata"}),
                    "repository_id": self.repository_id,
                    # what a citation shows: the page title (HTML <title>, markdown # heading) and heading trail
                    "title": str(hit.metadata.get("title") or ""),
                    "section": str(hit.metadata.get("section") or ""),
                },
            )
            for hit in result.results
        ]
