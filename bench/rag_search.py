"""RAG search benchmark: vector-search latency and recall@10 against exact search, and the REST search end to end.

One invocation starts LISA (``lisa serve``: embedded PostgreSQL with pgvector, the local MiniLM embedding server),
creates a pgvector repository and one collection per size through the API, and bulk-loads the collection tables
with COPY: MiniLM vectors of real text (``bench/rag_data.py``; above the corpus's ~16k chunks, perturbed copies of
real vectors), index dropped during the load, then the store's own HNSW index built (bulk load first, then build).
Then, for every size and run, each query in turn (one client, nothing else in flight):

* vector step: ``PgVectorStore.search`` (dense, ``hybrid_weight`` 0, top 10) from this process over the embedded
  PostgreSQL's Unix socket, with the query's cached vector: latency p50/p99, recall@10 against exact search;
* exact search, the baseline: the same SQL with index scans off (a sequential scan), on ``--exact-queries`` queries,
  and numpy brute force over the same vectors in this process (which is also the ground truth of recall@10);
* REST: ``GET /api/repositories/{id}/search`` through httpx, query text in, query embedding included, dense
  (``hybrid_weight=0``) and hybrid (the default weight); the embedding server alone on the same query texts.

Every figure is the median over ``--runs`` runs; every "x exact" is against the exact-SQL p50 of the same size in
this invocation. Results go to stdout and to the "RAG search" section of ``docs/benchmarks.md``.

    .venv/bin/python -m bench.rag_search --runs 3
    .venv/bin/python -m bench.rag_search --sizes 2000 --runs 1 --queries 50 --no-write     # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx
import numpy as np
import sqlalchemy as sa

from backend.db.engine import asyncpg_dsn
from backend.rag.vectorstores import CollectionRef, SearchQuery
from backend.rag.vectorstores import pgvector as pgv
from bench import rag_data, rag_lisa
from bench.gateway_doc import DOC, code_version, write_doc
from bench.rag_data import Data, log
from bench.rag_lisa import REPOSITORY, Quiet, med, percentile
from bench.rag_search_doc import render
from tests.support import LisaServer

TOP_K = 10
ID_BASE = 1 << 64  # a row's langchain_id is UUID(int=ID_BASE + row index)


@dataclass
class Run:
    latencies_ms: list[float]
    recall: float = float("nan")  # mean recall@10 against numpy exact search; NaN where it does not apply
    server_ms: dict[str, list[float]] = field(default_factory=dict)  # the REST answer's timings_ms

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


@dataclass
class Size:
    n: int
    collection_id: str
    ref: CollectionRef
    vectors: np.ndarray
    truth: np.ndarray  # exact top-10 row indices per query
    load_s: float = 0.0
    index_s: float = 0.0


@dataclass
class Results:
    runs: dict[tuple[int, str], list[Run]] = field(default_factory=dict)
    sizes: list[Size] = field(default_factory=list)
    quiet: Quiet | None = None

    def add(self, n: int, method: str, run: Run) -> None:
        self.runs.setdefault((n, method), []).append(run)

    def p(self, n: int, method: str, q: float) -> float:
        return med(r.p(q) for r in self.runs.get((n, method), []))

    def recall(self, n: int, method: str) -> float:
        return med(r.recall for r in self.runs.get((n, method), []))

    def server(self, n: int, method: str, key: str) -> float:
        return med(percentile(r.server_ms.get(key, []), 50) for r in self.runs.get((n, method), []))


def row_id(i: int) -> uuid.UUID:
    return uuid.UUID(int=ID_BASE + i)


def row_of(hit_id: str) -> int:
    return uuid.UUID(hit_id).int - ID_BASE


def recall_at_k(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:TOP_K]) & set(t.tolist())) / TOP_K for f, t in zip(found, truth, strict=True)]))


# --- loading -----------------------------------------------------------------------------------------------------


def _records(size: Size, data: Data, origin: np.ndarray) -> Iterator[tuple[Any, ...]]:
    real = len(data.chunks)
    for i in range(size.n):
        chunk = data.chunks[int(origin[i])]
        synthetic = i >= real and size.n > real
        doc = f"synthetic-{i}" if synthetic else chunk.page
        yield (
            row_id(i),
            chunk.text,
            size.vectors[i],
            doc,
            f"postgresql-doc-15/{doc}",
            chunk.page,
            chunk.part,
            None,
            size.collection_id,
            [],
            "{}",
        )


async def load_table(database_url: str, size: Size, data: Data, origin: np.ndarray) -> None:
    """COPY the rows into the collection's table (index dropped), then build the store's HNSW index on them."""
    from pgvector.asyncpg import register_vector

    table = pgv.table_name(size.ref)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await register_vector(conn)
        have = await conn.fetchval(f'SELECT count(*) FROM "{table}"')
        hnsw_index = pgv.index_name(table, "hnsw")
        indexed = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{hnsw_index}")
        pages = pgv.pages_table_name(size.ref)  # the page vectors replace_document would have kept
        if have == size.n and indexed:
            log(f"{size.n:,} rows: the table {table} is already loaded and indexed (reused data dir)")
            if not await conn.fetchval(f'SELECT count(*) FROM "{pages}"'):
                await conn.execute(pgv.page_vectors_sql(table, pages))
                await conn.execute(f'VACUUM ANALYZE "{pages}"')
            return
        started = time.monotonic()
        await conn.execute(f'DROP INDEX IF EXISTS "{hnsw_index}"')
        await conn.execute(f'TRUNCATE "{table}"')
        columns = ["langchain_id", "content", "embedding", "document_id", "source", "name", "part", "page"]
        columns += ["collection", "tags", "langchain_metadata"]
        await conn.copy_records_to_table(table, records=_records(size, data, origin), columns=columns)
        size.load_s = time.monotonic() - started
        log(f"{size.n:,} rows: COPY into {table} in {size.load_s:.0f} s; building the HNSW index")
        started = time.monotonic()
        await conn.execute("SET maintenance_work_mem = '1GB'")  # the graph fits in memory: a fast build
        [hnsw] = [s for s in pgv._index_sql(table) if "USING hnsw" in s]  # the store's own DDL (m, ef_construction)
        await conn.execute(hnsw)
        await conn.execute(f'TRUNCATE "{pages}"')
        await conn.execute(pgv.page_vectors_sql(table, pages))
        await conn.execute(f'VACUUM ANALYZE "{table}"')
        await conn.execute(f'VACUUM ANALYZE "{pages}"')
        size.index_s = time.monotonic() - started
        log(f"{size.n:,} rows: HNSW index built in {size.index_s:.0f} s")
    finally:
        await conn.close()


def prepare(client: httpx.Client, database_url: str, data: Data, n: int) -> Size:
    collection_id = f"c{n}"
    collection = rag_lisa.ensure_collection(client, collection_id)
    ref = CollectionRef(REPOSITORY, collection_id, int(collection["dimensions"]))
    vectors, origin = rag_data.vectors(data, n)
    log(f"{n:,} rows: exact top-{TOP_K} of {len(data.queries)} queries (numpy, float64)")
    size = Size(n, collection_id, ref, vectors, rag_data.exact_top_k(vectors, data.query_vectors, TOP_K))
    asyncio.run(load_table(database_url, size, data, origin))
    return size


# --- measuring ---------------------------------------------------------------------------------------------------


async def _store_runs(database_url: str, size: Size, data: Data, queries: list[int], exact: bool) -> Run:
    """Each query through the store (or, ``exact``, the same SQL with index scans off), one after another."""
    store = pgv.PgVectorStore(database_url)
    try:
        latencies, found = [], []
        for warm in (True, False):
            for i in queries[: 20 if warm else None]:
                query = SearchQuery(vector=data.query_vectors[i].tolist(), text=data.queries[i], top_k=TOP_K)
                started = time.perf_counter()
                ids = await (_exact_sql(store, size.ref, query) if exact else _hnsw(store, size.ref, query))
                elapsed = (time.perf_counter() - started) * 1000
                if not warm:
                    latencies.append(elapsed)
                    found.append(ids)
        return Run(latencies, recall_at_k(found, size.truth[queries]))
    finally:
        await store.close()


async def _hnsw(store: pgv.PgVectorStore, ref: CollectionRef, query: SearchQuery) -> list[int]:
    return [row_of(h.id) for h in await store.search(ref, query)]


async def _exact_sql(store: pgv.PgVectorStore, ref: CollectionRef, query: SearchQuery) -> list[int]:
    async with store.engine.connect() as conn:
        await conn.execute(sa.text("SET LOCAL enable_indexscan = off"))
        rows = await conn.execute(
            sa.text(
                f"SELECT {pgv.SELECT_COLUMNS}, embedding <=> CAST(:v AS vector) AS distance "
                f'FROM "{pgv.table_name(ref)}" ORDER BY distance LIMIT :k'
            ),
            {"v": pgv.vector_literal(query.vector), "k": query.top_k},
        )
        ids = [row_of(str(r.langchain_id)) for r in rows]
        await conn.rollback()
    return ids


def numpy_run(size: Size, data: Data, queries: list[int]) -> Run:
    latencies, found = [], []
    for i in queries:
        started = time.perf_counter()
        scores = size.vectors @ data.query_vectors[i]
        top = np.argpartition(-scores, TOP_K)[:TOP_K]
        top = top[np.argsort(-scores[top])]
        latencies.append((time.perf_counter() - started) * 1000)
        found.append(top.tolist())
    return Run(latencies, recall_at_k(found, size.truth[queries]))


def rest_run(client: httpx.Client, size: Size, data: Data, queries: list[int], hybrid: bool) -> Run:
    path = f"/api/repositories/{REPOSITORY}/search"
    latencies, found = [], []
    server: dict[str, list[float]] = {}
    for warm in (True, False):
        for i in queries[: 20 if warm else None]:
            params: dict[str, Any] = {"query": data.queries[i], "top_k": TOP_K, "collection": size.collection_id}
            if not hybrid:
                params["hybrid_weight"] = 0
            started = time.perf_counter()
            response = client.get(path, params=params)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"search gave {response.status_code}: {response.text[:300]}")
            if warm:
                continue
            body = response.json()
            latencies.append(elapsed)
            found.append([row_of(h["id"]) for h in body["results"]])
            for key, value in body["timings_ms"].items():
                server.setdefault(key, []).append(float(value))
    recall = recall_at_k(found, size.truth[queries]) if not hybrid else float("nan")
    return Run(latencies, recall, server)


def embed_run(url: str, model: str, data: Data, queries: list[int]) -> Run:
    latencies = []
    with httpx.Client(timeout=60) as client:
        for warm in (True, False):
            for i in queries[: 20 if warm else None]:
                started = time.perf_counter()
                response = client.post(f"{url}/embeddings", json={"model": model, "input": [data.queries[i]]})
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if not warm:
                    latencies.append(elapsed)
    return Run(latencies)


def jobs_for(
    server: LisaServer, client: httpx.Client, size: Size, data: Data, args: argparse.Namespace, url: str, model: str
) -> list[tuple[str, Callable[[], Run]]]:
    queries = list(range(min(args.queries, len(data.queries))))
    exact_queries = queries[: args.exact_queries]
    db = server.database_url
    return [
        ("hnsw", lambda: asyncio.run(_store_runs(db, size, data, queries, False))),
        ("exact_sql", lambda: asyncio.run(_store_runs(db, size, data, exact_queries, True))),
        ("exact_numpy", lambda: numpy_run(size, data, queries)),
        ("rest_dense", lambda: rest_run(client, size, data, queries, False)),
        ("rest_hybrid", lambda: rest_run(client, size, data, queries, True)),
        ("embed", lambda: embed_run(url, model, data, queries)),
    ]


def measure(server: LisaServer, client: httpx.Client, res: Results, data: Data, args: argparse.Namespace) -> None:
    assert res.quiet is not None
    model = api_model(client)
    url = rag_lisa.embedding_url(client, model)
    for run in range(1, args.runs + 1):
        for size in res.sizes:
            for method, job in jobs_for(server, client, size, data, args, url, model):
                result = res.quiet.run(f"run {run} {size.n:,} {method}", job)
                res.add(size.n, method, result)
                recall = "" if result.recall != result.recall else f", recall@10 {result.recall:.3f}"
                log(
                    f"run {run} {size.n:>7,} {method:12} p50 {result.p(50):7.2f} ms p99 {result.p(99):7.2f} ms"
                    f" ({len(result.latencies_ms)} queries{recall})"
                )


def api_model(client: httpx.Client) -> str:
    collection = rag_lisa.api(client, "GET", f"/api/repositories/{REPOSITORY}")
    return str(collection["embedding_model"])


# --- main --------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated collection sizes (chunks)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--queries", type=int, default=500, help="queries per run (of the 500)")
    parser.add_argument("--exact-queries", type=int, default=100, help="queries per run for exact SQL search")
    parser.add_argument("--work", default="", help="reuse this work dir (LISA data dir, loaded tables) across runs")
    parser.add_argument("--wait-quiet", type=float, default=300, help="max seconds to wait for idle CPUs")
    parser.add_argument("--quiet-pct", type=float, default=10, help="others' CPU share (%%) that voids a run")
    parser.add_argument("--retries", type=int, default=2, help="reruns of a run disturbed by other processes")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.name} alone")
    args = parser.parse_args(argv)
    args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    return args


def run(args: argparse.Namespace, work: Path) -> tuple[Results, Data]:
    data = rag_data.load()
    res = Results(quiet=Quiet(str(work), args.quiet_pct, args.wait_quiet, args.retries))
    server = rag_lisa.start(work)
    try:
        with server.client(timeout=120) as client:
            for n in args.sizes:
                res.sizes.append(prepare(client, server.database_url, data, n))
            measure(server, client, res, data, args)
    finally:
        rag_lisa.stop(server)
    return res, data


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # run the same clean-up as Ctrl-C: LISA and its children are stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started with SIGINT ignored
    raw = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python -m bench.rag_search", *(shlex.quote(a) for a in raw)])
    started = time.monotonic()
    args.code = code_version()
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        res, data = run(args, Path(args.work).resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="lisa-bench-rag-") as tmp:
            res, data = run(args, Path(tmp))
    waited = res.quiet.waited if res.quiet else 0.0
    section = render(res, data, args, command, time.monotonic() - started - waited)
    print("\n" + section)
    if not args.no_write:
        write_doc(section)
        log(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
