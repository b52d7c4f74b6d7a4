"""Embeddings for RAG, from any embedding model in the registry.

OpenAI-compatible upstreams (TEI, vLLM, llama.cpp, the local MiniLM server) are called directly over one shared
aiohttp session; third-party providers (Bedrock, ...) go through LiteLLM. Texts are sent in batches, with a few
batches in flight so the model server never idles between them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson
from langchain_core.embeddings import Embeddings

from backend.errors import BadRequest, Unavailable, UpstreamError, UpstreamTimeout
from backend.net.egress import EgressGuard
from backend.registry.route_table import RouteTable
from backend.registry.schemas import Hosting, ModelRoute, ModelType


class Embedder:
    def __init__(self, routes: RouteTable, batch_size: int, parallel: int, timeout: float) -> None:
        self.routes = routes
        self.batch_size = batch_size
        self.parallel = parallel
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self._session: aiohttp.ClientSession | None = None

    async def start(self, egress: EgressGuard | None = None) -> None:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            connector=(egress or EgressGuard.default()).connector(limit=64),  # checked at connect time
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def route(self, model_id: str) -> ModelRoute:
        route = await self.routes.get(model_id)
        if route is None:
            raise BadRequest(f"embedding model '{model_id}' is not registered")
        if route.type != ModelType.embedding:
            raise BadRequest(f"model '{model_id}' is a {route.type.value} model, not an embedding model")
        if not route.serving:
            raise BadRequest(f"embedding model '{model_id}' is not in service (status: {route.status.value})")
        if (why := route.unavailable()) is not None:  # marked unreachable by the health checks
            raise Unavailable(f"embedding {why}")
        return route

    async def dimensions(self, model_id: str) -> int:
        [vector] = await self.embed(model_id, ["dimension probe"])
        return len(vector)

    async def embed(self, model_id: str, texts: Sequence[str]) -> list[list[float]]:
        """Vectors for ``texts`` in order; batches of ``batch_size`` with up to ``parallel`` in flight."""
        if not texts:
            return []
        route = await self.route(model_id)
        batches = [list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        gate = asyncio.Semaphore(self.parallel)

        async def one(batch: list[str]) -> list[list[float]]:
            async with gate:
                return await self._call(route, batch)

        results = await asyncio.gather(*(one(b) for b in batches))
        return [vector for batch in results for vector in batch]

    async def _call(self, route: ModelRoute, texts: list[str]) -> list[list[float]]:
        if route.hosting == Hosting.third_party:
            return await _litellm_embed(route, texts)
        if self._session is None:
            raise RuntimeError("Embedder.start() was not called")
        headers = {"Content-Type": "application/json"}
        if route.api_key:
            headers["Authorization"] = f"Bearer {route.api_key}"
        url = (route.base_url or "").rstrip("/") + "/embeddings"
        body = orjson.dumps({"model": route.upstream_model or route.id, "input": texts})
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                payload = await resp.read()
                if resp.status >= 400:
                    snippet = payload[:300].decode("utf-8", "replace")
                    raise UpstreamError(f"embedding model '{route.id}' failed with status {resp.status}: {snippet}")
        except TimeoutError as exc:
            raise UpstreamTimeout(f"embedding model '{route.id}' timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"embedding model '{route.id}' unreachable: {exc}") from exc
        data = orjson.loads(payload).get("data") or []
        if len(data) != len(texts):
            raise UpstreamError(f"embedding model '{route.id}' returned {len(data)} vectors for {len(texts)} texts")
        data.sort(key=lambda d: d.get("index", 0))
        return [d["embedding"] for d in data]


async def _litellm_embed(route: ModelRoute, texts: list[str]) -> list[list[float]]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    kwargs: dict[str, Any] = {"model": route.provider_model, "input": texts}
    if route.api_key:
        kwargs["api_key"] = route.api_key
    if route.base_url:
        kwargs["api_base"] = route.base_url
    try:
        response = await litellm.aembedding(**kwargs)
    except Exception as exc:  # LiteLLM raises provider-specific types
        raise UpstreamError(f"embedding model '{route.id}': {exc}") from exc
    return [item["embedding"] for item in response.data]


class LisaEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` over the platform's embedding models (for LangChain vector stores/retrievers)."""

    def __init__(self, embedder: Embedder, model_id: str) -> None:
        self.embedder = embedder
        self.model_id = model_id

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError("use the async API (aembed_documents) inside the backend")

    def embed_query(self, text: str) -> list[float]:
        raise NotImplementedError("use the async API (aembed_query) inside the backend")

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.embedder.embed(self.model_id, texts)

    async def aembed_query(self, text: str) -> list[float]:
        [vector] = await self.embedder.embed(self.model_id, [text])
        return vector
