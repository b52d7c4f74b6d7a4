"""The "RAG search" section of docs/benchmarks.md, rendered from one ``bench.rag_search`` invocation's results."""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING

from backend.rag.vectorstores import pgvector as pgv
from bench import rag_data, rag_lisa
from bench.rag_data import Data
from bench.rag_lisa import REPOSITORY, fmt

if TYPE_CHECKING:
    from bench.rag_search import Results

SECTION = "## RAG search"
WIDTH = 110
BAR_SIZE = 100_000
BAR_VECTOR_P50_MS, BAR_RECALL, BAR_REST_P50_MS = 15.0, 0.95, 60.0
METHODS = {
    "hnsw": "vector step: `PgVectorStore.search` (HNSW)",
    "exact_sql": "exact: same SQL, index scans off",
    "exact_numpy": "exact: numpy brute force (in process)",
    "rest_dense": "REST search, dense (`hybrid_weight=0`)",
    "rest_hybrid": "REST search, hybrid (default weight)",
    "embed": "embedding server alone, one query",
}


def size_table(res: Results, n: int) -> list[str]:
    rows = [
        "| method | p50 ms | p99 ms | recall@10 | p50 x exact SQL | server embed p50 ms | server search p50 ms "
        "| server pages p50 ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    base = res.p(n, "exact_sql", 50)
    for method, label in METHODS.items():
        if (n, method) not in res.runs:
            continue
        p50 = res.p(n, method, 50)
        speed = "-" if method == "embed" or p50 != p50 else f"{base / p50:.2f}x"
        rest = method.startswith("rest")
        cells = [
            fmt(p50),
            fmt(res.p(n, method, 99)),
            fmt(res.recall(n, method), 3),
            speed,
            fmt(res.server(n, method, "embed")) if rest else "",
            fmt(res.server(n, method, "search")) if rest else "",
            fmt(res.server(n, method, "pages")) if rest else "",
        ]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def bar_checks(res: Results) -> list[tuple[str, str, bool | None]]:
    n = BAR_SIZE
    if (n, "hnsw") not in res.runs:
        return []
    checks: list[tuple[str, str, bool | None]] = []

    def add(name: str, value: float, ok: bool, shown: str) -> None:
        checks.append((name, shown, None if value != value else ok))

    p50 = res.p(n, "hnsw", 50)
    add(f"vector step p50 ≤ {BAR_VECTOR_P50_MS:g} ms", p50, p50 <= BAR_VECTOR_P50_MS, f"{fmt(p50)} ms")
    recall = res.recall(n, "hnsw")
    add(f"vector step recall@10 ≥ {BAR_RECALL:g}", recall, recall >= BAR_RECALL, fmt(recall, 3))
    for method, what in (("rest_dense", "dense"), ("rest_hybrid", "hybrid, default weight")):
        value = res.p(n, method, 50)
        name = f"REST search ({what}), query embedding included, p50 ≤ {BAR_REST_P50_MS:g} ms"
        add(name, value, value <= BAR_REST_P50_MS, f"{fmt(value)} ms")
    return checks


def embedding_runtime() -> str:
    """What runs the embedding server's model and on how many threads: LISA's ``embedding_backend`` and
    ``llama_threads`` settings, read from the same environment as the server."""
    from backend.config import Settings

    settings = Settings()
    return f"{settings.embedding_backend} on {settings.llama_threads} threads"


def render(res: Results, data: Data, args: argparse.Namespace, command: str, elapsed: float) -> str:
    real = len(data.chunks)
    qkinds = {k: data.query_kinds.count(k) for k in ("question", "chunk words")}
    nq = min(args.queries, len(data.queries))
    lines = [
        SECTION,
        "",
        *rag_lisa.header(command, elapsed, res.quiet.waited if res.quiet else 0.0),
        *rag_lisa.machine(args.code),
        f"- LISA: `lisa serve` with its local models (MiniLM embedding server: {embedding_runtime()}), embedded "
        f"PostgreSQL 18 + pgvector; pgvector repository `{REPOSITORY}`, one collection per size, created through "
        "the API; HNSW `m = 16, ef_construction = 64`, "
        f"`hnsw.ef_search = {pgv.EF_SEARCH}` (`backend/rag/vectorstores/pgvector.py`)",
        f"- vectors: MiniLM (`{rag_data.model_version()}`, 384-d, normalised) of the {real:,} chunks of the "
        "`postgresql-doc-15` HTML manual, fixed 512/51-character chunks made by `ingestion.parsing.parse` when "
        f"the cache was built ({rag_data.built(data)}; `bench/rag_data.py`, under `~/.cache/lisa-bench/rag/`); "
        "sizes above "
        f"{real:,} are the real vectors plus perturbed copies of seeded random real ones (Gaussian noise of norm "
        f"{rag_data.NOISE_NORM:g}, normalised again: cosine ≈ 0.96 to the original; the copy carries the original's "
        "text), loaded with COPY, index built after the load",
        f"- queries: {nq} of {len(data.queries)} ({qkinds['question']} questions from `bench/rag_eval/postgresql15*.jsonl`, "
        f"{qkinds['chunk words']} windows of {rag_data.QUERY_WORDS} words from seeded random chunks), one at a time "
        "after 20 warm-up queries, top 10; exact SQL on the first "
        f"{min(args.exact_queries, nq)}; recall@10 against numpy exact search over the same vectors (float64)",
        "- vector step: `PgVectorStore.search(hybrid_weight=0)` in the benchmark process over the Unix socket, with "
        "the query's cached vector; REST: httpx, one keep-alive connection, admin token, query text in (embedded by "
        "the server); server embed/search/pages: the median of the answer's `timings_ms` (pages: page vectors and page fusion)",
        f"- every figure: median of {args.runs} runs; CPU used by processes outside the benchmark during the kept "
        f"runs (of all cores; a run above {args.quiet_pct:g}% is repeated up to {args.retries} times): "
        + (res.quiet.summary() if res.quiet else "-"),
        "",
    ]
    for size in res.sizes:
        kind = "real" if size.n <= real else f"{real:,} real + {size.n - real:,} perturbed copies"
        load = f"; COPY {size.load_s:.0f} s, HNSW build {size.index_s:.0f} s" if size.load_s else ""
        lines += [f"### {size.n:,} chunks ({kind}{load})", "", *size_table(res, size.n), ""]
    checks = bar_checks(res)
    if checks:
        lines += [
            "### The bar (issue 4)",
            "",
            *textwrap.wrap(
                f"At {BAR_SIZE:,} chunks: the vector-search step p50 ≤ {BAR_VECTOR_P50_MS:g} ms with recall@10 ≥ "
                f"{BAR_RECALL:g}, and the whole REST search, query embedding included, p50 ≤ {BAR_REST_P50_MS:g} ms.",
                WIDTH,
            ),
            "",
            "| bar | measured | verdict |",
            "|---|--:|---|",
            *(
                f"| {name} | {shown} | {'pass' if ok else 'n/a' if ok is None else '**FAIL**'} |"
                for name, shown, ok in checks
            ),
            "",
        ]
    return "\n".join(lines)
