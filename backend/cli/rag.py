"""`lisa rag ...`: retrieval tools against a running LISA.

``lisa rag eval`` asks a repository's search endpoint every question of a JSON Lines question set (see
:mod:`backend.rag.evaluation`) a few at a time, ranks each question's expected page among the distinct pages of the
hits, and prints page-level hit@k and MRR.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from backend.cli.client import ApiError, LisaClient, resolve_token
from backend.cli.common import DataDirOpt, TokenOpt, UrlOpt
from backend.rag.evaluation import DEFAULT_KS, Question, load_questions, page_of, rank_of, summarise

rag_app = typer.Typer(help="Retrieval: evaluate search quality.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

MAX_CONCURRENCY = 32
TOP_K_LIMIT = 100  # the search endpoint's own bound


@dataclass(frozen=True, slots=True)
class Outcome:
    """One question's result: the expected page's rank (None: not found), the pages returned, the latency."""

    question: Question
    rank: int | None
    pages: list[str]
    seconds: float


def search_params(
    query: str, top_k: int, collections: list[str], hybrid_weight: float | None, rerank: bool | None
) -> list[tuple[str, str]]:
    """Query-string pairs for ``GET /api/repositories/{id}/search`` (``collection`` repeats)."""
    params = [("query", query), ("top_k", str(top_k))]
    params += [("collection", c) for c in collections]
    if hybrid_weight is not None:
        params.append(("hybrid_weight", repr(hybrid_weight)))
    if rerank is not None:
        params.append(("rerank", str(rerank).lower()))
    return params


def distinct_pages(sources: list[str]) -> list[str]:
    pages: list[str] = []
    for source in sources:
        page = page_of(source)
        if page not in pages:
            pages.append(page)
    return pages


def evaluate(
    search: Callable[[str], list[str]],
    questions: list[Question],
    concurrency: int,
    on_done: Callable[[], None] = lambda: None,
) -> list[Outcome]:
    """Run ``search`` (question -> hit sources, best first) for every question, ``concurrency`` at a time.

    Outcomes come back in the questions' order. The first failing search stops the run: questions not yet started
    are dropped and its exception is raised.
    """

    def one(question: Question) -> Outcome:
        started = time.perf_counter()
        sources = search(question.question)
        elapsed = time.perf_counter() - started
        on_done()
        return Outcome(question, rank_of(question.source, sources), distinct_pages(sources), elapsed)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures: list[Future[Outcome]] = [pool.submit(one, q) for q in questions]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        error = next((exc for f in done if (exc := f.exception()) is not None), None)
        if error is not None:
            for future in futures:
                future.cancel()
            raise error
        return [f.result() for f in futures]


def report(outcomes: list[Outcome], ks: tuple[int, ...]) -> dict[str, Any]:
    summary: dict[str, Any] = dict(summarise((o.rank for o in outcomes), ks))
    latencies = sorted(o.seconds * 1000 for o in outcomes)
    if latencies:
        summary["latency_ms"] = {
            "p50": round(statistics.median(latencies), 1),
            "p95": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1),
        }
    return summary


def ks_for(top_k: int) -> tuple[int, ...]:
    """The cut-offs worth reporting: a hit@k with k above top_k could only repeat hit@top_k."""
    return tuple(sorted({k for k in DEFAULT_KS if k <= top_k} | {top_k}))


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"[red]error[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


@rag_app.command("eval")
def rag_eval(
    questions_file: Annotated[
        Path, typer.Argument(metavar="QUESTIONS.jsonl", help='JSON Lines: {"question": ..., "source": PAGE}.')
    ],
    repository: Annotated[str, typer.Option("--repository", "-r", help="Repository to search.")],
    collection: Annotated[
        list[str] | None, typer.Option("--collection", "-c", help="Collection to search (repeatable; default: all).")
    ] = None,
    top_k: Annotated[int, typer.Option(min=1, max=TOP_K_LIMIT, help="Chunks asked for per question.")] = 10,
    hybrid_weight: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Weight of full-text relevance (0 dense only, 1 full-text only)."),
    ] = None,
    rerank: Annotated[
        bool | None, typer.Option("--rerank/--no-rerank", help="Rerank (default: the server's setting).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=MAX_CONCURRENCY, help="Searches in flight.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also list the questions whose page missed.")
    ] = False,
    url: UrlOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    data_dir: DataDirOpt = Path(".lisa"),
) -> None:
    """Score a repository's search on a question set: page-level hit@1/3/5/10 and MRR."""
    try:
        questions = load_questions(questions_file)
    except OSError as exc:
        raise _fail(f"cannot read {questions_file}: {exc.strerror or exc}", 2) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(f"malformed question set: {exc}", 2) from exc
    if not questions:
        raise _fail(f"{questions_file} holds no questions", 2)
    try:
        client = LisaClient(url, resolve_token(token, data_dir), timeout=120.0)
    except ApiError as exc:
        raise _fail(str(exc), 2) from exc
    collections = list(collection or [])
    path = f"/api/repositories/{repository}/search"

    def search(query: str) -> list[str]:
        params = search_params(query, top_k, collections, hybrid_weight, rerank)
        result = client.request("GET", path, params=params)
        return [hit.get("source") or hit.get("name") or "" for hit in result["results"]]

    progress = Progress(
        TextColumn("searching"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json or not err_console.is_terminal,
    )
    try:
        with progress:
            task = progress.add_task("search", total=len(questions))
            outcomes = evaluate(search, questions, concurrency, lambda: progress.advance(task))
    except ApiError as exc:
        raise _fail(str(exc), 1) from exc
    ks = ks_for(top_k)
    summary = report(outcomes, ks)
    misses = [o for o in outcomes if o.rank is None]
    if as_json:
        body: dict[str, Any] = {
            "repository": repository,
            "collections": collections,
            "top_k": top_k,
            "hybrid_weight": hybrid_weight,
            "rerank": rerank,
            **summary,
        }
        if verbose:
            body["misses"] = [
                {
                    "line": o.question.line,
                    "question": o.question.question,
                    "expected": o.question.source,
                    "got": o.pages,
                }
                for o in misses
            ]
        print(json.dumps(body))
        return
    _print_summary(summary, ks, repository, collections)
    if verbose:
        _print_misses(misses, top_k)


def _print_summary(summary: dict[str, Any], ks: tuple[int, ...], repository: str, collections: list[str]) -> None:
    table = Table(
        "questions", *(f"hit@{k}" for k in ks), "MRR", title=escape(f"{repository} {' '.join(collections)}".strip())
    )
    table.add_row(str(summary["questions"]), *(f"{summary[f'hit@{k}']:.3f}" for k in ks), f"{summary['mrr']:.3f}")
    console.print(table)
    if "latency_ms" in summary:
        latency = summary["latency_ms"]
        console.print(f"search latency p50 {latency['p50']} ms, p95 {latency['p95']} ms")


def _print_misses(misses: list[Outcome], top_k: int) -> None:
    if not misses:
        console.print(f"every expected page was within the top {top_k} hits")
        return
    table = Table("line", "question", "expected", "got (best first)", title=f"misses ({len(misses)})")
    for o in misses:
        cells = (o.question.question, o.question.source, ", ".join(o.pages[:5]))
        table.add_row(str(o.question.line), *(escape(c) for c in cells))
    console.print(table)
