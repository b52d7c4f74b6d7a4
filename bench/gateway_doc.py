"""docs/benchmarks.md sections rendered from one invocation's results.

Against the FastAPI stub (the default, as in the issue) the "Gateway" section: every table and the bar.
Against the raw-asyncio stub (``--stub raw``) a shorter section of its own, "Gateway against a raw-asyncio
stub (context)", so that the two runs do not overwrite each other; hand-written sections are kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import textwrap

from bench import report, servers
from bench.processes import REPO
from bench.report import Results

DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Gateway"
RAW_SECTION = "## Gateway against a raw-asyncio stub (context)"
WIDTH = 110  # prose lines in the doc
# Quoted in the doc for comparison only; every ratio in the bar is against direct from the same invocation.
ISSUE_REFERENCE = (
    "the issue's own reference, measured on its 2-core machine with wrk against a FastAPI stub, one worker each: "
    "direct 3,760 req/s at concurrency 1 (p50 0.26 ms) and 4,240 req/s at 16; the LiteLLM proxy 64 req/s at 1, "
    "99 req/s at 16 (43 req/s streaming)"
)
STUB_KIND = {
    "fastapi": "a plain FastAPI app under uvicorn with its defaults (httptools, uvloop, access log on)",
    "raw": "a raw asyncio protocol + httptools + uvloop answering canned bytes, no framework",
}


def code_version() -> str:
    """The commit under test, and whether backend/ (what LISA runs) differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "backend")
    return f"commit {git('rev-parse', '--short', 'HEAD') or '?'}" + (
        " with uncommitted changes in backend/" if dirty else ", backend/ as committed"
    )


def _code(args: argparse.Namespace) -> str:
    start, end = args.code, code_version()
    return f"LISA code: {start}" if start == end else f"LISA code: {start} at the start, {end} at the end"


def _header(command: str, elapsed: float, waited: float) -> list[str]:
    wait = f" (plus {waited / 60:.1f} min waiting for idle CPUs)" if waited >= 30 else ""
    return [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {elapsed / 60:.1f} min{wait} with:",
        "",
        f"    {command}",
        "",
    ]


def _background(res: Results, args: argparse.Namespace) -> str:
    return (
        "- CPU used by processes outside the benchmark during the kept runs (of all cores; a run above "
        f"{args.quiet_pct:g}% is repeated): "
        + ", ".join(
            f"{report.PATH_LABEL[p]} median {report.med(v):.0f}%, max {max(v):.0f}%"
            for p, v in res.background.items()
            if v
        )
    )


def _litellm_versions(args: argparse.Namespace) -> str:
    """The LiteLLM in LISA's venv (its third_party Router) and in the proxy's venv, each where measured."""
    lisa = f"{servers.lisa_litellm_version()} in LISA's venv (its third_party Router)"
    proxy = f"{servers.litellm_version()} in the LiteLLM proxy's venv" if "litellm" in args.paths else "no proxy run"
    return f"{lisa}, {proxy}"


def _metering(res: Results) -> list[str]:
    """One line per LISA path: its usage API against what the stub received through it, the verdict computed."""
    lines = []
    for path, check in res.metered.items():
        lines.append(f"- metering, {report.PATH_LABEL[path]}: {check.sentence()}")
    if lines:
        lines.append(
            "  (every request of the path, warm-ups and checks included, read from the stub's `GET /_count` before"
        )
        lines.append("  and after the path, and from `GET /api/usage` once LISA's batched metering has flushed)")
    return lines


