"""Retrieval quality of LISA's RAG search on a real manual (PostgreSQL 15 or Git), per chunking and hybrid weight.

Starts LISA as a user runs it (``lisa serve``: embedded PostgreSQL/pgvector, MiniLM embeddings on CPU) with the
manual's folder as an allowed ingestion root (the corpora: :mod:`bench.rag_eval.corpus`), creates one repository with a collection per chunking, ingests the
pages through ``POST .../ingest`` (timed), then asks ``GET .../search`` every question of the dev and the held-out
set at each hybrid weight and scores the page-level ranks with :mod:`backend.rag.evaluation`.

    python -m bench.rag_eval.run                       # whole manual, every chunking and weight
    python -m bench.rag_eval.run --pages 600           # question pages plus an even spread, 600 in all
    python -m bench.rag_eval.run --doc docs/rag-quality.md   # also rewrite the doc's results section
    python -m bench.rag_eval.run --corpus git --chunking tokens256 --weights 0 0.3 1   # the Git manual
    python -m bench.rag_eval.run --corpus git --ingest-only      # ingest now, score in a later run

A data directory that already holds an ingested collection (``--data-dir``) is reused: its ingestion is not redone
(the recorded time is reported), so search-side changes can be measured again in minutes. Loader or chunker
changes need a fresh data directory. Each corpus has its own default data directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from backend.cli.rag import evaluate, search_params
from backend.rag.evaluation import Question, load_questions, summarise
from bench.rag_eval.corpus import CORPORA, POSTGRESQL, SAMPLE_SETS, Corpus, corpus_dir, select_pages
from tests.support import LisaServer, start_lisa

HERE = Path(__file__).resolve().parent
CHUNKINGS: dict[str, dict[str, Any]] = {
    "fixed512": {"strategy": "fixed", "size": 512, "overlap": 51},
    "fixed1000": {"strategy": "fixed", "size": 1000, "overlap": 100},
    "tokens256": {"strategy": "tokens", "size": 256, "overlap": 25},
}
WEIGHTS = (0.0, 0.3, 0.5, 0.7, 1.0)
KS = (1, 3, 5, 10)
TOP_K = 10
PAGES = True  # the server's page-level ranking (--no-pages: off)
CANDIDATES = 30  # chunks a reranker reorders by default (LISA_RAG_RERANK_CANDIDATES)
STATE_FILE = "bench-rag-state.json"
RESULTS_BEGIN = "<!-- results:begin (written by python -m bench.rag_eval.run --doc) -->"
RESULTS_END = "<!-- results:end -->"


@dataclass
class Ingested:
    pages: int
    documents_done: int
    documents_failed: int
    documents_skipped: int
    chunks: int
    seconds: float


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default=POSTGRESQL.name)
    parser.add_argument("--data-dir", type=Path, default=None, help="Default: one per corpus under ~/.cache.")
    parser.add_argument("--pages", type=int, default=None, help="Ingest this many pages (default: all).")
    parser.add_argument("--chunking", action="append", choices=sorted(CHUNKINGS), help="Repeatable; default: all.")
    parser.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    parser.add_argument("--concurrency", type=int, default=4, help="Searches in flight.")
    parser.add_argument("--json", type=Path, default=None, help="Write every figure here as JSON.")
    parser.add_argument("--doc", type=Path, default=None, help="Rewrite the results section of this markdown file.")
    parser.add_argument("--ingest-only", action="store_true", help="Ingest (or find ingested) and stop.")
    parser.add_argument(
        "--no-pages", action="store_true", help="Search with pages=false: chunks ranked alone, no per-page cap."
    )
    args = parser.parse_args(argv)
    corpus = CORPORA[args.corpus]
    global PAGES
    PAGES = not args.no_pages
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Started in the background, a process ignores SIGINT: let SIGTERM unwind (and stop LISA) instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    questions = {name: load_questions(path) for name, path in corpus.question_sets.items() if not args.ingest_only}
    html = corpus_dir(corpus=corpus)
    wanted = {q.source for name, qs in questions.items() if name in SAMPLE_SETS for q in qs}
    if args.ingest_only and args.pages is not None:
        parser.error("--ingest-only ingests the whole corpus: the sample of --pages depends on the questions")
    pages = select_pages(html, args.pages, include=wanted, corpus=corpus)
    outside = sorted({q.source for qs in questions.values() for q in qs} - {p.name for p in pages})
    if outside:  # they would score as misses, whatever the search did
        parser.error(f"questions on pages outside the {len(pages)} ingested: {', '.join(outside[:10])}")
    chunkings = args.chunking or list(CHUNKINGS)
    print(f"corpus {corpus.name}: {len(pages)} pages from {html}", flush=True)

    data_dir: Path = (args.data_dir or default_data_dir(corpus)).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = start_lisa(data_dir / "lisa", env={"LISA_RAG_INGEST_ROOTS": json.dumps([str(html)])})
    try:
        with server.client(timeout=600) as http:
            ingested = {name: ingest(http, data_dir, corpus, name, pages) for name in chunkings}
            if args.ingest_only:
                print(json.dumps({name: vars(i) for name, i in ingested.items()}, indent=2))
                return 0
            scores = {
                (name, weight, set_name): score(server, corpus, name, weight, qs, args.concurrency)
                for name in chunkings
                for weight in args.weights
                for set_name, qs in questions.items()
            }
            # What a reranker would get to reorder: the best CANDIDATES chunks at the server's default weight.
            pools = {
                (name, set_name): score(
                    server, corpus, name, None, qs, args.concurrency, CANDIDATES, (1, TOP_K, CANDIDATES)
                )
                for name in chunkings
                for set_name, qs in questions.items()
            }
    finally:
        server.proc.stop(signal.SIGTERM, timeout=120)

    results = {
        "corpus": {
            "name": corpus.name,
            "title": corpus.title,
            "pages": len(pages),
            "all_pages": len(corpus.pages(html)),
            "source": str(html),
        },
        "questions": {name: len(qs) for name, qs in questions.items()},
        "machine": machine(),
        "top_k": TOP_K,
        "ingestion": {name: vars(i) for name, i in ingested.items()},
        "chunking": {name: CHUNKINGS[name] for name in chunkings},
        "scores": [
            {"chunking": name, "hybrid_weight": weight, "set": set_name, **summary}
            for (name, weight, set_name), summary in scores.items()
        ],
        "candidates": [
            {"chunking": name, "set": set_name, "top_k": CANDIDATES, **summary}
            for (name, set_name), summary in pools.items()
        ],
    }
    markdown = render(results)
    print(markdown)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.doc:
        write_doc(args.doc, markdown, *results_markers(corpus))
    return 0


def default_data_dir(corpus: Corpus) -> Path:
    base = Path.home() / ".cache" / "lisa-bench"
    # The PostgreSQL runs kept their data here before there was a second corpus; keep finding them.
    return base / "rag-eval-data" if corpus is POSTGRESQL else base / f"rag-eval-data-{corpus.name}"


def machine() -> str:
    cpus = os.cpu_count() or 0
    return f"{platform.machine()}, {cpus} CPU cores, Python {platform.python_version()}"


def ingest(http: httpx.Client, data_dir: Path, corpus: Corpus, name: str, pages: list[Path]) -> Ingested:
    """Create the collection and ingest ``pages`` into it, unless an earlier run in this data dir already did."""
    state_path = data_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if name in state and state[name]["pages"] == len(pages):
        print(f"{name}: reusing the ingestion of an earlier run ({state[name]['seconds']:.0f} s)", flush=True)
        return Ingested(**state[name])
    repository = corpus.repository
    created = http.post("/api/repositories", json={"id": repository, "name": corpus.title})
    if created.status_code not in (201, 409):
        raise RuntimeError(f"creating the repository: {created.status_code} {created.text}")
    http.delete(f"/api/repositories/{repository}/collections/{name}")  # a half-done earlier run starts over
    made = http.post(f"/api/repositories/{repository}/collections", json={"id": name, "chunking": CHUNKINGS[name]})
    if made.status_code != 201:
        raise RuntimeError(f"creating collection {name}: {made.status_code} {made.text}")
    started = time.perf_counter()
    job = http.post(
        f"/api/repositories/{repository}/collections/{name}/ingest", json={"sources": [str(p) for p in pages]}
    )
    if job.status_code != 202:
        raise RuntimeError(f"ingesting into {name}: {job.status_code} {job.text}")
    job_id = job.json()["id"]
    last = ""
    while True:
        body = http.get(f"/api/repositories/{repository}/jobs/{job_id}").json()
        line = (
            f"{name}: {body['status']} {body['documents_done']}/{body['documents_total']} {body['chunks_done']} chunks"
        )
        if line != last:
            print(f"{line} ({time.perf_counter() - started:.0f} s)", flush=True)
            last = line
        if body["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(5)
    if body["status"] != "completed":
        raise RuntimeError(f"ingestion into {name} ended {body['status']}: {body['error']}")
    result = Ingested(
        pages=len(pages),
        documents_done=body["documents_done"],
        documents_failed=body["documents_failed"],
        documents_skipped=body["documents_skipped"],
        chunks=body["chunks_done"],
        seconds=round(time.perf_counter() - started, 1),
    )
    state[name] = vars(result)
    state_path.write_text(json.dumps(state, indent=2))
    return result


def score(
    server: LisaServer,
    corpus: Corpus,
    collection: str,
    weight: float | None,
    questions: list[Question],
    concurrency: int,
    top_k: int = TOP_K,
    ks: tuple[int, ...] = KS,
) -> dict[str, Any]:
    """Page-level hit@k and MRR of one collection at one hybrid weight (None: the server's default)."""
    repository = corpus.repository
    with server.client(timeout=120) as http:

        def search(query: str) -> list[str]:
            params = search_params(query, top_k, [collection], weight, False)
            if not PAGES:
                params.append(("pages", "false"))
            resp = http.get(f"/api/repositories/{repository}/search", params=tuple(params))
            resp.raise_for_status()
            return [hit["source"] for hit in resp.json()["results"]]

        outcomes = evaluate(search, questions, concurrency)
    summary: dict[str, Any] = dict(summarise((o.rank for o in outcomes), ks))
    summary["misses"] = [o.question.line for o in outcomes if o.rank is None]
    print(
        f"{collection} w={weight} top_k={top_k} {len(questions)} q: hit@1 {summary['hit@1']:.3f} mrr {summary['mrr']:.3f}",
        flush=True,
    )
    return summary


def render(results: dict[str, Any]) -> str:
    """The results section of docs/rag-quality.md: ingestion per chunking, then scores per configuration."""
    corpus, qs = results["corpus"], results["questions"]
    name = corpus.get("name", POSTGRESQL.name)
    lines = [
        f"Corpus: {corpus['pages']} of the manual's {corpus['all_pages']} pages. Questions: {qs['test']} held-out "
        f"(`{name}.jsonl`), {qs['dev']} dev (`{name}-dev.jsonl`). top_k {results['top_k']} chunks, "
        f"page-level ranks. Machine: {results['machine']}.",
        "",
        "| chunking | spec | chunks | ingestion (s) | pages/s | failed |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, ing in results["ingestion"].items():
        spec = results["chunking"][name]
        spec_text = f"{spec['strategy']} {spec.get('size')}/{spec.get('overlap')}"
        rate = ing["pages"] / ing["seconds"] if ing["seconds"] else 0.0
        lines.append(
            f"| {name} | {spec_text} | {ing['chunks']:,} | {ing['seconds']:.0f} | {rate:.1f} | {ing['documents_failed']} |"
        )
    by_key = {(s["chunking"], s["hybrid_weight"], s["set"]): s for s in results["scores"]}
    configs = sorted({(s["chunking"], s["hybrid_weight"]) for s in results["scores"]}, key=_config_order(results))
    lines += [
        "",
        "| chunking | hybrid weight | dev hit@1 | dev MRR | **test hit@1** | test hit@3 | **test hit@5** | "
        "test hit@10 | **test MRR** |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, weight in configs:
        dev, test = by_key[(name, weight, "dev")], by_key[(name, weight, "test")]
        lines.append(
            f"| {name} | {_weight_label(weight)} | {dev['hit@1']:.3f} | {dev['mrr']:.3f} | {test['hit@1']:.3f} | "
            f"{test['hit@3']:.3f} | {test['hit@5']:.3f} | {test['hit@10']:.3f} | {test['mrr']:.3f} |"
        )
    lines += [
        "",
        f"The answering page among the best {CANDIDATES} chunks at the server's default hybrid weight (what a "
        "reranker would get to reorder):",
        "",
        f"| chunking | dev hit@{CANDIDATES} | test hit@1 | test hit@{TOP_K} | test hit@{CANDIDATES} |",
        "|---|---:|---:|---:|---:|",
    ]
    pools = {(c["chunking"], c["set"]): c for c in results["candidates"]}
    for name in results["ingestion"]:
        dev, test = pools[(name, "dev")], pools[(name, "test")]
        lines.append(
            f"| {name} | {dev[f'hit@{CANDIDATES}']:.3f} | {test['hit@1']:.3f} | {test[f'hit@{TOP_K}']:.3f} | "
            f"{test[f'hit@{CANDIDATES}']:.3f} |"
        )
    return "\n".join(lines)


def _config_order(results: dict[str, Any]) -> Any:
    names = list(results["ingestion"])
    return lambda config: (names.index(config[0]), config[1])


def _weight_label(weight: float) -> str:
    if weight == 0.0:
        return "0 (dense only)"
    if weight == 1.0:
        return "1 (full-text only)"
    return f"{weight:g}"


def results_markers(corpus: Corpus) -> tuple[str, str]:
    """The comments around a corpus's results in the doc (PostgreSQL keeps the markers it had before the registry)."""
    if corpus is POSTGRESQL:
        return RESULTS_BEGIN, RESULTS_END
    return (
        f"<!-- results:{corpus.name}:begin (written by python -m bench.rag_eval.run --corpus {corpus.name} --doc) -->",
        f"<!-- results:{corpus.name}:end -->",
    )


def write_doc(path: Path, markdown: str, begin: str = RESULTS_BEGIN, end: str = RESULTS_END) -> None:
    """Replace what lies between the results markers (or append the section when the markers are missing)."""
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{markdown}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        path.write_text(head + block + tail)
    else:
        path.write_text(text + ("\n" if text else "") + block + "\n")


if __name__ == "__main__":
    sys.exit(main())
