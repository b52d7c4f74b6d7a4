"""Hybrid search before and after bounding its full-text side: page-level quality of the evaluation questions, and
the full-text side's latency, on the RAG search benchmark's collections.

"after" is ``PgVectorStore.search`` as it stands. "before" is the full-text side as it was until 2026-11-27: every
chunk holding any of the query's terms ranked (``ts_rank`` of the ORed terms, the same ``RANK``), fused with the
same dense candidates by the same ``fuse``. Each of the 235 questions of ``bench/rag_eval/postgresql15*.jsonl`` names the page
that answers it; the top 10 chunks are reduced to distinct pages (``backend.rag.evaluation``), hit@k and MRR are
over the questions. The collections are those ``bench.rag_search`` loads (fixed 512/51 chunks of the whole manual,
the 100k one with perturbed copies that carry their original's page): pass the same ``--work`` to reuse them.

    .venv/bin/python -m bench.rag_hybrid_check --work ~/.cache/lisa-bench/rag-work
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from backend.rag.evaluation import rank_of
from backend.rag.vectorstores import CollectionRef, Hit, SearchQuery
from backend.rag.vectorstores import pgvector as pgv
from backend.rag.vectorstores.base import fuse
from bench import rag_data, rag_lisa, rag_search
from bench.rag_data import Data, log

WEIGHT = 0.3  # the default hybrid weight (settings.rag_hybrid_weight)
TOP_K = 10
BEFORE_SQL = (  # the full-text side before the change, verbatim but for the columns
    "WITH tsq AS (SELECT NULLIF(replace(plainto_tsquery('english', :q)::text, ' & ', ' | '), '')::tsquery AS q) "
    f'SELECT {pgv.SELECT_COLUMNS}, {pgv.RANK} AS rank FROM "{{table}}", tsq WHERE content_tsv @@ tsq.q '
    "ORDER BY rank DESC LIMIT :k"
)


@dataclass
class Score:
    ranks: list[int | None] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)

    def row(self, name: str) -> str:
        n = len(self.ranks)
        hit = {k: sum(1 for r in self.ranks if r is not None and r <= k) / n for k in (1, 5, 10)}
        mrr = sum(1 / r for r in self.ranks if r) / n
        ms = f"{statistics.median(self.ms):.1f}" if self.ms else "-"
        return f"| {name} | {hit[1]:.3f} | {hit[5]:.3f} | {hit[10]:.3f} | {mrr:.3f} | {ms} |"


def page_rank(hits: list[Hit], source: str) -> int | None:
    return rank_of(source, [str(h.metadata["name"]) for h in hits][:TOP_K])


async def before_sparse(store: pgv.PgVectorStore, ref: CollectionRef, text: str, limit: int) -> list[Hit]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.text(BEFORE_SQL.format(table=pgv.table_name(ref))), {"q": text, "k": limit})
        hits = [pgv._hit(r, float(r.rank)) for r in rows]
        await conn.rollback()
    return hits


async def check(database_url: str, size: int, data: Data, sources: list[str]) -> dict[str, Score]:
    store = pgv.PgVectorStore(database_url)
    ref = CollectionRef(rag_lisa.REPOSITORY, f"c{size}", 384)
    pool = max(TOP_K * 4, 20)  # the store's candidate pool per side
    scores: dict[str, Score] = {}

    def add(name: str, rank: int | None, ms: float | None = None) -> None:
        score = scores.setdefault(name, Score())
        score.ranks.append(rank)
        if ms is not None:
            score.ms.append(ms)

    try:
        for i, source in enumerate(sources):  # the questions come first among the queries
            text, vector = data.queries[i], data.query_vectors[i].tolist()
            started = time.perf_counter()
            dense = await store.search(ref, SearchQuery(vector=vector, text=text, top_k=pool, hybrid_weight=0.0))
            dense_ms = _ms(started)
            add("dense only", page_rank(dense, source), dense_ms)
            started = time.perf_counter()
            old = await before_sparse(store, ref, text, pool)
            before = fuse(dense, old, WEIGHT, TOP_K)
            add(f"hybrid {WEIGHT:g}, before", page_rank(before, source), dense_ms + _ms(started))
            add("full-text only (unchanged)", page_rank(old, source))
            started = time.perf_counter()
            new = await store.search(ref, SearchQuery(vector=vector, text=text, top_k=TOP_K, hybrid_weight=WEIGHT))
            add(f"hybrid {WEIGHT:g}, after", page_rank(new, source), _ms(started))
    finally:
        await store.close()
    return scores


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--work", required=True, help="the work dir of `bench.rag_search --work` (reused tables)")
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args(argv)
    data = rag_data.load()
    sources = [str(json.loads(line)["source"]) for path in rag_data.QUESTION_FILES for line in _lines(path)]
    if data.query_kinds[: len(sources)] != ["question"] * len(sources):
        raise RuntimeError("the cached queries do not start with the evaluation questions")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    server = rag_lisa.start(work)
    try:
        with server.client() as client:
            sizes = [int(s) for s in args.sizes.split(",")]
            for n in sizes:
                rag_search.prepare(client, server.database_url, data, n)
        for n in sizes:
            log(f"{n:,} chunks: {len(sources)} questions")
            scores = asyncio.run(check(server.database_url, n, data, sources))
            print(f"\n{n:,} chunks\n\n| search | hit@1 | hit@5 | hit@10 | MRR | search p50 ms |")
            print("|---|--:|--:|--:|--:|--:|")
            for name, score in scores.items():
                print(score.row(name))
    finally:
        rag_lisa.stop(server)
    return 0


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


if __name__ == "__main__":
    raise SystemExit(main())
