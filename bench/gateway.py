"""Gateway benchmark: direct to an OpenAI-compatible stub, through LISA, and through the LiteLLM proxy.

One invocation starts the upstream stub (``bench/upstream_stub.py``), then each path in turn (only one
gateway runs at a time, so they never compete for the CPU), and measures chat completions, streaming and
not:

* at concurrency 1, a sequential client on one keep-alive connection: latency p50/p99 and, streaming,
  time to first token (TTFT); "added" is the path's figure minus direct's from the same invocation;
* at every concurrency (default 1, 16, 64), ``wrk`` with one thread: requests/s and its latency percentiles;
* LISA at the highest concurrency with more workers (``--scale-workers``), to show how it scales.

Every cell is run ``--runs`` times for ``--seconds`` each and the median is reported; a run during which
processes outside the benchmark used more than ``--quiet-pct`` of the CPUs is repeated (the machine may be
shared, and on 2 cores anything else running changes every figure). LISA runs with
authentication and usage metering on (its defaults); the LiteLLM proxy with a master key, one worker and no
database. The upstream is a FastAPI stub (``--stub fastapi``, as in the issue); every ratio, the bar's
"≥ 0.25x direct" included, is against direct from the same invocation. ``--stub raw`` swaps in a
framework-less stub many times faster, to show the gateway's own ceiling. The results go to stdout and to
``docs/benchmarks.md``: section "Gateway" (FastAPI stub) or "Gateway against a raw-asyncio stub (context)".

    .venv/bin/python -m bench.gateway --runs 3 --seconds 5      # everything, the bar included
    .venv/bin/python -m bench.gateway --stub raw --paths direct,lisa --runs 3 --seconds 3   # the context
    .venv/bin/python -m bench.gateway --paths direct,litellm --runs 1 --seconds 2 --no-write
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from bench import processes, report, servers
from bench.gateway_doc import DOC, code_version, render, write_doc
from bench.loadgen import Target
from bench.measure import Measure, log, measure_path, measure_scaling
from bench.report import MODES, Results

LOG_DIR = Path(tempfile.gettempdir()) / "lisa-bench-logs"  # the started servers' output, kept after the run


def check_metering(target: Target, res: Results) -> None:
    """LISA meters every /v1 request: compare what its usage API counts with what was sent."""
    time.sleep(2)  # metering is written in batches off the request path
    metered = servers.lisa_metered(target)
    res.metered = None if metered is None else (metered, res.sent["lisa"])
    counted = "?" if metered is None else f"{metered:,}"
    log(f"lisa metered {counted} requests; the benchmark sent {res.sent['lisa']:,}")


def run_lisa(
    procs: processes.Processes, stub: servers.Stub, workers: int, work: Path
) -> tuple[processes.Managed, servers.Targets]:
    data_dir = work / f"lisa-data-w{workers}"  # fresh each start: embedded PostgreSQL, admin token
    data_dir.mkdir()
    log(f"starting LISA with {workers} worker(s), data dir {data_dir}")
    return servers.start_lisa(procs, stub, workers, data_dir)


def stop_lisa(procs: processes.Processes, server: processes.Managed, work: Path) -> None:
    procs.stop(server)
    left = processes.leftover_processes(str(work))
    if left:
        log(f"WARNING: `lisa serve` stopped, but processes still run in its data dir: {left}; stopping them")
        for pid in left:
            subprocess.run(["kill", "-INT", str(pid)], check=False)
        time.sleep(3)
        for pid in processes.leftover_processes(str(work)):
            subprocess.run(["kill", "-KILL", str(pid)], check=False)


def run_litellm(
    procs: processes.Processes,
    stub: servers.Stub,
    res: Results,
    args: argparse.Namespace,
) -> None:
    log("starting the LiteLLM proxy")
    proxy, targets = servers.start_litellm(procs, stub, Path(args.work))
    try:
        measure_path(targets, res, args, Measure(res, "litellm", args, procs))
    finally:
        procs.stop(proxy)


def run_lisa_path(
    procs: processes.Processes,
    stub: servers.Stub,
    res: Results,
    args: argparse.Namespace,
) -> None:
    why = servers.lisa_unavailable()
    if why:
        raise RuntimeError(why)
    work = Path(args.work)
    m = Measure(res, "lisa", args, procs)
    server, targets = run_lisa(procs, stub, args.workers, work)
    try:
        measure_path(targets, res, args, m)
        check_metering(targets[0], res)
        for stream in MODES:  # the main measurement doubles as the scaling baseline
            res.scaling[(args.workers, stream)] = res.wrk[("lisa", stream, max(args.concurrency))]
    finally:
        stop_lisa(procs, server, work)
    if args.scale_workers and args.scale_workers != args.workers:
        server, targets = run_lisa(procs, stub, args.scale_workers, work)
        try:
            measure_scaling(targets, args.scale_workers, res, args, m)
        finally:
            stop_lisa(procs, server, work)


def run_all(args: argparse.Namespace) -> Results:
    res = Results()
    LOG_DIR.mkdir(exist_ok=True)
    with processes.Processes(LOG_DIR) as procs:
        stub, direct = servers.start_stub(procs, args.stub)
        log(f"{args.stub} stub on port {stub.port}, pausing stub on {stub.slow_port}")
        for path in args.paths:
            started = time.monotonic()
            if path == "direct":
                measure_path(direct, res, args, Measure(res, "direct", args, procs))
            else:
                try:
                    (run_litellm if path == "litellm" else run_lisa_path)(procs, stub, res, args)
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    why = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                    log(f"SKIPPING {path}: {exc}")
                    res.skipped[path] = why
                    continue
            worst = max(res.background.get(path, [0.0]))
            if worst > args.quiet_pct:
                log(f"WARNING: in some {path} runs other processes used up to {worst:.0f}% of the CPUs")
            log(f"{path} done in {time.monotonic() - started:.0f} s (logs in {LOG_DIR})")
    return res


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--paths", default="direct,lisa,litellm", help="comma-separated: direct,lisa,litellm")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated wrk connection counts")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one run")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per path and mode")
    parser.add_argument("--workers", type=int, default=1, help="LISA workers for the main measurements")
    parser.add_argument("--scale-workers", type=int, default=2, help="LISA workers to compare; 0: skip")
    parser.add_argument(
        "--stub",
        choices=["fastapi", "raw"],
        default="fastapi",
        help="upstream stub: FastAPI (the bar, as in the issue) or raw asyncio (context: LISA's own ceiling)",
    )
    parser.add_argument("--wait-quiet", type=float, default=300, help="max seconds to wait for idle CPUs")
    parser.add_argument("--quiet-pct", type=float, default=10, help="others' CPU share (%%) that voids a run")
    parser.add_argument("--retries", type=int, default=4, help="reruns of a run disturbed by other processes")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.name} alone")
    args = parser.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = set(args.paths) - set(report.PATH_LABEL)
    if unknown:
        parser.error(f"unknown path(s): {', '.join(sorted(unknown))}")
    if "direct" not in args.paths:
        args.paths.insert(0, "direct")  # every ratio is against direct
    args.concurrency = sorted({int(c) for c in args.concurrency.split(",")})
    return args


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # run the same clean-up as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started with SIGINT ignored
    raw = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python -m bench.gateway", *(shlex.quote(a) for a in raw)])
    started = time.monotonic()
    args.code = code_version()  # compared with the end's in the doc: the tree may change meanwhile
    with tempfile.TemporaryDirectory(prefix="lisa-bench-") as tmp:
        try:
            args.work = tmp
            res = run_all(args)
        except KeyboardInterrupt:
            log("interrupted; every started process has been stopped")
            return 130
    section = render(res, args, command, time.monotonic() - started - res.waited)
    print("\n" + section)
    if not args.no_write:
        write_doc(section)
        log(f"wrote {DOC.relative_to(processes.REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
