"""Gateway benchmark: direct to an OpenAI-compatible stub, through LISA, and through the LiteLLM proxy.

One invocation starts the upstream stub (``bench/upstream_stub.py``), then each path in turn (only one
gateway runs at a time, so they never compete for the CPU), and measures chat completions, streaming and
not. The paths: ``direct`` (the stub itself), ``lisa`` (the stub registered in LISA as an internal model:
the pass-through), ``lisa-router`` (the same stub registered in the same ``lisa serve`` as a ``third_party``
model, provider ``openai``: LiteLLM's Router in LISA's process) and ``litellm`` (the LiteLLM proxy). Each
is measured:

* at concurrency 1, a sequential client on one keep-alive connection: latency p50/p99 and, streaming,
  time to first token (TTFT); "added" is the path's figure minus direct's from the same invocation;
* at every concurrency (default 1, 16, 64), ``wrk`` with one thread: requests/s and its latency percentiles;
* LISA (internal) at the highest concurrency with more workers (``--scale-workers``), to show how it scales.

After each LISA path, the requests LISA's ``GET /api/usage`` metered for that path's models are compared
with the chat completions the stub received meanwhile (its ``GET /_count``), exactly.

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
from bench.measure import Measure, log, measure_path, measure_scaling
from bench.report import LISA_PATHS, MODES, Metering, Results

LOG_DIR = Path(tempfile.gettempdir()) / "lisa-bench-logs"  # the started servers' output, kept after the run


METERING_WAIT = 10.0  # seconds at most for LISA's metering (written in batches) and the stub to settle
METERING_POLL = 0.5


def check_metering(targets: servers.Targets, stub: servers.Stub, stub_before: int, res: Results) -> None:
    """LISA meters every /v1 request it forwards: compare what its usage API counts for the path's models with
    the chat completions the stub received since ``stub_before`` (everything the path sent went through LISA).

    Metering is written in batches off the request path, so both counts are read until they agree and stay so
    for one more poll, or until neither has changed for 2 s, at most METERING_WAIT s.
    """
    path = targets[0].name
    started = time.monotonic()
    last: tuple[int | None, int] | None = None
    unchanged_since = started
    while True:
        reading = (servers.lisa_metered(targets), stub.received() - stub_before)
        now = time.monotonic()
        if reading != last:
            unchanged_since, last = now, reading
        elif reading[0] == reading[1] or now - unchanged_since >= 2:
            break
        if now - started >= METERING_WAIT:
            break
        time.sleep(METERING_POLL)
    check = Metering(*reading)
    res.metered[path] = check
    log(f"{path}: {check.sentence()} (after {now - started:.1f} s; the clients counted {res.sent[path]:,})")


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


SKIPPABLE = (RuntimeError, OSError, subprocess.SubprocessError)


def skip(res: Results, path: str, exc: BaseException) -> None:
    why = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    log(f"SKIPPING {path}: {exc}")
    res.skipped[path] = why


def path_done(res: Results, path: str, args: argparse.Namespace, started: float) -> None:
    worst = max(res.background.get(path, [0.0]))
    if worst > args.quiet_pct:
        log(f"WARNING: in some {path} runs other processes used up to {worst:.0f}% of the CPUs")
    log(f"{path} done in {time.monotonic() - started:.0f} s (logs in {LOG_DIR})")


def run_lisa_paths(
    procs: processes.Processes,
    stub: servers.Stub,
    res: Results,
    args: argparse.Namespace,
    paths: list[str],
) -> None:
    """The LISA paths (internal, third_party) one after the other in one `lisa serve`, then the scaling run."""
    started = time.monotonic()
    try:
        why = servers.lisa_unavailable()
        if why:
            raise RuntimeError(why)
        server, targets = run_lisa(procs, stub, args.workers, Path(args.work))
    except SKIPPABLE as exc:
        for path in paths:
            skip(res, path, exc)
        return
    try:
        for path in paths:
            path_targets = targets if path == "lisa" else servers.router_targets(targets)
            try:
                stub_before = stub.received()
                measure_path(path_targets, res, args, Measure(res, path, args, procs))
                check_metering(path_targets, stub, stub_before, res)
            except SKIPPABLE as exc:
                skip(res, path, exc)
            else:
                path_done(res, path, args, started)
            started = time.monotonic()
    finally:
        stop_lisa(procs, server, Path(args.work))
    if "lisa" not in paths or "lisa" in res.skipped:
        return
    for stream in MODES:  # the main measurement doubles as the scaling baseline
        res.scaling[(args.workers, stream)] = res.wrk[("lisa", stream, max(args.concurrency))]
    if args.scale_workers and args.scale_workers != args.workers:
        try:
            server, targets = run_lisa(procs, stub, args.scale_workers, Path(args.work))
            try:
                measure_scaling(targets, args.scale_workers, res, args, Measure(res, "lisa", args, procs))
            finally:
                stop_lisa(procs, server, Path(args.work))
        except SKIPPABLE as exc:
            log(f"SKIPPING LISA with {args.scale_workers} workers: {exc}")


def run_all(args: argparse.Namespace) -> Results:
    res = Results()
    LOG_DIR.mkdir(exist_ok=True)
    lisa_paths = [p for p in args.paths if p in LISA_PATHS]
    with processes.Processes(LOG_DIR) as procs:
        stub, direct = servers.start_stub(procs, args.stub)
        log(f"{args.stub} stub on port {stub.port}, pausing stub on {stub.slow_port}")
        for path in args.paths:
            started = time.monotonic()
            if path == "direct":
                measure_path(direct, res, args, Measure(res, "direct", args, procs))
            elif path in LISA_PATHS:
                if path == lisa_paths[0]:  # the others run in the same `lisa serve`
                    run_lisa_paths(procs, stub, res, args, lisa_paths)
                continue
            else:
                try:
                    run_litellm(procs, stub, res, args)
                except SKIPPABLE as exc:
                    skip(res, path, exc)
                    continue
            path_done(res, path, args, started)
    return res


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--paths",
        default="direct,lisa,lisa-router,litellm",
        help="comma-separated: direct,lisa (internal: pass-through),lisa-router (third_party: LiteLLM Router),litellm",
    )
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
