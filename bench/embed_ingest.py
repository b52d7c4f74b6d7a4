"""Ingestion end to end through LISA with the embedding server on torch and on another runtime, in one invocation.

Starts one LISA per runtime (``lisa serve``, local models, embedded PostgreSQL; ``LISA_EMBEDDING_BACKEND`` and
``LISA_EMBEDDING_QUANTIZATION`` set), both up at once, and alternates their runs (torch, other, torch, other ...) so
that the load other processes put on the machine meanwhile falls on both alike. A run bulk-ingests ``--docs`` pages
of the PostgreSQL 15 manual (an even spread, as bench.rag_ingest takes them) into a fresh collection
(``POST .../ingest``); chunks/s = the job's ``chunks_done`` / seconds from the request to the job seen finished.
Then ``--queries`` searches (``GET .../search``, query embedding included, the collection's default hybrid weight)
on the last collection, one at a time: p50. Reported: the medians over ``--runs``, the ratio of the medians and the
per-run ratios, and ``uptime`` before and after. Results go to stdout (docs/benchmarks.md is edited by hand).

    nice -n 19 flock /tmp/lisa-bench.lock python -m bench.embed_ingest --runs 3 --docs 30
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from types import FrameType

import httpx

from bench import rag_data, rag_lisa
from bench.rag_data import log
from bench.rag_eval.corpus import select_pages
from bench.rag_ingest import copy_pages, ingest, ingestible
from bench.rag_lisa import REPOSITORY
from tests.support import LisaServer, start_lisa

QUERIES = [
    "how do I create an index on an expression",
    "what does VACUUM FULL do to the table",
    "set the time zone of a session",
    "grant select on all tables in a schema",
    "which isolation levels are supported",
    "how to write a recursive query",
    "default value of shared_buffers",
    "restore a database from a dump file",
    "difference between json and jsonb",
    "how to list the locks held by sessions",
]


def start(work: Path, root: Path, backend: str, quantization: str) -> LisaServer:
    data_dir = work / f"lisa-{backend}-{quantization}"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {"LISA_RAG_INGEST_ROOTS": f'["{root}"]', "LISA_EMBEDDING_BACKEND": backend,
           "LISA_EMBEDDING_QUANTIZATION": quantization}  # fmt: skip
    log(f"starting LISA with the {backend}/{quantization} embedding runtime in {data_dir}")
    return start_lisa(data_dir, env=env)


def one_run(client: httpx.Client, name: str, folder: Path) -> tuple[float, int, str]:
    collection = f"{name}-{int(time.time() * 1000)}"
    rag_lisa.ensure_collection(client, collection)
    job, elapsed = ingest(client, collection, folder, 0.25)
    return int(job["chunks_done"]) / elapsed, int(job["chunks_done"]), collection


def search_p50(client: httpx.Client, collection: str, rounds: int) -> float:
    path = f"/api/repositories/{REPOSITORY}/search"
    times = []
    for i in range(rounds * len(QUERIES) + len(QUERIES)):
        q = QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}")  # a new text: no cache helps
        started = time.perf_counter()
        response = client.get(path, params={"query": q, "collection": collection, "top_k": 5})
        if response.status_code != 200:
            raise RuntimeError(f"search gave {response.status_code}: {response.text[:300]}")
        if i >= len(QUERIES):  # the first round warms up
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--docs", type=int, default=30)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--quantization", default="none")
    parser.add_argument("--search-rounds", type=int, default=5, help="rounds of the 10 queries after a warm-up")
    parser.add_argument("--work", default="")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)  # `timeout` or Ctrl-C: the LISA servers are stopped either way
    os.environ.pop("LISA_DATABASE_URL", None)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    work = Path(args.work or tempfile.mkdtemp(prefix="lisa-bench-embed-ingest-"))
    root = work / "ingest"
    pages = ingestible(rag_data.corpus_pages())
    chosen = [p for p in select_pages(pages[0].parent, args.docs) if p in set(pages)]
    copy_pages(chosen, root / "pages")
    variants = [("torch", "none"), (args.backend, args.quantization)]
    servers: list[LisaServer] = []
    rates: dict[int, list[float]] = {0: [], 1: []}
    last: dict[int, str] = {}
    p50: dict[int, float] = {}
    try:
        for backend, quantization in variants:
            servers.append(start(work, root, backend, quantization))
        clients = [s.client(timeout=600) for s in servers]
        for run in range(1, args.runs + 1):
            for i, (backend, quantization) in enumerate(variants):
                rate, chunks, last[i] = one_run(clients[i], f"{backend}{i}", root / "pages")
                rates[i].append(rate)
                log(f"run {run} {backend}/{quantization}: {chunks} chunks, {rate:.1f} chunks/s")
        for i, (backend, quantization) in enumerate(variants):
            p50[i] = search_p50(clients[i], last[i], args.search_rounds)
            log(f"search p50 {backend}/{quantization}: {p50[i]:.1f} ms")
        for client in clients:
            client.close()
    finally:
        for server in servers:
            rag_lisa.stop(server)
    uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    med = {i: statistics.median(r) for i, r in rates.items()}
    per_run = [b / a for a, b in zip(rates[0], rates[1], strict=True)]
    print(f"\n{len(chosen)} pages a run, {args.runs} runs each, alternating")
    for i, (backend, quantization) in enumerate(variants):
        runs = ", ".join(f"{r:.1f}" for r in rates[i])
        print(f"{backend}/{quantization}: median {med[i]:.1f} chunks/s (runs {runs}); search p50 {p50[i]:.1f} ms")
    print(f"ratio of medians {med[1] / med[0]:.2f}x; per run {', '.join(f'{r:.2f}' for r in per_run)}")
    print("uptime before: " + uptime[0] + "\nuptime after:  " + uptime[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
