"""Where the CPU goes while wrk drives LISA through the upstream stub, for each worker count.

On a 2-core machine the stub, wrk, PostgreSQL and every LISA worker share the cores, so whether a second
worker can add throughput depends on what the others leave. This run starts the stub and LISA with each
``--workers`` count in turn, runs wrk (one thread, ``--concurrency`` connections) for ``--seconds`` per
mode, and splits the CPU time used meanwhile between the stub, LISA's processes, its embedded PostgreSQL
and wrk. It prints a markdown table; it writes nothing.

    .venv/bin/python -m bench.gateway_cpu                 # FastAPI stub, 1 and 2 workers, concurrency 64
    .venv/bin/python -m bench.gateway_cpu --stub raw
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench import cpuload, processes, servers
from bench.gateway import LOG_DIR, stop_lisa
from bench.loadgen import run_wrk
from bench.measure import log, wait_quiet
from bench.report import MODES, Results, mode


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _cores(pids: set[int], before: dict[int, cpuload.Proc], after: dict[int, cpuload.Proc], t: float) -> float:
    """CPU-seconds per second that ``pids`` used between the two snapshots."""
    ticks = sum(after[p].ticks - (before[p].ticks if p in before else 0) for p in pids if p in after)
    return ticks / cpuload.CLK_TCK / t


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once reaped
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stub", choices=["fastapi", "raw"], default="fastapi")
    parser.add_argument("--workers", default="1,2", help="comma-separated LISA worker counts")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load before each measurement")
    parser.add_argument("--wait-quiet", type=float, default=300, help="max seconds to wait for idle CPUs")
    parser.add_argument("--quiet-pct", type=float, default=10, help="others' CPU share (%%) counted as idle")
    args = parser.parse_args(argv)
    why = servers.lisa_unavailable()
    if why:
        print(why, file=sys.stderr)
        return 1
    rows = [
        f"| LISA workers | mode | req/s at c{args.concurrency} | stub | LISA | PostgreSQL | wrk | all | cores |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    LOG_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lisa-bench-") as tmp, processes.Processes(LOG_DIR) as procs:
        stub, _ = servers.start_stub(procs, args.stub)
        stub_sessions = set(procs.sessions)
        for workers in (int(w) for w in args.workers.split(",")):
            data_dir = Path(tmp) / f"lisa-data-w{workers}"
            data_dir.mkdir()
            log(f"starting LISA with {workers} worker(s)")
            server, (target, _) = servers.start_lisa(procs, stub, workers, data_dir)
            try:
                lisa_sessions = set(procs.sessions) - stub_sessions
                for stream in MODES:
                    run_wrk(target, stream, args.concurrency, args.warmup)
                    wait_quiet(Results(), args)
                    before, wrk0, t0 = cpuload._snapshot(), _children_cpu(), time.monotonic()
                    result = run_wrk(target, stream, args.concurrency, args.seconds)
                    after, wrk1, elapsed = cpuload._snapshot(), _children_cpu(), time.monotonic() - t0

                    stub_pids = cpuload._ours(after, stub_sessions, "")
                    lisa_pids = cpuload._ours(after, lisa_sessions, str(data_dir))
                    pg = {p for p in lisa_pids if b"postgres" in _cmdline(p)}
                    wrk = (wrk1 - wrk0) / elapsed
                    figures = [_cores(ids, before, after, elapsed) for ids in (stub_pids, lisa_pids - pg, pg)]
                    figures += [wrk, _cores(set(after), before, after, elapsed) + wrk]
                    cells = [str(workers), mode(stream), f"{result.rps:,.0f}", *(f"{f:.2f}" for f in figures)]
                    rows.append("| " + " | ".join([*cells, str(len(os.sched_getaffinity(0)))]) + " |")
                    log(rows[-1])
            finally:
                stop_lisa(procs, server, Path(tmp))
    what = f"{args.stub} stub, wrk -t1 -c{args.concurrency}, {args.seconds:g} s"
    print(f"\nCPU used, in cores (CPU-seconds per second); {what}; `all` covers every process:\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
