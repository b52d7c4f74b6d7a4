"""Aggregation (median of runs), the bar from the issue, and the markdown for docs/benchmarks.md."""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen import SequentialResult, WrkResult

PATH_LABEL = {
    "direct": "direct",
    "lisa": "LISA internal",  # pass-through
    "lisa-router": "LISA third_party",  # LiteLLM Router in LISA's process
    "litellm": "LiteLLM proxy",
}
LISA_PATHS = ("lisa", "lisa-router")  # measured in one `lisa serve`, one after the other
MODES = (False, True)


def mode(stream: bool) -> str:
    return "stream" if stream else "plain"


def med(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(num: float, den: float) -> str:
    return "-" if math.isnan(num) or math.isnan(den) or den == 0 else f"{num / den:.2f}x"


@dataclass(frozen=True)
class Metering:
    """What LISA's usage API counted for one path's models against what the stub received through that path."""

    metered: int | None  # None: GET /api/usage could not be read
    received: int  # chat completion requests the stub received while the path was measured

    def verdict(self) -> str:
        if self.metered is None:
            return "LISA's `GET /api/usage` could not be read"
        if self.metered == self.received:
            return "equal"
        diff = self.metered - self.received
        return f"**LISA metered {abs(diff):,} {'more' if diff > 0 else 'fewer'}**"

    def sentence(self) -> str:
        counted = "?" if self.metered is None else f"{self.metered:,}"
        return f"LISA metered {counted} requests; the stub received {self.received:,} through LISA: {self.verdict()}"


@dataclass
class Results:
    """Every run, keyed by path and mode (and concurrency for wrk); figures are medians over runs."""

    wrk: dict[tuple[str, bool, int], list[WrkResult]] = field(default_factory=dict)
    seq: dict[tuple[str, bool], list[SequentialResult]] = field(default_factory=dict)
    ttft: dict[str, list[SequentialResult]] = field(default_factory=dict)  # streams from the pausing stub
    scaling: dict[tuple[int, bool], list[WrkResult]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    waited: float = 0.0  # seconds spent waiting for a quiet machine
    sent: dict[str, int] = field(default_factory=dict)  # path -> requests the clients counted, warm-ups included
    metered: dict[str, Metering] = field(default_factory=dict)  # LISA path -> its metering check, w1 run
    background: dict[str, list[float]] = field(default_factory=dict)  # path -> others' CPU %, per run

    def rps(self, path: str, stream: bool, conc: int) -> float:
        return med(r.rps for r in self.wrk.get((path, stream, conc), []))

    def wrk_lat(self, path: str, stream: bool, conc: int, q: int) -> float:
        return med(getattr(r, f"p{q}_ms") for r in self.wrk.get((path, stream, conc), []))

    def wrk_errors(self, path: str, stream: bool, conc: int) -> int:
        return sum(r.errors for r in self.wrk.get((path, stream, conc), []))

    def lat(self, path: str, stream: bool, q: float, ttft: bool = False) -> float:
        runs = self.ttft.get(path, []) if ttft else self.seq.get((path, stream), [])
        return med(r.p(q, ttft) for r in runs)

    def added(self, path: str, stream: bool, q: float, ttft: bool = False) -> float:
        return self.lat(path, stream, q, ttft) - self.lat("direct", stream, q, ttft)

    def paths(self) -> list[str]:
        measured = {k[0] for k in self.wrk} | {k[0] for k in self.seq}
        return [p for p in PATH_LABEL if p in measured]


def latency_table(res: Results) -> list[str]:
    rows = [
        "| path | mode | p50 ms | p99 ms | added p50 ms | added p99 ms | TTFT p50 ms | TTFT p99 ms "
        "| added TTFT p50 ms | added TTFT p99 ms |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for path in res.paths():
        for stream in MODES:
            if (path, stream) not in res.seq:
                continue
            cells = [fmt(res.lat(path, stream, 50)), fmt(res.lat(path, stream, 99))]
            cells += [fmt(res.added(path, stream, 50)), fmt(res.added(path, stream, 99))]
            if stream:
                cells += [fmt(res.lat(path, stream, q, True)) for q in (50, 99)]
                cells += [fmt(res.added(path, stream, q, True)) for q in (50, 99)]
            else:
                cells += ["", "", "", ""]
            rows.append(f"| {PATH_LABEL[path]} | {mode(stream)} | " + " | ".join(cells) + " |")
    return rows


def throughput_table(res: Results, concurrencies: list[int]) -> list[str]:
    rows = [
        "| path | mode | concurrency | req/s | x direct | x LiteLLM | wrk p50 ms | wrk p99 ms | errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for path in res.paths():
        for stream in MODES:
            for conc in concurrencies:
                if (path, stream, conc) not in res.wrk:
                    continue
                rps = res.rps(path, stream, conc)
                cells = [
                    str(conc),
                    fmt(rps, 0),
                    ratio(rps, res.rps("direct", stream, conc)),
                    ratio(rps, res.rps("litellm", stream, conc)),
                    fmt(res.wrk_lat(path, stream, conc, 50)),
                    fmt(res.wrk_lat(path, stream, conc, 99)),
                    str(res.wrk_errors(path, stream, conc)),
                ]
                rows.append(f"| {PATH_LABEL[path]} | {mode(stream)} | " + " | ".join(cells) + " |")
    return rows


def scaling_table(res: Results, conc: int) -> list[str]:
    if not res.scaling:
        return []
    rows = [
        f"| LISA workers | mode | req/s at concurrency {conc} | x 1 worker | errors |",
        "|--:|---|--:|--:|--:|",
    ]
    for (workers, stream), runs in sorted(res.scaling.items()):
        rps = med(r.rps for r in runs)
        base = med(r.rps for r in res.scaling.get((1, stream), []))
        errors = sum(r.errors for r in runs)
        rows.append(f"| {workers} | {mode(stream)} | {fmt(rps, 0)} | {ratio(rps, base)} | {errors} |")
    return rows


SCALING_MIN = 1.1  # "scales with workers": more workers serve at least this much more than one


def bar_checks(res: Results, concurrencies: list[int]) -> list[tuple[str, str, bool | None]]:
    """(criterion, measured, passed); passed is None where a figure is missing.

    Every ratio is against figures from the same invocation: direct is the stub the run started.
    """
    checks: list[tuple[str, str, bool | None]] = []

    def add(name: str, value: float, ok: bool, shown: str) -> None:
        checks.append((name, shown, None if math.isnan(value) else ok))

    if "lisa" not in res.paths():
        return checks
    for stream in MODES:
        ttft = stream
        what = "TTFT" if stream else "latency"
        for q, limit in ((50, 2.0), (99, 5.0)):
            value = res.added("lisa", stream, q, ttft)
            add(
                f"c1 {mode(stream)}: added {what} p{q} ≤ {limit:g} ms",
                value,
                value <= limit,
                f"{fmt(value)} ms",
            )
    for stream in MODES:
        for conc in (c for c in concurrencies if c > 1):
            rps = res.rps("lisa", stream, conc)
            lite, direct = res.rps("litellm", stream, conc), res.rps("direct", stream, conc)
            name = f"c{conc} {mode(stream)}: ≥ 10x LiteLLM proxy"
            add(name, rps - lite, rps >= 10 * lite, ratio(rps, lite))
            add(
                f"c{conc} {mode(stream)}: ≥ 0.25x direct",
                rps - direct,  # NaN when either is missing
                rps >= 0.25 * direct,
                ratio(rps, direct),
            )
    workers = sorted({w for w, _ in res.scaling})
    if len(workers) > 1:
        conc = max(concurrencies)
        for stream in MODES:
            one = med(r.rps for r in res.scaling.get((workers[0], stream), []))
            many = med(r.rps for r in res.scaling.get((workers[-1], stream), []))
            add(
                f"c{conc} {mode(stream)}: {workers[-1]} workers ≥ {SCALING_MIN:g}x {workers[0]} (scales with workers)",
                many - one,
                many >= SCALING_MIN * one,
                ratio(many, one),
            )
    return checks


def bar_table(checks: list[tuple[str, str, bool | None]]) -> list[str]:
    if not checks:
        return []
    rows = ["| bar | LISA internal | verdict |", "|---|--:|---|"]
    for name, shown, ok in checks:
        rows.append(f"| {name} | {shown} | {'pass' if ok else 'n/a' if ok is None else '**FAIL**'} |")
    return rows


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy(seconds: float = 2.0) -> float:
    """Percent of all CPUs busy over ``seconds`` (whoever uses them)."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return 100.0 * (busy1 - busy0) / max(total1 - total0, 1)


def machine_facts(litellm_versions: str) -> list[str]:
    cpu = "?"
    mem = "?"
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match.group(1).strip() if match else "?"
        kb = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem = f"{int(kb.group(1)) / 1024**2:.1f} GiB" if kb else "?"
    except OSError:
        pass
    wrk_path = shutil.which("wrk")
    wrk = "not installed"
    if wrk_path:
        out = subprocess.run([wrk_path, "-v"], capture_output=True, text=True)
        first_line = (out.stdout or out.stderr or "?").splitlines()[0]
        wrk = first_line.split(" Copyright")[0]
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (`nproc` = {len(os.sched_getaffinity(0))}); memory {mem}",
        f"- {platform.system()} {platform.release()}, Python {platform.python_version()}, {wrk}, "
        f"LiteLLM {litellm_versions}",
    ]
