"""The "RAG ingestion" section of docs/benchmarks.md, rendered from one ``bench.rag_ingest`` invocation's results."""

from __future__ import annotations

import argparse
import os
import textwrap
from typing import TYPE_CHECKING

from bench import rag_data, rag_lisa
from bench.rag_lisa import fmt, med

if TYPE_CHECKING:
    from bench.rag_ingest import Results

SECTION = "## RAG ingestion"
BAR_RATIO = 0.8
WIDTH = 110
MIB = 1024 * 1024


def cpu_table(res: Results) -> list[str]:
    """CPU seconds by process group in each phase (medians over the runs), and the embedding server's per chunk."""
    cores = len(os.sched_getaffinity(0))
    rows = [
        *textwrap.wrap(
            f"Where the CPU went (CPU seconds, user + system, median of the runs; {cores} cores, so a phase of w "
            f"seconds has {cores}w to spend): during ingestion the backend (parsing, JSON, jobs) and PostgreSQL "
            "(inserts, HNSW and GIN maintenance) use cores the embedding model would otherwise have.",
            WIDTH,
        ),
        "",
        "| phase | wall s | embedding server CPU s | LISA backend CPU s | PostgreSQL CPU s | embedding server CPU ms "
        "per chunk |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for label, wall, cpu, chunks in (
        ("ingestion (end to end)", [r.ingest_s for r in res.runs], [r.ingest_cpu for r in res.runs], "chunks_done"),
        ("embedding alone", [r.raw_s for r in res.runs], [r.raw_cpu for r in res.runs], "chunks"),
    ):
        per_chunk = med(1000 * c.embedding / getattr(r, chunks) for c, r in zip(cpu, res.runs, strict=True))
        rows.append(
            f"| {label} | {med(wall):.1f} | {med(c.embedding for c in cpu):.1f} | {med(c.backend for c in cpu):.1f} "
            f"| {med(c.postgres for c in cpu):.1f} | {per_chunk:.1f} |"
        )
    return [*rows, ""]


def render(res: Results, args: argparse.Namespace, command: str, elapsed: float) -> str:
    quiet = res.quiet
    lines = [
        SECTION,
        "",
        *rag_lisa.header(command, elapsed, quiet.waited if quiet else 0.0),
        *rag_lisa.machine(args.code),
        f"- LISA: `lisa serve` with its local models (MiniLM embedding server, {rag_data.model_version()}), embedded "
        "PostgreSQL 18 + pgvector, ingestion worker in the backend process; pgvector repository, a fresh collection "
        f"per run with the default chunking ({res.chunking}); settings: `rag_embed_batch` {res.batch}, `rag_embed_parallel` "
        f"{res.parallel}, `rag_documents_parallel` {res.documents_parallel}",
        "- documents: pages of Debian's `postgresql-doc-15` HTML manual, bulk-ingested by server path "
        '(`POST .../collections/{id}/ingest {"sources": [folder]}`); end to end: chunks_done / (request sent → job '
        f"seen finished, polled every {args.poll:g} s)",
        "- baseline in the same run: the chunk texts the job stored (read back from its table) POSTed to the "
        f"embedding server's `/v1/embeddings`, "
        f"{res.batch} a request, {res.parallel} requests in flight (httpx)",
        f"- CPU used by processes outside the benchmark during the kept runs (of all cores; a throughput run above "
        f"{args.quiet_pct:g}% is repeated up to {args.retries} times): " + (quiet.summary() if quiet else "-"),
        "",
    ]
    if res.runs:
        lines += [
            "### Throughput",
            "",
            "| run | documents | chunks | ingestion s | job s (server) | ingestion chunks/s | embedding alone chunks/s "
            "| x embedding alone |",
            "|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for i, r in enumerate(res.runs, 1):
            lines.append(
                f"| {i} | {r.docs} | {r.chunks_done:,} | {r.ingest_s:.1f} | {r.server_s:.1f} | {r.ingest_rate:.1f} "
                f"| {r.raw_rate:.1f} | {r.ratio:.2f}x |"
            )
        ingest_rate = med(r.ingest_rate for r in res.runs)
        raw_rate = med(r.raw_rate for r in res.runs)
        ratio = med(r.ratio for r in res.runs)
        lines += [
            f"| median | | | {med(r.ingest_s for r in res.runs):.1f} | {med(r.server_s for r in res.runs):.1f} "
            f"| {ingest_rate:.1f} | {raw_rate:.1f} | {ratio:.2f}x |",
            "",
            *cpu_table(res),
        ]
    mem = res.memory
    if mem is not None and mem.samples:
        peak = max(r for _, r, _ in mem.samples) / MIB
        lines += [
            "### Memory over a long ingestion",
            "",
            *textwrap.wrap(
                f"{mem.docs:,} documents in one job ({mem.status}; the manual's pages, then copies of pages spread "
                "evenly over it, each with one added line so that none is skipped as identical content), "
                f"{mem.chunks:,} chunks in {mem.elapsed_s / 60:.1f} min ({mem.chunks / mem.elapsed_s:.1f} chunks/s). "
                f"RSS of the LISA backend process (`lisa serve`, one worker, the ingestion worker in it; the model "
                f"servers are separate processes and not counted), sampled every {args.sample:g} s:",
                WIDTH,
            ),
            "",
            "| start MiB | at 25% MiB | at 50% MiB | at 75% MiB | peak MiB | end MiB | 10 s later MiB "
            "| slope after 25%, MiB / 1,000 docs | slope overall, MiB / 1,000 docs |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
            f"| {mem.samples[0][1] / MIB:.0f} | {fmt(mem.rss_at(0.25), 0)} | {fmt(mem.rss_at(0.5), 0)} "
            f"| {fmt(mem.rss_at(0.75), 0)} | {peak:.0f} | {mem.end_rss / MIB:.0f} | {mem.settled_rss / MIB:.0f} "
            f"| {fmt(mem.slope_mib_per_1000(0.25), 1)} | {fmt(mem.slope_mib_per_1000(0.0), 1)} |",
            "",
        ]
    if res.runs:
        ratio = med(r.ratio for r in res.runs)
        verdict = "pass" if ratio >= BAR_RATIO else "**FAIL**"
        lines += [
            "### The bar (issue 4)",
            "",
            "| bar | measured | verdict |",
            "|---|--:|---|",
            f"| ingestion end to end ≥ {BAR_RATIO:g}x the embedding model alone (median of the runs' ratios) "
            f"| {ratio:.2f}x | {verdict} |",
            "",
        ]
    return "\n".join(lines)
