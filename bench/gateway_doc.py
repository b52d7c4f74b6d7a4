"""The "Gateway" section of docs/benchmarks.md, rendered from one invocation's results."""

from __future__ import annotations

import argparse
import datetime as dt

from bench import report, servers
from bench.processes import REPO
from bench.report import Results

DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Gateway"


def render(res: Results, args: argparse.Namespace, command: str, elapsed: float) -> str:
    conc = max(args.concurrency)
    lines = [
        SECTION,
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {elapsed / 60:.1f} min with:",
        "",
        f"    {command}",
        "",
        *report.machine_facts(servers.litellm_version() if "litellm" in args.paths else "not measured"),
        f"- upstream: `bench/upstream_stub.py --impl {args.stub}` ("
        + ("raw asyncio protocol + httptools + uvloop" if args.stub == "raw" else "FastAPI + uvicorn")
        + ", one process):",
        "  a canned `chat.completion`, or 9 SSE chunks + a usage chunk + `[DONE]`; all paths use this stub",
        f"- LISA: `lisa serve --no-local-models --workers {args.workers}`, embedded PostgreSQL,",
        "  auth (admin Bearer token) and usage metering on"
        + (
            f"; its `GET /api/usage` counted {res.metered[0]:,} requests of the {res.metered[1]:,} sent"
            if res.metered is not None
            else ""
        ),
        "- LiteLLM proxy: `litellm --config` with `openai/bench` + `api_base`, master key,",
        "  `--num_workers 1`, no database",
        f"- every cell: median of {args.runs} runs of {args.seconds:g} s after a {args.warmup:g} s warm-up;",
        "  wrk with 1 thread; the c1 latency/TTFT client: one keep-alive connection, requests back to back",
        "- CPU used by processes outside the benchmark during the kept runs (of all cores; a run above "
        f"{args.quiet_pct:g}% is repeated): "
        + ", ".join(
            f"{report.PATH_LABEL[p]} median {report.med(v):.0f}%, max {max(v):.0f}%"
            for p, v in res.background.items()
            if v
        ),
        "",
    ]
    for path, why in res.skipped.items():
        lines += [f"**{report.PATH_LABEL[path]} was not measured:** {why}", ""]
    lines += [
        "### Concurrency 1: latency and time to first token",
        "",
        "Latency: the whole answer, from the stub that answers at once. TTFT: from writing the request",
        "to the first `data:` event, streaming from the stub's second port, which pauses "
        f"{servers.SLOW_DELAY_MS} ms after the",
        "first event (a gateway that buffered the stream would show the pause here). Added: minus direct.",
        "",
        *report.latency_table(res),
        "",
    ]
    lines += ["### Throughput (wrk)", "", *report.throughput_table(res, args.concurrency), ""]
    if res.scaling:
        lines += [
            f"### LISA scaling with workers (concurrency {conc})",
            "",
            *report.scaling_table(res, conc),
            "",
        ]
    checks = report.bar_checks(res, args.concurrency)
    if checks:
        lines += [
            "### The bar (issue 2)",
            "",
            "At concurrency 1 the added latency p50 ≤ 2 ms and p99 ≤ 5 ms (streaming: time to first token);",
            "at concurrency 16 and 64 LISA's throughput ≥ 10x the LiteLLM proxy's and ≥ 0.25x direct,",
            "with one worker.",
            "",
            *report.bar_table(checks),
            "",
        ]
    direct16 = res.rps("direct", False, 16)
    if args.stub == "raw" and direct16 == direct16:  # not NaN
        lines += [
            f"Reading the bar: this stub serves {direct16:,.0f} req/s at concurrency 16, "
            f"{direct16 / report.ISSUE_DIRECT_RPS:.1f}x the FastAPI stub",
            f"behind the issue's reference figure ({report.ISSUE_DIRECT_RPS:,.0f} req/s), "
            'so "≥ 0.25x direct" is judged against both;',
            "`--stub fastapi` measures against a FastAPI stub instead. On 2 cores the stub, wrk and every",
            "gateway worker share the CPUs.",
            "",
        ]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    new_doc = "# Benchmarks\n\nFigures produced by the scripts in `bench/`.\n"
    text = DOC.read_text() if DOC.exists() else new_doc
    start = text.find(SECTION + "\n")
    if start >= 0:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section.rstrip() + "\n" + (text[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