def render_raw(res: Results, args: argparse.Namespace, command: str, elapsed: float) -> str:
    """The short context section: the same gateway against a stub many times faster than FastAPI."""
    direct16 = res.rps("direct", False, 16)
    conc = max(args.concurrency)
    lines = [
        RAW_SECTION,
        "",
        *_header(command, elapsed, res.waited),
        *textwrap.wrap(
            "Same machine and harness as above, but the upstream is `bench/upstream_stub.py --impl raw` "
            f"({STUB_KIND['raw']}, one process). "
            + (f"Direct, it serves {direct16:,.0f} req/s plain at concurrency 16, " if direct16 == direct16 else "")
            + "many times the FastAPI stub of the section above (compare the direct rows), and it costs the CPUs "
            "it shares with the gateway almost nothing, so these figures show LISA's own ceiling on this machine; "
            'the bar\'s "≥ 0.25x direct" is judged against the FastAPI stub above, as in the issue.',
            WIDTH,
        ),
        f"Median of {args.runs} runs of {args.seconds:g} s per cell after a {args.warmup:g} s warm-up,"
        " wrk with 1 thread.",
        f"{_code(args)}.",
        "",
    ]
    for path, why in res.skipped.items():
        lines += [f"**{report.PATH_LABEL[path]} was not measured:** {why}", ""]
    lines += [*report.throughput_table(res, args.concurrency), ""]
    if res.scaling:
        lines += [f"LISA with more workers, concurrency {conc}:", "", *report.scaling_table(res, conc), ""]
        scaling = [c for c in report.bar_checks(res, args.concurrency) if "scales with workers" in c[0]]
        if scaling:
            lines += ["The bar's scaling criterion against this stub:", "", *report.bar_table(scaling), ""]
    return "\n".join(lines)


def render(res: Results, args: argparse.Namespace, command: str, elapsed: float) -> str:
    if args.stub == "raw":
        return render_raw(res, args, command, elapsed)
    conc = max(args.concurrency)
    lines = [
        SECTION,
        "",
        *_header(command, elapsed, res.waited),
        *report.machine_facts(_litellm_versions(args)),
        f"- upstream: `bench/upstream_stub.py --impl {args.stub}`, {STUB_KIND[args.stub]}, one process:",
        "  a canned `chat.completion`, or 9 SSE chunks + a usage chunk + `[DONE]`; all paths use this stub",
        f"- {_code(args)}",
        f"- LISA: `lisa serve --no-local-models --workers {args.workers}`, embedded PostgreSQL,",
        "  auth (admin Bearer token) and usage metering on; one `lisa serve` has the stub registered twice:",
        "  LISA internal: `hosting: internal` models, the pass-through; LISA third_party: `hosting: third_party`",
        "  models (`provider_model: openai/bench`, `base_url` the stub, an API key), LiteLLM's Router in-process",
        *_metering(res),
        "- LiteLLM proxy: `litellm --config` with `openai/bench` + `api_base`, master key,",
        "  `--num_workers 1`, no database",
        f"- every cell: median of {args.runs} runs of {args.seconds:g} s after a {args.warmup:g} s warm-up;",
        "  wrk with 1 thread; the c1 latency/TTFT client: one keep-alive connection, requests back to back",
        _background(res, args),
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
            "at concurrency 16 and 64 LISA's throughput ≥ 10x the LiteLLM proxy's and ≥ 0.25x direct, with one",
            "worker, every ratio against figures from this invocation; and the gateway scales with workers",
            f"(here: ≥ {report.SCALING_MIN:g}x with more workers; on 2 cores the stub, wrk and every worker share"
            " the CPUs).",
            "Judged on LISA internal (the pass-through an OpenAI-compatible upstream takes); LISA third_party is",
            "in the tables above for comparison.",
            "",
            *report.bar_table(checks),
            "",
        ]
    direct1, direct16 = res.rps("direct", False, 1), res.rps("direct", False, 16)
    if direct1 == direct1 and direct16 == direct16:  # not NaN
        note = (
            f"For comparison only (not a criterion): this invocation's direct plain {direct1:,.0f} req/s at "
            f"concurrency 1 and {direct16:,.0f} at 16; {ISSUE_REFERENCE}."
        )
        lines += [*textwrap.wrap(note, WIDTH), ""]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    """Replace the section (from its heading to the next ``## ``) or append it; the rest stays."""
    new_doc = "# Benchmarks\n\nFigures produced by the scripts in `bench/`.\n"
    text = DOC.read_text() if DOC.exists() else new_doc
    heading = section.split("\n", 1)[0]
    start = text.find("\n" + heading + "\n") + 1  # a whole line: "## Gateway" is in "### Gateway" too
    if start > 0:
        nxt = text.find("\n## ", start + len(heading))
        text = text[:start] + section.rstrip() + "\n" + (text[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
