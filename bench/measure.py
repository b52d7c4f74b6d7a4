"""Measuring one path: warm-up, the c1 sequential client, TTFT, wrk at each concurrency, in clean runs."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from bench import processes, report, servers
from bench.cpuload import Meter
from bench.loadgen import SequentialResult, Target, WrkResult, check_once, run_sequential, run_wrk
from bench.report import MODES, Results, mode

T = TypeVar("T")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sanity_check(target: Target) -> None:
    for stream in MODES:
        problem = asyncio.run(check_once(target, stream))
        if problem:
            raise RuntimeError(f"{target.name} ({mode(stream)}) does not answer correctly: {problem}")
    if target.api_key:  # authentication is on: a wrong key must be refused
        refused = asyncio.run(check_once(replace(target, api_key="sk-not-a-valid-key"), False))
        if not refused:
            raise RuntimeError(f"{target.name} answered a request with a wrong API key")
        log(f"{target.name:7} refuses a wrong API key ({refused})")


class Measure:
    """Runs the load generators against one path and keeps only runs the rest of the machine left alone.

    Before each run it waits for idle CPUs; after it, it checks how much CPU processes outside the
    benchmark used meanwhile and, above --quiet-pct, runs it again (up to --retries times). It also
    counts every request sent, for the metering check.
    """

    def __init__(self, res: Results, path: str, args: argparse.Namespace, procs: processes.Processes) -> None:
        self.res, self.path, self.args, self.procs = res, path, args, procs
        self.meter = Meter(args.work)
        res.sent.setdefault(path, 0)

    def _clean(self, what: str, run: Callable[[], T]) -> T:
        for attempt in range(self.args.retries + 1):
            wait_quiet(self.res, self.args)
            self.meter.start()
            result = run()
            foreign = self.meter.stop(self.procs.sessions)
            if foreign <= self.args.quiet_pct or attempt == self.args.retries:
                self.res.background.setdefault(self.path, []).append(foreign)
                return result
            log(f"{self.path} {what}: other processes used {foreign:.0f}% of the CPUs meanwhile; again")
        raise AssertionError("unreachable")

    def wrk(self, target: Target, stream: bool, conc: int, seconds: float, clean: bool = True) -> WrkResult:
        def run() -> WrkResult:
            result = run_wrk(target, stream, conc, seconds)
            self.res.sent[self.path] += result.requests
            return result

        return self._clean(f"{mode(stream)} c{conc}", run) if clean else run()

    def seq(self, target: Target, stream: bool, seconds: float, clean: bool = True) -> SequentialResult:
        def run() -> SequentialResult:
            result = asyncio.run(run_sequential(target, stream, seconds))
            self.res.sent[self.path] += len(result.latencies_ms) + result.errors
            return result

        return self._clean(f"{mode(stream)} sequential", run) if clean else run()


def measure_path(targets: servers.Targets, res: Results, args: argparse.Namespace, m: Measure) -> None:
    target, slow = targets
    sanity_check(target)
    sanity_check(slow)
    for stream in MODES:  # warm-up: connection pools, caches, lazy imports
        m.wrk(target, stream, max(args.concurrency), args.warmup, clean=False)
        m.seq(target, stream, args.warmup, clean=False)
    m.seq(slow, True, args.warmup, clean=False)
    ttft = res.ttft.setdefault(target.name, [])
    for _ in range(args.runs):
        ttft.append(m.seq(slow, True, args.seconds))
    log(
        f"{target.name:7} stream c1 TTFT (upstream pauses {servers.SLOW_DELAY_MS} ms after the first event): "
        f"p50 {ttft[-1].p(50, True):.2f} ms, p99 {ttft[-1].p(99, True):.2f} ms, "
        f"whole stream p50 {ttft[-1].p(50):.2f} ms ({ttft[-1].errors} errors)"
    )
    for stream in MODES:
        runs = res.seq.setdefault((target.name, stream), [])
        for _ in range(args.runs):
            runs.append(m.seq(target, stream, args.seconds))
        last = runs[-1]
        log(
            f"{target.name:7} {mode(stream):6} c1 sequential: p50 {last.p(50):.2f} ms p99 {last.p(99):.2f} ms"
            + f" ({len(last.latencies_ms)} requests, {last.errors} errors)"
        )
        for conc in args.concurrency:
            cell = res.wrk.setdefault((target.name, stream, conc), [])
            for _ in range(args.runs):
                cell.append(m.wrk(target, stream, conc, args.seconds))
            log(
                f"{target.name:7} {mode(stream):6} c{conc:<3} wrk: "
                + ", ".join(f"{r.rps:,.0f} req/s" for r in cell)
                + f" (errors {sum(r.errors for r in cell)})"
            )


def measure_scaling(
    targets: servers.Targets,
    workers: int,
    res: Results,
    args: argparse.Namespace,
    m: Measure,
) -> None:
    conc = max(args.concurrency)
    target = targets[0]
    sanity_check(target)
    for stream in MODES:
        m.wrk(target, stream, conc, args.warmup, clean=False)
        cell = res.scaling.setdefault((workers, stream), [])
        for _ in range(args.runs):
            cell.append(m.wrk(target, stream, conc, args.seconds))
        figures = ", ".join(f"{r.rps:,.0f} req/s" for r in cell)
        log(f"lisa w{workers} {mode(stream):6} c{conc} wrk: {figures}")


def wait_quiet(res: Results, args: argparse.Namespace) -> None:
    """Wait (up to --wait-quiet s) until nothing else keeps the CPUs busy."""
    started = time.monotonic()
    busy = report.cpu_busy(0.5)
    while busy > args.quiet_pct and time.monotonic() < started + args.wait_quiet:
        if time.monotonic() - started > 10:  # say so once it takes a while
            log(f"other processes keep {busy:.0f}% of the CPUs busy; waiting for a quiet machine")
        busy = report.cpu_busy(5 if time.monotonic() - started > 10 else 1)
    res.waited += time.monotonic() - started
