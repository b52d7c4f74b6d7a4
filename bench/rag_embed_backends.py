"""The local embedding model on PyTorch against OpenVINO: ingestion chunks/s and REST search latency, interleaved.

One invocation starts two LISAs (``lisa serve`` with its local models and embedded PostgreSQL, as
``bench.rag_ingest`` starts one), identical but for ``LISA_EMBEDDING_BACKEND`` (``torch``, ``openvino``), both with
the same ingestion root, and then alternates between them (the order flips each run), so that whatever else the
machine is doing falls on both:

* ingestion, ``--runs`` times each: the same ``--docs`` pages of the ``postgresql-doc-15`` HTML manual bulk-ingested
  into a fresh collection (default chunking, tokens 256/25); chunks_done / (request sent -> job seen finished);
* search: the ``--queries`` dev questions of ``bench/rag_eval`` through ``GET /api/repositories/{id}/search``
  (query text in, query embedding included, the default hybrid ranking, top 10) against the last collection each
  LISA ingested, one query at a time, each query sent to both LISAs in turn; and the embedding server alone on the
  same questions, one text a request.

Medians of the runs and the ratio go to stdout and to the "Embedding backends" section of ``docs/benchmarks.md``.

    .venv/bin/python -m bench.rag_embed_backends --runs 3
    .venv/bin/python -m bench.rag_embed_backends --runs 1 --docs 20 --queries 20 --no-write     # a quick look
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench import rag_data, rag_lisa
from bench.gateway_doc import code_version, write_doc
from bench.rag_data import log
from bench.rag_eval.corpus import select_pages
from bench.rag_ingest import copy_pages, ingest, ingestible
from bench.rag_lisa import REPOSITORY, Quiet, fmt, percentile
from tests.support import LisaServer

BACKENDS = ("torch", "openvino")
QUESTIONS = Path(__file__).resolve().parent / "rag_eval" / "postgresql15-dev.jsonl"


@dataclass
class Side:
    backend: str
    server: LisaServer
    client: httpx.Client
    rates: list[float] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)
    embed_ms: list[float] = field(default_factory=list)
    collection: str = ""
    model: str = ""


def questions(n: int) -> list[str]:
    lines = QUESTIONS.read_text().splitlines()
    return [str(json.loads(line)["question"]) for line in lines if line.strip()][:n]


def timed_ms(call: httpx.Client, method: str, url: str, **kwargs: object) -> float:
    started = time.perf_counter()
    response = call.request(method, url, **kwargs)  # type: ignore[arg-type]
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{method} {url} gave {response.status_code}: {response.text[:300]}")
    return elapsed


def search_round(sides: list[Side], texts: list[str], embedder: httpx.Client) -> None:
    urls = {s.backend: rag_lisa.embedding_url(s.client, s.model) for s in sides}
    for warm in (True, False):
        for text in texts[: 10 if warm else None]:
            for side in sides:
                params = {"query": text, "top_k": 10, "collection": side.collection}
                ms = timed_ms(side.client, "GET", f"/api/repositories/{REPOSITORY}/search", params=params)
                body = {"model": side.model, "input": [text]}
                raw = timed_ms(embedder, "POST", f"{urls[side.backend]}/embeddings", json=body)
                if not warm:
                    side.search_ms.append(ms)
                    side.embed_ms.append(raw)


def ingest_into(side: Side, folder: Path) -> tuple[dict[str, Any], float]:
    return ingest(side.client, side.collection, folder, 0.25)


def run(args: argparse.Namespace, work: Path) -> tuple[list[Side], Quiet]:
    quiet = Quiet(str(work), args.quiet_pct, args.wait_quiet, args.retries)
    root = work / "ingest"
    pages = ingestible(rag_data.corpus_pages())
    chosen = [p for p in select_pages(pages[0].parent, args.docs) if p in set(pages)]
    copy_pages(chosen, root / "docs")
    sides: list[Side] = []
    try:
        for backend in BACKENDS:
            env = {"LISA_RAG_INGEST_ROOTS": f'["{root}"]', "LISA_EMBEDDING_BACKEND": backend}
            server = rag_lisa.start(work / backend, env=env)
            side = Side(backend, server, server.client(timeout=600))
            sides.append(side)
        for run_no in range(1, args.runs + 1):
            order = sides if run_no % 2 else sides[::-1]
            for side in order:
                side.collection = f"{side.backend}-{run_no}-{int(time.time())}"
                collection = rag_lisa.ensure_collection(side.client, side.collection)
                side.model = str(collection["embedding_model"])
                job, elapsed = quiet.run(f"run {run_no} {side.backend}", partial(ingest_into, side, root / "docs"))
                side.rates.append(job["chunks_done"] / elapsed)
                side.chunks.append(int(job["chunks_done"]))
                log(f"run {run_no} {side.backend}: {job['chunks_done']} chunks in {elapsed:.1f} s = "
                    f"{side.rates[-1]:.1f} chunks/s")  # fmt: skip
        with httpx.Client(timeout=60) as embedder:
            quiet.run("search", lambda: search_round(sides, questions(args.queries), embedder))
        for side in sides:
            log(f"{side.backend}: search p50 {percentile(side.search_ms, 50):.1f} ms, "
                f"embedding alone p50 {percentile(side.embed_ms, 50):.1f} ms")  # fmt: skip
    finally:
        for side in sides:
            side.client.close()
            rag_lisa.stop(side.server)
    return sides, quiet


def render(sides: list[Side], quiet: Quiet, command: str, elapsed: float, code: str) -> str:
    torch, openvino = sides
    lines = ["## Embedding backends", "", *rag_lisa.header(command, elapsed, quiet.waited), *rag_lisa.machine(code)]
    lines += [
        "- two LISAs (`lisa serve`, local models, embedded PostgreSQL + pgvector), identical but for "
        "`LISA_EMBEDDING_BACKEND`; runs alternate between them (the order flips each run); the machine was shared "
        f"with other agents' work (CPU used outside the benchmark during the kept runs: {quiet.summary()})",
        f"- ingestion: {torch.chunks[0]:,} chunks ({len(torch.rates)} runs each) of pages of Debian's "
        "`postgresql-doc-15` HTML manual bulk-ingested by server path into a fresh collection (default chunking, "
        "tokens 256/25); chunks_done / (request sent → job seen finished)",
        f"- search: {len(torch.search_ms)} dev questions of `bench/rag_eval` through `GET /api/repositories/{{id}}/"
        "search` (default hybrid ranking, top 10) on the last collection, each question to both LISAs in turn; "
        '"embedding alone": the same question POSTed to the LISA\'s embedding server',
        "",
        "| backend | ingestion chunks/s (runs) | median | search p50 ms | search p99 ms | embedding alone p50 ms |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for side in sides:
        runs = ", ".join(f"{r:.1f}" for r in side.rates)
        lines.append(
            f"| {side.backend} | {runs} | {statistics.median(side.rates):.1f} | "
            f"{fmt(percentile(side.search_ms, 50), 1)} | {fmt(percentile(side.search_ms, 99), 1)} | "
            f"{fmt(percentile(side.embed_ms, 50), 1)} |"
        )
    ratio = statistics.median(openvino.rates) / statistics.median(torch.rates)
    lines += [
        "",
        f"OpenVINO / PyTorch: ingestion {ratio:.2f}x; search p50 "
        f"{percentile(torch.search_ms, 50):.1f} → {percentile(openvino.search_ms, 50):.1f} ms.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="ingestion runs per backend")
    parser.add_argument("--docs", type=int, default=100, help="manual pages per ingestion run")
    parser.add_argument("--queries", type=int, default=100, help="search questions")
    parser.add_argument("--wait-quiet", type=float, default=60, help="max seconds to wait for idle CPUs")
    parser.add_argument("--quiet-pct", type=float, default=25, help="others' CPU share (%%) that voids a run")
    parser.add_argument("--retries", type=int, default=0, help="reruns of a run disturbed by other processes")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    raw = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python -m bench.rag_embed_backends", *(shlex.quote(a) for a in raw)])
    code, started = code_version(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lisa-embed-bench-") as tmp:
        sides, quiet = run(args, Path(tmp))
    section = render(sides, quiet, command, time.monotonic() - started, code)
    print(section)
    if not args.no_write:
        write_doc(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
